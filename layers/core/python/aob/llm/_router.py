"""Routing with fallback: try a tier's targets in order, skipping those the warm pool or a breaker rules out.

A target is skipped without a call when its last probe found it down or not serving the model,
or while its breaker is open (or its half-open trial is taken). A call that fails retryably
(connection, timeout, 5xx, 429, malformed answer) counts against the breaker and the next target
is tried; a 4xx refusal is the request's fault and ends the routing (ModelRequestRejected).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aob.errors import ConfigurationError, ModelRequestRejected, ModelUnavailable
from aob.llm._config import ModelRoutes, Target
from aob.llm._models import Attempt
from aob.llm._provider import ModelProvider, ProviderFailure
from aob.llm._state import GatewayState

logger = logging.getLogger(__name__)

TRIAL_MARGIN_MS = 1000  # a half-open trial is held for the provider's timeout plus this


@dataclass(frozen=True, slots=True)
class Routed:
    response: dict[str, Any]
    target: Target
    version: str | None
    latency_ms: float
    attempts: list[Attempt]


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


class Router:
    def __init__(
        self,
        routes: ModelRoutes,
        providers: Mapping[str, ModelProvider],
        state: GatewayState,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        missing = sorted({p.name for p in routes.providers} - providers.keys())
        if missing:
            raise ConfigurationError(f"no ModelProvider for configured provider(s) {', '.join(missing)}")
        self._providers = providers
        self._trial_ms = {p.name: int(p.timeout_s * 1000) + TRIAL_MARGIN_MS for p in routes.providers}
        self._state = state
        self._clock = clock

    def call(
        self, tier: str, targets: list[Target], body: dict[str, Any], log_extra: Mapping[str, Any]
    ) -> Routed:
        """The first answer among `targets`; ModelUnavailable (listing every attempt) if none answers."""
        attempts: list[Attempt] = []
        for target in targets:
            name = target.provider
            admission = self._state.admit(name, target.model, self._now_ms(), self._trial_ms[name])
            if admission.skip is not None:
                attempts.append(Attempt(provider=name, model=target.model, outcome=admission.skip))
                continue
            started = time.perf_counter()
            try:
                response = self._providers[name].complete({**body, "model": target.model})
            except ProviderFailure as exc:
                attempts.append(
                    Attempt(
                        provider=name, model=target.model, outcome=exc.outcome, latency_ms=_ms_since(started)
                    )
                )
                breaker = self._state.failed(name, self._now_ms())
                logger.warning("model provider failed: %s (breaker %s)", exc, breaker, extra=dict(log_extra))
                continue
            except ModelRequestRejected:
                if admission.dirty:  # it answered: the endpoint is up, whatever it thought of the request
                    self._state.succeeded(name)
                raise
            if admission.dirty:
                self._state.succeeded(name)
            latency_ms = _ms_since(started)
            attempts.append(Attempt(provider=name, model=target.model, outcome="ok", latency_ms=latency_ms))
            return Routed(response, target, admission.version, latency_ms, attempts)
        tried = "; ".join(f"{a.provider}/{a.model}: {a.outcome}" for a in attempts)
        raise ModelUnavailable(f"no model provider of tier {tier} answered ({tried}); retry later")

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)
