"""The container's ModelGateway and WarmPool, built on first use from `AOB_MODEL_*` settings.

Tests that change the environment call `get_model_gateway.cache_clear()` (and
`get_warm_pool.cache_clear()`); `aob.llm._state.KEY_PREFIX` is read when they are built.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from pydantic import SecretStr

from aob.cache import get_redis
from aob.llm import _state
from aob.llm._config import ModelGatewaySettings, load_model_settings
from aob.llm._gateway import ModelGateway
from aob.llm._provider import OpenAICompatibleProvider
from aob.llm._secrets import ApiKeys
from aob.llm._state import BreakerPolicy, RedisGatewayState
from aob.llm._warm_pool import WarmPool
from aob.metering import get_metering
from aob.policy import PostgresDecisionRecorder, get_policy_service
from aob.recorder import get_recorder


def _key_source(keys: ApiKeys, ref: str | None) -> Callable[[], SecretStr | None]:
    if ref is None:
        return lambda: None
    return lambda: keys.get(ref)


def build_providers(settings: ModelGatewaySettings, keys: ApiKeys) -> dict[str, OpenAICompatibleProvider]:
    """One adapter per configured provider; API keys are read on first use, not here."""
    return {
        config.name: OpenAICompatibleProvider(config, _key_source(keys, config.api_key_ref))
        for config in settings.routes.providers
    }


def build_state(settings: ModelGatewaySettings) -> RedisGatewayState:
    policy = BreakerPolicy(settings.breaker_failures, settings.breaker_window_s, settings.breaker_cooldown_s)
    return RedisGatewayState(get_redis(), key_prefix=_state.KEY_PREFIX, policy=policy)


@functools.cache
def get_model_gateway() -> ModelGateway:
    """The process's gateway: routes from AOB_MODEL_ROUTES, the container's policy service and metering."""
    settings = load_model_settings()
    return ModelGateway(
        settings.routes,
        build_providers(settings, ApiKeys(ttl_s=settings.secret_ttl_s)),
        build_state(settings),
        get_policy_service(),
        PostgresDecisionRecorder(),
        get_metering(),
        default_max_tokens=settings.default_max_tokens,
        max_prompt_chars=settings.max_prompt_chars,
        step_recorder=get_recorder(),
    )


@functools.cache
def get_warm_pool() -> WarmPool:
    """The process's prober of every configured provider."""
    settings = load_model_settings()
    return WarmPool(
        list(build_providers(settings, ApiKeys(ttl_s=settings.secret_ttl_s)).values()),
        build_state(settings),
        probe_timeout_s=settings.probe_timeout_s,
        readiness_ttl_s=settings.readiness_ttl_s,
    )
