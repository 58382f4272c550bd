"""Approvals without a network: the gateway honouring them, their inputs, Step Functions' answers, the CLI."""

from __future__ import annotations

import argparse
import io
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from aob.approvals import Approval, ApprovalRequest, DecideRequest, StepFunctionsCallback
from aob.approvals.cli import cmd_approve
from aob.cli import build_parser
from aob.errors import ApprovalExpired, ApprovalRequired, InvalidInput, ServiceUnavailable
from aob.handlers import parse_event
from aob.policy import PolicyDecision
from aob.tools import ToolCall
from aob.tools._gateway import enforce
from botocore.exceptions import ClientError

RUN_ID = uuid.UUID("5f0c6d9e-8b1a-4c1e-9a51-2b7f3c9d0a11")
APPROVAL_ID = uuid.UUID("0b7e4a52-3d2f-4f6a-8c1d-9e5a7b3c2d10")
TOKEN = "AAAA-secret-task-token-ZZZZ"
NOW = datetime(2025, 1, 1, tzinfo=UTC)


def refund(approval_id: uuid.UUID | None = APPROVAL_ID) -> ToolCall:
    return ToolCall.model_validate(
        {
            "tenant_id": "acme",
            "principal": {"subject": "user:ops-1", "roles": ["operator"]},
            "run_id": RUN_ID,
            "step_id": uuid.uuid4(),
            "tool": "issue_refund",
            "args": {"order_id": "o-1001", "amount": 250},
            "approval_id": approval_id,
        }
    )


def needs_approval(**obligations: Any) -> PolicyDecision:
    required = {
        "approver_roles": ["approver", "admin"],
        "reason": "issue_refund with amount 250 needs approval",
    }
    return PolicyDecision(
        decision_id=uuid.uuid4(),
        bundle_digest="sha256:test",
        allow=True,
        reasons=[],
        obligations={"require_approval": required, **obligations},
        tenant_id="acme",
    )


def approval(status: str = "approved", roles: list[str] | None = None) -> Approval:
    decided = status != "pending"
    return Approval(
        tenant_id="acme",
        approval_id=APPROVAL_ID,
        run_id=RUN_ID,
        step_id=uuid.uuid4(),
        node="approve_refund",
        approver_roles=["approver"],
        reason=None,
        status=status,  # type: ignore[arg-type]
        requested_by="user:ops-1",
        decided_by="user:boss" if decided else None,
        decided_roles=(roles if roles is not None else ["approver"]) if decided else None,
        decision_reason=None,
        requested_at=NOW,
        expires_at=NOW,
        decided_at=NOW if decided else None,
    )


class Lookup:
    """The approvals the gateway may find, keyed by (tenant, run, approval); records each lookup."""

    def __init__(self, *found: Approval) -> None:
        self.found = {(a.tenant_id, a.run_id, a.approval_id): a for a in found}
        self.asked: list[tuple[str, uuid.UUID, uuid.UUID]] = []

    def get(self, tenant_id: str, run_id: uuid.UUID, approval_id: uuid.UUID) -> Approval | None:
        self.asked.append((tenant_id, run_id, approval_id))
        return self.found.get((tenant_id, run_id, approval_id))


# -- the tool gateway ---------------------------------------------------------------------------


def test_an_approved_approval_of_the_run_lets_the_call_through_with_its_redaction() -> None:
    lookup = Lookup(approval())

    redaction = enforce(refund(), needs_approval(redact=["$.args.card_number"]), lookup)

    assert redaction.apply("args", {"card_number": "4111"})[0] == {"card_number": "[REDACTED]"}
    assert lookup.asked == [("acme", RUN_ID, APPROVAL_ID)]


@pytest.mark.parametrize(
    ("call", "found", "why"),
    [
        (refund(None), [], "the call carries no approval_id"),
        (refund(), [], f"approval {APPROVAL_ID} is not one of run {RUN_ID}"),
        (refund(), [approval("pending")], "is pending, not approved"),
        (refund(), [approval("rejected")], "is rejected, not approved"),
        (refund(), [approval("expired")], "is expired, not approved"),
        (refund(), [approval(roles=["operator"])], "decided by user:boss, who holds none of these roles"),
    ],
    ids=["no-approval", "other-run-or-tenant", "pending", "rejected", "expired", "wrong-role"],
)
def test_without_an_approval_that_fits_the_call_needs_approval(
    call: ToolCall, found: list[Approval], why: str
) -> None:
    with pytest.raises(ApprovalRequired, match="ask one of: approver, admin") as caught:
        enforce(call, needs_approval(), Lookup(*found))

    assert why in str(caught.value)
    assert caught.value.approver_roles == ["approver", "admin"]


def test_an_approval_is_not_looked_up_when_the_policy_asks_for_none() -> None:
    lookup = Lookup()
    allowed = PolicyDecision(
        decision_id=uuid.uuid4(),
        bundle_digest="sha256:t",
        allow=True,
        reasons=[],
        obligations={},
        tenant_id="acme",
    )

    enforce(refund(), allowed, lookup)

    assert lookup.asked == []


# -- inputs -----------------------------------------------------------------------------------


