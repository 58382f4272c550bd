"""Session leases: one holder per session at a time, with fencing tokens that only grow.

`aob.lease.fencing.check_fencing_token` is the Postgres side: a writer calls it in its own
transaction so a holder whose lease was lost cannot commit after its successor.
"""

from __future__ import annotations

from aob.lease.fencing import check_fencing_token
from aob.lease.models import AcquireLease, Lease, LeaseRequest, ReleaseLease, RenewLease
from aob.lease.ports import LeaseStore
from aob.lease.redis_store import RedisLeaseStore
from aob.lease.service import SessionLeases, get_session_leases

__all__ = [
    "AcquireLease",
    "Lease",
    "LeaseRequest",
    "LeaseStore",
    "RedisLeaseStore",
    "ReleaseLease",
    "RenewLease",
    "SessionLeases",
    "check_fencing_token",
    "get_session_leases",
]
