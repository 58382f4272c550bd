# Model tier by tenant plan: each plan includes some model tiers.
package aob.packs.model_tier

deny contains msg if {
	input.action.kind == "model"
	not input.action.tier in object.get(data.aob.catalog.plans, [input.tenant.plan, "model_tiers"], [])
	msg := sprintf("model tier %s is not included in the %s plan", [input.action.tier, input.tenant.plan])
}
