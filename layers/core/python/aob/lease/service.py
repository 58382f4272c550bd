"""The session-lease service: one holder per session at a time, each lease with a fencing token."""

from __future__ import annotations

import time
from collections.abc import Callable

from aob.cache import get_redis
from aob.errors import TenantSuspended
from aob.lease import redis_store
from aob.lease.models import AcquireLease, Lease, ReleaseLease, RenewLease
from aob.lease.ports import LeaseStore
from aob.tenants import Tenant, get_tenant


class SessionLeases:
    def __init__(
        self,
        store: LeaseStore,
        *,
        tenants: Callable[[str], Tenant] = get_tenant,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._tenants = tenants
        self._clock = clock

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def acquire(self, request: AcquireLease) -> Lease:
        """The lease, or LeaseHeld while another holder's is live; a suspended tenant gets none."""
        tenant = self._tenants(request.tenant_id)
        if tenant.status != "active":
            raise TenantSuspended(f"tenant {tenant.tenant_id} is {tenant.status}: no new session leases")
        return self._store.acquire(
            request.tenant_id,
            request.session_id,
            request.holder,
            now_ms=self._now_ms(),
            ttl_ms=int(request.ttl_s * 1000),
        )

    def renew(self, request: RenewLease) -> Lease:
        """Extend the holder's lease, or LeaseLost."""
        self._tenants(request.tenant_id)
        return self._store.renew(
            request.tenant_id,
            request.session_id,
            request.holder,
            fencing_token=request.fencing_token,
            now_ms=self._now_ms(),
            ttl_ms=int(request.ttl_s * 1000),
        )

    def release(self, request: ReleaseLease) -> Lease:
        """End the holder's lease (the next acquire gets a higher token), or LeaseLost."""
        self._tenants(request.tenant_id)
        return self._store.release(
            request.tenant_id,
            request.session_id,
            request.holder,
            fencing_token=request.fencing_token,
            now_ms=self._now_ms(),
        )

    def handle(self, request: AcquireLease | RenewLease | ReleaseLease) -> Lease:
        """Run one event of the session-lease function (a LeaseRequest's root)."""
        match request:
            case AcquireLease() as acquire:
                return self.acquire(acquire)
            case RenewLease() as renew:
                return self.renew(renew)
            case ReleaseLease() as release:
                return self.release(release)


def get_session_leases() -> SessionLeases:
    """The service on the container's Redis client."""
    return SessionLeases(redis_store.RedisLeaseStore(get_redis(), key_prefix=redis_store.KEY_PREFIX))
