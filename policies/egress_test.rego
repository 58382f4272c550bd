package aob.packs.egress_test

import data.aob.test

test_tool_receives_the_classes_it_accepts if {
	t := test.pro
	p := test.operator
	a := {"kind": "tool", "tool": "issue_refund", "args": {"amount": 5}, "data_classes": ["pii", "financial"]}
	d := data.aob.decision with input.tenant as t with input.principal as p with input.action as a
	d.allow
}

test_tool_refuses_a_class_it_does_not_accept if {
	t := test.pro
	p := test.operator
	a := {"kind": "tool", "tool": "web_search", "args": {}, "data_classes": ["public", "pii"]}
	d := data.aob.decision with input.tenant as t with input.principal as p with input.action as a
	d.reasons == {"web_search may not receive pii data"}
}

test_large_model_tier_may_not_receive_pii if {
	t := test.enterprise
	p := test.viewer
	a := {"kind": "model", "tier": "large", "data_classes": ["pii"]}
	d := data.aob.decision with input.tenant as t with input.principal as p with input.action as a
	d.reasons == {"model:large may not receive pii data"}
}

test_export_destination_is_checked if {
	t := test.pro
	p := test.viewer
	export := {"kind": "egress", "destination": "export:s3", "data_classes": ["financial"]}
	webhook := {"kind": "egress", "destination": "webhook", "data_classes": ["internal"]}
	allowed := data.aob.decision with input.tenant as t with input.principal as p with input.action as export
	refused := data.aob.decision with input.tenant as t with input.principal as p with input.action as webhook
	allowed.allow
	refused.reasons == {"webhook may not receive internal data"}
}

test_unknown_destination_accepts_no_classified_data if {
	t := test.pro
	p := test.viewer
	a := {"kind": "egress", "destination": "ftp", "data_classes": ["public"]}
	d := data.aob.decision with input.tenant as t with input.principal as p with input.action as a
	d.reasons == {"ftp may not receive public data"}
}

test_sensitive_argument_is_redacted_not_denied if {
	t := test.pro
	p := test.operator
	a := {"kind": "tool", "tool": "send_email", "args": {"to": "a@example.com", "card_number": "4111"}, "data_classes": []}
	d := data.aob.decision with input.tenant as t with input.principal as p with input.action as a
	d.allow
	d.obligations.redact == {"$.args.card_number"}
}

test_sensitive_argument_the_tool_accepts_is_kept if {
	t := test.pro
	p := test.operator
	a := {"kind": "tool", "tool": "send_email", "args": {"ssn": "078-05-1120"}, "data_classes": []}
	d := data.aob.decision with input.tenant as t with input.principal as p with input.action as a
	d.obligations == {}
}

test_every_refused_sensitive_argument_is_listed if {
	t := test.pro
	p := test.operator
	a := {"kind": "tool", "tool": "send_email", "args": {"iban": "DE89", "cvv": "123", "ssn": "1"}, "data_classes": []}
	d := data.aob.decision with input.tenant as t with input.principal as p with input.action as a
	d.obligations.redact == {"$.args.cvv", "$.args.iban"}
}
