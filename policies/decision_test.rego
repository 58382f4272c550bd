package aob.decision_test

import data.aob.test

test_suspended_tenant_is_refused_everything if {
	t := {"id": "acme", "plan": "enterprise", "status": "suspended"}
	p := test.admin
	a := {"kind": "model", "tier": "small", "data_classes": []}
	d := data.aob.decision with input.tenant as t with input.principal as p with input.action as a
	d.reasons == {"tenant acme is suspended: every action is refused until it is active"}
}

test_unknown_action_kind_is_refused if {
	t := test.enterprise
	p := test.admin
	a := {"kind": "teleport"}
	d := data.aob.decision with input.tenant as t with input.principal as p with input.action as a
	not d.allow
	d.reasons == {"no policy covers action kind 'teleport'"}
	d.obligations == {}
}

test_missing_tenant_and_action_are_refused if {
	p := test.admin
	d := data.aob.decision with input.principal as p
	not d.allow
	count(d.reasons) == 2
}

test_obligations_of_packs_merge if {
	t := test.pro
	p := test.operator
	a := {"kind": "tool", "tool": "issue_refund", "args": {"amount": 500, "cvv": "1"}, "data_classes": []}
	d := data.aob.decision with input.tenant as t with input.principal as p with input.action as a
	d.allow
	object.keys(d.obligations) == {"redact", "require_approval"}
}
