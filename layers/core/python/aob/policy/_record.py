"""Where policy decisions are recorded: the DecisionRecorder port and its Postgres adapter."""

from __future__ import annotations

from typing import Any, Protocol

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
