"""The model gateway against the real vLLM server, Redis and Postgres: routing, fallback, breakers,
the warm pool, governance records and refusals that leave nothing half-done.

Run with `-p tests.vllm_server` (the `vllm_endpoint` fixture). A dead endpoint is a closed local
port; "it comes back" is the same provider name pointed at the real server.
"""

from __future__ import annotations

import socket
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from aob.db import get_pool
from aob.errors import InvalidInput, ModelRequestRejected, ModelUnavailable, PromptTooLarge, UnknownModelTier
from aob.handlers import parse_event
from aob.llm import (
    BreakerPolicy,
    ChatRequest,
    ModelGateway,
    ModelRoutes,
    OpenAICompatibleProvider,
    Readiness,
    RedisGatewayState,
    WarmPool,
)
from aob.metering import Metering, RedisQuotaStore, UsageLedger, UsageQuery
from aob.policy import PolicyBundleStore, PolicyService, PostgresDecisionRecorder, policy_files, sign_bundle
from aob.tenants import create_tenant, get_tenant
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg_pool import ConnectionPool

from tests.support import insert_run, insert_step
from tests.vllm_server import MODEL

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def _dead_url() -> str:
    with socket.socket() as sock:  # a port that was free a moment ago: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture(scope="module")
def policy(migrated_database: str) -> PolicyService:
    key = Ed25519PrivateKey.generate()
    store = PolicyBundleStore({"test": key.public_key()})
    store.load(sign_bundle(policy_files(ROOT / "policies"), key, "test"))
    return PolicyService(store, PostgresDecisionRecorder(), get_tenant)


@pytest.fixture
def tenant(db_pool: ConnectionPool) -> str:
    tenant_id = f"t-{uuid.uuid4().hex[:10]}"
    create_tenant(tenant_id, plan="pro")
    return tenant_id


@pytest.fixture
def step(tenant: str) -> dict[str, str]:
    """A run and a step of it, as a workflow's model step would carry them."""
    with get_pool().connection() as conn:
        run_id = insert_run(conn, tenant, "assistant")
        step_id = insert_step(conn, tenant, run_id, "CallModel", "model")
    return {"run_id": str(run_id), "step_id": str(step_id)}


@pytest.fixture
def metering(redis_client: redis.Redis, redis_key_prefix: str) -> Metering:
    return Metering(RedisQuotaStore(redis_client, key_prefix=redis_key_prefix), UsageLedger(get_pool()))


@pytest.fixture
def state(redis_client: redis.Redis, redis_key_prefix: str) -> RedisGatewayState:
    return RedisGatewayState(redis_client, key_prefix=redis_key_prefix, policy=BreakerPolicy(failures=2))


@pytest.fixture
def vllm_url(vllm_endpoint: str) -> str:
    return f"{vllm_endpoint}/v1"


def _routes(providers: dict[str, str], tiers: dict[str, list[str]]) -> ModelRoutes:
    return ModelRoutes.model_validate(
        {
            "providers": [
                {"name": n, "kind": "vllm", "base_url": url, "timeout_s": 30} for n, url in providers.items()
            ],
            "tiers": {
                t: {"targets": [{"provider": p, "model": MODEL} for p in ps]} for t, ps in tiers.items()
            },
        }
    )


def _providers(routes: ModelRoutes) -> dict[str, OpenAICompatibleProvider]:
    return {config.name: OpenAICompatibleProvider(config, lambda: None) for config in routes.providers}


def _gateway(
    routes: ModelRoutes, state: RedisGatewayState, policy: PolicyService, metering: Metering
) -> ModelGateway:
    return ModelGateway(
        routes, _providers(routes), state, policy, PostgresDecisionRecorder(), metering, max_prompt_chars=2000
    )


def _request(tenant: str, tier: str = "small", **changes: Any) -> dict[str, Any]:
    return {
        "tenant_id": tenant,
        "principal": {"subject": "user:ops-1", "roles": ["operator"]},
        "tier": tier,
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "Weather in Paris?"},
        ],
        "max_tokens": 8,
        "extra_body": {"ignore_eos": True},
    } | changes


def _outcomes(result: Any) -> list[tuple[str, str]]:
    return [(attempt.provider, attempt.outcome) for attempt in result.attempts]


