"""The Recorder: writes DecisionRecords into their run's hash chain, lists them, verifies the chain.

`record` is one transaction: the session's fencing-token check, then the run row locked
(FOR NO KEY UPDATE: writers of one run queue there, so each reads the head the previous one
committed and the chain never forks, while inserts that only reference the run are not blocked),
then the step's row (upserted), the decision_records row, a `step.recorded` event on the run's
stream and an outbox row. Either all of them commit or none does. A retried step (same step_id,
attempt and outcome) gets its stored record back and writes nothing. Every query names the tenant.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from aob.db import get_pool
from aob.db.events import RUN_EVENTS, append_run_event
from aob.errors import ServiceUnavailable, UnknownRun, UnknownStep
from aob.lease.fencing import check_fencing_token
from aob.recorder._hash import record_hash
from aob.recorder._models import ChainReport, DecisionRecord, StoredRecord
from aob.recorder._steps import RecordStepRequest

logger = logging.getLogger(__name__)

EVENT_TYPE = "step.recorded"

LOCK_RUN = "SELECT 1 FROM runs WHERE tenant_id = %s AND run_id = %s FOR NO KEY UPDATE"
RUN_EXISTS = "SELECT 1 FROM runs WHERE tenant_id = %s AND run_id = %s"
# Read after LOCK_RUN, in a statement of its own, so that it sees what the previous holder of
# the lock committed. The content goes through jsonb so it is hashed exactly as it is stored.
HEAD = """
SELECT %(content)s::jsonb,
       (SELECT seq FROM decision_records WHERE tenant_id = %(tenant_id)s AND run_id = %(run_id)s
        ORDER BY seq DESC LIMIT 1),
       (SELECT hash FROM decision_records WHERE tenant_id = %(tenant_id)s AND run_id = %(run_id)s
        ORDER BY seq DESC LIMIT 1)
"""
# A retried step (same step, attempt and outcome) finds its record instead of appending another;
# decision_records_one_per_attempt (migration 0006) backs the lookup.
SELECT_SAME_STEP = """
SELECT record_id, seq, prev_hash, hash, recorded_at, record FROM decision_records
WHERE tenant_id = %(tenant_id)s AND run_id = %(run_id)s AND step_id = %(step_id)s
  AND (record->>'attempt')::integer = %(attempt)s AND outcome = %(outcome)s
"""
# The step's row, written with its record: created at its first record, brought up to date by
# later ones. A step_id of another run updates nothing and returns no row.
UPSERT_STEP = """
INSERT INTO steps (tenant_id, step_id, run_id, state_name, kind, attempt, status, started_at, finished_at)
VALUES (%(tenant_id)s, %(step_id)s, %(run_id)s, %(state_name)s, %(kind)s, %(attempt)s, %(status)s,
        %(started_at)s, %(finished_at)s)
ON CONFLICT (tenant_id, step_id) DO UPDATE
    SET attempt = EXCLUDED.attempt, status = EXCLUDED.status, finished_at = EXCLUDED.finished_at
    WHERE steps.run_id = EXCLUDED.run_id
