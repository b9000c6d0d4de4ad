"""What only the SQLite store does: its file, migrations, and interrupted runs.

Covers: WAL mode and the recorded schema version, append-only numbered
migrations, refusing a database migrated by a newer Szál (SchemaTooNew, and
``szal history`` exiting 2 with the message), and a non-terminal run whose
writer process is gone read back as ``interrupted``. Concurrent writers are
covered end to end in tests/local/test_signals.py.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest

from szal.cli import main
from szal.history.sqlite import SqliteStore, migrations
from szal.history.store import RunRecord, SchemaTooNew


def test_migrations_are_numbered_in_sequence() -> None:
    found = migrations()
    assert [version for version, _, _ in found] == list(range(1, len(found) + 1))


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
