"""Fixtures for every tier: a throwaway Postgres database per session, and Redis key isolation.

Postgres: `database_url` creates `aob_test_<random>` on the server of AOB_DATABASE_URL (default
the local one) through its `postgres` maintenance database, points AOB_DATABASE_URL (and
so `aob.config.get_settings()` and `aob.db.get_pool()`) at it for the session, and drops it at the
end; `migrated_database` is the same database with every migration applied. Tests therefore
never touch real data, and concurrent sessions never share a database.

Redis: tests share the server of AOB_REDIS_URL (DB 0 by default) and stay apart by key prefix:
every key a test writes starts with its `redis_key_prefix`, and the keys under it are deleted
after the test. A prefix, not a dedicated DB number, because FLUSHDB would also wipe the keys
of another session running at the same time.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from itertools import batched
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import redis
from aob.cache import close_redis, get_redis
from aob.config import Settings, get_settings
from aob.db import close_pool, get_pool
from aob.db.migrate import migrate
from psycopg import sql
from psycopg_pool import ConnectionPool

pytest_plugins = ["tests.vllm_server"]

MAINTENANCE_DB = "postgres"


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


@contextmanager
def throwaway_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server of `server_url`, dropped on exit; yields its URL."""
    name = f"aob_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_with_database(server_url, MAINTENANCE_DB), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _with_database(server_url, name)
    finally:
        with psycopg.connect(_with_database(server_url, MAINTENANCE_DB), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _reset_clients() -> None:
    close_pool()
    close_redis()
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """An empty throwaway database for the session, set as AOB_DATABASE_URL; yields its URL."""
    with throwaway_database(Settings().database_url) as url, pytest.MonkeyPatch.context() as env:
        env.setenv("AOB_DATABASE_URL", url)
        _reset_clients()
        try:
            yield url
        finally:
            _reset_clients()


@pytest.fixture(scope="session")
def migrated_database(database_url: str) -> str:
    """The session's throwaway database with every migration applied; its URL."""
    migrate(get_pool())
    return database_url


@pytest.fixture
def db_pool(migrated_database: str) -> ConnectionPool:
    """`aob.db.get_pool()` (asked afresh per test, as a test may close it), on the migrated database."""
    return get_pool()


@pytest.fixture
def new_database() -> Iterator[Callable[[], str]]:
    """Makes extra empty databases (dropped after the test), for tests of migrations themselves."""
    with ExitStack() as stack:
        yield lambda: stack.enter_context(throwaway_database(Settings().database_url))


@pytest.fixture
def redis_key_prefix() -> Iterator[str]:
    """A prefix unique to this test; every key under it is deleted after the test."""
    prefix = f"aob-test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = get_redis()
    for keys in batched(client.scan_iter(match=f"{prefix}*", count=500), 500, strict=False):
        client.unlink(*keys)


@pytest.fixture
def redis_client(redis_key_prefix: str) -> redis.Redis:
    """`aob.cache.get_redis()`; write only keys that start with `redis_key_prefix`."""
    return get_redis()
