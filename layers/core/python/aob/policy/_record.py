"""Where policy decisions are recorded: the DecisionRecorder port and its Postgres adapter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from aob.db import get_pool
from aob.errors import ServiceUnavailable
from aob.policy._models import PolicyDecision, PolicyInput

INSERT_DECISION = """
INSERT INTO policy_decisions (tenant_id, decision_id, role, shadow_of, bundle_digest, allow, reasons,
                              obligations, input_sha256, input_summary, run_id, step_id)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
"""
SELECT_ACTIVE_DECISION = """
SELECT bundle_digest, allow, reasons, obligations, input_summary, run_id, step_id
FROM policy_decisions WHERE tenant_id = %s AND decision_id = %s AND role = 'active'
"""


@dataclass(frozen=True)
class RecordedDecision:
    """An enforced decision as stored: the verdict, and what it was asked (`input_summary`)."""

    decision: PolicyDecision
    summary: dict[str, Any]


class DecisionReader(Protocol):
    def get(self, tenant_id: str, decision_id: UUID) -> RecordedDecision | None:
        """The tenant's active (enforced) decision of that id, or None."""
        ...


class DecisionRecorder(Protocol):
    def record(self, request: PolicyInput, input_sha256: str, decision: PolicyDecision) -> None:
        """Store the decision and its shadow (if any) together, or raise."""
        ...


def input_summary(request: PolicyInput) -> dict[str, Any]:
    """The input without argument values, which may carry personal or card data."""
    action = request.action.model_dump(mode="json", exclude={"args"}, exclude_none=True)
    if request.action.kind == "tool":
        action["arg_names"] = sorted(request.action.args)
    return {"principal": request.principal.model_dump(mode="json"), "action": action}


class PostgresDecisionRecorder:
    """Writes one row per verdict (active, then shadow) in one transaction."""

    def __init__(self, pool: ConnectionPool | None = None) -> None:
        self._pool = pool

    def record(self, request: PolicyInput, input_sha256: str, decision: PolicyDecision) -> None:
        summary = Jsonb(input_summary(request))
        rows = [
            (decision.decision_id, "active", None, decision),
            *(
                [(decision.shadow.decision_id, "shadow", decision.decision_id, decision.shadow)]
                if decision.shadow
                else []
            ),
        ]
        params = [
            (
                request.tenant_id,
                decision_id,
                role,
                shadow_of,
                verdict.bundle_digest,
                verdict.allow,
                Jsonb(verdict.reasons),
                Jsonb(verdict.obligations),
                input_sha256,
                summary,
                request.run_id,
                request.step_id,
            )
            for decision_id, role, shadow_of, verdict in rows
        ]
        try:
            with (self._pool or get_pool()).connection() as conn, conn.cursor() as cursor:
                cursor.executemany(INSERT_DECISION, params)
        except psycopg.OperationalError as exc:  # PoolTimeout included
            raise ServiceUnavailable(
                f"could not record policy decision {decision.decision_id}: {exc}"
            ) from exc

    def get(self, tenant_id: str, decision_id: UUID) -> RecordedDecision | None:
        """The tenant's active decision of that id: the explicit gateway verifies it before acting on it."""
        try:
            with (self._pool or get_pool()).connection() as conn, conn.cursor() as cursor:
                row = cursor.execute(SELECT_ACTIVE_DECISION, (tenant_id, decision_id)).fetchone()
        except psycopg.OperationalError as exc:
            raise ServiceUnavailable(f"could not read policy decision {decision_id}: {exc}") from exc
        if row is None:
            return None
        bundle_digest, allow, reasons, obligations, summary, run_id, step_id = row
        decision = PolicyDecision(
            decision_id=decision_id,
            bundle_digest=bundle_digest,
            allow=allow,
            reasons=reasons,
            obligations=obligations,
            tenant_id=tenant_id,
            run_id=run_id,
            step_id=step_id,
        )
        return RecordedDecision(decision, summary)
