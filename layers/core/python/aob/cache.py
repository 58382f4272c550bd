"""The container's Redis client, created on first use; nothing connects at import."""

from __future__ import annotations

import redis

from aob.config import get_settings

_client: redis.Redis | None = None


def get_redis() -> redis.Redis:
    """The process's client for AOB_REDIS_URL; replies are decoded to str."""
    global _client
    if _client is None:
        settings = get_settings()
        # Bounded timeouts: a Lambda must fail (and let the state machine retry) rather than hang.
        # The health check pings a connection idle for 30 s, as a thawed container's may be dead.
        _client = redis.Redis.from_url(
            settings.redis_url,
            decode_responses=True,
            socket_connect_timeout=settings.redis_timeout_s,
            socket_timeout=settings.redis_timeout_s,
            health_check_interval=30,
        )
    return _client


def close_redis() -> None:
    """Drop the client and its connections; the next get_redis() builds one from current settings."""
    global _client
    client, _client = _client, None
    if client is not None:
        client.close()
