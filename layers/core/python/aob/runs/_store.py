"""SQL of workflow versions, runs and their events; every statement names the tenant.

Events are appended on the run's stream (`run:<run_id>`) after locking the run row, the lock
the Recorder takes too, so writers of one run queue and the stream's seq stays gap-free.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from aob.db.events import append_run_event

# Publishing: one publisher per (tenant, workflow name) at a time picks the next version.
LOCK_WORKFLOW_NAME = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"
FIND_PUBLISHED = """
SELECT workflow_id, version, state_machine_arn FROM workflows
WHERE tenant_id = %s AND name = %s AND spec_sha256 = %s AND mode = %s
"""
NEXT_VERSION = "SELECT coalesce(max(version), 0) + 1 FROM workflows WHERE tenant_id = %s AND name = %s"
INSERT_WORKFLOW = """
INSERT INTO workflows (tenant_id, name, version, spec, spec_sha256, state_machine_arn, mode)
VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING workflow_id
"""
SELECT_WORKFLOW = """
SELECT workflow_id, version, mode, state_machine_arn FROM workflows
WHERE tenant_id = %(tenant_id)s AND name = %(name)s
  AND (%(version)s::integer IS NULL OR version = %(version)s::integer)
ORDER BY version DESC LIMIT 1
"""

_RUN_COLUMNS = """
r.tenant_id, r.run_id, w.name, w.version, w.mode, r.status, r.execution_arn, r.idempotency_key,
r.input, r.output, r.error, r.created_at, r.started_at, r.finished_at
"""
SELECT_RUN = f"""
SELECT {_RUN_COLUMNS} FROM runs r
JOIN workflows w ON w.tenant_id = r.tenant_id AND w.workflow_id = r.workflow_id
WHERE r.tenant_id = %s AND r.run_id = %s
"""
SELECT_RUN_BY_KEY = f"""
SELECT {_RUN_COLUMNS} FROM runs r
JOIN workflows w ON w.tenant_id = r.tenant_id AND w.workflow_id = r.workflow_id
WHERE r.tenant_id = %s AND r.idempotency_key = %s
"""
INSERT_RUN = """
INSERT INTO runs (tenant_id, workflow_id, status, idempotency_key, input)
VALUES (%s, %s, 'running', %s, %s)
ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
RETURNING run_id
"""
# A start that failed before any execution existed may be retried with the same key.
RECLAIM_FAILED_START = """
UPDATE runs SET status = 'running', error = NULL, finished_at = NULL
WHERE tenant_id = %s AND run_id = %s AND status = 'failed' AND execution_arn IS NULL
RETURNING run_id
"""
LOCK_RUN = "SELECT 1 FROM runs WHERE tenant_id = %s AND run_id = %s FOR NO KEY UPDATE"
MARK_STARTED = """
UPDATE runs SET execution_arn = %s, started_at = coalesce(started_at, now())
WHERE tenant_id = %s AND run_id = %s
"""
MARK_START_FAILED = """
UPDATE runs SET status = 'failed', error = %s, finished_at = now() WHERE tenant_id = %s AND run_id = %s
"""
# Only the first refresher to see the end writes it (and its run.finished event).
MARK_FINISHED = """
UPDATE runs SET status = %s, output = %s, error = %s, finished_at = coalesce(%s, now())
WHERE tenant_id = %s AND run_id = %s AND status NOT IN ('succeeded', 'failed', 'cancelled')
RETURNING run_id
"""
SELECT_STEPS = """
SELECT step_id, state_name, kind, attempt, status, started_at, finished_at FROM steps
WHERE tenant_id = %s AND run_id = %s ORDER BY started_at, step_id
"""
# A run whose execution waits on a person: an approval still pending and not yet past its timeout.
PENDING_APPROVAL = """
SELECT 1 FROM approvals
WHERE tenant_id = %s AND run_id = %s AND status = 'pending' AND expires_at > now() LIMIT 1
"""
SELECT_EVENTS = """
SELECT seq, event_type, payload, recorded_at FROM events
WHERE tenant_id = %s AND stream_id = %s ORDER BY seq
"""

RUN_FIELDS = (
    "tenant_id",
    "run_id",
    "workflow",
    "version",
    "mode",
    "status",
    "execution_arn",
    "idempotency_key",
    "input",
    "output",
    "error",
    "created_at",
    "started_at",
    "finished_at",
)


def run_fields(row: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip(RUN_FIELDS, row, strict=True))


def append_event(
    conn: psycopg.Connection[Any], tenant_id: str, run_id: uuid.UUID, event_type: str, payload: dict[str, Any]
) -> None:
    """Append to the run's stream; the caller's transaction must hold the run row's lock."""
    append_run_event(conn, tenant_id, run_id, event_type, payload)
