package aob.packs.approve_test

import data.aob.test

approve_refund := {
	"kind": "approve",
	"node": "approve_refund",
	"approver_roles": ["approver", "admin"],
	"requested_by": "user-1",
}

test_an_approver_who_did_not_start_the_run_may_approve if {
	t := test.pro
	a := approve_refund
	p := {"subject": "user-2", "roles": ["approver"]}
	d := data.aob.decision with input.tenant as t with input.principal as p with input.action as a
	d.allow
	d.reasons == set()
}

test_any_one_of_the_approver_roles_is_enough if {
	t := test.pro
	a := approve_refund
	p := {"subject": "user-2", "roles": ["viewer", "admin"]}
	d := data.aob.decision with input.tenant as t with input.principal as p with input.action as a
	d.allow
}

test_a_principal_without_an_approver_role_is_refused if {
	t := test.pro
	a := approve_refund
	p := {"subject": "user-2", "roles": ["operator"]}
	d := data.aob.decision with input.tenant as t with input.principal as p with input.action as a
	not d.allow
	d.reasons == {"user-2 holds none of the roles that may approve approve_refund"}
}

test_the_requester_may_not_approve_their_own_run if {
	t := test.pro
	a := approve_refund
	p := {"subject": "user-1", "roles": ["approver"]}
	d := data.aob.decision with input.tenant as t with input.principal as p with input.action as a
	not d.allow
	d.reasons == {"user-1 started this run and may not approve its own step approve_refund (separation of duties)"}
}

test_a_suspended_tenant_approves_nothing if {
	t := {"id": "acme", "plan": "pro", "status": "suspended"}
	a := approve_refund
	p := {"subject": "user-2", "roles": ["approver"]}
	d := data.aob.decision with input.tenant as t with input.principal as p with input.action as a
	not d.allow
}

test_approving_carries_no_obligations if {
	t := test.pro
	a := approve_refund
	p := {"subject": "user-2", "roles": ["admin"]}
	d := data.aob.decision with input.tenant as t with input.principal as p with input.action as a
	d.obligations == {}
}
