"""The metering service: reserve before a call, settle after it, and report usage.

Settling writes Redis first (atomically, once) and the ledger second; a retry after a failure
in between finds the reservation settled in Redis and writes the ledger row from what Redis
recorded, so the two agree. After Redis forgets a settled reservation, the ledger answers.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence

from pydantic import BaseModel

from aob.cache import get_redis
from aob.db import get_pool
from aob.errors import QuotaExceeded, TenantSuspended, UnknownReservation
from aob.metering import redis_store
from aob.metering.ledger import UsageLedger
from aob.metering.models import (
    Period,
    Reservation,
    ReserveRequest,
    Settlement,
    SettleRequest,
    UsageQuery,
    UsageReport,
    periods_at,
    utc,
)
from aob.metering.ports import Admitted, Limit, QuotaStore, ReserveCall, SettleCall
from aob.tenants import Quota, Tenant, get_tenant

DEFAULT_RESERVATION_TTL_S = 900.0  # a Lambda's longest run: a call settles well within it


def _limits(quota: Quota, capability: str | None, day: Period, month: Period) -> list[Limit]:
    scope = "capability" if capability else "tenant"
    limits: list[Limit] = []
    if quota.qps is not None and quota.bucket_size is not None:
        limits.append(Limit(f"{scope}.qps", capability, "bucket", rate=quota.qps, size=quota.bucket_size))
    for period, size in ((day, quota.tokens_per_day), (month, quota.tokens_per_month)):
        if size is not None:
            limits.append(
                Limit(f"{scope}.tokens_per_{period.kind}", capability, "budget", size=size, period=period)
            )
    return limits


class Metering:
    def __init__(
        self,
        store: QuotaStore,
        ledger: UsageLedger,
        *,
        tenants: Callable[[str], Tenant] = get_tenant,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        reservation_ttl_s: float = DEFAULT_RESERVATION_TTL_S,
    ) -> None:
        self._store = store
        self._ledger = ledger
        self._tenants = tenants
        self._clock = clock
        self._new_id = new_id
        self._ttl_ms = int(reservation_ttl_s * 1000)

    def _active(self, tenant_id: str) -> Tenant:
        tenant = self._tenants(tenant_id)
        if tenant.status != "active":
            raise TenantSuspended(f"tenant {tenant_id} is {tenant.status}: no new work is metered for it")
        return tenant

    def reserve(self, request: ReserveRequest) -> Reservation:
        """Admit one call or raise QuotaExceeded (with retry_after and scope)."""
        result = self.reserve_many([request])[0]
        if isinstance(result, QuotaExceeded):
            raise result
        return result

    def reserve_many(self, requests: Sequence[ReserveRequest]) -> list[Reservation | QuotaExceeded]:
        """Decide many calls in one Redis round trip; a refusal is returned, not raised."""
        now = self._clock()
        now_ms = int(now * 1000)
        day, month = periods_at(now)
        limits_of: dict[tuple[str, str], list[Limit]] = {}
        calls: list[ReserveCall] = []
        for request in requests:
            scope = (request.tenant_id, request.capability)
            if scope not in limits_of:
                tenant = self._active(request.tenant_id)
                capability_quota = tenant.quota_for(request.capability)
                limits_of[scope] = _limits(tenant.quotas, None, day, month) + (
                    _limits(capability_quota, request.capability, day, month) if capability_quota else []
                )
            calls.append(
                ReserveCall(
                    tenant_id=request.tenant_id,
                    capability=request.capability,
                    reservation_id=request.request_id or self._new_id(),
                    estimate_tokens=request.estimate_tokens,
                    now_ms=now_ms,
                    expires_ms=now_ms + self._ttl_ms,
                    limits=limits_of[scope],
                )
            )
        return [
            self._reservation(call, outcome)
            if isinstance(outcome, Admitted)
            else self._refusal(call, outcome.limit, outcome.retry_after_ms / 1000)
            for call, outcome in zip(calls, self._store.reserve_many(calls), strict=True)
        ]

    @staticmethod
    def _reservation(call: ReserveCall, admitted: Admitted) -> Reservation:
        return Reservation(
            tenant_id=call.tenant_id,
            capability=admitted.capability,
            reservation_id=admitted.reservation_id,
            estimate_tokens=admitted.estimate_tokens,
            reserved_at=utc(admitted.reserved_ms),
            expires_at=utc(admitted.expires_ms),
            replayed=admitted.replayed,
        )

    @staticmethod
    def _refusal(call: ReserveCall, limit: Limit, retry_after: float) -> QuotaExceeded:
        what = f"tenant {call.tenant_id}" + (f", capability {limit.capability}" if limit.capability else "")
        if limit.kind == "bucket":
            detail = f"more than {limit.rate:g} requests/s (burst {limit.size})"
        else:
            assert limit.period is not None
            budget = f"{limit.size} tokens per {limit.period.kind}"
            detail = f"{call.estimate_tokens} more tokens would exceed the budget of {budget}"
        return QuotaExceeded(
            f"{limit.scope} quota exceeded for {what}: {detail}; retry after {retry_after:.3f} s",
            retry_after=retry_after,
            scope=limit.scope,
        )

    def settle(self, request: SettleRequest) -> Settlement:
        """Charge actual usage (refunding or adding to the estimate) and append it to the ledger, once."""
        self._tenants(request.tenant_id)
        call = SettleCall(
            tenant_id=request.tenant_id,
            reservation_id=request.reservation_id,
            input_tokens=request.input_tokens,
            output_tokens=request.output_tokens,
            now_ms=int(self._clock() * 1000),
        )
        settled = self._store.settle(call)
        if settled is None:
            recorded = self._ledger.find(request.tenant_id, request.reservation_id)
            if recorded is None:
                raise UnknownReservation(
                    f"reservation_id: tenant {request.tenant_id} has no reservation "
                    f"{request.reservation_id!r} (never made, or expired and forgotten); reserve first"
                )
            return recorded
        settlement = Settlement(
            tenant_id=request.tenant_id,
            capability=settled.capability,
            reservation_id=request.reservation_id,
            estimate_tokens=settled.estimate_tokens,
            input_tokens=settled.input_tokens,
            output_tokens=settled.output_tokens,
            reserved_at=utc(settled.reserved_ms),
            settled_at=utc(settled.settled_ms),
            duplicate=settled.duplicate,
        )
        # A duplicate still writes: the first attempt may have failed before its ledger row.
        self._ledger.record(settlement, request)
        return settlement

    def usage(self, query: UsageQuery) -> UsageReport:
        """Settled tokens per period and capability, from the ledger."""
        self._tenants(query.tenant_id)
        until = query.until or utc(int(self._clock() * 1000)).date()
        since = query.since or (until if query.period == "day" else until.replace(day=1))
        rows = self._ledger.usage(query.tenant_id, query.period, since, until, query.capability)
        return UsageReport(
            tenant_id=query.tenant_id,
            period=query.period,
            since=since,
            until=until,
            rows=rows,
            total_tokens=sum(row.total_tokens for row in rows),
        )

    def handle(self, request: ReserveRequest | SettleRequest | UsageQuery) -> BaseModel:
        """Run one event of the metering function (a MeteringRequest's root)."""
        match request:
            case ReserveRequest() as reserve:
                return self.reserve(reserve)
            case SettleRequest() as settle:
                return self.settle(settle)
            case UsageQuery() as query:
                return self.usage(query)


def get_metering() -> Metering:
    """The service on the container's Redis client and Postgres pool."""
    store = redis_store.RedisQuotaStore(get_redis(), key_prefix=redis_store.KEY_PREFIX)
    return Metering(store, UsageLedger(get_pool()))