def test_the_compiled_approval_payload_is_an_approval_request() -> None:
    event = {
        "tenant_id": "acme",
        "principal": {"subject": "user:ops-1", "roles": ["operator"]},
        "run_id": str(RUN_ID),
        "task_token": TOKEN,
        "step_id": "f88f247dc0156e794db243809445bbf6",  # States.Hash's 32 hex digits
        "node": "approve_refund",
        "approver_role": "approver",
        "timeout_s": 86400,
        "reason": "A refund moves money back to the customer.",
    }

    request = parse_event(ApprovalRequest, event)

    assert str(request.step_id) == "f88f247d-c015-6e79-4db2-43809445bbf6"
    assert TOKEN not in repr(request)


def test_a_rejection_without_a_reason_is_invalid_naming_the_field() -> None:
    event = {"action": "decide", "tenant_id": "acme", "run_id": str(RUN_ID), "approve": False}
    event["principal"] = {"subject": "user:boss", "roles": ["approver"]}

    with pytest.raises(InvalidInput, match="reason: a rejection needs a reason"):
        parse_event(DecideRequest, event)
    with pytest.raises(InvalidInput, match="reason: String should have at least 1 character"):
        parse_event(DecideRequest, event | {"reason": "   "})
    assert parse_event(DecideRequest, event | {"approve": True}).reason is None


# -- Step Functions' answers ------------------------------------------------------------------


class FakeStepFunctions:
    def __init__(self, error: str | None = None) -> None:
        self.error = error
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def _answer(self, operation: str, kwargs: dict[str, Any]) -> None:
        if self.error:
            # Step Functions quotes the token in some of its messages.
            raise ClientError({"Error": {"Code": self.error, "Message": f"bad {TOKEN}"}}, operation)
        self.sent.append((operation, kwargs))

    def send_task_success(self, **kwargs: Any) -> None:
        self._answer("SendTaskSuccess", kwargs)

    def send_task_failure(self, **kwargs: Any) -> None:
        self._answer("SendTaskFailure", kwargs)


def test_success_and_failure_reach_step_functions() -> None:
    client = FakeStepFunctions()
    callback = StepFunctionsCallback(client)

    callback.succeed(TOKEN, {"approved": True})
    callback.fail(TOKEN, "ApprovalRejected", "not delivered")

    assert client.sent == [
        ("SendTaskSuccess", {"taskToken": TOKEN, "output": '{"approved": true}'}),
        ("SendTaskFailure", {"taskToken": TOKEN, "error": "ApprovalRejected", "cause": "not delivered"}),
    ]


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("TaskTimedOut", ApprovalExpired),
        ("InvalidToken", ApprovalExpired),
        ("TaskDoesNotExist", ApprovalExpired),
        ("ThrottlingException", ServiceUnavailable),
    ],
)
def test_step_functions_refusals_are_named_and_never_quote_the_token(
    code: str, error: type[Exception]
) -> None:
    with pytest.raises(error) as caught:
        StepFunctionsCallback(FakeStepFunctions(code)).succeed(TOKEN, {})

    assert code in str(caught.value)
    assert TOKEN not in str(caught.value) and caught.value.__cause__ is None
    assert caught.value.__suppress_context__


# -- the CLI ----------------------------------------------------------------------------------


class FakeLambda:
    def __init__(self, body: dict[str, Any], function_error: bool = False) -> None:
        self.body = body
        self.function_error = function_error
        self.invoked: list[dict[str, Any]] = []

    def invoke(self, FunctionName: str, Payload: bytes) -> dict[str, Any]:  # noqa: N803 (boto3's names)
        self.invoked.append({"function": FunctionName, "event": json.loads(Payload)})
        response: dict[str, Any] = {"Payload": io.BytesIO(json.dumps(self.body).encode())}
        if self.function_error:
            response["FunctionError"] = "Unhandled"
        return response


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["approve", str(RUN_ID), "--tenant", "acme", *argv])


def test_approve_invokes_the_stage_function_as_the_given_principal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = FakeLambda(
        {
            "approval_id": str(APPROVAL_ID),
            "node": "approve_refund",
            "run_id": str(RUN_ID),
            "status": "approved",
        }
    )

    code = cmd_approve(
        parse("--subject", "user:boss", "--role", "approver", "--role", "admin", "--stage", "h3"), client
    )

    assert code == 0
    [call] = client.invoked
    assert call["function"] == "aob-approval-h3"
    assert call["event"] == {
        "action": "decide",
        "tenant_id": "acme",
        "run_id": str(RUN_ID),
        "principal": {"subject": "user:boss", "roles": ["approver", "admin"]},
        "approve": True,
        "reason": None,
        "approval_id": None,
    }
    assert f"approval {APPROVAL_ID} (approve_refund) of run {RUN_ID} approved" in capsys.readouterr().out


def test_a_refused_decision_exits_non_zero_with_the_functions_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    error = {"errorType": "PolicyDenied", "errorMessage": "user:ops-1 may not decide approval"}
    client = FakeLambda(error, function_error=True)

    code = cmd_approve(
        parse("--reject", "--reason", "no", "--subject", "user:ops-1", "--role", "operator"), client
    )

    assert code == 1
    assert client.invoked[0]["event"]["approve"] is False
    assert "aob: error: PolicyDenied: user:ops-1 may not decide approval" in capsys.readouterr().err
