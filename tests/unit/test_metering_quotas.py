"""How plans, tenant overrides and capability overrides become the limits a reservation meets."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from aob.errors import QuotaExceeded, TenantSuspended
from aob.metering import Metering, ReserveRequest
from aob.metering.ports import Admitted, Refused, ReserveCall, SettleCall, Settled
from aob.tenants import PLAN_QUOTAS, QuotaOverrides, Tenant, resolve_quotas

NOW = datetime(2030, 6, 15, 12, 0, tzinfo=UTC).timestamp()


def _tenant(plan: str = "free", status: str = "active", **quotas: object) -> Tenant:
    tenant_quota, per_capability = resolve_quotas(plan, QuotaOverrides.model_validate(quotas))
    return Tenant.model_validate(
        {
            "tenant_id": "acme",
            "name": "Acme",
            "plan": plan,
            "status": status,
            "quotas": tenant_quota,
            "capability_quotas": per_capability,
        }
    )


class ScriptedStore:
    """Records what the service asks for and refuses by scope; no quota logic of its own."""

    def __init__(self, refuse: dict[str, int] | None = None) -> None:
        self.calls: list[ReserveCall] = []
        self.refuse = refuse or {}

    def reserve_many(self, calls: Sequence[ReserveCall]) -> list[Admitted | Refused]:
        self.calls += calls
        results: list[Admitted | Refused] = []
        for call in calls:
            refused = [(lim, self.refuse[lim.scope]) for lim in call.limits if lim.scope in self.refuse]
            results.append(
                Refused(*refused[0])
                if refused
                else Admitted(
                    call.reservation_id,
                    call.capability,
                    call.estimate_tokens,
                    call.now_ms,
                    call.expires_ms,
                    False,
                )
            )
        return results

    def settle(self, call: SettleCall) -> Settled | None:
        raise AssertionError("not used")


def _metering(tenant: Tenant, store: ScriptedStore) -> Metering:
    return Metering(store, ledger=None, tenants=lambda _id: tenant, clock=lambda: NOW, new_id=lambda: "res-1")  # type: ignore[arg-type]


def test_plan_defaults_match_the_published_plans() -> None:
    free = _tenant("free").quotas

    assert (free.qps, free.bucket_size, free.tokens_per_day, free.tokens_per_month) == (
        5,
        10,
        100_000,
        2_000_000,
    )
    assert PLAN_QUOTAS["pro"].tokens_per_day > free.tokens_per_day  # type: ignore[operator]
    assert PLAN_QUOTAS["enterprise"].qps > PLAN_QUOTAS["pro"].qps  # type: ignore[operator]


def test_tenant_overrides_replace_plan_fields_and_null_lifts_a_limit() -> None:
    quotas = _tenant("pro", qps=20, tokens_per_month=None).quotas

    assert (quotas.qps, quotas.bucket_size) == (20, 40)  # burst follows qps unless set
    assert quotas.tokens_per_day == PLAN_QUOTAS["pro"].tokens_per_day
    assert quotas.tokens_per_month is None


def test_a_reservation_meets_tenant_limits_and_its_capabilitys_own() -> None:
    tenant = _tenant(qps=2, burst=3, capabilities={"tool_gateway": {"qps": 1, "tokens_per_day": 50}})
    store = ScriptedStore()

    _metering(tenant, store).reserve(
        ReserveRequest(tenant_id="acme", capability="tool_gateway", estimate_tokens=7)
    )
    _metering(tenant, store).reserve(
        ReserveRequest(tenant_id="acme", capability="model_gateway", estimate_tokens=7)
    )

    tool, model = store.calls
    assert [(lim.scope, lim.capability, lim.size) for lim in tool.limits] == [
        ("tenant.qps", None, 3),
        ("tenant.tokens_per_day", None, 100_000),
        ("tenant.tokens_per_month", None, 2_000_000),
        ("capability.qps", "tool_gateway", 2),
        ("capability.tokens_per_day", "tool_gateway", 50),
    ]
    assert [lim.scope for lim in model.limits] == [
        "tenant.qps",
        "tenant.tokens_per_day",
        "tenant.tokens_per_month",
    ]
    assert tool.limits[1].period is not None and tool.limits[1].period.label == "2030-06-15"
    assert (tool.reservation_id, tool.estimate_tokens, tool.expires_ms - tool.now_ms) == ("res-1", 7, 900_000)


def test_request_id_becomes_the_reservation_id() -> None:
    store = ScriptedStore()
    reservation = _metering(_tenant(), store).reserve(
        ReserveRequest(
            tenant_id="acme", capability="model_gateway", estimate_tokens=1, request_id="exec-9:Call"
        )
    )

    assert reservation.reservation_id == store.calls[0].reservation_id == "exec-9:Call"


def test_a_refusal_names_its_scope_and_when_to_retry() -> None:
    store = ScriptedStore(refuse={"tenant.tokens_per_day": 43_200_000})

    with pytest.raises(QuotaExceeded) as caught:
        _metering(_tenant(), store).reserve(
            ReserveRequest(tenant_id="acme", capability="model_gateway", estimate_tokens=500)
        )

    assert (caught.value.scope, caught.value.retry_after) == ("tenant.tokens_per_day", 43_200.0)
    assert "500 more tokens would exceed the budget of 100000 tokens per day" in str(caught.value)
    assert "retry after 43200.000 s" in str(caught.value)


def test_reserve_many_returns_refusals_in_place() -> None:
    tenant = _tenant(capabilities={"tool_gateway": {"qps": 1}})
    store = ScriptedStore(refuse={"capability.qps": 1000})
    requests = [
        ReserveRequest(tenant_id="acme", capability=capability, estimate_tokens=1)
        for capability in ("model_gateway", "tool_gateway", "model_gateway")
    ]

    results = _metering(tenant, store).reserve_many(requests)

    assert [type(r).__name__ for r in results] == ["Reservation", "QuotaExceeded", "Reservation"]
    assert isinstance(results[1], QuotaExceeded) and results[1].retry_after == 1.0


def test_a_suspended_tenant_reserves_nothing() -> None:
    store = ScriptedStore()

    with pytest.raises(TenantSuspended, match="acme is suspended"):
        _metering(_tenant(status="suspended"), store).reserve(
            ReserveRequest(tenant_id="acme", capability="model_gateway", estimate_tokens=1)
        )
    assert store.calls == []
