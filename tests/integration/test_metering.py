"""Metering against the real Redis and Postgres: buckets, budgets, settlement, ledger, concurrency."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from typing import Any

import pytest
import redis
from aob.cache import get_redis
from aob.db import get_pool
from aob.errors import (
    InvalidInput,
    QuotaExceeded,
    ServiceUnavailable,
    TenantSuspended,
    UnknownReservation,
    UnknownTenant,
)
from aob.metering import (
    Metering,
    RedisQuotaStore,
    Reservation,
    ReserveRequest,
    Settlement,
    SettleRequest,
    UsageLedger,
    UsageQuery,
    redis_store,
)
from aob.tenants import create_tenant
from psycopg_pool import ConnectionPool

from tests.multiprocess import run_everywhere
from tests.support import Clock

pytestmark = pytest.mark.integration

NOON = datetime(2030, 6, 15, 12, 0, tzinfo=UTC).timestamp()  # in the future: Redis keys expire at period ends
THREADS = 8  # per process


@pytest.fixture
def clock() -> Clock:
    return Clock(NOON)


def _metering(prefix: str, clock: Callable[[], float], **kwargs: Any) -> Metering:
    return Metering(
        RedisQuotaStore(get_redis(), key_prefix=prefix), UsageLedger(get_pool()), clock=clock, **kwargs
    )


@pytest.fixture
def metering(db_pool: ConnectionPool, redis_key_prefix: str, clock: Clock) -> Metering:
    return _metering(redis_key_prefix, clock)


def _tenant(**quotas: Any) -> str:
    tenant_id = f"t-{uuid.uuid4().hex[:10]}"
    create_tenant(tenant_id, quotas=quotas)
    return tenant_id


def _reserve(tenant_id: str, tokens: int, capability: str = "model_gateway", **kwargs: Any) -> ReserveRequest:
    return ReserveRequest(tenant_id=tenant_id, capability=capability, estimate_tokens=tokens, **kwargs)


def _settle(
    tenant_id: str, reservation_id: str, input_tokens: int, output_tokens: int = 0, **kw: Any
) -> SettleRequest:
    return SettleRequest(
        tenant_id=tenant_id,
        reservation_id=reservation_id,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        **kw,
    )


def _ledger(tenant_id: str) -> list[tuple[Any, ...]]:
    with get_pool().connection() as conn:
        return conn.execute(
            "SELECT reservation_id, capability, estimate_tokens, input_tokens, output_tokens, occurred_at "
            "FROM usage_ledger WHERE tenant_id = %s ORDER BY entry_id",
            (tenant_id,),
        ).fetchall()


def _refusal(metering: Metering, request: ReserveRequest) -> QuotaExceeded:
    with pytest.raises(QuotaExceeded) as caught:
        metering.reserve(request)
    return caught.value


# Buckets and budgets


def test_qps_bucket_admits_a_burst_then_refills_at_the_rate(metering: Metering, clock: Clock) -> None:
    tenant = _tenant(qps=2, burst=3)
    for _ in range(3):
        metering.reserve(_reserve(tenant, 0))

    refused = _refusal(metering, _reserve(tenant, 0))

    assert (refused.scope, refused.retry_after) == ("tenant.qps", 0.5)
    assert "retry after 0.500 s" in str(refused)
    clock.advance(0.5)
    metering.reserve(_reserve(tenant, 0))
    assert _refusal(metering, _reserve(tenant, 0)).scope == "tenant.qps"


def test_a_capability_limit_applies_besides_the_tenants(metering: Metering) -> None:
    tenant = _tenant(capabilities={"tool_gateway": {"qps": 1, "burst": 1}})
    metering.reserve(_reserve(tenant, 0, "tool_gateway"))

    refused = _refusal(metering, _reserve(tenant, 0, "tool_gateway"))

    assert (refused.scope, refused.retry_after) == ("capability.qps", 1.0)
    assert "capability tool_gateway" in str(refused)
    metering.reserve(_reserve(tenant, 0, "model_gateway"))  # other capabilities are unaffected


def test_a_refused_reservation_charges_nothing(metering: Metering) -> None:
    tenant = _tenant(qps=1, burst=1, tokens_per_day=100)
    assert _refusal(metering, _reserve(tenant, 101)).scope == "tenant.tokens_per_day"

    metering.reserve(_reserve(tenant, 100))  # neither the bucket's token nor any budget was spent


def test_budget_refuses_beyond_the_day_and_settling_refunds_the_difference(metering: Metering) -> None:
    tenant = _tenant(tokens_per_day=1000)
    first = metering.reserve(_reserve(tenant, 600))

    refused = _refusal(metering, _reserve(tenant, 500))
    assert (refused.scope, refused.retry_after) == ("tenant.tokens_per_day", 12 * 3600)  # noon to midnight

    settled = metering.settle(_settle(tenant, first.reservation_id, 150, 50))
    assert (settled.estimate_tokens, settled.total_tokens, settled.duplicate) == (600, 200, False)
    metering.reserve(_reserve(tenant, 800))  # 200 used + 800 fits exactly
    assert _refusal(metering, _reserve(tenant, 1)).scope == "tenant.tokens_per_day"


def test_settling_more_than_the_estimate_charges_the_excess(metering: Metering) -> None:
    tenant = _tenant(tokens_per_month=1000)
    small = metering.reserve(_reserve(tenant, 100))

    metering.settle(_settle(tenant, small.reservation_id, 700, 200))

    assert _refusal(metering, _reserve(tenant, 101)).scope == "tenant.tokens_per_month"
    metering.reserve(_reserve(tenant, 100))


def test_the_next_day_has_a_fresh_budget(metering: Metering, clock: Clock) -> None:
    tenant = _tenant(tokens_per_day=100, tokens_per_month=150)
    yesterday = metering.reserve(_reserve(tenant, 100))
    metering.settle(_settle(tenant, yesterday.reservation_id, 100))
    clock.advance(12 * 3600)

    metering.reserve(_reserve(tenant, 50))

    refused = _refusal(metering, _reserve(tenant, 1))
    assert refused.scope == "tenant.tokens_per_month"
    assert refused.retry_after == (datetime(2030, 7, 1, tzinfo=UTC).timestamp() - clock.now)


def test_an_unsettled_reservation_expires_and_its_tokens_return(
    db_pool: ConnectionPool, redis_key_prefix: str, clock: Clock
) -> None:
    metering = _metering(redis_key_prefix, clock, reservation_ttl_s=60)
    tenant = _tenant(tokens_per_day=1000)
    lost = metering.reserve(_reserve(tenant, 800))
    assert lost.expires_at == lost.reserved_at.replace(minute=1)
    assert _refusal(metering, _reserve(tenant, 800)).scope == "tenant.tokens_per_day"

    clock.advance(61)
    metering.reserve(_reserve(tenant, 800))

    # A late settlement still charges what was used (the estimate was already given back).
    late = metering.settle(_settle(tenant, lost.reservation_id, 100))
    assert (late.total_tokens, late.duplicate) == (100, False)
    assert _refusal(metering, _reserve(tenant, 101)).scope == "tenant.tokens_per_day"
    metering.reserve(_reserve(tenant, 100))


def test_a_request_id_makes_reserve_idempotent(metering: Metering) -> None:
    tenant = _tenant(qps=1, burst=2, tokens_per_day=100)
    first = metering.reserve(_reserve(tenant, 60, request_id="exec-1:CallModel"))

    again = metering.reserve(_reserve(tenant, 60, request_id="exec-1:CallModel"))

    assert (again.reservation_id, again.reserved_at, again.replayed) == (
        first.reservation_id,
        first.reserved_at,
        True,
    )
    metering.reserve(_reserve(tenant, 40))  # the retry spent no QPS and no tokens
    assert _refusal(metering, _reserve(tenant, 0)).scope == "tenant.qps"


# Settlement and the ledger


def test_settling_twice_charges_once_in_redis_and_in_the_ledger(metering: Metering, clock: Clock) -> None:
    tenant = _tenant(tokens_per_day=1000)
    reservation = metering.reserve(_reserve(tenant, 500))
    clock.advance(2)
    first = metering.settle(_settle(tenant, reservation.reservation_id, 300, 100, model="tiny"))

    again = metering.settle(_settle(tenant, reservation.reservation_id, 300, 100, model="tiny"))

    assert again.duplicate and again.model_dump(exclude={"duplicate"}) == first.model_dump(
        exclude={"duplicate"}
    )
    assert _ledger(tenant) == [
        (reservation.reservation_id, "model_gateway", 500, 300, 100, reservation.reserved_at)
    ]
    metering.reserve(_reserve(tenant, 600))  # 400 charged, not 800
    assert _refusal(metering, _reserve(tenant, 1)).scope == "tenant.tokens_per_day"


def test_after_redis_forgets_a_settlement_the_ledger_answers(
    metering: Metering, redis_client: redis.Redis, redis_key_prefix: str
) -> None:
    tenant = _tenant()
    reservation = metering.reserve(_reserve(tenant, 10))
    first = metering.settle(_settle(tenant, reservation.reservation_id, 7))
    redis_client.delete(f"{redis_key_prefix}meter:{{{tenant}}}:res:{reservation.reservation_id}")

    again = metering.settle(_settle(tenant, reservation.reservation_id, 7))

    assert again.duplicate and again.model_dump(exclude={"duplicate"}) == first.model_dump(
        exclude={"duplicate"}
    )
    assert len(_ledger(tenant)) == 1


class FailingOnceLedger(UsageLedger):
    def __init__(self) -> None:
        super().__init__(get_pool())
        self.failed = False

    def record(self, settlement: Settlement, request: SettleRequest) -> bool:
        if not self.failed:
            self.failed = True
            raise ServiceUnavailable("Postgres did not answer (simulated)")
        return super().record(settlement, request)


def test_a_retry_after_the_ledger_failed_records_what_redis_settled(
    db_pool: ConnectionPool, redis_key_prefix: str, clock: Clock
) -> None:
    metering = Metering(
        RedisQuotaStore(get_redis(), key_prefix=redis_key_prefix), FailingOnceLedger(), clock=clock
    )
    tenant = _tenant(tokens_per_day=100)
    reservation = metering.reserve(_reserve(tenant, 50))
    with pytest.raises(ServiceUnavailable):
        metering.settle(_settle(tenant, reservation.reservation_id, 30))

    retried = metering.settle(_settle(tenant, reservation.reservation_id, 30))

    assert retried.duplicate and retried.total_tokens == 30
    assert [row[3] for row in _ledger(tenant)] == [30]
    metering.reserve(_reserve(tenant, 70))  # charged 30 once


def test_settling_with_an_unknown_run_is_refused_and_a_fixed_retry_records_once(metering: Metering) -> None:
    tenant = _tenant()
    reservation = metering.reserve(_reserve(tenant, 10))

    with pytest.raises(InvalidInput, match="run_id/step_id"):
        metering.settle(_settle(tenant, reservation.reservation_id, 5, run_id=uuid.uuid4()))
    fixed = metering.settle(_settle(tenant, reservation.reservation_id, 5))

    assert fixed.duplicate and fixed.total_tokens == 5
    assert len(_ledger(tenant)) == 1


def test_bad_references_are_named(metering: Metering) -> None:
    tenant = _tenant()
    suspended = f"t-{uuid.uuid4().hex[:10]}"
    create_tenant(suspended, status="suspended")

    with pytest.raises(UnknownTenant, match="tenant_id: no tenant 'no-such-tenant'"):
        metering.reserve(_reserve("no-such-tenant", 1))
    with pytest.raises(UnknownTenant):
        metering.settle(_settle("no-such-tenant", "r-1", 1))
    with pytest.raises(TenantSuspended, match="is suspended"):
        metering.reserve(_reserve(suspended, 1))
    with pytest.raises(UnknownReservation, match="reservation_id: tenant .* has no reservation 'never-made'"):
        metering.settle(_settle(tenant, "never-made", 1))
    other = metering.reserve(_reserve(tenant, 1))
    with pytest.raises(UnknownReservation):  # a reservation belongs to its tenant only
        metering.settle(_settle(_tenant(), other.reservation_id, 1))


def test_usage_is_reported_per_day_or_month_and_capability(metering: Metering, clock: Clock) -> None:
    tenant = _tenant()

    def use(capability: str, tokens: int) -> None:
        reservation = metering.reserve(_reserve(tenant, tokens, capability))
        metering.settle(_settle(tenant, reservation.reservation_id, tokens, 1))

    use("model_gateway", 10)  # 2030-06-15
    clock.advance(86_400)
    use("model_gateway", 100)  # 2030-06-16
    use("tool_gateway", 2)
    clock.now = datetime(2030, 7, 1, 8, tzinfo=UTC).timestamp()
    use("model_gateway", 7)

    def rows(**query: Any) -> list[tuple[date, str, int, int]]:
        report = metering.usage(UsageQuery(tenant_id=tenant, **query))
        return [(r.period_start, r.capability, r.total_tokens, r.settlements) for r in report.rows]

    june, july = date(2030, 6, 1), date(2030, 7, 1)
    assert rows(since=date(2030, 6, 15), until=july) == [
        (date(2030, 6, 15), "model_gateway", 11, 1),
        (date(2030, 6, 16), "model_gateway", 101, 1),
        (date(2030, 6, 16), "tool_gateway", 3, 1),
        (july, "model_gateway", 8, 1),
    ]
    assert rows(period="month", since=june, until=july) == [
        (june, "model_gateway", 112, 2),
        (june, "tool_gateway", 3, 1),
        (july, "model_gateway", 8, 1),
    ]
    assert rows(period="month", since=june, until=july, capability="tool_gateway") == [
        (june, "tool_gateway", 3, 1)
    ]
    this_month = metering.usage(UsageQuery(tenant_id=tenant, period="month"))
    assert (this_month.since, this_month.until, this_month.total_tokens) == (july, july, 8)
    with pytest.raises(UnknownTenant):
        metering.usage(UsageQuery(tenant_id="no-such-tenant"))


# Pipelining


def test_reserve_many_decides_a_batch_in_order(metering: Metering) -> None:
    tenant = _tenant(qps=1, burst=3, tokens_per_day=100, capabilities={"tool_gateway": {"tokens_per_day": 5}})
    requests = [
        _reserve(tenant, 40, request_id="first"),
        _reserve(tenant, 6, "tool_gateway"),
        _reserve(tenant, 40),
        _reserve(tenant, 40),
        _reserve(tenant, 40, request_id="first"),
    ]

    results = metering.reserve_many(requests)

    assert [r.scope if isinstance(r, QuotaExceeded) else r.replayed for r in results] == [
        False,
        "capability.tokens_per_day",
        False,
        "tenant.tokens_per_day",
        True,
    ]
    metering.reserve(_reserve(tenant, 0))  # two admissions spent two of the burst of three
    assert _refusal(metering, _reserve(tenant, 0)).scope == "tenant.qps"


def test_a_pipeline_loads_the_script_when_redis_lacks_it(
    db_pool: ConnectionPool, redis_key_prefix: str, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A script text Redis has never seen: its EVALSHAs answer NOSCRIPT until it is loaded.
    monkeypatch.setattr(redis_store, "RESERVE_LUA", f"{redis_store.RESERVE_LUA}-- {uuid.uuid4()}\n")
    metering = _metering(redis_key_prefix, clock)
    tenant = _tenant(qps=1, burst=2)
    # Two capabilities: two script runs, sent as one pipeline.
    requests = [_reserve(tenant, 1, capability) for capability in ("model_gateway", "tool_gateway") * 2]

    results = metering.reserve_many(requests)

    # Each capability's run is decided in one go: model_gateway's two spend the burst.
    names = [type(r).__name__ for r in results]
    assert names == ["Reservation", "QuotaExceeded", "Reservation", "QuotaExceeded"]


# Concurrency: threads in this process and in spawned ones, on one bucket and one budget


def _hammer_reserve(
    prefix: str, bucket_tenant: str, budget_tenant: str, attempts: int, start: Any
) -> list[list[str]]:
    """Each thread reserves `attempts` times per tenant (one by one, or in pipelined batches)."""
    metering = _metering(prefix, lambda: NOON)
    metering.reserve(_reserve(budget_tenant, 0, request_id="warm-up"))  # tenants cached, script loaded

    def thread(index: int) -> tuple[list[str], list[str]]:
        admitted: tuple[list[str], list[str]] = ([], [])
        for _ in range(0, attempts, 10):
            for ids, tenant, estimate in ((admitted[0], bucket_tenant, 0), (admitted[1], budget_tenant, 7)):
                batch = [_reserve(tenant, estimate) for _ in range(10)]
                if index % 2:
                    results: Sequence[Reservation | QuotaExceeded] = metering.reserve_many(batch)
                else:
                    results = [_reserve_or_refusal(metering, request) for request in batch]
                ids += [r.reservation_id for r in results if isinstance(r, Reservation)]
        return admitted

    start.wait()
    with ThreadPoolExecutor(THREADS) as pool:
        per_thread = list(pool.map(thread, range(THREADS)))
    return [sum((t[0] for t in per_thread), []), sum((t[1] for t in per_thread), [])]


def _reserve_or_refusal(metering: Metering, request: ReserveRequest) -> Reservation | QuotaExceeded:
    try:
        return metering.reserve(request)
    except QuotaExceeded as refused:
        return refused


def _actual_usage(reservation_id: str) -> tuple[int, int]:
    """The same made-up usage for a reservation in every process."""
    return int(reservation_id[:4], 16) % 6, int(reservation_id[4:8], 16) % 3


def _hammer_settle(
    prefix: str, tenant: str, reservation_ids: list[str], start: Any
) -> list[tuple[str, bool]]:
    """Every process settles every reservation once (its threads share them), in its own order."""
    metering = _metering(prefix, lambda: NOON)
    mine = random.sample(reservation_ids, len(reservation_ids))
    start.wait()

    def thread(index: int) -> list[tuple[str, bool]]:
        return [
            (rid, metering.settle(_settle(tenant, rid, *_actual_usage(rid))).duplicate)
            for rid in mine[index::THREADS]
        ]

    with ThreadPoolExecutor(THREADS) as pool:
        return sum(pool.map(thread, range(THREADS)), [])


def test_concurrent_processes_never_admit_beyond_the_bucket_or_the_budget(
    db_pool: ConnectionPool, redis_key_prefix: str, clock: Clock
) -> None:
    # The clock stands still, so the bucket never refills: exactly `burst` requests pass.
    bucket_tenant = _tenant(qps=0.001, burst=200)
    budget_tenant = _tenant(qps=1_000_000, burst=1_000_000, tokens_per_day=5_000)
    attempts = 50  # per thread and tenant: 3 processes x 8 threads x 50 = 1200 each

    reserved = run_everywhere(_hammer_reserve, redis_key_prefix, bucket_tenant, budget_tenant, attempts)

    bucket_ids = [rid for bucket, _budget in reserved for rid in bucket]
    budget_ids = [rid for _bucket, budget in reserved for rid in budget]
    assert len(bucket_ids) == len(set(bucket_ids)) == 200
    assert len(budget_ids) == len(set(budget_ids)) == 5_000 // 7

    settled = run_everywhere(_hammer_settle, redis_key_prefix, budget_tenant, budget_ids)

    first_settlements = [rid for per_process in settled for rid, duplicate in per_process if not duplicate]
    assert sorted(first_settlements) == sorted(budget_ids)  # each settled once, the rest were duplicates
    expected = sum(sum(_actual_usage(rid)) for rid in budget_ids)
    ledger = _ledger(budget_tenant)
    assert sorted(row[0] for row in ledger) == sorted(budget_ids)
    assert sum(row[3] + row[4] for row in ledger) == expected
    # Redis agrees: exactly the settled usage is charged, so exactly the rest can be reserved.
    metering = _metering(redis_key_prefix, clock)
    metering.reserve(_reserve(budget_tenant, 5_000 - expected))
    assert _refusal(metering, _reserve(budget_tenant, 1)).scope == "tenant.tokens_per_day"
