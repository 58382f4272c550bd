"""Gateway state shared by all containers: circuit breakers and warm-pool readiness, on Redis.

Keys of one provider share the hash tag `{provider}` (one slot in Redis Cluster):
  {p}llm:{provider}:breaker  hash: state closed|open|half_open, failures, first_ms, opened_ms,
                             trial_until_ms; absent = closed with no failures
  {p}llm:{provider}:ready    hash: ready 1|0, models (ids, newline-separated), version, latency_ms,
                             checked_at, error; expires `readiness_ttl_s` after the probe
A breaker opens after `failures` failures within `window_s`, skips its provider for `cooldown_s`,
then lets one trial call through (half-open) until that call ends or `trial_ms` pass. Admission
reads readiness and breaker and moves the breaker, in one Lua script (one round trip).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol, cast

import redis
from redis.typing import EncodableT, FieldT

from aob.errors import ServiceUnavailable
from aob.llm._models import Readiness

KEY_PREFIX = "aob:"

Skip = Literal["breaker_open", "trial_in_progress", "not_ready", "model_not_served"]
BreakerState = Literal["closed", "open", "half_open"]

ADMIT_LUA = """
local r = redis.call('HMGET', KEYS[2], 'ready', 'models', 'version')
if r[1] == '0' then return {'not_ready', 0, ''} end
if r[1] == '1' and not string.find('\\n' .. (r[2] or '') .. '\\n', '\\n' .. ARGV[4] .. '\\n', 1, true) then
  return {'model_not_served', 0, ''}
end
local version = r[3] or ''
local b = redis.call('HMGET', KEYS[1], 'state', 'failures', 'opened_ms', 'trial_until_ms')
local now = tonumber(ARGV[1])
if b[1] == 'open' then
  if now < tonumber(b[3]) + tonumber(ARGV[2]) then return {'breaker_open', 1, version} end
  redis.call('HSET', KEYS[1], 'state', 'half_open', 'trial_until_ms', now + tonumber(ARGV[3]))
  return {'trial', 1, version}
elseif b[1] == 'half_open' then
  if now < tonumber(b[4]) then return {'trial_in_progress', 1, version} end
  redis.call('HSET', KEYS[1], 'trial_until_ms', now + tonumber(ARGV[3]))
  return {'trial', 1, version}
end
return {'call', b[2] and 1 or 0, version}
"""

FAILED_LUA = """
local b = redis.call('HMGET', KEYS[1], 'state', 'failures', 'first_ms')
local now = tonumber(ARGV[1])
if b[1] == 'open' then return 'open' end
if b[1] == 'half_open' then
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_ms', now)
  return 'open'
end
local failures = tonumber(b[2] or '0')
local first = tonumber(b[3] or ARGV[1])
if now - first > tonumber(ARGV[3]) then
  failures = 0
  first = now
end
failures = failures + 1
if failures >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'failures', failures, 'first_ms', first, 'opened_ms', now)
  return 'open'
end
redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', failures, 'first_ms', first)
return 'closed'
"""


@dataclass(frozen=True, slots=True)
class Admission:
    skip: Skip | None  # why the provider must not be called now; None: call it
    dirty: bool  # the breaker holds failures or a trial: a success must reset it
    version: str | None  # the server version of the provider's readiness record


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failures: int = 3
    window_s: float = 60.0
    cooldown_s: float = 30.0


class GatewayState(Protocol):
    def admit(self, provider: str, model: str, now_ms: int, trial_ms: int) -> Admission:
        """May `provider` be called for `model` now? Claims the half-open trial when it is due."""
        ...

    def failed(self, provider: str, now_ms: int) -> BreakerState:
        """Count a failure; the breaker's state after it."""
        ...

    def succeeded(self, provider: str) -> None:
        """Close the breaker and forget its failures."""
        ...

    def set_readiness(self, readiness: Readiness, ttl_s: float) -> None:
        """Store a probe's result; a ready provider's breaker closes."""
        ...

    def readiness(self, provider: str) -> Readiness | None: ...

    def breaker(self, provider: str) -> BreakerState: ...


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise ServiceUnavailable(f"Redis did not answer a model gateway call: {exc}") from exc


class RedisGatewayState:
    """GatewayState on one Redis client (decoded replies); `key_prefix` keeps deployments and tests apart."""

    def __init__(
        self, client: redis.Redis, *, key_prefix: str = KEY_PREFIX, policy: BreakerPolicy = BreakerPolicy()
    ) -> None:
        self._client = client
        self._prefix = f"{key_prefix}llm:"
        self._policy = policy
        self._admit = client.register_script(ADMIT_LUA)
        self._failed = client.register_script(FAILED_LUA)

    def _key(self, provider: str, kind: str) -> str:
        return f"{self._prefix}{{{provider}}}:{kind}"

    def admit(self, provider: str, model: str, now_ms: int, trial_ms: int) -> Admission:
        keys = [self._key(provider, "breaker"), self._key(provider, "ready")]
        cooldown_ms = int(self._policy.cooldown_s * 1000)
        with _translated():
            verdict, dirty, version = self._admit(keys=keys, args=[now_ms, cooldown_ms, trial_ms, model])
        return Admission(None if verdict in ("call", "trial") else verdict, bool(dirty), version or None)

    def failed(self, provider: str, now_ms: int) -> BreakerState:
        args = [now_ms, self._policy.failures, int(self._policy.window_s * 1000)]
        with _translated():
            return self._failed(keys=[self._key(provider, "breaker")], args=args)  # type: ignore[no-any-return]

    def succeeded(self, provider: str) -> None:
        with _translated():
            self._client.delete(self._key(provider, "breaker"))

    def set_readiness(self, readiness: Readiness, ttl_s: float) -> None:
        key = self._key(readiness.provider, "ready")
        record: dict[FieldT, EncodableT] = {
            "ready": "1" if readiness.ready else "0",
            "models": "\n".join(readiness.models),
            "version": readiness.version or "",
            "latency_ms": f"{readiness.latency_ms:.3f}",
            "checked_at": readiness.checked_at.isoformat(),
            "error": readiness.error or "",
        }
        with _translated(), self._client.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping=record)
            pipe.pexpire(key, int(ttl_s * 1000))
            if readiness.ready:
                pipe.delete(self._key(readiness.provider, "breaker"))
            pipe.execute()

    def readiness(self, provider: str) -> Readiness | None:
        with _translated():
            record = cast(dict[str, str], self._client.hgetall(self._key(provider, "ready")))
        if not record:
            return None
        return Readiness(
            provider=provider,
            ready=record["ready"] == "1",
            models=[model for model in record["models"].split("\n") if model],
            version=record["version"] or None,
            latency_ms=float(record["latency_ms"]),
            checked_at=datetime.fromisoformat(record["checked_at"]),
            error=record["error"] or None,
        )

    def breaker(self, provider: str) -> BreakerState:
        with _translated():
            state = self._client.hget(self._key(provider, "breaker"), "state")
        return state or "closed"  # type: ignore[return-value]