def test_a_completion_returns_text_and_usage_and_records_the_call(
    vllm_url: str,
    state: RedisGatewayState,
    policy: PolicyService,
    metering: Metering,
    tenant: str,
    step: dict[str, str],
) -> None:
    routes = _routes({"vllm": vllm_url}, {"small": ["vllm"]})
    WarmPool(list(_providers(routes).values()), state).probe_all()
    version = httpx.get(vllm_url.removesuffix("/v1") + "/version").json()["version"]

    request = ChatRequest.model_validate(_request(tenant, **step))

    result = _gateway(routes, state, policy, metering).complete(request)

    message = result.choices[0]["message"]
    assert message["role"] == "assistant" and isinstance(message["content"], str)  # type: ignore[index]
    assert result.usage.completion_tokens == 8 and result.usage.prompt_tokens > 0
    assert (result.provider, result.model, result.model_version) == ("vllm", MODEL, version)
    assert result.latency_ms > 0 and _outcomes(result) == [("vllm", "ok")]
    with get_pool().connection() as conn:
        recorded = conn.execute(
            "SELECT allow, step_id FROM policy_decisions WHERE decision_id = %s", (result.decision_id,)
        ).fetchone()
    assert recorded == (True, request.step_id) and result.step_id == request.step_id
    with get_pool().connection() as conn:
        charged = conn.execute(
            "SELECT input_tokens, output_tokens, run_id, model FROM usage_ledger WHERE reservation_id = %s",
            (result.reservation_id,),
        ).fetchone()
    assert charged == (result.usage.prompt_tokens, 8, request.run_id, MODEL)


def test_each_tier_goes_to_its_configured_provider(
    vllm_url: str, state: RedisGatewayState, policy: PolicyService, metering: Metering, tenant: str
) -> None:
    routes = _routes({"vllm-a": vllm_url, "vllm-b": vllm_url}, {"small": ["vllm-a"], "medium": ["vllm-b"]})
    gateway = _gateway(routes, state, policy, metering)

    small = gateway.complete(ChatRequest.model_validate(_request(tenant, "small")))
    medium = gateway.complete(ChatRequest.model_validate(_request(tenant, "medium")))

    assert (small.provider, medium.provider) == ("vllm-a", "vllm-b")


def test_a_dead_primary_falls_back_opens_its_breaker_and_a_probe_closes_it_when_it_returns(
    vllm_url: str, state: RedisGatewayState, policy: PolicyService, metering: Metering, tenant: str
) -> None:
    down = _routes({"primary": _dead_url(), "vllm": vllm_url}, {"small": ["primary", "vllm"]})
    gateway = _gateway(down, state, policy, metering)
    request = ChatRequest.model_validate(_request(tenant))

    first, second, third = (gateway.complete(request) for _ in range(3))

    assert _outcomes(first) == _outcomes(second) == [("primary", "connection_error"), ("vllm", "ok")]
    assert _outcomes(third) == [("primary", "breaker_open"), ("vllm", "ok")]
    assert third.attempts[0].latency_ms is None  # skipped without paying for a call
    assert state.breaker("primary") == "open"

    back = _routes({"primary": vllm_url, "vllm": vllm_url}, {"small": ["primary", "vllm"]})
    report = WarmPool(list(_providers(back).values()), state).probe_all()

    assert [(r.provider, r.ready) for r in report.providers] == [("primary", True), ("vllm", True)]
    assert state.breaker("primary") == "closed"
    assert _outcomes(_gateway(back, state, policy, metering).complete(request)) == [("primary", "ok")]


def test_an_endpoint_the_warm_pool_found_down_is_skipped_without_a_timeout(
    vllm_url: str, state: RedisGatewayState, policy: PolicyService, metering: Metering, tenant: str
) -> None:
    routes = _routes({"primary": _dead_url(), "vllm": vllm_url}, {"small": ["primary", "vllm"]})
    report = WarmPool(list(_providers(routes).values()), state).probe_all()

    result = _gateway(routes, state, policy, metering).complete(ChatRequest.model_validate(_request(tenant)))

    assert [r.ready for r in report.providers] == [False, True]
    assert "APIConnectionError" in (report.providers[0].error or "")
    assert _outcomes(result) == [("primary", "not_ready"), ("vllm", "ok")]
    assert state.breaker("primary") == "closed"  # a skip is not a failure


