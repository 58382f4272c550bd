"""Versioned schema migrations: `python -m aob.db.migrate [--status] [--target N]`.

Migrations are the files `NNNN_name.sql` in `aob/db/migrations/`, read with importlib.resources
so they work from the Lambda layer as well as from a checkout. Each is applied once, in version
order, in its own transaction, and recorded in `schema_migrations` with the checksum of its
file. A file must therefore not manage transactions itself (no BEGIN/COMMIT, no CONCURRENTLY).
Applied files are immutable: an edited one is refused; add a new migration instead.

Concurrent migrators (two deploys, two containers) are safe: each transaction takes the same
advisory lock and re-checks what is applied before applying anything.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import re
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any, Literal

import psycopg
from psycopg import pq
from psycopg_pool import ConnectionPool

from aob.config import get_settings, mask_url
from aob.db._pool import connect, get_pool
from aob.errors import AobError, MigrationError, ServiceUnavailable

logger = logging.getLogger(__name__)

MIGRATIONS_PACKAGE = "aob.db"
MIGRATIONS_DIR = "migrations"
# Any constant shared by all migrators; this one spells "AOBmig" in ASCII.
LOCK_KEY = 0x414F_426D_6967

_FILENAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""
LOCK = "SELECT pg_advisory_xact_lock(%s)"
TABLE_EXISTS = "SELECT to_regclass('schema_migrations') IS NOT NULL"
SELECT_APPLIED = "SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version"
SELECT_CHECKSUM = "SELECT checksum FROM schema_migrations WHERE version = %s"
INSERT_APPLIED = "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)"

type Source = psycopg.Connection[Any] | ConnectionPool


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: bytes

    @property
    def filename(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"

    @property
    def checksum(self) -> str:
        # A checkout with CRLF line endings holds the same migration, not an edited one.
        return hashlib.sha256(self.sql.replace(b"\r\n", b"\n")).hexdigest()


@dataclass(frozen=True)
class MigrationStatus:
    version: int
    name: str
    # unknown: recorded in the database but absent from this code (applied by a newer release).
    state: Literal["applied", "pending", "changed", "unknown"]
    applied_at: datetime | None


def load_migrations() -> list[Migration]:
    """The packaged migrations in version order; a misnamed or duplicate file is an error."""
    found: dict[int, Migration] = {}
    for entry in resources.files(MIGRATIONS_PACKAGE).joinpath(MIGRATIONS_DIR).iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILENAME.match(entry.name)
        if match is None:
            raise MigrationError(f"migration file {entry.name} must be named NNNN_lowercase_name.sql")
        version = int(match[1])
        if version in found:
            raise MigrationError(
                f"migrations {found[version].filename} and {entry.name} share version {version}"
            )
        found[version] = Migration(version, match[2], entry.read_bytes())
    return [found[v] for v in sorted(found)]


@contextmanager
def _connection(source: Source | None) -> Iterator[psycopg.Connection[Any]]:
    if isinstance(source, psycopg.Connection):
        yield source
    else:
        with (source or get_pool()).connection() as conn:
            yield conn


def _changed(migration: Migration, recorded: str) -> MigrationError:
    return MigrationError(
        f"migration {migration.filename} was edited after it was applied "
        f"(recorded checksum {recorded[:12]}, file {migration.checksum[:12]}): "
        "restore the file as applied and put the change in a new migration"
    )


def migrate(
    source: Source | None = None, target: int | None = None, *, migrations: Sequence[Migration] | None = None
) -> list[int]:
    """Apply pending migrations up to `target` (default: all); returns the versions applied.

    `source` is a connection outside a transaction, or a pool (default: `aob.db.get_pool()`).
    Nothing is applied if any applied migration's file has changed.
    """
    migrations = load_migrations() if migrations is None else list(migrations)
    if target is not None:
        if target not in {m.version for m in migrations}:
            raise MigrationError(f"no migration has version {target}")
        migrations = [m for m in migrations if m.version <= target]
    applied_now: list[int] = []
    with _connection(source) as conn:
        if conn.info.transaction_status != pq.TransactionStatus.IDLE:
            raise MigrationError(
                "migrate needs a connection outside a transaction: commit or roll back first"
            )
        with conn.transaction():
            conn.execute(LOCK, (LOCK_KEY,))
            conn.execute(CREATE_TABLE)
            recorded = {version: checksum for version, _name, checksum, _at in conn.execute(SELECT_APPLIED)}
        for migration in migrations:
            if migration.version in recorded and recorded[migration.version] != migration.checksum:
                raise _changed(migration, recorded[migration.version])
        for migration in migrations:
            if migration.version not in recorded and _apply(conn, migration):
                applied_now.append(migration.version)
    return applied_now


def _apply(conn: psycopg.Connection[Any], migration: Migration) -> bool:
    """Apply one migration in its own transaction; False if another migrator just did."""
    started = time.perf_counter()
    with conn.transaction():
        conn.execute(LOCK, (LOCK_KEY,))
        row = conn.execute(SELECT_CHECKSUM, (migration.version,)).fetchone()
        if row is not None:
            if row[0] != migration.checksum:
                raise _changed(migration, row[0])
            return False
        try:
            conn.execute(migration.sql)
        except psycopg.Error as exc:
            raise MigrationError(f"migration {migration.filename} failed and was rolled back: {exc}") from exc
        conn.execute(INSERT_APPLIED, (migration.version, migration.name, migration.checksum))
    logger.info("applied migration %s in %.0f ms", migration.filename, (time.perf_counter() - started) * 1000)
    return True


def status(
    source: Source | None = None, *, migrations: Sequence[Migration] | None = None
) -> list[MigrationStatus]:
    """Each migration's state, packaged or only recorded, in version order; changes nothing."""
    migrations = load_migrations() if migrations is None else list(migrations)
    with _connection(source) as conn, conn.transaction():
        exists = conn.execute(TABLE_EXISTS).fetchone()
        rows = list(conn.execute(SELECT_APPLIED)) if exists and exists[0] else []
    recorded = {version: (name, checksum, applied_at) for version, name, checksum, applied_at in rows}
    result: list[MigrationStatus] = []
    for m in migrations:
        if m.version not in recorded:
            result.append(MigrationStatus(m.version, m.name, "pending", None))
            continue
        _name, checksum, applied_at = recorded.pop(m.version)
        result.append(
            MigrationStatus(m.version, m.name, "applied" if checksum == m.checksum else "changed", applied_at)
        )
    result += [MigrationStatus(v, name, "unknown", at) for v, (name, _checksum, at) in recorded.items()]
    return sorted(result, key=lambda s: s.version)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: apply pending migrations to AOB_DATABASE_URL (or list them with --status)."""
    parser = argparse.ArgumentParser(prog="python -m aob.db.migrate", description=main.__doc__)
    parser.add_argument(
        "--status", action="store_true", help="list applied and pending migrations; apply nothing"
    )
    parser.add_argument("--target", type=int, help="apply up to and including this version")
    args = parser.parse_args(argv)
    try:
        url = get_settings().database_url
        migrations = load_migrations()
        with connect(url) as conn:
            if args.status:
                for s in status(conn, migrations=migrations):
                    when = f"  {s.applied_at:%Y-%m-%d %H:%M:%S%z}" if s.applied_at else ""
                    print(f"{s.version:04d}_{s.name:<30} {s.state}{when}")
                return 0
            applied = migrate(conn, args.target, migrations=migrations)
    except (AobError, psycopg.Error) as exc:
        print(f"migrate: error: {exc}", file=sys.stderr)
        if isinstance(exc, ServiceUnavailable):
            print("migrate: run `python -m aob.preflight` for how to start Postgres", file=sys.stderr)
        return 1
    filenames = {m.version: m.filename for m in migrations}
    for version in applied:
        print(f"applied {filenames[version]}")
    print(
        f"{mask_url(url)}: {len(applied)} migration(s) applied" if applied else f"{mask_url(url)}: up to date"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