RETURNING 1
"""
INSERT_RECORD = """
INSERT INTO decision_records (tenant_id, run_id, seq, step_id, kind, outcome, record, prev_hash, hash)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
RETURNING record_id, recorded_at
"""
SELECT_RECORDS = """
SELECT record_id, seq, step_id, kind, outcome, record, prev_hash, hash, recorded_at
FROM decision_records WHERE tenant_id = %s AND run_id = %s ORDER BY seq
"""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _log_ids(tenant_id: str, record: DecisionRecord) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id,
        "run_id": str(record.run_id),
        "step_id": record.step_id and str(record.step_id),
    }


class Recorder:
    """The DecisionRecord store on Postgres (the process's pool unless one is given)."""

    def __init__(
        self,
        pool: ConnectionPool | None = None,
        *,
        destination: str = RUN_EVENTS,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._pool = pool
        self._destination = destination
        self._clock = clock

    @contextmanager
    def _connection(self, what: str) -> Iterator[psycopg.Connection[Any]]:
        try:
            with (self._pool or get_pool()).connection() as conn:
                yield conn
        except psycopg.OperationalError as exc:  # PoolTimeout included
            raise ServiceUnavailable(f"could not {what}: {exc}") from exc

    def record(
        self,
        record: DecisionRecord,
        *,
        tenant_id: str,
        session_id: str,
        fencing_token: int,
        conn: psycopg.Connection[Any] | None = None,
    ) -> StoredRecord:
        """Append `record` to its run's chain, with its step row, event and outbox row, in one transaction.

        With `conn`, the record joins the caller's transaction (as a savepoint), so it commits or
        rolls back with the caller's own writes (an approval and its record, for one). Idempotent
        under retry: a record of a step, attempt and outcome already in the chain is returned as
        stored, and nothing is written. Raises StaleFencingToken (the session's lease was lost:
        nothing is written), UnknownTenant, UnknownRun (no such run for this tenant) or UnknownStep
        (the step_id belongs to another run).
        """
        if conn is not None:
            with conn.transaction():
                return self._append(conn, record, tenant_id, session_id, fencing_token)
        with self._connection(f"record a step of run {record.run_id}") as own, own.transaction():
            return self._append(own, record, tenant_id, session_id, fencing_token)

    def _append(
        self,
        conn: psycopg.Connection[Any],
        record: DecisionRecord,
        tenant_id: str,
        session_id: str,
        fencing_token: int,
    ) -> StoredRecord:
        run_id = record.run_id
        check_fencing_token(conn, tenant_id, session_id, fencing_token)
        if conn.execute(LOCK_RUN, (tenant_id, run_id)).fetchone() is None:
            raise UnknownRun(f"run_id: tenant {tenant_id!r} has no run {run_id}")
        stored = self._same_step(conn, tenant_id, record)
        if stored is not None:
            return stored
        self._upsert_step(conn, tenant_id, record)
        head = {
            "content": Jsonb(record.model_dump(mode="json")),
            "tenant_id": tenant_id,
            "run_id": run_id,
        }
        found = conn.execute(HEAD, head).fetchone()
        assert found is not None  # a SELECT without FROM returns one row
        content, last_seq, prev_hash = found
        seq = (last_seq or 0) + 1
        digest = record_hash(content, prev_hash)
        row = conn.execute(
            INSERT_RECORD,
            (
                tenant_id,
                run_id,
                seq,
                record.step_id,
                record.node.kind,
                record.outcome,
                Jsonb(content),
                prev_hash,
                digest,
            ),
        ).fetchone()
        assert row is not None
        record_id, recorded_at = row
        self._announce(conn, tenant_id, record, record_id, seq, digest)
        logger.info("step recorded", extra=_log_ids(tenant_id, record) | {"seq": seq})
        return _stored(tenant_id, record_id, seq, prev_hash, digest, recorded_at, content)

    def record_step(self, request: RecordStepRequest) -> StoredRecord:
        """Record one governed step (explicit mode's Record state, or a fused gateway) under its lease."""
        return self.record(
            request.to_record(self._clock()),
            tenant_id=request.tenant_id,
            session_id=request.session_id,
            fencing_token=request.fencing_token,
        )

    @staticmethod
    def _same_step(
        conn: psycopg.Connection[Any], tenant_id: str, record: DecisionRecord
    ) -> StoredRecord | None:
        """The record of this step, attempt and outcome if one is already stored (a retry)."""
        if record.step_id is None:
            return None
        params = {
            "tenant_id": tenant_id,
            "run_id": record.run_id,
            "step_id": record.step_id,
            "attempt": record.attempt,
            "outcome": record.outcome,
        }
        row = conn.execute(SELECT_SAME_STEP, params).fetchone()
        if row is None:
            return None
        record_id, seq, prev_hash, digest, recorded_at, content = row
        logger.info("step already recorded", extra=_log_ids(tenant_id, record) | {"seq": seq})
        return _stored(tenant_id, record_id, seq, prev_hash, digest, recorded_at, content)

    @staticmethod
    def _upsert_step(conn: psycopg.Connection[Any], tenant_id: str, record: DecisionRecord) -> None:
        if record.step_id is None:
            return
        params = {
            "tenant_id": tenant_id,
            "step_id": record.step_id,
            "run_id": record.run_id,
            "state_name": record.node.name,
            "kind": record.node.kind,
            "attempt": record.attempt,
            "status": record.outcome,
            "started_at": record.timings.started_at,
            "finished_at": None if record.outcome == "waiting" else record.timings.ended_at,
        }
        if conn.execute(UPSERT_STEP, params).fetchone() is None:
            raise UnknownStep(
                f"step_id: step {record.step_id} of tenant {tenant_id!r} belongs to another run than "
                f"{record.run_id}; pass the step id the run's state machine gave this step"
            )

    def _announce(
        self,
        conn: psycopg.Connection[Any],
        tenant_id: str,
        record: DecisionRecord,
        record_id: uuid.UUID,
        seq: int,
        digest: str,
    ) -> None:
        # A summary, not the record: prompts and tool I/O stay in decision_records.
        payload = {
            "run_id": str(record.run_id),
            "step_id": str(record.step_id) if record.step_id else None,
            "record_id": str(record_id),
            "seq": seq,
            "hash": digest,
            "node": record.node.model_dump(),
            "outcome": record.outcome,
        }
        append_run_event(conn, tenant_id, record.run_id, EVENT_TYPE, payload, destination=self._destination)

    def _rows(self, tenant_id: str, run_id: uuid.UUID) -> list[tuple[Any, ...]]:
        with self._connection(f"read the records of run {run_id}") as conn:
            if conn.execute(RUN_EXISTS, (tenant_id, run_id)).fetchone() is None:
                raise UnknownRun(f"run_id: tenant {tenant_id!r} has no run {run_id}")
            return conn.execute(SELECT_RECORDS, (tenant_id, run_id)).fetchall()

    def list_records(self, tenant_id: str, run_id: uuid.UUID) -> list[StoredRecord]:
        """The run's records in chain order; UnknownRun if the tenant has no such run."""
        return [
            _stored(tenant_id, record_id, seq, prev_hash, digest, recorded_at, content)
            for record_id, seq, _, _, _, content, prev_hash, digest, recorded_at in self._rows(
                tenant_id, run_id
            )
        ]

    def verify_chain(self, tenant_id: str, run_id: uuid.UUID) -> ChainReport:
        """Recompute every hash of the run's chain; the report names the first record that breaks it.

        Detects edited, reordered and removed records, except the removal of the last ones: the
        `step.recorded` events carry each hash for that check. UnknownRun if the tenant has no such run.
        """
        rows = self._rows(tenant_id, run_id)
        prev_hash: str | None = None
        for expected_seq, (_, seq, step_id, kind, outcome, content, stored_prev, digest, _) in enumerate(
            rows, start=1
        ):
            reason = _break(
                expected_seq, seq, step_id, kind, outcome, content, prev_hash, stored_prev, digest
            )
            if reason:
                logger.warning(
                    "decision chain broken",
                    extra={"tenant_id": tenant_id, "run_id": str(run_id), "seq": seq, "reason": reason},
                )
                return ChainReport(ok=False, records=len(rows), first_bad_seq=seq, reason=reason)
            prev_hash = digest
        return ChainReport(ok=True, records=len(rows))


def _stored(
    tenant_id: str,
    record_id: uuid.UUID,
    seq: int,
    prev_hash: str | None,
    digest: str,
    recorded_at: datetime,
    content: dict[str, Any],
) -> StoredRecord:
    return StoredRecord(
        tenant_id=tenant_id,
        record_id=record_id,
        seq=seq,
        prev_hash=prev_hash,
        hash=digest,
        recorded_at=recorded_at,
        record=DecisionRecord.model_validate(content),
    )


def _break(
    expected_seq: int,
    seq: int,
    step_id: uuid.UUID | None,
    kind: str,
    outcome: str,
    content: dict[str, Any],
    prev_hash: str | None,
    stored_prev: str | None,
    digest: str,
) -> str | None:
    """Why this row breaks the chain, or None."""
    if seq != expected_seq:
        return f"record {expected_seq} is missing: seq {seq} follows seq {expected_seq - 1}"
    if stored_prev != prev_hash:
        return f"prev_hash {stored_prev} is not the hash {prev_hash} of the record before"
    if record_hash(content, stored_prev) != digest:
        return "hash does not match the record's content: the record was changed after it was written"
    columns = {"step_id": str(step_id) if step_id else None, "kind": kind, "outcome": outcome}
    recorded = {
        "step_id": content.get("step_id"),
        "kind": (content.get("node") or {}).get("kind"),
        "outcome": content.get("outcome"),
    }
    if columns != recorded:
        return f"columns {columns} do not match the hashed record {recorded}"
    return None


@functools.cache
def get_recorder() -> Recorder:
    """The process's Recorder, on the process's pool (connected at the first record, not here)."""
    return Recorder()