def test_tools_are_accepted_and_the_answer_keeps_the_providers_shape(
    vllm_url: str, state: RedisGatewayState, policy: PolicyService, metering: Metering, tenant: str
) -> None:
    routes = _routes({"vllm": vllm_url}, {"small": ["vllm"]})
    conversation = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'},
    ]
    request = _request(tenant, messages=conversation, tools=[WEATHER_TOOL], tool_choice="auto", temperature=0)

    result = _gateway(routes, state, policy, metering).complete(ChatRequest.model_validate(request))
    direct = httpx.post(  # the same request straight to vLLM; greedy decoding gives the same answer
        f"{vllm_url}/chat/completions",
        json={"model": MODEL, "messages": conversation, "tools": [WEATHER_TOOL], "tool_choice": "auto"}
        | {"max_tokens": 8, "temperature": 0, "ignore_eos": True},
        timeout=60,
    ).json()

    assert result.choices == direct["choices"]
    assert result.usage.model_dump() == {
        k: direct["usage"][k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")
    }


def _no_side_effects(tenant: str, redis_client: redis.Redis, prefix: str) -> None:
    assert list(redis_client.scan_iter(match=f"{prefix}meter:*")) == []  # nothing reserved
    with get_pool().connection() as conn:
        decisions = conn.execute(
            "SELECT count(*) FROM policy_decisions WHERE tenant_id = %s", (tenant,)
        ).fetchone()
    assert decisions == (0,)


def test_bad_input_is_refused_clearly_before_any_decision_or_reservation(
    vllm_url: str,
    state: RedisGatewayState,
    policy: PolicyService,
    metering: Metering,
    tenant: str,
    redis_client: redis.Redis,
    redis_key_prefix: str,
) -> None:
    gateway = _gateway(_routes({"vllm": vllm_url}, {"small": ["vllm"]}), state, policy, metering)

    with pytest.raises(UnknownModelTier, match="no model tier 'huge'; configured tiers: small"):
        gateway.complete(ChatRequest.model_validate(_request(tenant, "huge")))
    with pytest.raises(PromptTooLarge, match="over the limit of 2000 for tier small"):
        gateway.complete(
            ChatRequest.model_validate(_request(tenant, messages=[{"role": "user", "content": "x" * 2001}]))
        )
    with pytest.raises(InvalidInput, match="messages.0.tool.tool_call_id: Field required"):
        parse_event(ChatRequest, _request(tenant, messages=[{"role": "tool", "content": "42"}]))

    _no_side_effects(tenant, redis_client, redis_key_prefix)


def test_a_failed_call_releases_its_reservation(
    vllm_url: str, state: RedisGatewayState, policy: PolicyService, metering: Metering, tenant: str
) -> None:
    routes = _routes({"dead": _dead_url(), "vllm": vllm_url}, {"small": ["dead"], "medium": ["vllm"]})
    gateway = _gateway(routes, state, policy, metering)

    with pytest.raises(ModelUnavailable, match=r"tier small answered \(dead/aob-tiny: connection_error\)"):
        gateway.complete(ChatRequest.model_validate(_request(tenant, "small")))
    with pytest.raises(ModelRequestRejected, match="vllm answered HTTP 400"):  # over the model's context
        gateway.complete(ChatRequest.model_validate(_request(tenant, "medium", max_tokens=5000)))

    report = metering.usage(UsageQuery(tenant_id=tenant, period="day"))
    assert [(row.settlements, row.total_tokens) for row in report.rows] == [(2, 0)]


def test_breakers_open_on_failures_within_the_window_and_allow_one_trial_after_cooldown(
    state: RedisGatewayState,
) -> None:
    assert (state.failed("p", 0), state.failed("p", 61_000)) == ("closed", "closed")  # 61 s apart
    assert state.failed("p", 62_000) == "open"
    assert state.admit("p", MODEL, 62_000 + 29_999, 5000).skip == "breaker_open"

    trial = state.admit("p", MODEL, 92_000, 5000)
    assert (trial.skip, trial.dirty) == (None, True)
    assert state.admit("p", MODEL, 92_001, 5000).skip == "trial_in_progress"
    assert state.failed("p", 93_000) == "open"  # the trial failed: cool down again
    assert state.admit("p", MODEL, 93_001, 5000).skip == "breaker_open"

    assert state.admit("p", MODEL, 123_000, 5000).skip is None
    state.succeeded("p")
    assert state.breaker("p") == "closed"
    assert state.admit("p", MODEL, 123_001, 5000) == state.admit("q", MODEL, 0, 5000)


def test_readiness_records_rule_providers_out_and_expire(
    state: RedisGatewayState, redis_client: redis.Redis, redis_key_prefix: str
) -> None:
    def probed(ready: bool, models: list[str]) -> Readiness:
        checked_at = datetime(2025, 1, 1, tzinfo=UTC)
        return Readiness(
            provider="p", ready=ready, models=models, version="0.32.0", latency_ms=3, checked_at=checked_at
        )

    state.set_readiness(probed(False, []), ttl_s=60)
    assert state.admit("p", MODEL, 0, 5000).skip == "not_ready"
    state.set_readiness(probed(True, ["other"]), ttl_s=60)
    assert state.admit("p", MODEL, 0, 5000).skip == "model_not_served"
    state.set_readiness(probed(True, ["other", MODEL]), ttl_s=60)
    assert state.admit("p", MODEL, 0, 5000).version == "0.32.0"
    assert state.readiness("p") == probed(True, ["other", MODEL])
    assert 0 < redis_client.pttl(f"{redis_key_prefix}llm:{{p}}:ready") <= 60_000
