"""The gateway's reading of a policy decision, its idempotency keys, and its errors across processes."""

from __future__ import annotations

import pickle
import uuid
from typing import Any

import pytest
from aob.errors import (
    ApprovalRequired,
    InvalidInput,
    PolicyDenied,
    PolicyEvaluationFailed,
    ToolFailed,
    ToolResponseTooLarge,
)
from aob.handlers import parse_event
from aob.policy import PolicyDecision
from aob.tools import ToolCall, idempotency_key
from aob.tools._gateway import enforce

CALL = ToolCall.model_validate(
    {
        "tenant_id": "acme",
        "principal": {"subject": "user:ops-1", "roles": ["operator"]},
        "run_id": "5f0c6d9e-8b1a-4c1e-9a51-2b7f3c9d0a11",
        "step_id": "0b7e4a52-3d2f-4f6a-8c1d-9e5a7b3c2d10",
        "tool": "issue_refund",
        "args": {"order_id": "o-1001", "amount": 25},
    }
)
ARGS: dict[str, Any] = {"order_id": "o-1001", "amount": 25.0}


def decision(allow: bool = True, reasons: tuple[str, ...] = (), **obligations: Any) -> PolicyDecision:
    return PolicyDecision(
        decision_id=uuid.uuid4(),
        bundle_digest="sha256:test",
        allow=allow,
        reasons=list(reasons),
        obligations=obligations,
        tenant_id="acme",
    )


def test_an_allow_with_redaction_gives_the_paths_to_redact() -> None:
    redaction = enforce(CALL, decision(redact=["$.args.card_number"]))

    assert redaction.apply("args", {"card_number": "4111"}) == (
        {"card_number": "[REDACTED]"},
        ["$.args.card_number"],
    )


def test_a_deny_is_policy_denied_with_the_reasons_and_decision() -> None:
    denied = decision(False, ("user:ops-1 has no role allowed to call tool issue_refund",))

    with pytest.raises(
        PolicyDenied, match="policy denied tool issue_refund for tenant acme: user:ops-1 has no"
    ) as e:
        enforce(CALL, denied)

    assert e.value.reasons == list(denied.reasons) and e.value.decision_id == str(denied.decision_id)


def test_a_require_approval_obligation_is_approval_required() -> None:
    needs = decision(
        require_approval={
            "approver_roles": ["approver", "admin"],
            "reason": "issue_refund with amount 250 needs",
        },
        redact=["$.args.card_number"],
    )

    with pytest.raises(ApprovalRequired, match="amount 250 needs; ask one of: approver, admin") as e:
        enforce(CALL, needs)

    assert (e.value.approver_roles, e.value.decision_id) == (["approver", "admin"], str(needs.decision_id))


def test_an_obligation_the_gateway_does_not_know_stops_the_call() -> None:
    with pytest.raises(PolicyEvaluationFailed, match="cannot honour obligations \\['watermark'\\]"):
        enforce(CALL, decision(watermark=True))


def test_the_key_is_the_same_for_every_attempt_and_argument_order() -> None:
    retried = CALL.model_copy()
    reordered = {"amount": 25.0, "order_id": "o-1001"}

    key = idempotency_key(CALL, ARGS)

    assert key == idempotency_key(retried, reordered)
    assert key.startswith("tool:") and len(key) == 5 + 64


@pytest.mark.parametrize(
    "change",
    [
        {"tenant_id": "other"},
        {"run_id": uuid.uuid4()},
        {"step_id": uuid.uuid4()},
        {"tool": "send_email"},
    ],
)
def test_the_key_differs_for_any_other_call(change: dict[str, Any]) -> None:
    assert idempotency_key(CALL.model_copy(update=change), ARGS) != idempotency_key(CALL, ARGS)
    assert idempotency_key(CALL, ARGS | {"amount": 26.0}) != idempotency_key(CALL, ARGS)


def test_the_principal_is_not_part_of_the_key() -> None:
    # A retry may run under another identity of the same run (a re-issued token): still the same call.
    other = CALL.model_copy(update={"principal": CALL.principal.model_copy(update={"subject": "svc:runner"})})

    assert idempotency_key(other, ARGS) == idempotency_key(CALL, ARGS)


def test_a_call_with_unknown_fields_or_without_a_step_is_invalid_input() -> None:
    event = CALL.model_dump(mode="json")

    with pytest.raises(InvalidInput, match="invalid ToolCall input: attempt: Extra inputs are not permitted"):
        parse_event(ToolCall, event | {"attempt": 2})
    with pytest.raises(InvalidInput, match="step_id: Field required"):
        parse_event(ToolCall, {k: v for k, v in event.items() if k != "step_id"})


@pytest.mark.parametrize(
    "error",
    [
        PolicyDenied("denied", decision_id="d-1", reasons=["no role"]),
        ApprovalRequired("needs approval", decision_id="d-2", approver_roles=["admin"], reason="always"),
        ToolFailed("failed", error_type="MailboxFull"),
        ToolResponseTooLarge("too large"),
    ],
)
def test_errors_keep_their_details_across_processes(error: Exception) -> None:
    copy = pickle.loads(pickle.dumps(error))

    assert type(copy) is type(error) and str(copy) == str(error) and vars(copy) == vars(error)
