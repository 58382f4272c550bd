"""Metering's task inputs and outputs, and the UTC periods that token budgets cover."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, RootModel, model_validator

from aob.tenants import Capability, TenantId

MAX_TOKENS = 1_000_000_000  # per call; keeps Lua's double arithmetic exact

ReservationId = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9:_.-]{0,127}$",
        description="letters, digits and : _ . - (at most 128)",
    ),
]
Tokens = Annotated[int, Field(ge=0, le=MAX_TOKENS)]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReserveRequest(_Input):
    """Reserve an estimate of tokens (and one request of QPS) before a model or tool call."""

    action: Literal["reserve"] = "reserve"
    tenant_id: TenantId
    capability: Capability
    estimate_tokens: Tokens = Field(description="tokens the call is expected to use (>= 0)")
    request_id: ReservationId | None = Field(
        default=None,
        description="makes reserve idempotent: a retry with the same id returns the same reservation",
    )


class SettleRequest(_Input):
    """Report a reservation's actual usage: refunds or charges the difference, once."""

    action: Literal["settle"] = "settle"
    tenant_id: TenantId
    reservation_id: ReservationId
    input_tokens: Tokens
    output_tokens: Tokens
    run_id: uuid.UUID | None = None
    step_id: uuid.UUID | None = None
    model: str | None = Field(default=None, max_length=200)


class UsageQuery(_Input):
    """Settled usage of a tenant per day or month, optionally of one capability."""

    action: Literal["usage"] = "usage"
    tenant_id: TenantId
    period: Literal["day", "month"] = "day"
    capability: Capability | None = None
    since: date | None = Field(default=None, description="first day (UTC); default: start of the period")
    until: date | None = Field(default=None, description="last day (UTC), inclusive; default: today")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.since and self.until and self.since > self.until:
            raise ValueError(f"since ({self.since}) is after until ({self.until})")
        return self


class MeteringRequest(RootModel[ReserveRequest | SettleRequest | UsageQuery]):
    """The metering function's event: one of the above, chosen by `action`."""

    root: Annotated[ReserveRequest | SettleRequest | UsageQuery, Field(discriminator="action")]


class Reservation(BaseModel):
    tenant_id: str
    capability: str
    reservation_id: str
    estimate_tokens: int
    reserved_at: datetime
    expires_at: datetime = Field(description="unsettled by then, the estimate returns to the budget")
    replayed: bool = Field(default=False, description="an earlier reserve with this request_id made it")


class Settlement(BaseModel):
    tenant_id: str
    capability: str
    reservation_id: str
    estimate_tokens: int
    input_tokens: int
    output_tokens: int
    reserved_at: datetime
    settled_at: datetime
    duplicate: bool = Field(default=False, description="settled before; nothing was charged again")

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class UsageRow(BaseModel):
    period_start: date
    capability: str
    input_tokens: int
    output_tokens: int
    total_tokens: int
    settlements: int


class UsageReport(BaseModel):
    tenant_id: str
    period: Literal["day", "month"]
    since: date
    until: date
    rows: list[UsageRow]
    total_tokens: int


@dataclass(frozen=True, slots=True)
class Period:
    """A UTC day or month that a token budget covers."""

    kind: Literal["day", "month"]
    label: str  # 2025-01-31 or 2025-01: part of the Redis key
    end_ms: int  # when the next period starts


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def periods_at(now: float) -> tuple[Period, Period]:
    """The day and the month (UTC) containing `now` (seconds since the epoch)."""
    moment = datetime.fromtimestamp(now, UTC)
    day_start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    month_start = day_start.replace(day=1)
    next_month = month_start.replace(
        year=month_start.year + month_start.month // 12, month=month_start.month % 12 + 1
    )
    return (
        Period("day", day_start.strftime("%Y-%m-%d"), _ms(day_start) + 86_400_000),
        Period("month", month_start.strftime("%Y-%m"), _ms(next_month)),
    )


def utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
