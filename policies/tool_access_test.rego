package aob.packs.tool_access_test

import data.aob.test

test_operator_may_look_up_an_order_on_free if {
	t := test.free
	p := test.operator
	a := {"kind": "tool", "tool": "lookup_order", "args": {}, "data_classes": []}
	d := data.aob.decision with input.tenant as t with input.principal as p with input.action as a
	d.allow
}

test_unknown_tool_is_denied if {
	t := test.enterprise
	p := test.admin
	a := {"kind": "tool", "tool": "format_disk", "args": {}, "data_classes": []}
	d := data.aob.decision with input.tenant as t with input.principal as p with input.action as a
	d.reasons == {"tool format_disk is not in the tool catalogue"}
}

test_tool_not_on_plan_is_denied if {
	t := test.free
	p := test.operator
	a := {"kind": "tool", "tool": "send_email", "args": {}, "data_classes": []}
	d := data.aob.decision with input.tenant as t with input.principal as p with input.action as a
	d.reasons == {"tool send_email is not available on the free plan"}
}

test_role_without_access_is_denied if {
	t := test.enterprise
	p := test.viewer
	a := {"kind": "tool", "tool": "issue_refund", "args": {"amount": 5}, "data_classes": []}
	d := data.aob.decision with input.tenant as t with input.principal as p with input.action as a
	d.reasons == {"user-1 has no role allowed to call tool issue_refund"}
}

test_principal_without_roles_is_denied if {
	t := test.pro
	p := {"subject": "user-1", "roles": []}
	a := {"kind": "tool", "tool": "lookup_order", "args": {}, "data_classes": []}
	d := data.aob.decision with input.tenant as t with input.principal as p with input.action as a
	not d.allow
}

test_any_one_allowed_role_is_enough if {
	t := test.pro
	p := {"subject": "user-1", "roles": ["viewer", "operator"]}
	a := {"kind": "tool", "tool": "send_email", "args": {}, "data_classes": []}
	d := data.aob.decision with input.tenant as t with input.principal as p with input.action as a
	d.allow
}

test_tenant_allow_list_narrows_the_catalogue if {
	t := test.pro
	p := test.operator
	enabled := {"acme": ["lookup_order"]}
	email := {"kind": "tool", "tool": "send_email", "args": {}, "data_classes": []}
	refused := data.aob.decision with input.tenant as t with input.principal as p with input.action as email
		with data.aob.catalog.tenant_tools as enabled
	refused.reasons == {"tenant acme has not enabled tool send_email"}
	lookup := {"kind": "tool", "tool": "lookup_order", "args": {}, "data_classes": []}
	kept := data.aob.decision with input.tenant as t with input.principal as p with input.action as lookup
		with data.aob.catalog.tenant_tools as enabled
	kept.allow
}

test_every_failed_check_is_a_reason if {
	t := test.free
	p := test.viewer
	a := {"kind": "tool", "tool": "delete_customer", "args": {}, "data_classes": []}
	d := data.aob.decision with input.tenant as t with input.principal as p with input.action as a
	d.reasons == {
		"tool delete_customer is not available on the free plan",
		"user-1 has no role allowed to call tool delete_customer",
	}
}
