"""The container's Postgres pool, created on first use; nothing connects at import."""

from __future__ import annotations

import math
import threading
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from aob.config import get_settings, mask_url
from aob.errors import ConfigurationError, ServiceUnavailable

APPLICATION_NAME = "aob"

_pool: ConnectionPool | None = None
# Lambda runs one request at a time, but tests and the API may call from threads: build one pool.
_lock = threading.Lock()


def _connect_kwargs(timeout_s: float) -> dict[str, Any]:
    # libpq takes whole seconds (and treats anything under 2 as 2).
    return {"connect_timeout": math.ceil(timeout_s), "application_name": APPLICATION_NAME}


def get_pool() -> ConnectionPool:
    """The process's pool (AOB_DATABASE_URL, AOB_DB_POOL_MIN/MAX), opened on the first call."""
    global _pool
    if _pool is None:
        with _lock:
            if _pool is None:
                settings = get_settings()
                _pool = ConnectionPool(
                    settings.database_url,
                    min_size=settings.db_pool_min,
                    max_size=settings.db_pool_max,
                    kwargs=_connect_kwargs(settings.db_connect_timeout_s),
                    # A frozen container's idle connections may have been cut by the server or
                    # RDS Proxy: test each one as it leaves the pool rather than fail the request.
                    check=ConnectionPool.check_connection,
                    timeout=settings.db_connect_timeout_s,
                    # Give idle connections back soon: every warm container of every function
                    # holds its own pool, and together they must stay under max_connections.
                    max_idle=settings.db_pool_max_idle_s,
                    name=APPLICATION_NAME,
                    open=True,
                )
    return _pool


def close_pool() -> None:
    """Close the pool (if any); the next get_pool() builds a new one from current settings."""
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.close()


def connect(
    url: str | None = None, *, timeout_s: float | None = None, autocommit: bool = True
) -> psycopg.Connection[Any]:
    """One connection outside the pool, for commands (migrate, preflight) rather than requests.

    Defaults to AOB_DATABASE_URL and AOB_DB_CONNECT_TIMEOUT_S. Raises ServiceUnavailable, naming
    the masked URL, when the server cannot be reached or refuses the login, and
    ConfigurationError when the URL is malformed.
    """
    url = url or get_settings().database_url
    timeout_s = timeout_s or get_settings().db_connect_timeout_s
    try:
        return psycopg.connect(url, autocommit=autocommit, **_connect_kwargs(timeout_s))
    except psycopg.OperationalError as exc:
        raise ServiceUnavailable(f"Postgres at {mask_url(url)} is unreachable: {exc}") from exc
    except psycopg.ProgrammingError:
        # libpq quotes the whole URL, password included, in this error: do not chain it.
        raise ConfigurationError(
            f"{mask_url(url)} is not a valid Postgres URL; check AOB_DATABASE_URL "
            "(percent-encode special characters in the password)"
        ) from None
