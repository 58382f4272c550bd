"""The Recorder on Postgres: one unbroken hash chain per run, fenced, atomic and tenant-scoped."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from aob.errors import StaleFencingToken, UnknownRun, UnknownStep
from aob.recorder import EVENT_TYPE, DecisionRecord, Recorder, RecordStepRequest, record_hash, stream_id
from aob.tenants import create_tenant
from psycopg import errors, sql
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from tests.support import insert_run, insert_step

pytestmark = pytest.mark.integration

COUNTS = """
SELECT (SELECT count(*) FROM decision_records WHERE tenant_id = %(tenant)s),
       (SELECT count(*) FROM events WHERE tenant_id = %(tenant)s),
       (SELECT count(*) FROM outbox WHERE tenant_id = %(tenant)s)
"""
EVENTS = """
SELECT seq, event_type, payload, event_id FROM events WHERE tenant_id = %s AND stream_id = %s ORDER BY seq
"""
OUTBOX = "SELECT message_id, payload FROM outbox WHERE tenant_id = %s ORDER BY outbox_id"
STARTED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@dataclass(frozen=True)
class Run:
    tenant_id: str
    run_id: uuid.UUID
    step_id: uuid.UUID


@pytest.fixture
def recorder(db_pool: ConnectionPool) -> Recorder:
    return Recorder(db_pool)


def new_run(pool: ConnectionPool) -> Run:
    tenant_id = f"rec-{uuid.uuid4().hex[:10]}"
    create_tenant(tenant_id)
    with pool.connection() as conn:
        run_id = insert_run(conn, tenant_id, "assistant")
        return Run(tenant_id, run_id, insert_step(conn, tenant_id, run_id, "CallModel", "model"))


@pytest.fixture
def run(db_pool: ConnectionPool) -> Run:
    return new_run(db_pool)


def step(run: Run, n: int, **changes: object) -> DecisionRecord:
    return DecisionRecord.model_validate(
        {
            "run_id": run.run_id,
            "step_id": uuid.UUID(int=n + 1),  # one step per n: the recorder adds its row
            "node": {"name": f"Step{n}", "kind": "model"},
            "outcome": "succeeded",
            "inputs": {"order": n, "ratio": 1e20, "note": "café"},
            "prompt": "Summarise the order",
            "messages": [{"role": "user", "content": f"order {n}"}],
            "model": {"name": "small", "version": "2026-01"},
            "policy": {"decision_ids": [str(uuid.UUID(int=n))], "bundle_digest": "sha256:abc"},
            "usage": {"input_tokens": 10 + n, "output_tokens": n},
            "timings": {"started_at": STARTED, "ended_at": STARTED + timedelta(milliseconds=n)},
        }
        | changes
    )


def counts(pool: ConnectionPool, tenant_id: str) -> tuple[int, int, int]:
    with pool.connection() as conn:
        row = conn.execute(COUNTS, {"tenant": tenant_id}).fetchone()
    assert row is not None
    return row


def test_steps_form_an_unbroken_chain_with_events_and_outbox(
    recorder: Recorder, run: Run, db_pool: ConnectionPool
) -> None:
    stored = [
        recorder.record(step(run, n), tenant_id=run.tenant_id, session_id="s1", fencing_token=1)
        for n in range(4)
    ]

    assert [s.seq for s in stored] == [1, 2, 3, 4]
    assert stored[0].prev_hash is None
    assert [s.prev_hash for s in stored[1:]] == [s.hash for s in stored[:-1]]
    assert stored[2].record == step(run, 2)
    assert recorder.list_records(run.tenant_id, run.run_id) == stored
    assert recorder.verify_chain(run.tenant_id, run.run_id).model_dump() == {
        "ok": True,
        "records": 4,
        "first_bad_seq": None,
        "reason": None,
    }
    with db_pool.connection() as conn:
        events = conn.execute(EVENTS, (run.tenant_id, stream_id(run.run_id))).fetchall()
        outbox = conn.execute(OUTBOX, (run.tenant_id,)).fetchall()
    assert [(seq, kind, payload["seq"], payload["hash"]) for seq, kind, payload, _ in events] == [
        (s.seq, EVENT_TYPE, s.seq, s.hash) for s in stored
    ]
    assert [(message_id, payload) for message_id, payload in outbox] == [
        (event_id, payload) for _, _, payload, event_id in events
    ]


def _without_append_only_trigger(pool: ConnectionPool, statement: str, params: tuple[object, ...]) -> None:
    """Tamper with decision_records as an attacker with table rights would (tests only)."""
    with pool.connection() as conn, conn.transaction():
        conn.execute("ALTER TABLE decision_records DISABLE TRIGGER decision_records_append_only")
        conn.execute(statement, params)
        conn.execute("ALTER TABLE decision_records ENABLE TRIGGER decision_records_append_only")


@pytest.mark.parametrize(
    ("statement", "bad_seq", "reason"),
    [
        (
            "UPDATE decision_records SET record = jsonb_set(record, '{usage,output_tokens}', '999')"
            " WHERE tenant_id = %s AND run_id = %s AND seq = 2",
            2,
            "hash does not match",
        ),
        (
            "UPDATE decision_records SET outcome = 'denied' WHERE tenant_id = %s AND run_id = %s AND seq = 3",
            3,
            "do not match the hashed record",
        ),
        (
            "DELETE FROM decision_records WHERE tenant_id = %s AND run_id = %s AND seq = 2",
            3,
            "record 2 is missing",
        ),
    ],
)
def test_tampering_is_detected_at_its_seq(
    recorder: Recorder, run: Run, db_pool: ConnectionPool, statement: str, bad_seq: int, reason: str
) -> None:
    for n in range(4):
        recorder.record(step(run, n), tenant_id=run.tenant_id, session_id="s1", fencing_token=1)

    _without_append_only_trigger(db_pool, statement, (run.tenant_id, run.run_id))

    report = recorder.verify_chain(run.tenant_id, run.run_id)
    assert (report.ok, report.first_bad_seq) == (False, bad_seq)
    assert report.reason and reason in report.reason


def test_a_rewritten_record_with_a_fresh_hash_breaks_the_next_link(
    recorder: Recorder, run: Run, db_pool: ConnectionPool
) -> None:
    stored = [
        recorder.record(step(run, n), tenant_id=run.tenant_id, session_id="s1", fencing_token=1)
        for n in range(3)
    ]
    forged = stored[1].record.model_copy(update={"outcome": "denied"}).model_dump(mode="json")

    _without_append_only_trigger(
        db_pool,
        "UPDATE decision_records SET record = %s, outcome = 'denied', hash = %s"
        " WHERE tenant_id = %s AND run_id = %s AND seq = 2",
        (Jsonb(forged), record_hash(forged, stored[0].hash), run.tenant_id, run.run_id),
    )

    report = recorder.verify_chain(run.tenant_id, run.run_id)
    assert (report.ok, report.first_bad_seq) == (False, 3)


def test_a_stale_fencing_token_is_refused_and_writes_nothing(
    recorder: Recorder, run: Run, db_pool: ConnectionPool
) -> None:
    recorder.record(step(run, 0), tenant_id=run.tenant_id, session_id="s1", fencing_token=2)

    with pytest.raises(StaleFencingToken):
        recorder.record(step(run, 1), tenant_id=run.tenant_id, session_id="s1", fencing_token=1)

    assert counts(db_pool, run.tenant_id) == (1, 1, 1)
    assert recorder.record(step(run, 1), tenant_id=run.tenant_id, session_id="s1", fencing_token=2).seq == 2


def test_concurrent_writers_keep_one_chain(recorder: Recorder, run: Run) -> None:
    writers, per_writer = 4, 5
    barrier = threading.Barrier(writers)
    failures: list[BaseException] = []

    def write(w: int) -> None:
        barrier.wait()
        try:
            for n in range(per_writer):
                recorder.record(
                    step(run, w * 100 + n), tenant_id=run.tenant_id, session_id=f"s{w}", fencing_token=1
                )
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    assert [r.seq for r in recorder.list_records(run.tenant_id, run.run_id)] == list(range(1, 21))
    assert recorder.verify_chain(run.tenant_id, run.run_id).ok


@pytest.fixture
def outbox_refusing(run: Run, db_pool: ConnectionPool) -> Iterator[None]:
    """The outbox refuses the run's tenant (a constraint added for this test, then dropped)."""
    name = sql.Identifier(f"test_refuse_{uuid.uuid4().hex[:8]}")
    with db_pool.connection() as conn:
        conn.execute(
            sql.SQL("ALTER TABLE outbox ADD CONSTRAINT {} CHECK (tenant_id <> {}) NOT VALID").format(
                name, sql.Literal(run.tenant_id)
            )
        )
    yield
    with db_pool.connection() as conn:
        conn.execute(sql.SQL("ALTER TABLE outbox DROP CONSTRAINT {}").format(name))


