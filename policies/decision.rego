# The one entry point, data.aob.decision: every pack's denials and obligations, combined.
# A pack is a package under aob.packs with a `deny` set of reasons and/or an `obligations`
# object; a new pack is added to `reasons` or `obligations` below.
package aob

import data.aob.packs

known_kinds := {"tool", "model", "egress", "approve"}

# Deny by default: an action no pack understands is refused, not waved through.
deny contains msg if {
	kind := object.get(input, ["action", "kind"], "")
	not kind in known_kinds
	msg := sprintf("no policy covers action kind '%v'", [kind])
}

# A set: the engine returns it sorted (rego-cpp 1.5 mis-compares the output of sort() on sets).
reasons := deny | packs.tenant.deny | packs.tool_access.deny | packs.model_tier.deny | packs.egress.deny | packs.approve.deny

decision := {
	"allow": count(reasons) == 0,
	"reasons": reasons,
	"obligations": object.union(packs.egress.obligations, packs.approval.obligations),
}
