"""The model gateway: OpenAI chat completions to vLLM and hosted providers, governed and metered.

`get_model_gateway().complete(ChatRequest)` checks the prompt size, asks the policy gate,
reserves tokens, routes the tier to its providers in order (falling back on connection errors,
timeouts, 5xx and 429; skipping providers whose breaker is open or whose warm-pool probe failed),
settles the actual usage and returns a ChatResult. `get_warm_pool().probe_all()` runs the probes.
Configuration: AOB_MODEL_ROUTES and the other AOB_MODEL_* settings (see `aob.llm._config`).

Errors (their names are the state machines' ErrorEquals): UnknownModelTier, PromptTooLarge,
PolicyDenied, QuotaExceeded, ModelRequestRejected (a provider's 4xx: fix the request),
ModelUnavailable (every provider failed or is skipped: transient, Retry it).
"""

from __future__ import annotations

from aob.llm._config import (
    ModelGatewaySettings,
    ModelRoutes,
    ProviderConfig,
    Target,
    TierConfig,
    load_model_settings,
)
from aob.llm._gateway import CAPABILITY, ModelGateway, PolicyGate, TokenMeter
from aob.llm._models import (
    Attempt,
    ChatRequest,
    ChatResult,
    Readiness,
    Usage,
    WarmPoolReport,
)
from aob.llm._provider import ModelProvider, OpenAICompatibleProvider, Probe, ProviderFailure
from aob.llm._router import Routed, Router
from aob.llm._runtime import build_providers, build_state, get_model_gateway, get_warm_pool
from aob.llm._secrets import ApiKeys
from aob.llm._state import Admission, BreakerPolicy, GatewayState, RedisGatewayState
from aob.llm._warm_pool import WarmPool

__all__ = [
    "CAPABILITY",
    "Admission",
    "ApiKeys",
    "Attempt",
    "BreakerPolicy",
    "ChatRequest",
    "ChatResult",
    "GatewayState",
    "ModelGateway",
    "ModelGatewaySettings",
    "ModelProvider",
    "ModelRoutes",
    "OpenAICompatibleProvider",
    "PolicyGate",
    "Probe",
    "ProviderConfig",
    "ProviderFailure",
    "Readiness",
    "RedisGatewayState",
    "Routed",
    "Router",
    "Target",
    "TierConfig",
    "TokenMeter",
    "Usage",
    "WarmPool",
    "WarmPoolReport",
    "build_providers",
    "build_state",
    "get_model_gateway",
    "get_warm_pool",
    "load_model_settings",
]
