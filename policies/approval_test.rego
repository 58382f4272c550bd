package aob.packs.approval_test

import data.aob.test

test_refund_at_the_threshold_needs_no_approval if {
	t := test.pro
	p := test.operator
	a := {"kind": "tool", "tool": "issue_refund", "args": {"amount": 100}, "data_classes": []}
	d := data.aob.decision with input.tenant as t with input.principal as p with input.action as a
	d.allow
	d.obligations == {}
}

test_refund_above_the_threshold_needs_approval if {
	t := test.pro
	p := test.operator
	a := {"kind": "tool", "tool": "issue_refund", "args": {"amount": 100.5}, "data_classes": []}
	d := data.aob.decision with input.tenant as t with input.principal as p with input.action as a
	d.allow
	d.obligations.require_approval.approver_roles == ["approver", "admin"]
	d.obligations.require_approval.reason == "issue_refund with amount 100.5 needs approval above 100"
}

test_enterprise_plan_has_a_higher_threshold if {
	t := test.enterprise
	p := test.operator
	below := {"kind": "tool", "tool": "issue_refund", "args": {"amount": 900}, "data_classes": []}
	above := {"kind": "tool", "tool": "issue_refund", "args": {"amount": 1001}, "data_classes": []}
	no := data.aob.decision with input.tenant as t with input.principal as p with input.action as below
	yes := data.aob.decision with input.tenant as t with input.principal as p with input.action as above
	no.obligations == {}
	yes.obligations.require_approval.reason == "issue_refund with amount 1001 needs approval above 1000"
}

test_refund_without_a_numeric_amount_needs_approval if {
	t := test.pro
	p := test.operator
	missing := {"kind": "tool", "tool": "issue_refund", "args": {}, "data_classes": []}
	text := {"kind": "tool", "tool": "issue_refund", "args": {"amount": "5"}, "data_classes": []}
	d1 := data.aob.decision with input.tenant as t with input.principal as p with input.action as missing
	d2 := data.aob.decision with input.tenant as t with input.principal as p with input.action as text
	d1.obligations.require_approval.reason == "issue_refund needs approval: amount is missing or not a number"
	d2.obligations.require_approval.reason == "issue_refund needs approval: amount is missing or not a number"
}

test_deleting_a_customer_always_needs_approval if {
	t := test.enterprise
	p := test.admin
	a := {"kind": "tool", "tool": "delete_customer", "args": {"customer_id": "c-1"}, "data_classes": []}
	d := data.aob.decision with input.tenant as t with input.principal as p with input.action as a
	d.allow
	d.obligations.require_approval == {"approver_roles": ["admin"], "reason": "delete_customer always needs approval"}
}
