"""The DecisionRecords of an approval step: `waiting` when it is requested, then how it ended.

Both records carry the step id the state machine gave the approval, so the run's steps list the
approval like its model and tool steps, and the run's hash chain holds who asked and who decided.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from aob.approvals._models import Approval, ApprovalRequest
from aob.policy import PolicyDecision
from aob.recorder import DecisionRecord, Node, PolicyRef, Timings

KIND = "approval"


def requested_record(request: ApprovalRequest, requested_at: datetime) -> DecisionRecord:
    """The step is waiting for a person: who asked, which roles may decide, why, and for how long."""
    return DecisionRecord(
        run_id=request.run_id,
        step_id=request.step_id,
        node=Node(name=request.node, kind=KIND),
        outcome="waiting",
        inputs={
            "approver_roles": [request.approver_role],
            "reason": request.reason,
            "timeout_s": request.timeout_s,
            "requested_by": request.principal.subject,
        },
        timings=Timings(started_at=requested_at, ended_at=requested_at),
    )


def decided_record(
    settled: Approval,
    decision: PolicyDecision | None,
    *,
    expired_because: str | None = None,
    noticed_by: str | None = None,
) -> DecisionRecord:
    """How the approval ended: approved (succeeded), rejected or expired (failed, with why).

    `decision` is the policy's answer that let the decider decide (none when the approval had
    expired before anyone was asked); `noticed_by` is who found it expired, and `expired_because` why.
    """
    outcome: Literal["succeeded", "failed"]
    error: dict[str, str | None] | None
    if settled.status == "approved":
        outcome, error = "succeeded", None
    elif settled.status == "rejected":
        outcome, error = "failed", {"type": "ApprovalRejected", "reason": settled.decision_reason}
    elif settled.status == "expired":
        outcome, error = "failed", {"type": "ApprovalExpired", "reason": expired_because}
    else:
        raise ValueError(f"approval {settled.approval_id} is still {settled.status}: nothing to record")
    inputs = (
        {"noticed_by": noticed_by}
        if settled.status == "expired"
        else {
            "decided_by": settled.decided_by,
            "decided_roles": settled.decided_roles,
            "reason": settled.decision_reason,
        }
    )
    ended_at = max(settled.decided_at or settled.requested_at, settled.requested_at)
    return DecisionRecord(
        run_id=settled.run_id,
        step_id=settled.step_id,
        node=Node(name=settled.node, kind=KIND),
        outcome=outcome,
        inputs=inputs,
        policy=PolicyRef(decision_ids=[str(decision.decision_id)], bundle_digest=decision.bundle_digest)
        if decision
        else PolicyRef(),
        timings=Timings(started_at=settled.requested_at, ended_at=ended_at),
        error=error,
    )
