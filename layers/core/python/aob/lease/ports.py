"""The port to the store of session leases (`LeaseStore`).

Each operation is atomic. Fencing tokens only grow per session, across expiries and releases.
Times are milliseconds since the epoch from the caller's clock.
"""

from __future__ import annotations

from typing import Protocol

from aob.lease.models import Lease


class LeaseStore(Protocol):
    def acquire(self, tenant_id: str, session_id: str, holder: str, *, now_ms: int, ttl_ms: int) -> Lease:
        """A new lease with a new fencing token, or the holder's own live lease extended.

        Raises LeaseHeld if another holder's lease is live.
        """
        ...

    def renew(
        self,
        tenant_id: str,
        session_id: str,
        holder: str,
        *,
        fencing_token: int | None,
        now_ms: int,
        ttl_ms: int,
    ) -> Lease:
        """Extend the holder's live lease; LeaseLost if it is not theirs (or not that token's)."""
        ...

    def release(
        self, tenant_id: str, session_id: str, holder: str, *, fencing_token: int | None, now_ms: int
    ) -> Lease:
        """End the holder's live lease; LeaseLost if it is not theirs (or not that token's)."""
        ...
