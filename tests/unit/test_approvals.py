"""Approvals without a network: the gateway honouring them, their inputs, Step Functions' answers, the CLI."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from aob.approvals import (
    Approval,
    ApprovalRequest,
    ApprovalService,
    DecideRequest,
    StepFunctionsCallback,
    _service,
)
from aob.approvals._records import decided_record, requested_record
from aob.approvals.cli import cmd_approve
from aob.cli import build_parser
from aob.errors import (
    ApprovalExpired,
    ApprovalRequired,
    InvalidInput,
    ServiceUnavailable,
    StaleFencingToken,
)
from aob.handlers import parse_event
from aob.policy import PolicyDecision, PolicyInput
from aob.recorder import DecisionRecord
from aob.tools import ToolCall
from aob.tools._gateway import enforce
from aob.workflows import _states as asl
from aob.workflows.spec import ApprovalNode
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
    node = ApprovalNode(type="approval", approver_role="approver", timeout_s=60, reason="why", next="x")
    compiled = asl.approval("approve_refund", node, "$.step", "Rejected", "Failed")["ApproveRefund"]
    fields = {key.removesuffix(".$") for key in compiled["Parameters"]["Payload"]}
    # Every field the approval function takes comes from the state machine, the run's lease included.
    assert fields == set(ApprovalRequest.model_fields)
    event = {
        "tenant_id": "acme",
        "principal": {"subject": "user:ops-1", "roles": ["operator"]},
        "run_id": str(RUN_ID),
        "task_token": TOKEN,
        "step_id": "f88f247dc0156e794db243809445bbf6",  # States.Hash's 32 hex digits
        "session_id": str(RUN_ID),
        "fencing_token": 3,
        "node": "approve_refund",
        "approver_role": "approver",
        "timeout_s": 86400,
        "reason": "A refund moves money back to the customer.",
    }

    request = parse_event(ApprovalRequest, event)

    assert str(request.step_id) == "f88f247d-c015-6e79-4db2-43809445bbf6"
    assert (request.session_id, request.fencing_token) == (str(RUN_ID), 3)
    assert TOKEN not in repr(request)
    with pytest.raises(InvalidInput, match="fencing_token: Field required"):
        parse_event(ApprovalRequest, {k: v for k, v in event.items() if k != "fencing_token"})


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


# -- the approval's DecisionRecords -----------------------------------------------------------

STEP_ID = uuid.UUID("f88f247d-c015-6e79-4db2-43809445bbf6")
REQUESTED_AT = datetime(2025, 1, 1, 9, tzinfo=UTC)
ASKED = ApprovalRequest.model_validate(
    {
        "tenant_id": "acme",
        "principal": {"subject": "user:ops-1", "roles": ["operator"]},
        "run_id": RUN_ID,
        "step_id": STEP_ID,
        "task_token": TOKEN,
        "session_id": str(RUN_ID),
        "fencing_token": 3,
        "node": "approve_refund",
        "approver_role": "approver",
        "timeout_s": 3600,
        "reason": "A refund moves money back to the customer.",
    }
)


def settled(status: str, reason: str | None = None) -> Approval:
    decided = status in ("approved", "rejected")
    return Approval(
        tenant_id="acme",
        approval_id=APPROVAL_ID,
        run_id=RUN_ID,
        step_id=STEP_ID,
        node="approve_refund",
        approver_roles=["approver"],
        reason=None,
        status=status,  # type: ignore[arg-type]
        requested_by="user:ops-1",
        decided_by="user:boss" if decided else None,
        decided_roles=["approver"] if decided else None,
        decision_reason=reason,
        requested_at=REQUESTED_AT,
        expires_at=REQUESTED_AT.replace(hour=10),
        decided_at=REQUESTED_AT.replace(minute=30) if status != "pending" else None,
    )


def test_a_requested_approval_records_its_step_as_waiting_for_the_roles() -> None:
    record = requested_record(ASKED, REQUESTED_AT)

    assert (record.run_id, record.step_id, record.outcome) == (RUN_ID, STEP_ID, "waiting")
    assert record.node.model_dump() == {"name": "approve_refund", "kind": "approval"}
    assert record.inputs == {
        "approver_roles": ["approver"],
        "reason": "A refund moves money back to the customer.",
        "timeout_s": 3600,
        "requested_by": "user:ops-1",
    }
    assert TOKEN not in record.model_dump_json()


def test_an_approval_records_who_approved_and_the_policy_decision_that_let_them() -> None:
    allowed = needs_approval()

    record = decided_record(settled("approved", "order checked"), allowed)

    assert (record.step_id, record.outcome, record.error) == (STEP_ID, "succeeded", None)
    assert record.inputs == {
        "decided_by": "user:boss",
        "decided_roles": ["approver"],
        "reason": "order checked",
    }
    assert record.policy.decision_ids == [str(allowed.decision_id)]
    assert record.policy.bundle_digest == "sha256:test"
    assert record.timings.duration_ms == 30 * 60 * 1000  # from the request to the decision


def test_a_rejection_and_an_expiry_record_a_failed_step_saying_why() -> None:
    rejected = decided_record(settled("rejected", "never delivered"), needs_approval())
    expired = decided_record(
        settled("expired"), None, expired_because="it was due by 10:00", noticed_by="user:boss"
    )

    assert (rejected.outcome, rejected.error) == (
        "failed",
        {"type": "ApprovalRejected", "reason": "never delivered"},
    )
    assert (expired.outcome, expired.error) == (
        "failed",
        {"type": "ApprovalExpired", "reason": "it was due by 10:00"},
    )
    assert expired.inputs == {"noticed_by": "user:boss"} and expired.policy.decision_ids == []
    with pytest.raises(ValueError, match="still pending"):
        decided_record(settled("pending"), None)


class FakeConnection:
    """Answers the service's queries from `rows` (by SQL constant) and remembers what it ran."""

    def __init__(self, rows: dict[str, list[tuple[Any, ...]]], log: list[str]) -> None:
        self.rows = rows
        self.log = log

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def execute(self, sql: str, params: Any = None) -> FakeConnection:
        self.log.append(next(name for name, query in QUERIES.items() if query == sql))
        self.found = self.rows.get(self.log[-1], [])
        return self

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.found[0] if self.found else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.found


