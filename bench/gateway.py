"""Model gateway overhead: N direct calls to the vLLM server interleaved with N calls through the gateway.

Both sides use the `openai` client with the same parameters (16 tokens, ignore_eos, greedy), in
this process; the gateway adds the policy check (recorded in Postgres), the breaker/readiness
read, reserve and settle (Redis + the usage ledger). Assumes the vLLM server is up
(infra/vllm/ctl.py up; AOB_VLLM_PORT, default 8008) and the database migrated.
Last line: gateway_overhead_ratio=<gateway_p50/direct_p50> gateway_overhead_p50_ms=<> direct_p50_ms=<>
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
from aob.cache import get_redis
from aob.db import close_pool
from aob.llm import (
    ChatRequest,
    ModelGateway,
    ModelRoutes,
    OpenAICompatibleProvider,
    RedisGatewayState,
    WarmPool,
)
from aob.metering import get_metering
from aob.policy import PolicyBundleStore, PolicyService, PostgresDecisionRecorder, policy_files, sign_bundle
from aob.tenants import create_tenant, get_tenant
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from openai.types.chat import ChatCompletionMessageParam

ROOT = Path(__file__).resolve().parents[1]
N = int(os.environ.get("BENCH_N", "200"))
WARMUP = 10
BASE_URL = f"http://127.0.0.1:{os.environ.get('AOB_VLLM_PORT', '8008')}/v1"
MODEL = "aob-tiny"
MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "You are a terse support assistant."},
    {"role": "user", "content": "Summarise order o-1001 in one sentence."},
]
PARAMS: dict[str, Any] = {"max_tokens": 16, "temperature": 0}
EXTRA = {"ignore_eos": True}


def policy_service() -> PolicyService:
    key = Ed25519PrivateKey.generate()
    store = PolicyBundleStore({"bench": key.public_key()})
    store.load(sign_bundle(policy_files(ROOT / "policies"), key, "bench"))
    return PolicyService(store, PostgresDecisionRecorder(), get_tenant)


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def main() -> None:
    tenant = f"bench-{uuid.uuid4().hex[:8]}"
    create_tenant(tenant, plan="enterprise", quotas={"qps": 1_000_000, "burst": 10_000_000})
    prefix = f"aob-bench:{uuid.uuid4().hex[:8]}:"
    routes = ModelRoutes.model_validate(
        {
            "providers": [{"name": "vllm", "kind": "vllm", "base_url": BASE_URL}],
            "tiers": {"small": {"targets": [{"provider": "vllm", "model": MODEL}]}},
        }
    )
    providers = {c.name: OpenAICompatibleProvider(c, lambda: None) for c in routes.providers}
    state = RedisGatewayState(get_redis(), key_prefix=prefix)
    WarmPool(list(providers.values()), state).probe_all()
    gateway = ModelGateway(
        routes, providers, state, policy_service(), PostgresDecisionRecorder(), get_metering()
    )
    request = ChatRequest.model_validate(
        {
            "tenant_id": tenant,
            "principal": {"subject": "user:bench", "roles": ["operator"]},
            "tier": "small",
            "messages": MESSAGES,
            "extra_body": EXTRA,
        }
        | PARAMS
    )
    client = openai.OpenAI(api_key="none", base_url=BASE_URL, max_retries=0, timeout=30)

    def direct() -> None:
        completion = client.chat.completions.create(
            model=MODEL, messages=MESSAGES, extra_body=EXTRA, **PARAMS
        )
        assert completion.usage is not None and completion.usage.completion_tokens == PARAMS["max_tokens"]

    own: list[float] = []

    def governed() -> None:
        started = time.perf_counter()
        result = gateway.complete(request)
        own.append((time.perf_counter() - started) * 1000 - result.latency_ms)
        assert result.usage.completion_tokens == PARAMS["max_tokens"]

    for _ in range(WARMUP):
        direct()
        governed()
    own.clear()
    direct_ms, gateway_ms = [], []
    for _ in range(N):  # interleaved: drift in the server's speed hits both sides alike
        direct_ms.append(timed(direct))
        gateway_ms.append(timed(governed))
    direct_p50, gateway_p50 = statistics.median(direct_ms), statistics.median(gateway_ms)
    redis = get_redis()
    for key in redis.scan_iter(match=f"{prefix}*"):
        redis.unlink(key)
    print(f"calls: {N} direct + {N} through the gateway, interleaved, after {WARMUP} warm-up calls each")
    print(
        f"direct_p90_ms={statistics.quantiles(direct_ms, n=10)[-1]:.2f} "
        f"gateway_p90_ms={statistics.quantiles(gateway_ms, n=10)[-1]:.2f} "
        f"gateway_own_p50_ms={statistics.median(own):.2f} (gateway time outside the provider call)"
    )
    print(
        f"gateway_overhead_ratio={gateway_p50 / direct_p50:.3f} "
        f"gateway_overhead_p50_ms={gateway_p50 - direct_p50:.2f} direct_p50_ms={direct_p50:.2f}"
    )


if __name__ == "__main__":
    try:
        main()
    finally:
        close_pool()
