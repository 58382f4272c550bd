"""Metering: per-tenant (and per-capability) QPS buckets and daily/monthly token budgets.

Reserve an estimate before a model or tool call, settle the actual usage after it; each
decision is one Redis round trip, and every settlement lands once in the Postgres usage ledger.
"""

from __future__ import annotations

from aob.metering.ledger import UsageLedger
from aob.metering.models import (
    MeteringRequest,
    Reservation,
    ReserveRequest,
    Settlement,
    SettleRequest,
    UsageQuery,
    UsageReport,
    UsageRow,
)
from aob.metering.ports import QuotaStore
from aob.metering.redis_store import RedisQuotaStore
from aob.metering.service import Metering, get_metering

__all__ = [
    "Metering",
    "MeteringRequest",
    "QuotaStore",
    "RedisQuotaStore",
    "Reservation",
    "ReserveRequest",
    "SettleRequest",
    "Settlement",
    "UsageLedger",
    "UsageQuery",
    "UsageReport",
    "UsageRow",
    "get_metering",
]
