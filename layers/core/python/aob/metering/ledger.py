"""The Postgres usage ledger: one row per settled reservation, and usage roll-ups from it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

import psycopg
from psycopg import errors
from psycopg_pool import ConnectionPool

from aob.errors import InvalidInput, ServiceUnavailable
from aob.metering.models import Settlement, SettleRequest, UsageRow

# UNIQUE (tenant_id, reservation_id): a retried settlement adds nothing.
INSERT = """
INSERT INTO usage_ledger (tenant_id, capability, reservation_id, run_id, step_id, model,
                          input_tokens, output_tokens, estimate_tokens, occurred_at, settled_at)
VALUES (%(tenant_id)s, %(capability)s, %(reservation_id)s, %(run_id)s, %(step_id)s, %(model)s,
        %(input_tokens)s, %(output_tokens)s, %(estimate_tokens)s, %(reserved_at)s, %(settled_at)s)
ON CONFLICT (tenant_id, reservation_id) DO NOTHING
"""
SELECT_ONE = """
SELECT capability, estimate_tokens, input_tokens, output_tokens, occurred_at, settled_at
FROM usage_ledger WHERE tenant_id = %s AND reservation_id = %s
"""
USAGE = """
SELECT date_trunc(%(period)s::text, usage_day::timestamp)::date, capability,
       sum(input_tokens)::bigint, sum(output_tokens)::bigint, count(*)
FROM usage_ledger
WHERE tenant_id = %(tenant_id)s AND usage_day BETWEEN %(since)s AND %(until)s
  AND (%(capability)s::text IS NULL OR capability = %(capability)s)
GROUP BY 1, 2
ORDER BY 1, 2
"""


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except psycopg.OperationalError as exc:
        raise ServiceUnavailable(f"Postgres did not answer a usage-ledger call: {exc}") from exc


class UsageLedger:
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def record(self, settlement: Settlement, request: SettleRequest) -> bool:
        """Append the settlement; False if the reservation was already in the ledger."""
        params: dict[str, Any] = {
            **settlement.model_dump(exclude={"duplicate"}),
            **request.model_dump(include={"run_id", "step_id", "model"}),
        }
        try:
            with _translated(), self._pool.connection() as conn:
                return conn.execute(INSERT, params).rowcount == 1
        except errors.ForeignKeyViolation as exc:
            raise InvalidInput(
                f"run_id/step_id: tenant {request.tenant_id} has no run {request.run_id} "
                f"or step {request.step_id}; pass ids of the run being metered, or none"
            ) from exc

    def find(self, tenant_id: str, reservation_id: str) -> Settlement | None:
        with _translated(), self._pool.connection() as conn:
            row = conn.execute(SELECT_ONE, (tenant_id, reservation_id)).fetchone()
        if row is None:
            return None
        capability, estimate, input_tokens, output_tokens, reserved_at, settled_at = row
        return Settlement(
            tenant_id=tenant_id,
            capability=capability,
            reservation_id=reservation_id,
            estimate_tokens=estimate,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            reserved_at=reserved_at,
            settled_at=settled_at,
            duplicate=True,
        )

    def usage(
        self, tenant_id: str, period: str, since: date, until: date, capability: str | None
    ) -> list[UsageRow]:
        params = {
            "tenant_id": tenant_id,
            "period": period,
            "since": since,
            "until": until,
            "capability": capability,
        }
        with _translated(), self._pool.connection() as conn:
            rows = conn.execute(USAGE, params).fetchall()
        return [
            UsageRow(
                period_start=start,
                capability=cap,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                total_tokens=input_tokens + output_tokens,
                settlements=count,
            )
            for start, cap, input_tokens, output_tokens, count in rows
        ]
