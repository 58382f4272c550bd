"""ApprovalService: store a step's approval request, let an allowed person decide it, answer Step Functions.

`request` runs in the approval function that the state machine invokes with a task token; it is
idempotent per (tenant, run, step), and writes the step's `waiting` DecisionRecord with the
approval, under the run's session lease. `decide` locks the approval row (FOR UPDATE: concurrent
deciders queue, the second one finds it decided), asks the policy whether the principal may
decide (action `approve`), checks that the run's lease is still the one the request held, answers
Step Functions and, only once Step Functions accepted, writes the decision, its `approval.decided`
event and the step's DecisionRecord in the same transaction. Every query names the tenant.

Locks are taken in the Recorder's order (session fence, then run), after the approval row.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, Protocol

import psycopg
from psycopg_pool import ConnectionPool

from aob.approvals._callback import TaskCallback
from aob.approvals._models import Approval, ApprovalRequest, ApprovalRequested, DecideRequest
from aob.approvals._records import decided_record, requested_record
from aob.db import get_pool
from aob.db.events import append_run_event
from aob.errors import (
    ApprovalExpired,
    InvalidInput,
    NoPendingApproval,
    PolicyDenied,
    ServiceUnavailable,
    StaleFencingToken,
    UnknownRun,
)
from aob.handlers import parse_event
from aob.lease.fencing import check_fencing_token
from aob.policy import ApproveAction, PolicyDecision, PolicyInput, Principal
from aob.recorder import DecisionRecord, Recorder

logger = logging.getLogger(__name__)

REJECTED_ERROR = "ApprovalRejected"  # the approval task's Catch matches this name

COLUMNS = """tenant_id, approval_id, run_id, step_id, node, approver_roles, reason, status, requested_by,
decided_by, decided_roles, decision_reason, requested_at, expires_at, decided_at"""
# Locking the run orders this stream's appends with the Recorder's (it takes the same lock).
LOCK_RUN = "SELECT 1 FROM runs WHERE tenant_id = %s AND run_id = %s FOR NO KEY UPDATE"
INSERT_APPROVAL = """
INSERT INTO approvals (tenant_id, run_id, step_id, node, approver_roles, reason, task_token, requested_by,
                       requested_at, expires_at, session_id, fencing_token)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (tenant_id, run_id, step_id) DO NOTHING
