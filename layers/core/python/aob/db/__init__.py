"""Postgres: one lazily created connection pool per container, plus versioned migrations.

`aob.db.migrate` is imported on its own (`python -m aob.db.migrate`), not re-exported here,
so running it as a script does not import it twice.
"""

from __future__ import annotations

from aob.db._pool import close_pool, connect, get_pool

__all__ = ["close_pool", "connect", "get_pool"]
