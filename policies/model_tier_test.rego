package aob.packs.model_tier_test

import data.aob.test

test_free_plan_gets_the_small_tier if {
	t := test.free
	p := test.viewer
	a := {"kind": "model", "tier": "small", "data_classes": []}
	d := data.aob.decision with input.tenant as t with input.principal as p with input.action as a
	d.allow
}

test_free_plan_is_refused_the_medium_tier if {
	t := test.free
	p := test.viewer
	a := {"kind": "model", "tier": "medium", "data_classes": []}
	d := data.aob.decision with input.tenant as t with input.principal as p with input.action as a
	d.reasons == {"model tier medium is not included in the free plan"}
}

test_pro_plan_gets_medium_but_not_large if {
	t := test.pro
	p := test.viewer
	medium := {"kind": "model", "tier": "medium", "data_classes": []}
	large := {"kind": "model", "tier": "large", "data_classes": []}
	allowed := data.aob.decision with input.tenant as t with input.principal as p with input.action as medium
	refused := data.aob.decision with input.tenant as t with input.principal as p with input.action as large
	allowed.allow
	not refused.allow
}

test_enterprise_plan_gets_the_large_tier if {
	t := test.enterprise
	p := test.viewer
	a := {"kind": "model", "tier": "large", "data_classes": []}
	d := data.aob.decision with input.tenant as t with input.principal as p with input.action as a
	d.allow
}

test_unknown_plan_gets_no_tier if {
	t := {"id": "acme", "plan": "platinum", "status": "active"}
	p := test.viewer
	a := {"kind": "model", "tier": "small", "data_classes": []}
	d := data.aob.decision with input.tenant as t with input.principal as p with input.action as a
	d.reasons == {"model tier small is not included in the platinum plan"}
}
