"""Session leases on the real Redis, and fenced writes on the real Postgres."""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
from aob.cache import get_redis
from aob.db import get_pool
from aob.errors import LeaseHeld, LeaseLost, StaleFencingToken, TenantSuspended, UnknownTenant
from aob.lease import (
    AcquireLease,
    Lease,
    RedisLeaseStore,
    ReleaseLease,
    RenewLease,
    SessionLeases,
    check_fencing_token,
)
from aob.tenants import create_tenant
from psycopg_pool import ConnectionPool

from tests.multiprocess import run_everywhere
from tests.support import Clock

pytestmark = pytest.mark.integration

NOON = datetime(2030, 6, 15, 12, 0, tzinfo=UTC).timestamp()
THREADS = 8  # per process

APPEND = """
INSERT INTO events (tenant_id, stream_id, seq, event_type, payload)
VALUES (%(tenant)s, %(stream)s,
        (SELECT coalesce(max(seq), 0) + 1 FROM events
         WHERE tenant_id = %(tenant)s AND stream_id = %(stream)s),
        'test.fenced_write', %(payload)s)
"""
WRITTEN = "SELECT payload FROM events WHERE tenant_id = %s AND stream_id = %s ORDER BY seq"


@pytest.fixture
def clock() -> Clock:
    return Clock(NOON)


def _leases(prefix: str, clock: Callable[[], float]) -> SessionLeases:
    return SessionLeases(RedisLeaseStore(get_redis(), key_prefix=prefix), clock=clock)


@pytest.fixture
def leases(db_pool: ConnectionPool, redis_key_prefix: str, clock: Clock) -> SessionLeases:
    return _leases(redis_key_prefix, clock)


@pytest.fixture
def tenant(db_pool: ConnectionPool) -> str:
    tenant_id = f"t-{uuid.uuid4().hex[:10]}"
    create_tenant(tenant_id)
    return tenant_id


def _acquire(tenant: str, holder: str, session: str = "sess-1", ttl_s: float = 30) -> AcquireLease:
    return AcquireLease(tenant_id=tenant, session_id=session, holder=holder, ttl_s=ttl_s)


def _renew(tenant: str, holder: str, token: int | None = None, session: str = "sess-1") -> RenewLease:
    return RenewLease(tenant_id=tenant, session_id=session, holder=holder, fencing_token=token, ttl_s=30)


def _release(tenant: str, holder: str, token: int | None = None, session: str = "sess-1") -> ReleaseLease:
    return ReleaseLease(tenant_id=tenant, session_id=session, holder=holder, fencing_token=token)


# One holder at a time


def test_a_held_lease_refuses_other_holders_until_it_expires(
    leases: SessionLeases, clock: Clock, tenant: str
) -> None:
    first = leases.acquire(_acquire(tenant, "run-a"))
    assert (first.holder, first.released) == ("run-a", False)
    assert first.expires_at == datetime.fromtimestamp(NOON + 30, UTC)

    with pytest.raises(LeaseHeld, match="held by run-a .* retry after 30.000 s"):
        leases.acquire(_acquire(tenant, "run-b"))
    clock.advance(30)
    second = leases.acquire(_acquire(tenant, "run-b"))

    assert second.holder == "run-b" and second.fencing_token > first.fencing_token


def test_only_the_holder_renews_and_a_renewal_postpones_expiry(
    leases: SessionLeases, clock: Clock, tenant: str
) -> None:
    lease = leases.acquire(_acquire(tenant, "run-a"))
    clock.advance(20)

    renewed = leases.renew(_renew(tenant, "run-a", lease.fencing_token))
    with pytest.raises(LeaseLost, match="run-b cannot renew .* run-a holds it"):
        leases.renew(_renew(tenant, "run-b"))
    with pytest.raises(LeaseLost, match="fencing token 1 is not the current one"):
        leases.renew(_renew(tenant, "run-a", 1))

    assert (renewed.fencing_token, renewed.expires_at) == (
        lease.fencing_token,
        datetime.fromtimestamp(clock.now + 30, UTC),
    )
    clock.advance(29)  # 49 s after acquiring: alive only thanks to the renewal
    with pytest.raises(LeaseHeld):
        leases.acquire(_acquire(tenant, "run-b"))


