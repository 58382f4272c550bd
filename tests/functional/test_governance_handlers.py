"""The metering and session-lease handlers fed with tests/events/*.json, on the real Postgres and Redis."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aob.errors import InvalidInput, LeaseHeld, UnknownTenant
from aob.lease import redis_store as lease_store
from aob.metering import redis_store as metering_store
from aob.tenants import create_tenant, get_tenant
from psycopg_pool import ConnectionPool

from tests.support import lambda_context, load_handler

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "tests" / "events"


def _event(name: str, **changes: Any) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text()) | changes


@pytest.fixture
def invoke(
    db_pool: ConnectionPool, redis_key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Any]:
    """Calls a function's handler as Lambda would; its Redis keys go under the test's prefix."""
    monkeypatch.setattr(metering_store, "KEY_PREFIX", redis_key_prefix)
    monkeypatch.setattr(lease_store, "KEY_PREFIX", redis_key_prefix)
    handlers = {name: load_handler(name) for name in ("metering", "session_lease")}
    return lambda function, event: handlers[function](event, lambda_context(function))


@pytest.fixture
def tenant(db_pool: ConnectionPool) -> str:
    """A fresh tenant for the sample events (which name `demo`)."""
    tenant_id = f"t-{uuid.uuid4().hex[:10]}"
    create_tenant(tenant_id, plan="pro")
    return tenant_id


def test_metering_reserves_and_settles_the_sample_events(invoke: Callable[..., Any], tenant: str) -> None:
    reserved = invoke("metering", _event("metering_reserve.json", tenant_id=tenant))
    settled = invoke("metering", _event("metering_settle.json", tenant_id=tenant))
    again = invoke("metering", _event("metering_settle.json", tenant_id=tenant))
    usage = invoke("metering", {"action": "usage", "tenant_id": tenant, "period": "month"})

    assert reserved["reservation_id"] == "exec-demo-1:CallModel" and reserved["estimate_tokens"] == 1200
    assert reserved["expires_at"] > reserved["reserved_at"]
    assert (settled["input_tokens"], settled["output_tokens"], settled["duplicate"]) == (800, 250, False)
    assert again["duplicate"] is True
    assert usage["total_tokens"] == 1050
    assert [(r["capability"], r["settlements"]) for r in usage["rows"]] == [("model_gateway", 1)]


def test_session_lease_acquires_renews_and_releases(invoke: Callable[..., Any], tenant: str) -> None:
    acquired = invoke("session_lease", _event("lease_acquire.json", tenant_id=tenant))
    base = {"tenant_id": tenant, "session_id": acquired["session_id"], "holder": acquired["holder"]}
    token = acquired["fencing_token"]

    with pytest.raises(LeaseHeld):
        invoke("session_lease", _event("lease_acquire.json", tenant_id=tenant, holder="exec-demo-2"))
    renewed = invoke("session_lease", {"action": "renew", "fencing_token": token, **base})
    released = invoke("session_lease", {"action": "release", "fencing_token": token, **base})

    assert (acquired["holder"], acquired["released"]) == ("exec-demo-1", False)
    assert renewed["fencing_token"] == token
    assert released["released"] is True


def test_bad_events_raise_errors_that_name_the_field(invoke: Callable[..., Any], tenant: str) -> None:
    with pytest.raises(
        InvalidInput, match="reserve.estimate_tokens: Input should be greater than or equal to 0"
    ):
        invoke("metering", _event("metering_reserve.json", tenant_id=tenant, estimate_tokens=-5))
    with pytest.raises(InvalidInput, match="discriminator 'action'"):
        invoke("session_lease", {"tenant_id": tenant, "session_id": "s", "holder": "h"})
    with pytest.raises(UnknownTenant, match="no tenant 'demo-missing'"):
        invoke("metering", _event("metering_reserve.json", tenant_id="demo-missing"))


def test_sample_events_are_valid_for_the_demo_tenant(invoke: Callable[..., Any]) -> None:
    # The samples name tenant `demo`: they run unchanged once it exists.
    try:
        get_tenant("demo")
    except UnknownTenant:
        create_tenant("demo", "Demo tenant", plan="pro")

    reserved = invoke("metering", _event("metering_reserve.json"))
    settled = invoke("metering", _event("metering_settle.json"))
    acquired = invoke("session_lease", _event("lease_acquire.json"))

    assert reserved["reservation_id"] == settled["reservation_id"]
    assert reserved["tenant_id"] == acquired["tenant_id"] == "demo"
