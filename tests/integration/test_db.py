"""Migrations and the first schema, against the real Postgres (throwaway databases only)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
import redis
from aob.cache import get_redis
from aob.db import close_pool, connect, get_pool
from aob.db.migrate import Migration, load_migrations, migrate, status
from aob.errors import MigrationError
from psycopg import errors
from psycopg_pool import ConnectionPool

pytestmark = pytest.mark.integration

TABLES = {
    "tenants",
    "workflows",
    "runs",
    "steps",
    "decision_records",
    "events",
    "outbox",
    "usage_ledger",
}
# The outbox relay reads across tenants, in outbox_id order.
CROSS_TENANT_INDEXES = {"outbox_pkey", "outbox_unpublished"}

INSERT_TENANT = "INSERT INTO tenants (tenant_id, name) VALUES (%s, %s)"
INSERT_WORKFLOW = """
INSERT INTO workflows (tenant_id, name, version, spec, spec_sha256)
VALUES (%s, 'triage', 1, '{}', 'sha') RETURNING workflow_id
"""
INSERT_RUN = "INSERT INTO runs (tenant_id, workflow_id) VALUES (%s, %s) RETURNING run_id"
INSERT_EVENT = (
    "INSERT INTO events (tenant_id, stream_id, seq, event_type, payload) VALUES (%s, %s, %s, 'x', '{}')"
)
INSERT_RECORD = """
INSERT INTO decision_records (tenant_id, run_id, seq, kind, outcome, record, prev_hash, hash)
VALUES (%s, %s, %s, 'policy', 'allowed', '{}', %s, %s)
"""
SETTLE_USAGE = """
INSERT INTO usage_ledger (tenant_id, capability, reservation_id, input_tokens) VALUES (%s, %s, %s, 7)
"""

TABLES_IN_SCHEMA = "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
TENANT_COLUMN_NULLABLE = """
SELECT table_name, is_nullable FROM information_schema.columns
WHERE table_schema = 'public' AND column_name = 'tenant_id'
"""
TABLES_REFERENCING_TENANTS = """
SELECT con.conrelid::regclass::text FROM pg_constraint con
WHERE con.contype = 'f' AND con.confrelid = 'tenants'::regclass
  AND con.conkey = ARRAY[(SELECT attnum FROM pg_attribute
                          WHERE attrelid = con.conrelid AND attname = 'tenant_id')]
"""
INDEXES_NOT_LED_BY_TENANT = """
SELECT i.indexrelid::regclass::text FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
WHERE t.relnamespace = 'public'::regnamespace AND t.relname NOT IN ('tenants', 'schema_migrations')
  AND (SELECT attname FROM pg_attribute WHERE attrelid = i.indrelid AND attnum = i.indkey[0])
      IS DISTINCT FROM 'tenant_id'
