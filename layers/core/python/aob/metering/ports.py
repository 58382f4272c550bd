"""The port to the store of QPS buckets, token budgets and reservations (`QuotaStore`).

The service resolves a tenant's quotas into `Limit`s; the store decides each reservation
atomically (all limits pass and are charged, or nothing is) and settles each at most once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from aob.metering.models import Period


@dataclass(frozen=True, slots=True)
class Limit:
    """One bucket or budget to check: `scope` names it in QuotaExceeded."""

    scope: str  # tenant.qps, capability.tokens_per_day, ...
    capability: str | None  # None: the tenant-wide limit
    kind: Literal["bucket", "budget"]
    rate: float = 0.0  # bucket: requests per second
    size: int = 0  # bucket: burst; budget: tokens per period
    period: Period | None = None  # budget only


@dataclass(frozen=True, slots=True)
class ReserveCall:
    tenant_id: str
    capability: str
    reservation_id: str
    estimate_tokens: int
    now_ms: int
    expires_ms: int
    limits: Sequence[Limit]


@dataclass(frozen=True, slots=True)
class Admitted:
    reservation_id: str
    capability: str
    estimate_tokens: int
    reserved_ms: int
    expires_ms: int
    replayed: bool


@dataclass(frozen=True, slots=True)
class Refused:
    limit: Limit
    retry_after_ms: int


@dataclass(frozen=True, slots=True)
class SettleCall:
    tenant_id: str
    reservation_id: str
    input_tokens: int
    output_tokens: int
    now_ms: int


@dataclass(frozen=True, slots=True)
class Settled:
    capability: str
    estimate_tokens: int
    input_tokens: int
    output_tokens: int
    reserved_ms: int
    settled_ms: int
    duplicate: bool


class QuotaStore(Protocol):
    def reserve_many(self, calls: Sequence[ReserveCall]) -> list[Admitted | Refused]:
        """Decide each call, in order; an already admitted reservation_id comes back `replayed`."""
        ...

    def settle(self, call: SettleCall) -> Settled | None:
        """Charge or refund the difference once; None if the store has no such reservation."""
        ...
