"""Approvals for real: Postgres, the repo's policies (signed here) and Step Functions on LocalStack.

Each test's run is a real execution of a state machine holding the compiler's `approval` state
(aob.workflows._states.approval: its TimeoutSeconds, Retry and Catch), on an activity instead of
`lambda:invoke.waitForTaskToken`: the test is the activity worker, and hands the task token to
functions/approval in-process, as the Lambda would get it. Deciding then answers the real task.
The run holds a session lease (fencing token LEASE) as compiled runs do: the approval's
DecisionRecords, waiting then decided, are written under it into the run's hash chain.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aob.approvals import ApprovalService, StepFunctionsCallback, get_approval_service
from aob.errors import (
    ApprovalExpired,
    ApprovalRequired,
    InvalidInput,
    NoPendingApproval,
    PolicyDenied,
    StaleFencingToken,
)
from aob.lease.fencing import check_fencing_token
from aob.policy import (
    PolicyDecision,
    get_policy_service,
    policy_files,
    public_key_b64,
    sign_bundle,
)
from aob.recorder import Recorder, StoredRecord
from aob.tenants import create_tenant
from aob.tools import ToolCall
from aob.tools._gateway import enforce
from aob.workflows import _states as asl
from aob.workflows.spec import ApprovalNode
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg_pool import ConnectionPool

from tests.support import lambda_context, load_handler

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KEY = Ed25519PrivateKey.generate()
ROLE_ARN = "arn:aws:iam::000000000000:role/aob-approvals-test"
REQUESTER = {"subject": "user:requester", "roles": ["operator", "approver"]}
APPROVER = {"subject": "user:approver", "roles": ["approver"]}
INSERT_WORKFLOW = """
INSERT INTO workflows (tenant_id, name, version, spec, spec_sha256)
VALUES (%s, 'refunds', 1, '{}', 'sha') RETURNING workflow_id
"""
INSERT_RUN = "INSERT INTO runs (tenant_id, workflow_id, status) VALUES (%s, %s, 'waiting') RETURNING run_id"
EVENTS = "SELECT event_type, payload FROM events WHERE tenant_id = %s AND stream_id = %s ORDER BY seq"
STEPS = (
    "SELECT state_name, kind, status, finished_at IS NOT NULL FROM steps WHERE tenant_id = %s AND run_id = %s"
)
LEASE = 4  # the run's fencing token


@pytest.fixture
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, localstack: str) -> Iterator[None]:
    """What the deployed function gets: a signed bundle, its trusted key, and the AWS endpoint."""
    bundle = tmp_path / "policy.tar.gz"
    bundle.write_bytes(sign_bundle(policy_files(ROOT / "policies"), KEY, "test-key"))
    monkeypatch.setenv("AOB_POLICY_BUNDLE", str(bundle))
    monkeypatch.setenv("AOB_POLICY_TRUSTED_KEYS", json.dumps({"test-key": public_key_b64(KEY.public_key())}))
    monkeypatch.delenv("AOB_POLICY_CANDIDATE_BUNDLE", raising=False)
    get_policy_service.cache_clear()
    get_approval_service.cache_clear()
    yield
    get_policy_service.cache_clear()
    get_approval_service.cache_clear()


@pytest.fixture
def sfn(aws: Callable[[str], Any]) -> Any:
    return aws("stepfunctions")


class Run:
    """A run of a tenant (a runs row) executing a state machine that waits at its approval step."""

    def __init__(self, pool: ConnectionPool, sfn: Any, *, timeout_s: int, on_reject: bool) -> None:
        self.sfn = sfn
        self.tenant_id = f"appr-{uuid.uuid4().hex[:8]}"
        create_tenant(self.tenant_id, plan="pro")
        with pool.connection() as conn:
            workflow = conn.execute(INSERT_WORKFLOW, (self.tenant_id,)).fetchone()
            row = conn.execute(INSERT_RUN, (self.tenant_id, workflow[0] if workflow else None)).fetchone()
        assert row is not None
        self.run_id = str(row[0])
        self.activity = sfn.create_activity(name=f"aob-approval-{uuid.uuid4().hex[:8]}")["activityArn"]
        self.state_machine = sfn.create_state_machine(
            name=f"aob-approvals-{uuid.uuid4().hex[:8]}",
            definition=json.dumps(self._definition(timeout_s, on_reject)),
            roleArn=ROLE_ARN,
        )["stateMachineArn"]
        execution_input = {
            "tenant_id": self.tenant_id,
            "principal": REQUESTER,
            "run_id": self.run_id,
            "session_id": self.run_id,
            "governance": {"lease": {"value": {"fencing_token": LEASE}}},
        }
        self.execution = sfn.start_execution(
            stateMachineArn=self.state_machine, input=json.dumps(execution_input)
        )["executionArn"]

    def _definition(self, timeout_s: int, on_reject: bool) -> dict[str, Any]:
        node = ApprovalNode(
            type="approval",
            approver_role="approver",
            timeout_s=timeout_s,
            reason="A refund moves money back to the customer.",
            next="refund",
        )
        step = asl.step_id("$$.Execution.Id", "approve_refund")
        states = asl.approval("approve_refund", node, step, "Rejected" if on_reject else "Failed", "Failed")
        state, timed_out = states["ApproveRefund"], states["ApproveRefundTimedOut"]
        # The activity's worker gets the token from GetActivityTask, not in the payload.
        payload = {
            key: value for key, value in state["Parameters"]["Payload"].items() if key != "task_token.$"
        }
        state |= {"Resource": self.activity, "Parameters": payload, "Next": "Refund"}
        return {
            "StartAt": "LookupOrder",
            "States": {
                "LookupOrder": {
                    "Type": "Pass",
                    "Result": {"total": 250},
                    "ResultPath": "$.order",
                    "Next": "Approve",
                },
                "Approve": state,
                "ApproveRefundTimedOut": timed_out,
                "Refund": {
                    "Type": "Pass",
                    "Parameters": {
                        "approval_id.$": "$.approve_refund.approval_id",
                        "by.$": "$.approve_refund.decided_by",
                    },
                    "ResultPath": "$.refund",
                    "End": True,
                },
                "Rejected": {"Type": "Pass", "End": True},
                "Failed": {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"},
            },
        }

    def take_task(self) -> dict[str, Any]:
        """The approval function's event: the waiting task's input and its token."""
        task = self.sfn.get_activity_task(activityArn=self.activity, workerName="approvals-test")
        assert task.get("taskToken"), "the run never reached its approval step"
        return json.loads(task["input"]) | {"task_token": task["taskToken"]}

    def finish(self, timeout_s: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while (described := self.status())["status"] == "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.2)
        return described

    def status(self) -> dict[str, Any]:
        return self.sfn.describe_execution(executionArn=self.execution)

    def decide(self, principal: dict[str, Any], approve: bool = True, **fields: Any) -> dict[str, Any]:
        event = {
            "action": "decide",
            "tenant_id": self.tenant_id,
            "run_id": self.run_id,
            "principal": principal,
            "approve": approve,
        }
        return handler(event | fields)

    def events(self, pool: ConnectionPool) -> list[tuple[str, dict[str, Any]]]:
        with pool.connection() as conn:
            return [tuple(row) for row in conn.execute(EVENTS, (self.tenant_id, f"run:{self.run_id}"))]  # type: ignore[misc]

    def records(self, pool: ConnectionPool) -> list[StoredRecord]:
        return Recorder(pool).list_records(self.tenant_id, uuid.UUID(self.run_id))

    def outcomes(self, pool: ConnectionPool) -> list[tuple[str, str, str]]:
        """(node, kind, outcome) of each record, in chain order; the chain must verify."""
        assert Recorder(pool).verify_chain(self.tenant_id, uuid.UUID(self.run_id)).ok
        return [(r.record.node.name, r.record.node.kind, r.record.outcome) for r in self.records(pool)]

    def steps(self, pool: ConnectionPool) -> list[tuple[Any, ...]]:
        with pool.connection() as conn:
            return [tuple(row) for row in conn.execute(STEPS, (self.tenant_id, self.run_id))]

    def close(self) -> None:
        if self.status()["status"] == "RUNNING":
            self.sfn.stop_execution(executionArn=self.execution)
        self.sfn.delete_state_machine(stateMachineArn=self.state_machine)
        self.sfn.delete_activity(activityArn=self.activity)


def handler(event: dict[str, Any]) -> dict[str, Any]:
    return load_handler("approval")(event, lambda_context("aob-approval-test"))


@pytest.fixture
def start_run(db_pool: ConnectionPool, sfn: Any, environment: None) -> Iterator[Callable[..., Run]]:
    runs: list[Run] = []

    def start(timeout_s: int = 300, on_reject: bool = False) -> Run:
        runs.append(Run(db_pool, sfn, timeout_s=timeout_s, on_reject=on_reject))
        return runs[-1]

    yield start
    for run in runs:
        run.close()


def test_an_approval_resumes_the_run_with_who_approved(
    start_run: Callable[..., Run], db_pool: ConnectionPool
) -> None:
    run = start_run()
    requested = handler(run.take_task())
    assert requested["status"] == "pending"
    assert run.status()["status"] == "RUNNING"  # waiting for a person

    decided = run.decide(APPROVER, reason="order checked")

    described = run.finish()
    assert described["status"] == "SUCCEEDED"
    output = json.loads(described["output"])
    assert output["refund"] == {"approval_id": requested["approval_id"], "by": "user:approver"}
    assert output["approve_refund"]["approved"] is True
    assert decided["status"] == "approved" and decided["decided_by"] == "user:approver"
    assert decided["decided_roles"] == ["approver"] and decided["decision_reason"] == "order checked"
    assert decided["requested_by"] == "user:requester" and decided["approver_roles"] == ["approver"]
    assert "task_token" not in decided
    assert [event for event, _ in run.events(db_pool)] == [
        "approval.requested",
        "step.recorded",
        "approval.decided",
        "step.recorded",
    ]
    assert run.outcomes(db_pool) == [
        ("approve_refund", "approval", "waiting"),
        ("approve_refund", "approval", "succeeded"),
    ]
    waiting, approved = (stored.record for stored in run.records(db_pool))
    assert waiting.step_id == approved.step_id == uuid.UUID(decided["step_id"])
    assert waiting.inputs == {
        "approver_roles": ["approver"],
        "reason": "A refund moves money back to the customer.",
        "timeout_s": 300,
        "requested_by": "user:requester",
    }
    assert approved.inputs == {
        "decided_by": "user:approver",
        "decided_roles": ["approver"],
        "reason": "order checked",
    }
    # The policy decision that let the approver decide, as the policy service stored it.
    [decision_id] = approved.policy.decision_ids
    assert approved.policy.bundle_digest
    with db_pool.connection() as conn:
        row = conn.execute(
            "SELECT allow FROM policy_decisions WHERE tenant_id = %s AND decision_id = %s",
            (run.tenant_id, decision_id),
        ).fetchone()
    assert row == (True,)
    assert run.steps(db_pool) == [("approve_refund", "approval", "succeeded", True)]


def test_a_retried_request_finds_the_same_approval(
    start_run: Callable[..., Run], db_pool: ConnectionPool
) -> None:
    run = start_run()
    event = run.take_task()

    first, again = handler(event), handler(event)

    assert again == first
    assert [event for event, _ in run.events(db_pool)] == ["approval.requested", "step.recorded"]
    assert run.outcomes(db_pool) == [("approve_refund", "approval", "waiting")]
    assert run.steps(db_pool) == [("approve_refund", "approval", "waiting", False)]
    with db_pool.connection() as conn:
        count = conn.execute(
            "SELECT count(*) FROM approvals WHERE tenant_id = %s", (run.tenant_id,)
        ).fetchone()
    assert count == (1,)


def test_a_rejection_fails_the_run_with_approval_rejected_and_the_reason(
    start_run: Callable[..., Run], db_pool: ConnectionPool
) -> None:
    run = start_run()
    handler(run.take_task())

    decided = run.decide(APPROVER, approve=False, reason="the order was never delivered")

    described = run.finish()
    assert described["status"] == "FAILED"
    assert described["error"] == "ApprovalRejected"
    assert described["cause"] == "the order was never delivered"
    assert decided["status"] == "rejected" and decided["decision_reason"] == "the order was never delivered"
    assert run.outcomes(db_pool) == [
        ("approve_refund", "approval", "waiting"),
        ("approve_refund", "approval", "failed"),
    ]
    rejected = run.records(db_pool)[-1].record
    assert rejected.error == {"type": "ApprovalRejected", "reason": "the order was never delivered"}
    assert rejected.inputs["decided_by"] == "user:approver" and rejected.policy.decision_ids
    assert run.steps(db_pool) == [("approve_refund", "approval", "failed", True)]


def test_a_rejection_without_a_reason_is_refused_and_the_run_still_waits(
    start_run: Callable[..., Run],
) -> None:
    run = start_run()
    handler(run.take_task())

    with pytest.raises(InvalidInput, match="reason: a rejection needs a reason"):
        run.decide(APPROVER, approve=False)

    assert run.status()["status"] == "RUNNING"


def test_no_answer_in_time_takes_the_rejection_path_and_deciding_later_says_expired(
    start_run: Callable[..., Run], db_pool: ConnectionPool
) -> None:
    run = start_run(timeout_s=1, on_reject=True)
    requested = handler(run.take_task())

    described = run.finish()
    assert described["status"] == "SUCCEEDED"  # through the on_reject path
    assert json.loads(described["output"])["error"] == {
        "Error": "ApprovalRejected",
        "Cause": "no decision within 1 s",
    }

    with pytest.raises(ApprovalExpired, match=f"approval {requested['approval_id']} .* has expired") as found:
        run.decide(APPROVER)
    with pytest.raises(ApprovalExpired, match="has expired; it cannot be decided"):
        run.decide(APPROVER, approval_id=requested["approval_id"])
    [approval] = get_approval_service().list_approvals(run.tenant_id, uuid.UUID(run.run_id))
    assert approval.status == "expired" and approval.decided_by is None
    assert [event for event, _ in run.events(db_pool)] == [
        "approval.requested",
        "step.recorded",
        "approval.expired",
        "step.recorded",
    ]
    assert run.outcomes(db_pool) == [
        ("approve_refund", "approval", "waiting"),
        ("approve_refund", "approval", "failed"),
    ]
    expired = run.records(db_pool)[-1].record
    assert expired.error is not None and expired.error["type"] == "ApprovalExpired"
    assert expired.error["reason"] and expired.error["reason"] in str(found.value)  # by clock or SFN
    assert expired.inputs == {"noticed_by": "user:approver"}


def test_when_step_functions_no_longer_waits_the_approval_is_marked_expired(
    start_run: Callable[..., Run], sfn: Any, db_pool: ConnectionPool
) -> None:
    run = start_run(timeout_s=1, on_reject=True)
    handler(run.take_task())
    assert run.finish()["status"] == "SUCCEEDED"
    # A clock behind Step Functions': the service still thinks there is time, Step Functions does not.
    lagging = ApprovalService(
        get_policy_service(),
        StepFunctionsCallback(sfn),
        db_pool,
        clock=lambda: datetime(2000, 1, 1, tzinfo=UTC),
    )

    with pytest.raises(ApprovalExpired, match="Step Functions no longer waits"):
        lagging.decide(run.tenant_id, run.run_id, APPROVER, approve=True)

    [approval] = lagging.list_approvals(run.tenant_id, uuid.UUID(run.run_id))
    assert approval.status == "expired"


@pytest.mark.parametrize(
    ("principal", "why"),
    [
        (
            {"subject": "user:ops-2", "roles": ["operator"]},
            "holds none of the roles that may approve approve_refund",
        ),
        (REQUESTER, "started this run and may not approve its own step approve_refund"),
    ],
    ids=["wrong-role", "own-run"],
)
def test_a_principal_the_policy_refuses_changes_nothing(
    start_run: Callable[..., Run], db_pool: ConnectionPool, principal: dict[str, Any], why: str
) -> None:
    run = start_run()
    requested = handler(run.take_task())

    with pytest.raises(PolicyDenied, match=why):
        run.decide(principal)

    [approval] = get_approval_service().list_approvals(run.tenant_id, uuid.UUID(run.run_id))
    assert approval.status == "pending" and approval.decided_by is None
    assert [event for event, _ in run.events(db_pool)] == ["approval.requested", "step.recorded"]
    assert run.outcomes(db_pool) == [("approve_refund", "approval", "waiting")]
    assert run.status()["status"] == "RUNNING"
    # The same approval is still there for someone allowed to decide it.
    assert run.decide(APPROVER)["approval_id"] == requested["approval_id"]
    assert run.finish()["status"] == "SUCCEEDED"


def test_a_decided_approval_cannot_be_decided_again(start_run: Callable[..., Run]) -> None:
    run = start_run()
    requested = handler(run.take_task())
    run.decide(APPROVER)

    with pytest.raises(NoPendingApproval, match="has no approval waiting for a decision"):
        run.decide(
            {"subject": "user:admin", "roles": ["admin", "approver"]}, approve=False, reason="too late"
        )
    with pytest.raises(NoPendingApproval, match="was already approved by user:approver"):
        run.decide(APPROVER, approval_id=requested["approval_id"])
    assert run.finish()["status"] == "SUCCEEDED"


def test_the_tool_gateway_lets_an_approved_refund_through_and_only_for_its_run(
    start_run: Callable[..., Run],
) -> None:
    run, other = start_run(), start_run()
    requested = handler(run.take_task())
    run.decide(APPROVER)
    needs_approval = PolicyDecision(
        decision_id=uuid.uuid4(),
        bundle_digest="sha256:test",
        allow=True,
        reasons=[],
        obligations={"require_approval": {"approver_roles": ["approver", "admin"], "reason": "amount 250"}},
        tenant_id=run.tenant_id,
    )

    def refund(tenant_run: Run) -> ToolCall:
        return ToolCall.model_validate(
            {
                "tenant_id": tenant_run.tenant_id,
                "principal": REQUESTER,
                "run_id": tenant_run.run_id,
                "step_id": str(uuid.uuid4()),
                "tool": "issue_refund",
                "args": {"order_id": "o-1", "amount": 250},
                "approval_id": requested["approval_id"],
            }
        )

    enforce(refund(run), needs_approval)  # the container's ApprovalService looks it up: no error

    with pytest.raises(ApprovalRequired, match=f"approval {requested['approval_id']} is not one of run"):
        enforce(refund(other), needs_approval)


def test_the_policy_service_records_who_was_refused(
    start_run: Callable[..., Run], db_pool: ConnectionPool
) -> None:
    run = start_run()
    handler(run.take_task())

    with pytest.raises(PolicyDenied):
        run.decide({"subject": "user:ops-2", "roles": ["operator"]})

    query = "SELECT allow, input_summary FROM policy_decisions WHERE tenant_id = %s AND role = 'active'"
    with db_pool.connection() as conn:
        [(allow, summary)] = conn.execute(query, (run.tenant_id,)).fetchall()
    assert allow is False
    assert summary["action"]["kind"] == "approve" and summary["principal"]["subject"] == "user:ops-2"


def test_a_decision_after_another_holder_took_the_runs_lease_is_refused_and_the_run_still_waits(
    start_run: Callable[..., Run], db_pool: ConnectionPool
) -> None:
    run = start_run()
    handler(run.take_task())
    # Another holder of the run's session writes with a newer fencing token.
    with db_pool.connection() as conn, conn.transaction():
        check_fencing_token(conn, run.tenant_id, run.run_id, LEASE + 1)

    with pytest.raises(StaleFencingToken, match="another holder has since taken: nothing was decided"):
        run.decide(APPROVER)

    [approval] = get_approval_service().list_approvals(run.tenant_id, uuid.UUID(run.run_id))
    assert approval.status == "pending"
    assert run.outcomes(db_pool) == [("approve_refund", "approval", "waiting")]
    assert run.status()["status"] == "RUNNING"  # Step Functions was not answered


def test_a_request_under_a_lost_lease_stores_nothing(
    start_run: Callable[..., Run], db_pool: ConnectionPool
) -> None:
    run = start_run()
    event = run.take_task()
    with db_pool.connection() as conn, conn.transaction():
        check_fencing_token(conn, run.tenant_id, run.run_id, LEASE + 1)

    with pytest.raises(StaleFencingToken):
        handler(event)

    assert get_approval_service().list_approvals(run.tenant_id, uuid.UUID(run.run_id)) == []
    assert run.records(db_pool) == [] and run.events(db_pool) == []
