"""Tenants and their quotas: a plan's defaults, overridden per tenant and per capability.

Overrides live in `tenants.settings->'quotas'`:

    {"qps": 20, "tokens_per_day": 500000,
     "capabilities": {"tool_gateway": {"qps": 2}, "model_gateway": {"tokens_per_month": 10000000}}}

Tenant-wide fields replace the plan's (an explicit null lifts that limit). A capability's
fields add a second, narrower limit for that capability; fields it omits are not limited at
that scope (the tenant-wide limits still apply). `get_tenant` caches each tenant for a short
time per container, so quota changes take up to `CACHE_TTL_S` to reach running functions.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Annotated, Any, Literal

from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aob.db import get_pool
from aob.errors import ConfigurationError, InvalidInput, UnknownTenant
from aob.handlers import parse_event

TenantId = Annotated[
    str,
    Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", description="tenant slug, e.g. acme (a-z, 0-9, _ and -)"),
]
Capability = Annotated[
    str,
    Field(pattern=r"^[a-z][a-z0-9_]{0,62}$", description="what is metered, e.g. model_gateway"),
]
Plan = Literal["free", "pro", "enterprise"]

CACHE_TTL_S = 30.0
cache_clock = time.monotonic  # replaced by tests to age the cache

_SELECT = "SELECT tenant_id, name, plan, status, settings->'quotas' FROM tenants WHERE tenant_id = %s"
_INSERT = """
INSERT INTO tenants (tenant_id, name, plan, status, settings) VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (tenant_id) DO NOTHING
"""


class Quota(BaseModel):
    """Limits at one scope; None means not limited at this scope."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    qps: float | None = Field(default=None, gt=0, description="sustained requests per second")
    burst: int | None = Field(default=None, ge=1, description="bucket size; default twice qps")
    tokens_per_day: int | None = Field(default=None, ge=0, description="tokens per UTC day")
    tokens_per_month: int | None = Field(default=None, ge=0, description="tokens per UTC month")

    @property
    def bucket_size(self) -> int | None:
        if self.qps is None:
            return None
        return self.burst if self.burst is not None else max(1, math.ceil(2 * self.qps))


class QuotaOverrides(Quota):
    """The `quotas` document of tenants.settings."""

    capabilities: dict[Capability, Quota] = Field(default_factory=dict)


PLAN_QUOTAS: dict[str, Quota] = {
    "free": Quota(qps=5, tokens_per_day=100_000, tokens_per_month=2_000_000),
    "pro": Quota(qps=50, tokens_per_day=5_000_000, tokens_per_month=100_000_000),
    "enterprise": Quota(qps=500, tokens_per_day=100_000_000, tokens_per_month=2_000_000_000),
}


class Tenant(BaseModel):
    model_config = ConfigDict(frozen=True)

    tenant_id: TenantId
    name: str
    plan: Plan
    status: Literal["active", "suspended"]
    quotas: Quota = Field(description="tenant-wide limits: the plan's, with the tenant's overrides")
    capability_quotas: dict[Capability, Quota] = Field(default_factory=dict)

    def quota_for(self, capability: str) -> Quota | None:
        """The capability's own limits, if the tenant sets any."""
        return self.capability_quotas.get(capability)


class NewTenant(BaseModel):
    """What `create_tenant` needs; validated so a bad value names its field."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: TenantId
    name: str = Field(min_length=1, max_length=200)
    plan: Plan = "free"
    status: Literal["active", "suspended"] = "active"
    quotas: QuotaOverrides = Field(default_factory=QuotaOverrides)


def resolve_quotas(plan: str, overrides: QuotaOverrides) -> tuple[Quota, dict[str, Quota]]:
    """The plan's tenant-wide quota with the overrides applied, and the per-capability quotas."""
    changed = overrides.model_dump(exclude_unset=True, exclude={"capabilities"})
    return PLAN_QUOTAS[plan].model_copy(update=changed), dict(overrides.capabilities)


def _tenant(tenant_id: str, name: str, plan: str, status: str, raw_quotas: Any) -> Tenant:
    try:
        overrides = QuotaOverrides.model_validate(raw_quotas or {})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<quotas>'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigurationError(f"tenant {tenant_id} has invalid settings.quotas: {problems}") from exc
    quotas, per_capability = resolve_quotas(plan, overrides)
    return Tenant.model_validate(
        {
            "tenant_id": tenant_id,
            "name": name,
            "plan": plan,
            "status": status,
            "quotas": quotas,
            "capability_quotas": per_capability,
        }
    )


_cache: dict[str, tuple[float, Tenant]] = {}
_cache_lock = threading.Lock()


def clear_tenant_cache() -> None:
    with _cache_lock:
        _cache.clear()


def get_tenant(tenant_id: str) -> Tenant:
    """The tenant with its resolved quotas; raises UnknownTenant if there is none."""
    now = cache_clock()
    cached = _cache.get(tenant_id)
    if cached is not None and cached[0] > now:
        return cached[1]
    with get_pool().connection() as conn:
        row = conn.execute(_SELECT, (tenant_id,)).fetchone()
    if row is None:
        raise UnknownTenant(f"tenant_id: no tenant {tenant_id!r}; check the id or create the tenant first")
    tenant = _tenant(*row)
    with _cache_lock:
        _cache[tenant_id] = (now + CACHE_TTL_S, tenant)
    return tenant


def create_tenant(
    tenant_id: str,
    name: str | None = None,
    *,
    plan: str = "free",
    status: str = "active",
    quotas: dict[str, Any] | None = None,
) -> Tenant:
    """Create a tenant (for tests and admin tools); InvalidInput if the id is taken or a value is bad."""
    new = parse_event(
        NewTenant,
        {"tenant_id": tenant_id, "name": name or tenant_id, "plan": plan, "status": status}
        | ({"quotas": quotas} if quotas is not None else {}),
    )
    settings = {"quotas": new.quotas.model_dump(exclude_unset=True)}
    with get_pool().connection() as conn:
        created = conn.execute(
            _INSERT, (new.tenant_id, new.name, new.plan, new.status, Jsonb(settings))
        ).rowcount
    if not created:
        raise InvalidInput(f"tenant_id: tenant {tenant_id!r} already exists")
    with _cache_lock:
        _cache.pop(new.tenant_id, None)
    return _tenant(new.tenant_id, new.name, new.plan, new.status, settings["quotas"])