def test_an_expired_holder_cannot_renew_or_release(leases: SessionLeases, clock: Clock, tenant: str) -> None:
    leases.acquire(_acquire(tenant, "run-a"))
    clock.advance(31)

    with pytest.raises(LeaseLost, match="it expired at"):
        leases.renew(_renew(tenant, "run-a"))
    taken = leases.acquire(_acquire(tenant, "run-b"))
    with pytest.raises(LeaseLost, match="run-b holds it"):
        leases.release(_release(tenant, "run-a"))

    assert leases.renew(_renew(tenant, "run-b", taken.fencing_token)).holder == "run-b"


def test_release_frees_the_session_and_only_once(leases: SessionLeases, tenant: str) -> None:
    lease = leases.acquire(_acquire(tenant, "run-a"))
    with pytest.raises(LeaseLost):
        leases.release(_release(tenant, "run-b"))

    released = leases.release(_release(tenant, "run-a", lease.fencing_token))
    with pytest.raises(LeaseLost, match="no lease"):
        leases.release(_release(tenant, "run-a"))

    assert (released.released, released.fencing_token) == (True, lease.fencing_token)
    assert leases.acquire(_acquire(tenant, "run-b")).fencing_token > lease.fencing_token


def test_the_holder_reacquiring_keeps_its_token(leases: SessionLeases, clock: Clock, tenant: str) -> None:
    # A retried Acquire step must not fence off the very run that retries it.
    lease = leases.acquire(_acquire(tenant, "run-a"))
    clock.advance(10)

    again = leases.acquire(_acquire(tenant, "run-a"))

    assert again.fencing_token == lease.fencing_token and again.expires_at > lease.expires_at


def test_fencing_tokens_only_grow_even_if_redis_forgets_the_last(
    leases: SessionLeases, clock: Clock, tenant: str, redis_key_prefix: str
) -> None:
    tokens = []
    for holder in ("run-a", "run-b", "run-c"):
        lease = leases.acquire(_acquire(tenant, holder))
        tokens.append(lease.fencing_token)
        leases.release(_release(tenant, holder))
    get_redis().delete(f"{redis_key_prefix}lease:{{{tenant}}}:sess-1:token")  # evicted, say
    clock.advance(1)
    tokens.append(leases.acquire(_acquire(tenant, "run-d")).fencing_token)

    assert tokens == sorted(set(tokens))


def test_sessions_and_tenants_are_separate(leases: SessionLeases, tenant: str) -> None:
    other = f"t-{uuid.uuid4().hex[:10]}"
    create_tenant(other)

    leases.acquire(_acquire(tenant, "run-a"))
    leases.acquire(_acquire(tenant, "run-b", session="sess-2"))
    leases.acquire(_acquire(other, "run-c"))


def test_unknown_and_suspended_tenants_get_no_lease(leases: SessionLeases) -> None:
    suspended = f"t-{uuid.uuid4().hex[:10]}"
    create_tenant(suspended, status="suspended")

    with pytest.raises(UnknownTenant, match="no tenant 'no-such-tenant'"):
        leases.acquire(_acquire("no-such-tenant", "run-a"))
    with pytest.raises(TenantSuspended):
        leases.acquire(_acquire(suspended, "run-a"))


# Fenced writes


def _write(tenant: str, session: str, token: int, note: str) -> None:
    with get_pool().connection() as conn, conn.transaction():
        check_fencing_token(conn, tenant, session, token)
        conn.execute(
            APPEND,
            {
                "tenant": tenant,
                "stream": f"fenced:{session}",
                "payload": json.dumps({"token": token, "note": note}),
            },
        )


def _written(tenant: str, session: str) -> list[dict[str, Any]]:
    with get_pool().connection() as conn:
        return [row[0] for row in conn.execute(WRITTEN, (tenant, f"fenced:{session}"))]


