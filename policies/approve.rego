# Who may decide an approval step (action kind `approve`): a principal holding one of the step's
# approver_roles, and never the principal who started the run (separation of duties).
package aob.packs.approve

deny contains msg if {
	input.action.kind == "approve"
	not has_approver_role
	msg := sprintf("%s holds none of the roles that may approve %s", [input.principal.subject, input.action.node])
}

deny contains msg if {
	input.action.kind == "approve"
	input.action.requested_by == input.principal.subject
	msg := sprintf("%s started this run and may not approve its own step %s (separation of duties)", [input.principal.subject, input.action.node])
}

has_approver_role if {
	some role in input.principal.roles
	role in input.action.approver_roles
}
