# Tenant standing: only an active tenant may act (a missing status counts as not active).
package aob.packs.tenant

deny contains msg if {
	status := object.get(input, ["tenant", "status"], "unknown")
	status != "active"
	tenant := object.get(input, ["tenant", "id"], "(none)")
	msg := sprintf("tenant %v is %v: every action is refused until it is active", [tenant, status])
}
