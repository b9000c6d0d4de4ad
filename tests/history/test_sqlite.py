"""What only the SQLite store does: its file, migrations, and interrupted runs.

Covers: WAL mode and the recorded schema version, append-only numbered
migrations (released files pinned; an upgrade from version 1 keeps the
event log and ends with a fresh database's schema), refusing a database
migrated by a newer Szál (SchemaTooNew, and ``szal history`` exiting 2
with the message), and a non-terminal run whose writer process is gone
read back as ``interrupted``. Concurrent writers are
covered end to end in tests/local/test_signals.py.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from szal.cli import main
from szal.history.sqlite import SqliteStore, migrations
from szal.history.store import RunRecord, SchemaTooNew

# The checksum of every migration file as released (see the Postgres twin in
# tests/postgres/test_postgres_store.py): add a file and a line, never edit one.
RELEASED_MIGRATIONS = {
    1: ("initial", "d52284b906a1d866fa9a0267d32174355b142546cddf1e4e944b420134e01838"),
    2: ("event_phase_columns", "1aecdecd3de04e1f8c3f9647faac978a8022a252017b74908b1a417243758ef4"),
}


def test_released_migrations_are_unchanged_and_numbered() -> None:
    assert {m.version: (m.name, m.checksum) for m in migrations()} == RELEASED_MIGRATIONS


def schema_of(path: Path) -> dict[str, object]:
    """Every table's columns and indexes (with their columns), for comparing schemas."""
    with sqlite3.connect(path) as conn:
        tables = [
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if r[0] != "schema_migrations"
        ]
        schema: dict[str, object] = {}
        for table in sorted(tables):
            indexes = conn.execute(f"PRAGMA index_list({table})").fetchall()
            schema[table] = (
                conn.execute(f"PRAGMA table_info({table})").fetchall(),
                sorted(
                    (name, unique, [c[2] for c in conn.execute(f"PRAGMA index_info({name})")])
                    for _, name, unique, *_ in indexes
                ),
            )
    return schema


async def test_upgrade_from_version_1_keeps_events(tmp_path: Path) -> None:
    fresh = SqliteStore(tmp_path / "fresh.db")
    await fresh.migrate()
    await fresh.close()
    # A database as Szál with only the first migration left it, with an event in it.
    old = tmp_path / "old.db"
    first = migrations()[0]
    with sqlite3.connect(old) as conn:
        conn.executescript(first.sql)
        conn.execute(
            "CREATE TABLE schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        conn.execute("INSERT INTO schema_migrations VALUES (1, 'initial', 0)")
        conn.execute(
            "INSERT INTO runs VALUES"
            " ('u1', 'r', 'default', 'wf', 1, 'h', '{}', 'Running', 1, 1, NULL, NULL, NULL,"
            " NULL, NULL, NULL)"
        )
        conn.execute(
            "INSERT INTO events (run_uid, step, attempt, rollback, old, new, event, at, message)"
            " VALUES ('u1', 'a', 1, 0, 'Pending', 'Running', 'StepStarted', 2.0, '')"
        )
    store = SqliteStore(old)
    try:
        assert await store.migrate() == len(migrations())
        detail = await store.get_run("u1")
        assert detail is not None
        assert [(e.step, e.old, e.new) for e in detail.events] == [("a", "Pending", "Running")]
        # The natural key still holds after the rename: a replay is not a second row.
        replay = detail.events[0]
        await store.append_events([replace(replay, id=None)])
        again = await store.get_run("u1")
        assert again is not None and len(again.events) == 1
    finally:
        await store.close()
    assert schema_of(old) == schema_of(tmp_path / "fresh.db")


async def test_wal_and_recorded_version(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "h.db")
    try:
        version = await store.migrate()
        assert version == len(migrations())
        assert await store.schema_version() == version
    finally:
        await store.close()
    with sqlite3.connect(tmp_path / "h.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = conn.execute("SELECT version FROM schema_migrations").fetchall()
    assert [r[0] for r in rows] == list(range(1, version + 1))


async def test_newer_schema_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "h.db"
    store = SqliteStore(path)
    await store.migrate()
    await store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (999, 'future', 0)")
    again = SqliteStore(path)
    try:
        with pytest.raises(SchemaTooNew, match="999"):
            await again.migrate()
    finally:
        await again.close()


def test_cli_reports_newer_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "h.db"
    assert main(["history", "--db", str(path)]) == 0
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (999, 'future', 0)")
    assert main(["history", "--db", str(path)]) == 2
    assert "newer" in capsys.readouterr().err


def run(uid: str, phase: str) -> RunRecord:
    return RunRecord(uid, uid, "default", "wf", 1, "h", {}, phase, 1.0, 1.0)


async def test_dead_writer_means_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    script = textwrap.dedent(f"""
        import asyncio
        from szal.history.sqlite import SqliteStore
        from szal.history.store import RunRecord

        async def main():
            store = SqliteStore({str(path)!r})
            await store.migrate()
            for uid, phase in (("gone", "Running"), ("done", "Succeeded")):
                await store.upsert_run(RunRecord(uid, uid, "default", "wf", 1, "h", {{}},
                                                 phase, 1.0, 1.0))
            await store.close()

        asyncio.run(main())
    """)
    writer = await asyncio.create_subprocess_exec(sys.executable, "-c", script)
    assert await writer.wait() == 0
    store = SqliteStore(path)
    try:
        await store.migrate()
        await store.upsert_run(run("mine", "Running"))  # written by this live process
        by_uid = {uid: (await store.get_run(uid)) for uid in ("gone", "done", "mine")}
        assert by_uid["gone"] is not None and by_uid["gone"].run.interrupted
        assert by_uid["done"] is not None and not by_uid["done"].run.interrupted
        assert by_uid["mine"] is not None and not by_uid["mine"].run.interrupted
        assert by_uid["gone"].run.phase == "Running"  # the stored phase is not rewritten
    finally:
        await store.close()
