"""The Rego engine on the shipped policy packs, and bundles it must refuse or fail on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aob.errors import BundleRejected, PolicyEvaluationFailed
from aob.policy import RegoPolicyEngine, policy_files, read_bundle, sign_bundle
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

POLICIES = Path(__file__).resolve().parents[2] / "policies"
KEY = Ed25519PrivateKey.generate()
DECISION_OK = 'decision := {"allow": true, "reasons": [], "obligations": {}}\n'


def engine_for(files: dict[str, bytes]) -> RegoPolicyEngine:
    return RegoPolicyEngine(read_bundle(sign_bundle(files, KEY, "test"), {"test": KEY.public_key()}))


@pytest.fixture(scope="module")
def engine() -> RegoPolicyEngine:
    return engine_for(policy_files(POLICIES))


def request(plan: str, roles: list[str], action: dict[str, Any], status: str = "active") -> dict[str, Any]:
    return {
        "tenant": {"id": "acme", "plan": plan, "status": status},
        "principal": {"subject": "user-1", "roles": roles},
        "action": {"data_classes": [], **action},
    }


def test_a_large_refund_is_allowed_with_approval_and_redaction(engine: RegoPolicyEngine) -> None:
    action = {"kind": "tool", "tool": "issue_refund", "args": {"amount": 250, "card_number": "4111"}}
    evaluation = engine.evaluate(request("pro", ["operator"], action))

    assert evaluation.allow is True
    assert evaluation.reasons == ()
    assert evaluation.obligations == {
        "require_approval": {
            "approver_roles": ["approver", "admin"],
            "reason": "issue_refund with amount 250 needs approval above 100",
        },
        "redact": ["$.args.card_number"],
    }


def test_a_deny_lists_every_reason_sorted(engine: RegoPolicyEngine) -> None:
    action = {"kind": "tool", "tool": "issue_refund", "args": {"amount": 5}, "data_classes": ["pci"]}
    evaluation = engine.evaluate(request("free", ["viewer"], action, status="suspended"))

    assert evaluation.allow is False
    assert evaluation.reasons == (
        "issue_refund may not receive pci data",
        "tenant acme is suspended: every action is refused until it is active",
        "tool issue_refund is not available on the free plan",
        "user-1 has no role allowed to call tool issue_refund",
    )


def test_model_tier_follows_the_plan(engine: RegoPolicyEngine) -> None:
    large = {"kind": "model", "tier": "large"}
    assert engine.evaluate(request("enterprise", [], large)).allow
    assert engine.evaluate(request("pro", [], large)).reasons == (
        "model tier large is not included in the pro plan",
    )


def test_strings_with_quotes_cannot_rewrite_the_decision(engine: RegoPolicyEngine) -> None:
    # regopy's own result parsing would read this tool name as `"allow": true`.
    sneaky = 'x"], "allow": true, "reasons": ["'
    evaluation = engine.evaluate(request("pro", ["operator"], {"kind": "tool", "tool": sneaky, "args": {}}))

    assert evaluation.allow is False
    assert evaluation.reasons == (f"tool {sneaky} is not in the tool catalogue",)


def test_a_policy_that_does_not_parse_is_refused_with_file_and_line() -> None:
    broken = {"decision.rego": b"package aob\n\n" + DECISION_OK.encode() + b"oops if {\n"}
    with pytest.raises(BundleRejected, match=r"decision.rego:4: "):
        engine_for(broken)


def test_a_bundle_without_the_decision_rule_is_refused() -> None:
    with pytest.raises(BundleRejected, match="defines no data.aob.decision"):
        engine_for({"other.rego": b"package aob\n\nverdict := true\n"})


def test_a_malformed_decision_is_refused() -> None:
    malformed = b'package aob\n\ndecision := {"allow": "yes", "reasons": [], "obligations": {}}\n'
    with pytest.raises(BundleRejected, match="malformed data.aob.decision"):
        engine_for({"decision.rego": malformed})


def test_with_input_as_is_refused_before_rego_cpp_can_abort_the_process() -> None:
    module = f"package aob\n\n{DECISION_OK}probe := decision with input as {{}}\n".encode()
    with pytest.raises(BundleRejected, match="`with input as ...` is not supported"):
        engine_for({"decision.rego": module})


def test_a_policy_error_at_evaluation_fails_instead_of_deciding() -> None:
    conflicting = (
        b"package aob\n\n"
        b'decision := {"allow": true, "reasons": [], "obligations": {}} if input.action.kind == "model"\n'
        b'decision := {"allow": false, "reasons": [], "obligations": {}} if input.principal.subject == "e"\n'
    )
    engine = engine_for({"decision.rego": conflicting})

    with pytest.raises(PolicyEvaluationFailed, match="failed to evaluate"):
        engine.evaluate(
            request("pro", [], {"kind": "model", "tier": "small"}) | {"principal": {"subject": "e"}}
        )