@pytest.mark.usefixtures("outbox_refusing")
def test_record_event_and_outbox_commit_together_or_not_at_all(
    recorder: Recorder, run: Run, db_pool: ConnectionPool
) -> None:
    with pytest.raises(errors.CheckViolation):
        recorder.record(step(run, 0), tenant_id=run.tenant_id, session_id="s1", fencing_token=1)

    assert counts(db_pool, run.tenant_id) == (0, 0, 0)
    assert recorder.verify_chain(run.tenant_id, run.run_id).records == 0


def test_another_tenant_can_neither_read_verify_nor_write_the_run(
    recorder: Recorder, run: Run, db_pool: ConnectionPool
) -> None:
    recorder.record(step(run, 0), tenant_id=run.tenant_id, session_id="s1", fencing_token=1)
    other = new_run(db_pool)

    with pytest.raises(UnknownRun):
        recorder.list_records(other.tenant_id, run.run_id)
    with pytest.raises(UnknownRun):
        recorder.verify_chain(other.tenant_id, run.run_id)
    with pytest.raises(UnknownRun):
        recorder.record(step(run, 1), tenant_id=other.tenant_id, session_id="s1", fencing_token=1)
    assert counts(db_pool, other.tenant_id) == (0, 0, 0)
    assert len(recorder.list_records(run.tenant_id, run.run_id)) == 1


