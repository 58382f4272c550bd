# Approval-required rules, one per tool in data.aob.catalog.approvals: the call needs a human
# approval first (obligation `require_approval`). A rule with `arg` applies when that argument
# exceeds `above` (or the tenant plan's entry in `above_by_plan`), or is missing or not a number
# (fail safe); a rule without `arg` always applies.
package aob.packs.approval

rule := data.aob.catalog.approvals[input.action.tool] if input.action.kind == "tool"

threshold := object.get(object.get(rule, "above_by_plan", {}), input.tenant.plan, rule.above)

reason := sprintf("%s always needs approval", [input.action.tool]) if {
	rule
	not rule.arg
}

reason := sprintf("%s needs approval: %s is missing or not a number", [input.action.tool, rule.arg]) if {
	rule.arg
	not is_number(object.get(input.action.args, rule.arg, null))
}

reason := sprintf("%s with %s %v needs approval above %v", [input.action.tool, rule.arg, value, threshold]) if {
	value := input.action.args[rule.arg]
	is_number(value)
	value > threshold
}

obligations["require_approval"] := {"approver_roles": rule.approver_roles, "reason": reason} if reason
