"""``szal history`` and ``szal show`` against Postgres (``--db postgres://...``).

Covers: a run recorded in a Postgres database is listed and shown by the real
``szal`` command, filters apply, and a missing run is exit 1 with a message
that does not leak a password. Does not cover the store's queries in depth
(test_postgres_store.py) or the SQLite side (tests/local).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from szal.history.postgres import PostgresStore
from szal.history.store import AttemptRecord, RunRecord

pytestmark = pytest.mark.postgres


def szal(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "szal", *args], capture_output=True, text=True, timeout=60
    )


@pytest.fixture
async def database(pg_dsn: str) -> AsyncIterator[str]:
    """A fresh database on the shared server, dropped afterwards."""
    name = f"szal_cli_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(pg_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        parts = urlsplit(pg_dsn)
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_history_and_show_read_postgres(database: str) -> None:
    store = PostgresStore(database)
    await store.migrate()
    now = time.time()
    for i, phase in enumerate(["Succeeded", "Failed"]):
        uid = f"uid-{i}"
        await store.upsert_run(
            RunRecord(
                uid=uid,
                name=f"nightly-{i}",
                namespace="default",
                workflow="nightly" if i == 0 else "other",
                workflow_version=1,
                spec_hash="abc",
                params={},
                phase=phase,
                created_at=now + i,
                started_at=now + i,
                finished_at=now + i + 2.5,
                progress="1/1",
            )
        )
        await store.upsert_attempts(
            [AttemptRecord(uid, "build", 1, False, phase, now + i, now + i + 2, 0 if i == 0 else 3)]
        )
    await store.close()

    listed = szal("history", "--db", database, "--json")
    assert listed.returncode == 0, listed.stderr
    assert {r["name"] for r in json.loads(listed.stdout)} == {"nightly-0", "nightly-1"}

    failed = szal("history", "--db", database, "--json", "--phase", "Failed")
    assert [r["name"] for r in json.loads(failed.stdout)] == ["nightly-1"]

    shown = szal("show", "--db", database, "nightly-1")
    assert shown.returncode == 0, shown.stderr
    assert "build" in shown.stdout and "Failed" in shown.stdout


async def test_show_missing_run_hides_password(database: str) -> None:
    parts = urlsplit(database)
    with_password = urlunsplit(
        parts._replace(netloc=f"postgres:s3cret@{parts.hostname}:{parts.port}")
    )
    store = PostgresStore(database)
    await store.migrate()
    await store.close()
    result = szal("show", "--db", with_password, "no-such-run")
    assert result.returncode == 1
    assert "no run 'no-such-run'" in result.stderr
    assert "s3cret" not in result.stderr