"""

# Test migrations: the first is slow, to hold two migrators side by side.
SLOW_FIRST = Migration(
    1, "slow_first", b"SELECT pg_sleep(0.3); CREATE TABLE race_probe (id int PRIMARY KEY);"
)
SECOND = Migration(2, "second", b"ALTER TABLE race_probe ADD COLUMN note text;")


def _returning(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...]) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def _tenant(conn: psycopg.Connection[Any]) -> str:
    tenant_id = f"t-{uuid.uuid4().hex[:10]}"
    conn.execute(INSERT_TENANT, (tenant_id, tenant_id))
    return tenant_id


def _cli(url: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "AOB_DATABASE_URL": url}
    return subprocess.Popen(
        [sys.executable, "-m", "aob.db.migrate", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# Migration runner


def test_migrate_applies_every_migration_then_nothing(new_database: Callable[[], str]) -> None:
    packaged = [m.version for m in load_migrations()]
    with connect(new_database()) as conn:
        assert [s.state for s in status(conn)] == ["pending"] * len(packaged)

        assert migrate(conn) == packaged
        assert migrate(conn) == []
        assert [s.state for s in status(conn)] == ["applied"] * len(packaged)


def test_migrate_through_a_pool_and_up_to_a_target(new_database: Callable[[], str]) -> None:
    with ConnectionPool(new_database(), min_size=0, max_size=1) as pool:
        assert migrate(pool, target=1, migrations=[SLOW_FIRST, SECOND]) == [1]
        assert [s.state for s in status(pool, migrations=[SLOW_FIRST, SECOND])] == ["applied", "pending"]
        assert migrate(pool, migrations=[SLOW_FIRST, SECOND]) == [2]
        # An older release sees the newer migration as unknown rather than failing.
        assert [s.state for s in status(pool, migrations=[SLOW_FIRST])] == ["applied", "unknown"]


def test_concurrent_migrators_apply_each_migration_once(new_database: Callable[[], str]) -> None:
    url = new_database()
    start = threading.Barrier(2)

    def run() -> list[int]:
        with connect(url) as conn:
            start.wait()
            return migrate(conn, migrations=[SLOW_FIRST, SECOND])

    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda _: run(), range(2))

    assert sorted(first + second) == [1, 2]
    with connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (2,)


def test_concurrent_cli_processes_apply_the_schema_once(new_database: Callable[[], str]) -> None:
    url = new_database()

    migrators = [_cli(url), _cli(url)]
    outputs = [p.communicate(timeout=60) for p in migrators]

    assert [p.returncode for p in migrators] == [0, 0], outputs
    stdout = "".join(out for out, _err in outputs)
    for m in load_migrations():
        assert stdout.count(f"applied {m.filename}") == 1
    assert "up to date" in stdout


def test_edited_migration_is_refused_and_nothing_else_applies(new_database: Callable[[], str]) -> None:
    edited = Migration(1, "slow_first", SLOW_FIRST.sql + b" -- tweak")
    with connect(new_database()) as conn:
        migrate(conn, migrations=[SLOW_FIRST])

        with pytest.raises(MigrationError, match="0001_slow_first.sql was edited"):
            migrate(conn, migrations=[edited, SECOND])

        assert [s.state for s in status(conn, migrations=[edited, SECOND])] == ["changed", "pending"]


def test_cli_names_the_edited_file_and_fails(new_database: Callable[[], str]) -> None:
    url = new_database()
    assert _cli(url).wait(timeout=60) == 0
    with connect(url) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")

    out, err = _cli(url).communicate(timeout=60)

    assert "0001_initial.sql was edited" in err
    assert "applied" not in out


def test_failed_migration_rolls_back_and_is_not_recorded(new_database: Callable[[], str]) -> None:
    broken = Migration(2, "broken", b"CREATE TABLE half_done (id int); SELECT 1 / 0;")
    with connect(new_database()) as conn:
        with pytest.raises(MigrationError, match="0002_broken.sql failed"):
            migrate(conn, migrations=[SLOW_FIRST, broken])

        assert conn.execute("SELECT to_regclass('half_done')").fetchone() == (None,)
        assert [s.state for s in status(conn, migrations=[SLOW_FIRST, broken])] == ["applied", "pending"]


def test_unknown_target_is_refused(new_database: Callable[[], str]) -> None:
    with connect(new_database()) as conn, pytest.raises(MigrationError, match="no migration has version 9"):
        migrate(conn, target=9)


def test_cli_status_lists_pending_migrations(new_database: Callable[[], str]) -> None:
    out, _err = _cli(new_database(), "--status").communicate(timeout=60)

    assert "0001_initial" in out
    assert "pending" in out


# The first schema


def test_schema_has_the_core_tables(db_pool: ConnectionPool) -> None:
    with db_pool.connection() as conn:
        tables = {row[0] for row in conn.execute(TABLES_IN_SCHEMA)}

    assert tables >= TABLES | {"schema_migrations"}


def test_every_tenant_owned_table_is_keyed_by_tenant(db_pool: ConnectionPool) -> None:
    owned = TABLES - {"tenants"}
    with db_pool.connection() as conn:
        nullable: dict[str, str] = dict(conn.execute(TENANT_COLUMN_NULLABLE).fetchall())
        referencing = {row[0] for row in conn.execute(TABLES_REFERENCING_TENANTS)}
        not_led_by_tenant = {row[0] for row in conn.execute(INDEXES_NOT_LED_BY_TENANT)}

    assert {table: nullable.get(table) for table in owned} == dict.fromkeys(owned, "NO")
    assert referencing >= owned
    assert not_led_by_tenant == CROSS_TENANT_INDEXES


def test_rows_need_an_existing_tenant(db_pool: ConnectionPool) -> None:
    with db_pool.connection() as conn, pytest.raises(errors.ForeignKeyViolation):
        conn.execute(INSERT_WORKFLOW, ("no-such-tenant",))


def test_a_run_cannot_use_another_tenants_workflow(db_pool: ConnectionPool) -> None:
    with db_pool.connection() as conn:
        owner, other = _tenant(conn), _tenant(conn)
        workflow_id = _returning(conn, INSERT_WORKFLOW, (owner,))

        conn.execute(INSERT_RUN, (owner, workflow_id))
        with pytest.raises(errors.ForeignKeyViolation), conn.transaction():
            conn.execute(INSERT_RUN, (other, workflow_id))


def test_events_are_append_only_with_one_writer_per_stream_position(db_pool: ConnectionPool) -> None:
    with db_pool.connection() as conn:
        tenant = _tenant(conn)
        conn.execute(INSERT_EVENT, (tenant, "run:1", 1))

        with pytest.raises(errors.UniqueViolation), conn.transaction():
            conn.execute(INSERT_EVENT, (tenant, "run:1", 1))
        with pytest.raises(errors.RestrictViolation, match="append-only"), conn.transaction():
            conn.execute("UPDATE events SET payload = '{\"x\": 1}' WHERE tenant_id = %s", (tenant,))
        with pytest.raises(errors.RestrictViolation), conn.transaction():
            conn.execute("DELETE FROM events WHERE tenant_id = %s", (tenant,))


def test_decision_records_chain_from_a_first_record_per_run(db_pool: ConnectionPool) -> None:
    with db_pool.connection() as conn:
        tenant = _tenant(conn)
        workflow_id = _returning(conn, INSERT_WORKFLOW, (tenant,))
        run_id = _returning(conn, INSERT_RUN, (tenant, workflow_id))

        conn.execute(INSERT_RECORD, (tenant, run_id, 1, None, "h1"))
        conn.execute(INSERT_RECORD, (tenant, run_id, 2, "h1", "h2"))
        with pytest.raises(errors.UniqueViolation), conn.transaction():
            conn.execute(INSERT_RECORD, (tenant, run_id, 2, "h1", "fork"))
        with pytest.raises(errors.CheckViolation), conn.transaction():
            conn.execute(INSERT_RECORD, (tenant, run_id, 3, None, "h3"))
        with pytest.raises(errors.RestrictViolation), conn.transaction():
            conn.execute("UPDATE decision_records SET hash = 'x' WHERE run_id = %s", (run_id,))


def test_a_reservation_settles_once(db_pool: ConnectionPool) -> None:
    with db_pool.connection() as conn:
        tenant = _tenant(conn)
        conn.execute(SETTLE_USAGE, (tenant, "model_gateway", "res-1"))

        with pytest.raises(errors.UniqueViolation), conn.transaction():
            conn.execute(SETTLE_USAGE, (tenant, "model_gateway", "res-1"))
        assert _returning(conn, "SELECT usage_day FROM usage_ledger WHERE tenant_id = %s", (tenant,))


# The container's clients


def test_pool_is_built_once_and_rebuilt_after_close(db_pool: ConnectionPool) -> None:
    assert get_pool() is db_pool
    close_pool()

    rebuilt = get_pool()

    assert rebuilt is not db_pool and rebuilt is get_pool()
    with rebuilt.connection() as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (conn.info.dbname,)


def test_redis_client_is_shared_and_decodes_replies(redis_client: redis.Redis, redis_key_prefix: str) -> None:
    redis_client.set(f"{redis_key_prefix}greeting", "hello")

    assert get_redis() is redis_client
    assert get_redis().get(f"{redis_key_prefix}greeting") == "hello"
