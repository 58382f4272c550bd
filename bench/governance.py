"""Governance in-process against the real Redis and Postgres: policy, token bucket, lease, one step.

Baselines measured side by side in the same process: a Redis PING and a Postgres `SELECT 1`.
Last line: policy_p50_us=<> policy_cached_p50_us=<> bucket_decisions_per_s=<> lease_ops_per_s=<>
governance_step_p50_ms=<>  (governance step = lease acquire + policy check + reserve + settle)
"""

from __future__ import annotations

import json
import os
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from aob.cache import get_redis
from aob.db import close_pool, get_pool
from aob.lease import get_session_leases
from aob.lease.models import AcquireLease, ReleaseLease
from aob.metering import get_metering
from aob.metering.models import ReserveRequest, SettleRequest
from aob.policy import (
    PolicyBundleStore,
    PolicyInput,
    PolicyService,
    PostgresDecisionRecorder,
    policy_files,
    sign_bundle,
)
from aob.tenants import create_tenant, get_tenant
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = Path(__file__).resolve().parents[1]
N = int(os.environ.get("BENCH_N", "2000"))
BATCH = 1000


def p50_us(action: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1e6)
    return statistics.median(samples)


def policy_service(cache_size: int) -> PolicyService:
    key = Ed25519PrivateKey.generate()
    store = PolicyBundleStore({"bench": key.public_key()})
    store.load(sign_bundle(policy_files(ROOT / "policies"), key, "bench"))
    return PolicyService(store, PostgresDecisionRecorder(), get_tenant, cache_size=cache_size)


def main() -> None:
    tenant = f"bench-{uuid.uuid4().hex[:8]}"
    create_tenant(tenant, plan="enterprise", quotas={"qps": 1_000_000, "burst": 10_000_000})
    event = json.loads((ROOT / "tests" / "events" / "policy_allow.json").read_text())
    request = PolicyInput.model_validate({**event, "tenant_id": tenant})
    redis, pool = get_redis(), get_pool()

    def select_one() -> None:
        with pool.connection() as conn:
            conn.execute("SELECT 1").fetchone()

    redis_ping_us = p50_us(redis.ping, N)
    pg_select_us = p50_us(select_one, N // 4)

    uncached, cached = policy_service(cache_size=0), policy_service(cache_size=4096)
    policy_us = p50_us(lambda: uncached.decide(request), N)
    cached.decide(request)
    policy_cached_us = p50_us(lambda: cached.decide(request), N)

    metering = get_metering()
    batch = [ReserveRequest(tenant_id=tenant, capability="tool", estimate_tokens=0) for _ in range(BATCH)]
    metering.reserve_many(batch)  # warm the scripts
    started, decided = time.perf_counter(), 0
    while decided < 20 * BATCH:
        results = metering.reserve_many(batch)
        decided += len(results)
    bucket_per_s = decided / (time.perf_counter() - started)

    leases = get_session_leases()
    started, ops = time.perf_counter(), 0
    for i in range(N // 2):
        lease = leases.acquire(AcquireLease(tenant_id=tenant, session_id=f"s{i}", holder="bench", ttl_s=30))
        leases.release(
            ReleaseLease(
                tenant_id=tenant, session_id=f"s{i}", holder="bench", fencing_token=lease.fencing_token
            )
        )
        ops += 2
    lease_per_s = ops / (time.perf_counter() - started)

    def governance_step() -> None:
        session = uuid.uuid4().hex
        leases.acquire(AcquireLease(tenant_id=tenant, session_id=session, holder="bench", ttl_s=30))
        decision = uncached.check(request)
        assert decision.allow
        reservation = metering.reserve(
            ReserveRequest(tenant_id=tenant, capability="tool", estimate_tokens=100)
        )
        metering.settle(
            SettleRequest(
                tenant_id=tenant, reservation_id=reservation.reservation_id, input_tokens=40, output_tokens=50
            )
        )

    step_ms = p50_us(governance_step, N // 10) / 1000
    print(f"baselines: redis_ping_us={redis_ping_us:.0f} pg_select1_us={pg_select_us:.0f}")
    print(
        f"ratios: policy_vs_redis_ping={policy_us / redis_ping_us:.2f} "
        f"governance_step_vs_pg_select1={step_ms * 1000 / pg_select_us:.1f}"
    )
    print(
        f"policy_p50_us={policy_us:.0f} policy_cached_p50_us={policy_cached_us:.1f} "
        f"bucket_decisions_per_s={bucket_per_s:.0f} lease_ops_per_s={lease_per_s:.0f} "
        f"governance_step_p50_ms={step_ms:.2f}"
    )


if __name__ == "__main__":
    try:
        main()
    finally:
        close_pool()