def test_a_retried_step_gets_its_stored_record_back_and_nothing_is_written(
    recorder: Recorder, run: Run, db_pool: ConnectionPool
) -> None:
    first = recorder.record(step(run, 1), tenant_id=run.tenant_id, session_id="s1", fencing_token=1)
    # The retry's content differs (a later clock): what was stored stands.
    later = step(run, 1, usage={"input_tokens": 99, "output_tokens": 9})

    again = recorder.record(later, tenant_id=run.tenant_id, session_id="s1", fencing_token=1)

    assert again == first
    assert counts(db_pool, run.tenant_id) == (1, 1, 1)
    second_attempt = recorder.record(
        step(run, 1, attempt=2), tenant_id=run.tenant_id, session_id="s1", fencing_token=1
    )
    failed = recorder.record(
        step(run, 1, attempt=2, outcome="failed"), tenant_id=run.tenant_id, session_id="s1", fencing_token=1
    )
    assert (second_attempt.seq, failed.seq) == (2, 3)
    assert recorder.verify_chain(run.tenant_id, run.run_id).ok


def test_the_step_row_is_written_with_its_record(
    recorder: Recorder, run: Run, db_pool: ConnectionPool
) -> None:
    query = (
        "SELECT run_id, state_name, kind, attempt, status, finished_at FROM steps"
        " WHERE tenant_id = %s AND step_id = %s"
    )
    recorder.record(step(run, 5), tenant_id=run.tenant_id, session_id="s1", fencing_token=1)
    with db_pool.connection() as conn:
        created = conn.execute(query, (run.tenant_id, uuid.UUID(int=6))).fetchone()
    assert created == (run.run_id, "Step5", "model", 1, "succeeded", STARTED + timedelta(milliseconds=5))

    recorder.record(
        step(run, 5, attempt=2, outcome="waiting"), tenant_id=run.tenant_id, session_id="s1", fencing_token=1
    )
    with db_pool.connection() as conn:
        updated = conn.execute(query, (run.tenant_id, uuid.UUID(int=6))).fetchone()
    assert updated == (run.run_id, "Step5", "model", 2, "waiting", None)


def test_a_step_of_another_run_is_refused(recorder: Recorder, run: Run, db_pool: ConnectionPool) -> None:
    with db_pool.connection() as conn:
        other_run = conn.execute(
            "INSERT INTO runs (tenant_id, workflow_id) SELECT tenant_id, workflow_id FROM runs"
            " WHERE tenant_id = %s AND run_id = %s RETURNING run_id",
            (run.tenant_id, run.run_id),
        ).fetchone()
    assert other_run is not None

    with pytest.raises(UnknownStep, match="belongs to another run"):
        recorder.record(
            step(run, 1, run_id=other_run[0], step_id=run.step_id),
            tenant_id=run.tenant_id,
            session_id="s1",
            fencing_token=1,
        )
    assert counts(db_pool, run.tenant_id) == (0, 0, 0)


def test_record_step_keeps_what_the_gateway_was_asked_and_answered(db_pool: ConnectionPool, run: Run) -> None:
    now = STARTED + timedelta(seconds=2)
    recorder = Recorder(db_pool, clock=lambda: now)
    check_policy, gateway_decision = uuid.uuid4(), uuid.uuid4()
    request = RecordStepRequest.model_validate(
        {
            "tenant_id": run.tenant_id,
            "session_id": "s1",
            "fencing_token": 1,
            "run_id": run.run_id,
            "step_id": uuid.uuid4(),
            "node": {"name": "lookup_order", "kind": "tool"},
            "outcome": "succeeded",
            "call": {"tool": "lookup_order", "args": {"order_id": "o-1"}},
            "result": {
                "tool": "lookup_order",
                "result": {"found": True},
                "decision_id": str(gateway_decision),
                "duration_ms": 250.0,
            },
            "policy": {
                "decision_id": str(check_policy),
                "bundle_digest": "sha256:abc",
                "allow": True,
                "reasons": [],
                "obligations": {},
            },
        }
    )

    stored = recorder.record_step(request).record

    assert stored.tool is not None
    assert (stored.tool.name, stored.tool.input, stored.tool.output) == (
        "lookup_order",
        {"order_id": "o-1"},
        {"found": True},
    )
    assert stored.policy.model_dump() == {
        "decision_ids": [str(check_policy), str(gateway_decision)],
        "bundle_digest": "sha256:abc",
    }
    assert (stored.timings.ended_at, stored.timings.duration_ms) == (now, 250)
