"""What every subcommand module shares: the :class:`Subcommand` record and exit codes.

Kept apart from ``szal/cli/__init__.py`` so subcommand modules can import it
while ``__init__`` imports them (no import cycle).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from szal.history.store import ExecutionStore

EXIT_OK = 0
"""Success (``szal run``: the run Succeeded)."""
EXIT_FAILED = 1
"""The run ended in another phase, or what was asked for was not found."""
EXIT_INVALID = 2
"""Invalid input: the message names the file, step and field. Nothing ran."""


@dataclass(frozen=True, slots=True)
class Subcommand:
    """One ``szal <name>``: its help, its arguments, and what it does."""

    name: str
    help: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace], int]


def sqlite_path_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be a SQLite history file, or None (absent is fine: it is created).

    Checked before the store opens so ``--db`` pointing at a directory or at
    some other file gets a plain message (exit 2), not a sqlite3 error.
    """
    if os.path.isdir(path):
        return "is a directory, not a SQLite database file"
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot read: {exc.strerror}"
    if head and head != b"SQLite format 3\x00":
        return "not a SQLite database (refusing to touch it)"
    return None


async def open_history(target: str | os.PathLike[str]) -> tuple[ExecutionStore | None, int]:
    """The migrated history store at ``target`` (a ``--db`` value), or None and an exit code.

    On failure the reason is printed: a ``--db`` that is a directory, not a
    SQLite file, or a schema newer than this szal is invalid input (2); a
    store that cannot be reached (a Postgres URL) is a failure (1).
    """
    import sqlite3

    from szal.history.open import is_postgres_url, open_store
    from szal.history.store import SchemaTooNew

    shown = redacted(target)
    if not is_postgres_url(target):
        problem = sqlite_path_problem(target)
        if problem is not None:
            print(f"szal: --db {shown}: {problem}", file=sys.stderr)
            return None, EXIT_INVALID
    store = open_store(target)
    try:
        await store.migrate()
    except SchemaTooNew as exc:
        await store.close()
        print(f"szal: {exc}", file=sys.stderr)
        return None, EXIT_INVALID
    except sqlite3.Error as exc:
        await store.close()
        print(f"szal: --db {shown}: cannot open the history database: {exc}", file=sys.stderr)
        return None, EXIT_INVALID
    except OSError as exc:
        await store.close()
        print(f"szal: --db {shown}: cannot reach the history store: {exc}", file=sys.stderr)
        return None, EXIT_FAILED
    return store, EXIT_OK


def redacted(target: str | os.PathLike[str]) -> str:
    """The store's location for messages, without a password in a URL."""
    from urllib.parse import urlsplit

    text = os.fspath(target)
    parts = urlsplit(text)
    if parts.password:
        return text.replace(f":{parts.password}@", ":***@")
    return text