def test_a_stale_fencing_token_is_refused(leases: SessionLeases, clock: Clock, tenant: str) -> None:
    old = leases.acquire(_acquire(tenant, "run-a"))
    _write(tenant, "sess-1", old.fencing_token, "a1")
    clock.advance(31)  # run-a stalls past its lease; run-b takes over
    new = leases.acquire(_acquire(tenant, "run-b"))
    _write(tenant, "sess-1", new.fencing_token, "b1")

    with pytest.raises(StaleFencingToken, match=f"token {old.fencing_token} is stale"):
        _write(tenant, "sess-1", old.fencing_token, "a2")
    _write(tenant, "sess-1", new.fencing_token, "b2")  # the holder writes as often as it needs

    assert [w["note"] for w in _written(tenant, "sess-1")] == ["a1", "b1", "b2"]


def test_fenced_writes_need_a_transaction_and_a_known_tenant(db_pool: ConnectionPool) -> None:
    with db_pool.connection() as conn:
        conn.autocommit = True
        with pytest.raises(RuntimeError, match="inside the writer's transaction"):
            check_fencing_token(conn, "any", "sess-1", 1)
        with pytest.raises(UnknownTenant), conn.transaction():
            check_fencing_token(conn, "no-such-tenant", "sess-1", 1)


def test_concurrent_writers_commit_in_fencing_token_order(
    leases: SessionLeases, clock: Clock, tenant: str
) -> None:
    tokens = []
    for n in range(8):  # eight successive holders, each taking over from the last
        tokens.append(leases.acquire(_acquire(tenant, f"run-{n}")).fencing_token)
        clock.advance(31)
    refused = []

    def writer(token: int) -> None:
        for i in range(5):
            try:
                _write(tenant, "sess-1", token, f"{token}-{i}")
            except StaleFencingToken:
                refused.append(token)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(writer, random.sample(tokens, len(tokens))))

    written = [w["token"] for w in _written(tenant, "sess-1")]
    assert written == sorted(written)  # no write committed after a newer holder's
    assert written.count(tokens[-1]) == 5  # the newest holder is never refused
    assert len(written) + len(refused) == 40


# Concurrency: threads in this process and in spawned ones contend for the same sessions


def _contend(
    prefix: str, tenant: str, sessions: list[str], start: Any
) -> dict[str, list[tuple[str, str, int]]]:
    """Every thread, a holder of its own, tries to acquire every session, then to release each."""
    leases = _leases(prefix, lambda: NOON)
    leases.acquire(_acquire(tenant, "warm-up", session="warm-up"))  # tenant cached, script loaded
    process = uuid.uuid4().hex[:8]
    # Nobody releases until every thread of every process has tried to acquire.
    gate = threading.Barrier(THREADS, action=start.wait)
    start.wait()

    def thread(index: int) -> dict[str, list[tuple[str, str, int]]]:
        holder = f"{process}-{index}"
        done: dict[str, list[tuple[str, str, int]]] = {"acquired": [], "released": []}
        for session in random.sample(sessions, len(sessions)):
            try:
                lease: Lease = leases.acquire(_acquire(tenant, holder, session))
                done["acquired"].append((session, holder, lease.fencing_token))
            except LeaseHeld:
                pass
        gate.wait()
        for session in random.sample(sessions, len(sessions)):
            try:
                leases.release(_release(tenant, holder, session=session))
                done["released"].append((session, holder, 0))
            except LeaseLost:
                pass
        return done

    with ThreadPoolExecutor(THREADS) as pool:
        per_thread = list(pool.map(thread, range(THREADS)))
    return {kind: sum((t[kind] for t in per_thread), []) for kind in ("acquired", "released")}


def test_concurrent_holders_in_many_processes_never_share_a_session(
    db_pool: ConnectionPool, redis_key_prefix: str, tenant: str
) -> None:
    sessions = [f"sess-{n}" for n in range(100)]

    outcomes = run_everywhere(_contend, redis_key_prefix, tenant, sessions)

    acquired = [a for outcome in outcomes for a in outcome["acquired"]]
    released = [r for outcome in outcomes for r in outcome["released"]]
    assert sorted(session for session, _holder, _token in acquired) == sorted(sessions)  # one winner each
    assert sorted((s, h) for s, h, _ in released) == sorted(
        (s, h) for s, h, _ in acquired
    )  # only winners release
    leases = _leases(redis_key_prefix, lambda: NOON)
    for session, _holder, token in acquired:  # released: free again, and fenced past the winner
        assert leases.acquire(_acquire(tenant, "late", session)).fencing_token > token
