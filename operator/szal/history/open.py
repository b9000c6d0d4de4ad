"""``open_store``: one place that turns ``--db`` / ``--history-dsn`` into a store.

Called by the CLI (``szal history --db ...``, ``szal show``) and by the
operator (``--history-dsn`` / ``SZAL_HISTORY_DSN``). A ``postgres://`` or
``postgresql://`` URL opens the Postgres store; anything else is a SQLite
file path. Each store module is imported only when chosen, so local mode
never loads asyncpg and the operator never loads sqlite3.

No I/O happens here: the caller awaits ``store.migrate()`` before use (the
history mirror does it itself, retrying while the database is away).
"""

from __future__ import annotations

import os

from szal.history.store import ExecutionStore

POSTGRES_SCHEMES = ("postgres://", "postgresql://")


def is_postgres_url(target: str | os.PathLike[str]) -> bool:
    """True for a libpq URL (``postgres://`` or ``postgresql://``)."""
    return isinstance(target, str) and target.lower().startswith(POSTGRES_SCHEMES)


def open_store(target: str | os.PathLike[str]) -> ExecutionStore:
    """The store for a Postgres URL or a SQLite path (not yet connected)."""
    if is_postgres_url(target):
        from szal.history.postgres import PostgresStore

        return PostgresStore(str(target))
    from szal.history.sqlite import SqliteStore

    return SqliteStore(os.fspath(target))
