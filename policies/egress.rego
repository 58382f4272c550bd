# Data egress: which destinations (tools, model tiers, exports) may receive which data classes.
# Declared data classes a destination does not accept deny the action; sensitive arguments it
# does not accept are only redacted (obligation `redact`), since the gateway can scrub them.
package aob.packs.egress

destination := input.action.tool if input.action.kind == "tool"

destination := input.action.destination if input.action.kind == "egress"

destination := sprintf("model:%s", [input.action.tier]) if input.action.kind == "model"

# A destination missing from the catalogue accepts no classified data.
accepted := object.get(data.aob.catalog.egress, destination, [])

deny contains msg if {
	some class in input.action.data_classes
	not class in accepted
	msg := sprintf("%s may not receive %s data", [destination, class])
}

redact := {path |
	# Not `some name, _ in args`: rego-cpp cannot parse that inside a set comprehension.
	some name
	_ = input.action.args[name]
	class := data.aob.catalog.sensitive_args[name]
	not class in accepted
	path := sprintf("$.args.%s", [name])
}

obligations["redact"] := redact if count(redact) > 0
