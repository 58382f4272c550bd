"""The warm pool: probe every provider, and record its readiness where the router looks before calling.

Run on a schedule (functions/model_warm_pool) more often than `readiness_ttl_s`, so the router
skips a cold or dead endpoint without paying its timeout; a successful probe closes the
provider's breaker, so an endpoint that is back takes traffic without waiting out the cooldown.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from aob.llm._models import Readiness, WarmPoolReport
from aob.llm._provider import ModelProvider
from aob.llm._state import GatewayState

logger = logging.getLogger(__name__)


class WarmPool:
    def __init__(
        self,
        providers: Sequence[ModelProvider],
        state: GatewayState,
        *,
        probe_timeout_s: float = 2.0,
        readiness_ttl_s: float = 180.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._providers = providers
        self._state = state
        self._probe_timeout_s = probe_timeout_s
        self._readiness_ttl_s = readiness_ttl_s
        self._clock = clock

    def probe_all(self) -> WarmPoolReport:
        """Probe the providers in parallel (each within `probe_timeout_s`) and store what was found."""
        if not self._providers:
            return WarmPoolReport(providers=[])
        with ThreadPoolExecutor(max_workers=len(self._providers)) as pool:
            probes = list(pool.map(lambda provider: provider.probe(self._probe_timeout_s), self._providers))
        checked_at = self._clock()
        report = []
        for provider, probe in zip(self._providers, probes, strict=True):
            readiness = Readiness(
                provider=provider.name,
                ready=probe.ready,
                models=probe.models,
                version=probe.version,
                latency_ms=round(probe.latency_ms, 3),
                checked_at=checked_at,
                error=probe.error,
            )
            self._state.set_readiness(readiness, self._readiness_ttl_s)
            if not probe.ready:
                logger.warning("model provider %s is not ready: %s", provider.name, probe.error)
            report.append(readiness)
        return WarmPoolReport(providers=report)
