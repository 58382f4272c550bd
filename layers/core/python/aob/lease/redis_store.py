"""`LeaseStore` on Redis: acquire, renew and release are each one EVALSHA of one Lua script.

Keys (hash tag `{tenant_id}`, one Cluster slot per tenant):
  {p}lease:{t}:<session>         the lease (hash: holder, token, exp), expiring with it
  {p}lease:{t}:<session>:token   the session's last fencing token, kept `token_keep_s`
A new token is max(last + 1, now in ms): it grows even if the last token was evicted or aged
out, as long as clocks do not run backwards by more than the tokens issued since.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import redis

from aob.errors import LeaseHeld, LeaseLost, ServiceUnavailable
from aob.lease.models import Lease

KEY_PREFIX = "aob:"
TOKEN_KEEP_S = 30 * 86_400

LEASE_LUA = """
local now, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local cur = redis.call('HMGET', KEYS[1], 'holder', 'token', 'exp')
local live = cur[1] and tonumber(cur[3]) > now
if ARGV[1] == 'acquire' then
  if live and cur[1] ~= ARGV[2] then return {'held', cur[1], cur[2], cur[3]} end
  local token = cur[2]
  if not live then
    token = string.format('%d', math.max((tonumber(redis.call('GET', KEYS[2])) or 0) + 1, now))
    redis.call('SET', KEYS[2], token, 'PX', ARGV[6])
  end
  redis.call('HSET', KEYS[1], 'holder', ARGV[2], 'token', token, 'exp', string.format('%d', now + ttl))
  redis.call('PEXPIRE', KEYS[1], ttl)
  return {'ok', ARGV[2], token, now + ttl}
end
if not live or cur[1] ~= ARGV[2] or (ARGV[5] ~= '' and ARGV[5] ~= cur[2]) then
  return {'lost', cur[1] or '', cur[2] or '', cur[3] or ''}
end
if ARGV[1] == 'renew' then
  redis.call('HSET', KEYS[1], 'exp', string.format('%d', now + ttl))
  redis.call('PEXPIRE', KEYS[1], ttl)
  return {'ok', ARGV[2], cur[2], now + ttl}
end
redis.call('DEL', KEYS[1])
return {'released', ARGV[2], cur[2], now}
"""


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise ServiceUnavailable(f"Redis did not answer a session-lease call: {exc}") from exc


def _lost_reason(reply: list[Any], holder: str, fencing_token: int | None, now_ms: int) -> str:
    _, current, token, expires = reply
    if not current:
        return "there is no lease (it expired or was released)"
    if current != holder:
        return f"{current} holds it"
    if int(expires) <= now_ms:
        return f"it expired at {_utc(int(expires)).isoformat()}"
    return f"fencing token {fencing_token} is not the current one ({token})"


class RedisLeaseStore:
    """LeaseStore on one Redis client; `key_prefix` keeps deployments (and tests) apart."""

    def __init__(
        self, client: redis.Redis, *, key_prefix: str = KEY_PREFIX, token_keep_s: float = TOKEN_KEEP_S
    ) -> None:
        self._prefix = f"{key_prefix}lease:"
        self._token_keep_ms = int(token_keep_s * 1000)
        self._script = client.register_script(LEASE_LUA)

    def _call(
        self,
        op: str,
        tenant_id: str,
        session_id: str,
        holder: str,
        *,
        now_ms: int,
        ttl_ms: int = 0,
        fencing_token: int | None = None,
    ) -> Lease:
        key = f"{self._prefix}{{{tenant_id}}}:{session_id}"
        token_arg = "" if fencing_token is None else str(fencing_token)
        args: list[str | int] = [op, holder, now_ms, ttl_ms, token_arg, self._token_keep_ms]
        with _translated():
            reply = self._script(keys=[key, f"{key}:token"], args=args)
        status = reply[0]
        if status == "held":
            _, current, token, expires = reply
            raise LeaseHeld(
                f"session {session_id} of tenant {tenant_id} is held by {current} (fencing token {token}) "
                f"until {_utc(int(expires)).isoformat()}; retry after {(int(expires) - now_ms) / 1000:.3f} s"
            )
        if status == "lost":
            raise LeaseLost(
                f"{holder} cannot {op} the lease of session {session_id} (tenant {tenant_id}): "
                f"{_lost_reason(reply, holder, fencing_token, now_ms)}"
            )
        _, lease_holder, token, expires = reply
        return Lease(
            tenant_id=tenant_id,
            session_id=session_id,
            holder=lease_holder,
            fencing_token=int(token),
            expires_at=_utc(int(expires)),
            released=status == "released",
        )

    def acquire(self, tenant_id: str, session_id: str, holder: str, *, now_ms: int, ttl_ms: int) -> Lease:
        return self._call("acquire", tenant_id, session_id, holder, now_ms=now_ms, ttl_ms=ttl_ms)

    def renew(
        self,
        tenant_id: str,
        session_id: str,
        holder: str,
        *,
        fencing_token: int | None,
        now_ms: int,
        ttl_ms: int,
    ) -> Lease:
        return self._call(
            "renew", tenant_id, session_id, holder, now_ms=now_ms, ttl_ms=ttl_ms, fencing_token=fencing_token
        )

    def release(
        self, tenant_id: str, session_id: str, holder: str, *, fencing_token: int | None, now_ms: int
    ) -> Lease:
        return self._call(
            "release", tenant_id, session_id, holder, now_ms=now_ms, fencing_token=fencing_token
        )
