# Tool access by tenant and role: the tool must be in the catalogue, offered on the tenant's plan,
# allowed to one of the principal's roles and, where the tenant keeps an allow-list, on it.
package aob.packs.tool_access

tool := data.aob.catalog.tools[input.action.tool] if input.action.kind == "tool"

deny contains msg if {
	input.action.kind == "tool"
	not tool
	msg := sprintf("tool %s is not in the tool catalogue", [input.action.tool])
}

deny contains msg if {
	plans := tool.plans # bound first: `not x in tool.plans` would also hold for an unknown tool
	not input.tenant.plan in plans
	msg := sprintf("tool %s is not available on the %s plan", [input.action.tool, input.tenant.plan])
}

deny contains msg if {
	tool
	not has_allowed_role
	msg := sprintf("%s has no role allowed to call tool %s", [input.principal.subject, input.action.tool])
}

deny contains msg if {
	input.action.kind == "tool"
	enabled := data.aob.catalog.tenant_tools[input.tenant.id]
	not input.action.tool in enabled
	msg := sprintf("tenant %s has not enabled tool %s", [input.tenant.id, input.action.tool])
}

has_allowed_role if {
	some role in input.principal.roles
	role in tool.roles
}
