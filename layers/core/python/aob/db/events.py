"""A run's event stream: one append writes the event and its outbox message, in the caller's transaction.

Writers of one run serialise on the run row's lock (the caller takes it), so each append reads
the seq the previous one committed; a concurrent append without the lock fails on the key.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

RUN_EVENTS = "aob.run-events"  # the outbox destination of run events

INSERT_EVENT = """
INSERT INTO events (tenant_id, stream_id, seq, event_type, payload)
VALUES (
  %(tenant_id)s, %(stream_id)s,
  (SELECT coalesce(max(seq), 0) + 1 FROM events
   WHERE tenant_id = %(tenant_id)s AND stream_id = %(stream_id)s),
  %(event_type)s, %(payload)s
)
RETURNING event_id
"""
INSERT_OUTBOX = """
INSERT INTO outbox (tenant_id, message_id, destination, payload, attributes) VALUES (%s, %s, %s, %s, %s)
"""


def stream_id(run_id: uuid.UUID) -> str:
    """The event stream of a run."""
    return f"run:{run_id}"


def append_run_event(
    conn: psycopg.Connection[Any],
    tenant_id: str,
    run_id: uuid.UUID,
    event_type: str,
    payload: dict[str, Any],
    *,
    destination: str = RUN_EVENTS,
) -> uuid.UUID:
    """Append the event to the run's stream and queue it in the outbox; its event_id."""
    event = {
        "tenant_id": tenant_id,
        "stream_id": stream_id(run_id),
        "event_type": event_type,
        "payload": Jsonb(payload),
    }
    row = conn.execute(INSERT_EVENT, event).fetchone()
    assert row is not None  # INSERT ... RETURNING
    attributes = {"event_type": event_type, "tenant_id": tenant_id}
    conn.execute(INSERT_OUTBOX, (tenant_id, row[0], destination, Jsonb(payload), Jsonb(attributes)))
    return row[0]
