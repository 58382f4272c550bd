"""The fenced-write check: a writer refuses to commit with a fencing token older than one used.

Call `check_fencing_token` first inside the writer's transaction (the DecisionRecord writer,
for one). It upserts the session's highest token; the row stays locked until the transaction
ends, so writers of one session commit one after another, and once a token has committed, a
lower one raises StaleFencingToken. A rolled-back transaction leaves the stored token as it was.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import errors, pq

from aob.errors import StaleFencingToken, UnknownTenant

FENCE = """
INSERT INTO session_fences (tenant_id, session_id, fencing_token) VALUES (%s, %s, %s)
ON CONFLICT (tenant_id, session_id) DO UPDATE
    SET fencing_token = EXCLUDED.fencing_token, updated_at = now()
    WHERE session_fences.fencing_token <= EXCLUDED.fencing_token
RETURNING fencing_token
"""
CURRENT = "SELECT fencing_token FROM session_fences WHERE tenant_id = %s AND session_id = %s"


def check_fencing_token(
    conn: psycopg.Connection[Any], tenant_id: str, session_id: str, fencing_token: int
) -> None:
    """Raise StaleFencingToken if a higher token than `fencing_token` has written for the session."""
    if conn.autocommit and conn.info.transaction_status == pq.TransactionStatus.IDLE:
        # Outside a transaction the lock would end at once and order nothing.
        raise RuntimeError("check_fencing_token must run inside the writer's transaction")
    try:
        row = conn.execute(FENCE, (tenant_id, session_id, fencing_token)).fetchone()
    except errors.ForeignKeyViolation as exc:
        raise UnknownTenant(f"tenant_id: no tenant {tenant_id!r}") from exc
    if row is None:
        current = conn.execute(CURRENT, (tenant_id, session_id)).fetchone()
        raise StaleFencingToken(
            f"session {session_id} of tenant {tenant_id} was written with fencing token "
            f"{current[0] if current else '?'}; this writer's token {fencing_token} is stale: "
            "its lease was lost, so it must stop"
        )