RETURNING approval_id, status
"""
# A retried request carries the retried task's token: the pending row must answer that one.
REFRESH_TOKEN = """
UPDATE approvals SET task_token = %s
WHERE tenant_id = %s AND run_id = %s AND step_id = %s AND status = 'pending'
RETURNING approval_id, status
"""
SELECT_BY_STEP = (
    "SELECT approval_id, status FROM approvals WHERE tenant_id = %s AND run_id = %s AND step_id = %s"
)
SELECT_PENDING = f"""
SELECT {COLUMNS}, task_token, session_id, fencing_token FROM approvals
WHERE tenant_id = %s AND run_id = %s AND status = 'pending' ORDER BY requested_at FOR UPDATE
"""
SELECT_NAMED = f"""
SELECT {COLUMNS}, task_token, session_id, fencing_token FROM approvals
WHERE tenant_id = %s AND run_id = %s AND approval_id = %s FOR UPDATE
"""
SELECT_ONE = f"SELECT {COLUMNS} FROM approvals WHERE tenant_id = %s AND run_id = %s AND approval_id = %s"
SELECT_RUN = f"SELECT {COLUMNS} FROM approvals WHERE tenant_id = %s AND run_id = %s ORDER BY requested_at"
RUN_EXISTS = "SELECT 1 FROM runs WHERE tenant_id = %s AND run_id = %s"
SETTLE = f"""
UPDATE approvals
SET status = %s, decided_by = %s, decided_roles = %s, decision_reason = %s, decided_at = %s
WHERE tenant_id = %s AND approval_id = %s AND status = 'pending'
RETURNING {COLUMNS}
"""


class PolicyGate(Protocol):
    def check(self, request: PolicyInput) -> PolicyDecision: ...


class _Waiting(NamedTuple):
    """A pending approval, locked, with what deciding it needs and the service never returns."""

    approval: Approval
    task_token: str
    session_id: str | None  # None: requested before approvals kept their lease (migration 0007)
    fencing_token: int | None


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _approval(row: tuple[Any, ...]) -> Approval:
    names = [name.strip() for name in COLUMNS.split(",")]
    return Approval.model_validate(dict(zip(names, row, strict=False)))


def _ids(approval: Approval) -> dict[str, str]:
    return {
        "tenant_id": approval.tenant_id,
        "run_id": str(approval.run_id),
        "step_id": str(approval.step_id),
        "approval_id": str(approval.approval_id),
    }


class ApprovalService:
    """Approvals on Postgres (the process's pool unless one is given), answered through `callback`."""

    def __init__(
        self,
        policy: PolicyGate,
        callback: TaskCallback,
        pool: ConnectionPool | None = None,
        *,
        clock: Callable[[], datetime] = _utcnow,
        recorder: Recorder | None = None,
    ) -> None:
        self._policy = policy
        self._callback = callback
        self._pool = pool
        self._clock = clock
        # It only writes in this service's transactions (it is handed their connection).
        self._recorder = recorder or Recorder(pool, clock=clock)

    @contextmanager
    def _connection(self, what: str) -> Iterator[psycopg.Connection[Any]]:
        try:
            with (self._pool or get_pool()).connection() as conn:
                yield conn
        except psycopg.OperationalError as exc:  # PoolTimeout included
            raise ServiceUnavailable(f"could not {what}: {exc}") from exc

    # -- requesting ------------------------------------------------------------------------

    def request(self, request: ApprovalRequest) -> ApprovalRequested:
        """Store the pending approval, record the step as waiting and announce it, in one transaction.

        A retried request finds the stored approval (and its record) and writes nothing but the
        retried task's token. UnknownRun if the tenant has no such run; StaleFencingToken if the
        run's lease has passed to another holder (nothing is stored).
        """
        tenant_id, run_id, step_id = request.tenant_id, request.run_id, request.step_id
        now = self._clock()
        with self._connection(f"request an approval in run {run_id}") as conn, conn.transaction():
            if conn.execute(RUN_EXISTS, (tenant_id, run_id)).fetchone() is None:
                raise UnknownRun(f"run_id: tenant {tenant_id!r} has no run {run_id}")
            # No lock before the insert: a retry of a step being decided waits on the approval's
            # row alone, never holding the session's fence that the decider takes next.
            params = (
                tenant_id,
                run_id,
                step_id,
                request.node,
                [request.approver_role],
                request.reason,
                request.task_token,
                request.principal.subject,
                now,
                now + timedelta(seconds=request.timeout_s),
                request.session_id,
                request.fencing_token,
            )
            row = conn.execute(INSERT_APPROVAL, params).fetchone()
            if row is not None:
                approval_id, status = row
                check_fencing_token(conn, tenant_id, request.session_id, request.fencing_token)
                payload = {
                    "approval_id": str(approval_id),
                    "run_id": str(run_id),
                    "step_id": str(step_id),
                    "node": request.node,
                    "approver_roles": [request.approver_role],
                    "reason": request.reason,
                    "requested_by": request.principal.subject,
                    "expires_at": (now + timedelta(seconds=request.timeout_s)).isoformat(),
                }
                _announce(conn, tenant_id, run_id, "approval.requested", payload)
                self._recorder.record(
                    requested_record(request, now),
                    tenant_id=tenant_id,
                    session_id=request.session_id,
                    fencing_token=request.fencing_token,
                    conn=conn,
                )
            else:
                row = conn.execute(REFRESH_TOKEN, (request.task_token, tenant_id, run_id, step_id)).fetchone()
                row = row or conn.execute(SELECT_BY_STEP, (tenant_id, run_id, step_id)).fetchone()
                assert row is not None  # the insert conflicted on this step
                approval_id, status = row
        logger.info(
            "approval requested" if status == "pending" else "approval request repeated",
            extra={"tenant_id": tenant_id, "run_id": str(run_id), "step_id": str(step_id), "status": status},
        )
        return ApprovalRequested(approval_id=approval_id, status=status)

    # -- deciding --------------------------------------------------------------------------

    def decide(
        self,
        tenant_id: str,
        run_id: uuid.UUID | str,
        principal: Principal | dict[str, Any],
        *,
        approve: bool,
        reason: str | None = None,
        approval_id: uuid.UUID | str | None = None,
    ) -> Approval:
        """Approve or reject the run's pending approval (or the named one) and resume the run.

        The step's DecisionRecord (succeeded, or failed with ApprovalRejected / ApprovalExpired)
        commits with the decision. InvalidInput (a rejection without a reason, a bad field),
        NoPendingApproval, ApprovalExpired (the approval is marked expired), PolicyDenied (the
        principal may not decide it: nothing changes), StaleFencingToken (the run's lease has passed
        to another holder: Step Functions is not answered, nothing changes), ServiceUnavailable
        (Postgres or Step Functions did not answer: nothing changes).
        """
        fields = {
            "tenant_id": tenant_id,
            "run_id": run_id,
            "principal": principal,
            "approve": approve,
            "reason": reason,
            "approval_id": approval_id,
        }
        ask = parse_event(DecideRequest, fields)
        with self._connection(f"decide an approval of run {ask.run_id}") as conn, conn.transaction():
            waiting = self._locked(conn, ask)
            pending, decision = waiting.approval, None
            why_expired = self._overdue(pending)
            if not why_expired:
                decision = self._authorise(ask, pending)
            self._check_lease(conn, waiting)  # before Step Functions hears of the decision
            if not why_expired:
                why_expired = self._answer(ask, pending, waiting.task_token)
            settled = self._settle(
                conn,
                pending,
                "expired" if why_expired else "approved" if ask.approve else "rejected",
                None if why_expired else ask.principal,
                None if why_expired else ask.reason,
            )
            record = decided_record(
                settled, decision, expired_because=why_expired or None, noticed_by=ask.principal.subject
            )
            self._record(conn, waiting, record)
        logger.info("approval settled", extra=_ids(settled) | {"status": settled.status})
        if why_expired:
            raise ApprovalExpired(
                f"approval {settled.approval_id} ({settled.node}) of run {settled.run_id} has expired "
                f"({why_expired}); the run took its rejection path"
            )
        return settled

    def _overdue(self, pending: Approval) -> str:
        """Why the approval has expired by this service's clock; "" while it has not."""
        if self._clock() >= pending.expires_at:
            return f"it was due by {pending.expires_at:%Y-%m-%d %H:%M:%S %Z}"
        return ""

    def _check_lease(self, conn: psycopg.Connection[Any], waiting: _Waiting) -> None:
        """StaleFencingToken if another holder took the run's session since the approval was requested.

        The check keeps the session's fence locked until the decision commits, so the record
        written after Step Functions answered cannot be refused.
        """
        if waiting.session_id is None or waiting.fencing_token is None:
            return
        pending = waiting.approval
        try:
            check_fencing_token(conn, pending.tenant_id, waiting.session_id, waiting.fencing_token)
        except StaleFencingToken as exc:
            raise StaleFencingToken(
                f"approval {pending.approval_id} ({pending.node}) of run {pending.run_id} was requested "
                f"under a lease of session {waiting.session_id} that another holder has since taken: "
                "nothing was decided and the run was not answered; the run's current holder decides "
                "what happens to it"
            ) from exc

    def _record(self, conn: psycopg.Connection[Any], waiting: _Waiting, record: DecisionRecord) -> None:
        """Append the decision's record to the run's chain, in the decision's transaction."""
        if waiting.session_id is None or waiting.fencing_token is None:
            logger.warning(
                "approval decided without a record: it was requested before approvals kept their lease",
                extra=_ids(waiting.approval),
            )
            return
        self._recorder.record(
            record,
            tenant_id=waiting.approval.tenant_id,
            session_id=waiting.session_id,
            fencing_token=waiting.fencing_token,
            conn=conn,
        )

    def _locked(self, conn: psycopg.Connection[Any], ask: DecideRequest) -> _Waiting:
        """The approval to decide, locked, with its token and lease; NoPendingApproval if there is none."""
        tenant_id, run_id = ask.tenant_id, ask.run_id
        if ask.approval_id is not None:
            rows = conn.execute(SELECT_NAMED, (tenant_id, run_id, ask.approval_id)).fetchall()
            if not rows:
                raise NoPendingApproval(
                    f"approval_id: run {run_id} of tenant {tenant_id!r} has no approval {ask.approval_id}"
                )
        else:
            rows = conn.execute(SELECT_PENDING, (tenant_id, run_id)).fetchall()
        if len(rows) > 1:
            ids = ", ".join(str(row[1]) for row in rows)
            raise InvalidInput(
                f"approval_id: run {run_id} has {len(rows)} pending approvals ({ids}); name one"
            )
        if not rows:
            if conn.execute(RUN_EXISTS, (tenant_id, run_id)).fetchone() is None:
                raise UnknownRun(f"run_id: tenant {tenant_id!r} has no run {run_id}")
            raise NoPendingApproval(
                f"run {run_id} of tenant {tenant_id!r} has no approval waiting for a decision"
            )
        *columns, token, session_id, fencing_token = rows[0]
        approval = _approval(tuple(columns))
        if approval.status == "expired":
            raise ApprovalExpired(
                f"approval {approval.approval_id} of run {run_id} has expired; it cannot be decided"
            )
        if approval.status != "pending":
            raise NoPendingApproval(
                f"approval {approval.approval_id} of run {run_id} was already {approval.status} "
                f"by {approval.decided_by}"
            )
        return _Waiting(approval, token, session_id, fencing_token)

    def _authorise(self, ask: DecideRequest, pending: Approval) -> PolicyDecision:
        """Ask the policy whether this principal may decide it (action `approve`); PolicyDenied if not."""
        action = ApproveAction(
            kind="approve",
            node=pending.node,
            approver_roles=pending.approver_roles,
            requested_by=pending.requested_by,
        )
        decision = self._policy.check(
            PolicyInput(
                tenant_id=ask.tenant_id,
                principal=ask.principal,
                action=action,
                run_id=ask.run_id,
                step_id=pending.step_id,
            )
        )
        if not decision.allow:
            raise PolicyDenied(
                f"{ask.principal.subject} may not decide approval {pending.approval_id} ({pending.node}) "
                f"of run {ask.run_id}: {'; '.join(decision.reasons)}; "
                f"it needs one of the roles {', '.join(pending.approver_roles)}, held by someone else",
                decision_id=str(decision.decision_id),
                reasons=list(decision.reasons),
            )
        return decision

    def _answer(self, ask: DecideRequest, pending: Approval, token: str) -> str:
        """Resume (or fail) the waiting task; "" or why Step Functions no longer waits for it."""
        try:
            if ask.approve:
                output = {
                    "approved": True,
                    "approval_id": str(pending.approval_id),
                    "decided_by": ask.principal.subject,
                    "reason": ask.reason,
                }
                self._callback.succeed(token, output)
            else:
                assert ask.reason is not None  # DecideRequest requires it for a rejection
                self._callback.fail(token, REJECTED_ERROR, ask.reason)
        except ApprovalExpired as exc:
            return str(exc)
        return ""

    def _settle(
        self,
        conn: psycopg.Connection[Any],
        pending: Approval,
        status: str,
        principal: Principal | None,
        reason: str | None,
    ) -> Approval:
        params = (
            status,
            principal.subject if principal else None,
            list(principal.roles) if principal else None,
            reason,
            self._clock(),
            pending.tenant_id,
            pending.approval_id,
        )
        row = conn.execute(SETTLE, params).fetchone()
        assert row is not None  # the row is locked and was pending
        settled = _approval(row)
        payload = {
            "approval_id": str(settled.approval_id),
            "run_id": str(settled.run_id),
            "step_id": str(settled.step_id),
            "node": settled.node,
            "status": status,
            "decided_by": settled.decided_by,
            "decided_roles": settled.decided_roles,
            "reason": reason,
        }
        event = "approval.expired" if status == "expired" else "approval.decided"
        _announce(conn, settled.tenant_id, settled.run_id, event, payload)
        return settled

    # -- reading ---------------------------------------------------------------------------

    def list_approvals(self, tenant_id: str, run_id: uuid.UUID) -> list[Approval]:
        """The run's approvals, oldest first; UnknownRun if the tenant has no such run."""
        with self._connection(f"list the approvals of run {run_id}") as conn:
            if conn.execute(RUN_EXISTS, (tenant_id, run_id)).fetchone() is None:
                raise UnknownRun(f"run_id: tenant {tenant_id!r} has no run {run_id}")
            return [_approval(row) for row in conn.execute(SELECT_RUN, (tenant_id, run_id))]

    def get(self, tenant_id: str, run_id: uuid.UUID, approval_id: uuid.UUID) -> Approval | None:
        """One approval of the tenant's run, or None (another tenant's or run's approval is not found)."""
        with self._connection(f"read approval {approval_id}") as conn:
            row = conn.execute(SELECT_ONE, (tenant_id, run_id, approval_id)).fetchone()
        return _approval(row) if row else None


def _announce(
    conn: psycopg.Connection[Any], tenant_id: str, run_id: uuid.UUID, event_type: str, payload: dict[str, Any]
) -> None:
    """Append the event to the run's stream and its outbox message, in the caller's transaction."""
    conn.execute(LOCK_RUN, (tenant_id, run_id))
    append_run_event(conn, tenant_id, run_id, event_type, payload)
