"""Tenants and their quotas, read from the real Postgres."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from aob import tenants
from aob.errors import ConfigurationError, InvalidInput, UnknownTenant
from aob.tenants import clear_tenant_cache, create_tenant, get_tenant
from psycopg import errors
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def fresh_cache(db_pool: ConnectionPool) -> Iterator[None]:
    clear_tenant_cache()
    yield
    clear_tenant_cache()


def _new_id() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def test_a_new_tenant_gets_its_plans_quotas() -> None:
    tenant_id = _new_id()
    created = create_tenant(tenant_id, "Acme Corp")

    tenant = get_tenant(tenant_id)

    assert tenant == created
    assert (tenant.name, tenant.plan, tenant.status) == ("Acme Corp", "free", "active")
    quotas = tenant.quotas
    assert (quotas.qps, quotas.bucket_size, quotas.tokens_per_day, quotas.tokens_per_month) == (
        5,
        10,
        100_000,
        2_000_000,
    )
    assert tenant.quota_for("model_gateway") is None


def test_overrides_are_stored_per_tenant_and_per_capability() -> None:
    tenant_id = _new_id()
    create_tenant(
        tenant_id,
        plan="pro",
        quotas={"tokens_per_day": 1234, "capabilities": {"tool_gateway": {"qps": 1, "burst": 1}}},
    )

    tenant = get_tenant(tenant_id)

    assert (tenant.plan, tenant.quotas.qps, tenant.quotas.tokens_per_day) == ("pro", 50, 1234)
    tool = tenant.quota_for("tool_gateway")
    assert tool is not None and (tool.qps, tool.bucket_size, tool.tokens_per_day) == (1, 1, None)


def test_an_unknown_tenant_is_named() -> None:
    with pytest.raises(UnknownTenant, match="tenant_id: no tenant 'nobody-here'") as caught:
        get_tenant("nobody-here")

    assert isinstance(caught.value, InvalidInput)  # a Catch on InvalidInput covers it


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"tenant_id": "Bad Id"}, "tenant_id: String should match pattern"),
        ({"plan": "platinum"}, "plan: Input should be 'free', 'pro' or 'enterprise'"),
        ({"quotas": {"qps": -1}}, "quotas.qps: Input should be greater than 0"),
        (
            {"quotas": {"capabilities": {"tool_gateway": {"tokens_per_hour": 5}}}},
            "tokens_per_hour: Extra inputs",
        ),
    ],
)
def test_bad_tenant_values_name_the_field(kwargs: dict[str, object], problem: str) -> None:
    args = {"tenant_id": _new_id()} | kwargs

    with pytest.raises(InvalidInput, match="invalid NewTenant input") as caught:
        create_tenant(**args)  # type: ignore[arg-type]

    assert problem in str(caught.value)


def test_a_taken_tenant_id_is_refused() -> None:
    tenant_id = _new_id()
    create_tenant(tenant_id)

    with pytest.raises(InvalidInput, match="already exists"):
        create_tenant(tenant_id, plan="pro")
    assert get_tenant(tenant_id).plan == "free"


def test_the_table_refuses_an_unknown_plan(db_pool: ConnectionPool) -> None:
    with db_pool.connection() as conn, pytest.raises(errors.CheckViolation):
        conn.execute("INSERT INTO tenants (tenant_id, name, plan) VALUES (%s, 'x', 'gold')", (_new_id(),))


def test_tenants_are_cached_for_a_short_time(
    db_pool: ConnectionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant_id = _new_id()
    create_tenant(tenant_id)
    get_tenant(tenant_id)
    with db_pool.connection() as conn:
        conn.execute("UPDATE tenants SET plan = 'pro' WHERE tenant_id = %s", (tenant_id,))

    assert get_tenant(tenant_id).plan == "free"  # the container's copy
    later = time.monotonic() + tenants.CACHE_TTL_S + 1
    monkeypatch.setattr(tenants, "cache_clock", lambda: later)
    assert get_tenant(tenant_id).plan == "pro"


def test_broken_quota_settings_are_a_configuration_error(db_pool: ConnectionPool) -> None:
    tenant_id = _new_id()
    with db_pool.connection() as conn:
        conn.execute(
            "INSERT INTO tenants (tenant_id, name, settings) VALUES (%s, 'x', %s)",
            (tenant_id, Jsonb({"quotas": {"tokens_per_day": "lots"}})),
        )

    with pytest.raises(
        ConfigurationError, match=f"tenant {tenant_id} has invalid settings.quotas: tokens_per_day"
    ):
        get_tenant(tenant_id)