QUERIES = {
    name: getattr(_service, name)
    for name in (
        "RUN_EXISTS",
        "INSERT_APPROVAL",
        "REFRESH_TOKEN",
        "SELECT_BY_STEP",
        "SELECT_PENDING",
        "SETTLE",
    )
}


class FakePool:
    def __init__(self, conn: FakeConnection) -> None:
        self.conn = conn

    def connection(self) -> contextlib.AbstractContextManager[FakeConnection]:
        return contextlib.nullcontext(self.conn)


class FakeRecorder:
    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.recorded: list[tuple[DecisionRecord, dict[str, Any]]] = []

    def record(self, record: DecisionRecord, **where: Any) -> None:
        self.log.append(f"record {record.outcome}")
        self.recorded.append((record, where))


class Allow:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def check(self, request: PolicyInput) -> PolicyDecision:
        self.log.append("policy")
        return needs_approval()


class Fence:
    """check_fencing_token's stand-in: refuses tokens below `current`."""

    def __init__(self, log: list[str], current: int = 3) -> None:
        self.log, self.current = log, current

    def __call__(self, conn: Any, tenant_id: str, session_id: str, fencing_token: int) -> None:
        self.log.append(f"fence {session_id} {fencing_token}")
        if fencing_token < self.current:
            raise StaleFencingToken(f"token {fencing_token} is stale")


def pending_row() -> tuple[Any, ...]:
    columns = settled("pending").model_dump()
    names = [name.strip() for name in _service.COLUMNS.split(",")]
    return (*[columns[name] for name in names], TOKEN, str(RUN_ID), 3)


def service(
    monkeypatch: pytest.MonkeyPatch, rows: dict[str, list[tuple[Any, ...]]], current: int = 3
) -> tuple[ApprovalService, FakeConnection, FakeRecorder, FakeStepFunctions, list[str]]:
    log: list[str] = []
    conn, recorder, sfn = FakeConnection(rows, log), FakeRecorder(log), FakeStepFunctions()
    monkeypatch.setattr(_service, "check_fencing_token", Fence(log, current))
    monkeypatch.setattr(_service, "_announce", lambda conn, tenant, run, event, payload: log.append(event))
    approvals = ApprovalService(
        Allow(log),
        StepFunctionsCallback(sfn),
        FakePool(conn),  # type: ignore[arg-type]
        clock=lambda: REQUESTED_AT.replace(minute=30),
        recorder=recorder,  # type: ignore[arg-type]
    )
    return approvals, conn, recorder, sfn, log


def test_a_request_stores_the_approval_and_its_waiting_record_in_one_transaction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = {"RUN_EXISTS": [(1,)], "INSERT_APPROVAL": [(APPROVAL_ID, "pending")]}
    approvals, conn, recorder, _, log = service(monkeypatch, rows)

    assert approvals.request(ASKED).approval_id == APPROVAL_ID

    assert log == [
        "RUN_EXISTS",
        "INSERT_APPROVAL",
        f"fence {RUN_ID} 3",
        "approval.requested",
        "record waiting",
    ]
    [(record, where)] = recorder.recorded
    assert record == requested_record(ASKED, REQUESTED_AT.replace(minute=30))
    assert where == {"tenant_id": "acme", "session_id": str(RUN_ID), "fencing_token": 3, "conn": conn}


def test_a_retried_request_records_nothing_again(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = {"RUN_EXISTS": [(1,)], "REFRESH_TOKEN": [(APPROVAL_ID, "pending")]}
    approvals, _, recorder, _, _ = service(monkeypatch, rows)

    assert approvals.request(ASKED).status == "pending"

    assert recorder.recorded == []


def test_a_decision_checks_the_lease_before_step_functions_hears_of_it_then_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    done = settled("approved", "order checked")
    settled_row = tuple(done.model_dump()[name.strip()] for name in _service.COLUMNS.split(","))
    rows = {"SELECT_PENDING": [pending_row()], "SETTLE": [settled_row]}
    approvals, conn, recorder, sfn, log = service(monkeypatch, rows)

    approvals.decide("acme", RUN_ID, {"subject": "user:boss", "roles": ["approver"]}, approve=True)

    assert log == [
        "SELECT_PENDING",
        "policy",
        f"fence {RUN_ID} 3",
        "SETTLE",
        "approval.decided",
        "record succeeded",
    ]
    assert [operation for operation, _ in sfn.sent] == ["SendTaskSuccess"]
    [(record, where)] = recorder.recorded
    assert record.inputs["decided_by"] == "user:boss" and record.policy.bundle_digest == "sha256:test"
    assert where == {"tenant_id": "acme", "session_id": str(RUN_ID), "fencing_token": 3, "conn": conn}


def test_a_decision_under_a_lost_lease_is_refused_and_step_functions_is_not_answered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    approvals, _, recorder, sfn, log = service(monkeypatch, {"SELECT_PENDING": [pending_row()]}, current=4)

    with pytest.raises(StaleFencingToken, match="another holder has since taken: nothing was decided"):
        approvals.decide(
            "acme", RUN_ID, {"subject": "user:boss", "roles": ["approver"]}, approve=False, reason="no"
        )

    assert sfn.sent == [] and recorder.recorded == []
    assert "SETTLE" not in log
