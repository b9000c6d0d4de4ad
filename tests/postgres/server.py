"""The test Postgres server, for fixtures and store factories.

``shared_dsn()`` returns ``SZAL_TEST_PG_DSN`` when ``make test`` exported it
(the server is then its business). Otherwise it starts the throwaway server
with ``tests/postgres/pg.sh start`` (once per process) and stops it at exit,
unless it was already running, in which case it is left as found. A server
that cannot start raises :class:`PostgresUnavailable` with pg.sh's reason:
the tests fail, they are never skipped.

``temporary_store()`` gives each test a migrated store in a Postgres schema
of its own, dropped afterwards, so tests never see each other's rows and
may run against a shared server.

``Instance`` is a second, private server (own directory and port) for tests
that stop and restart Postgres without disturbing the shared one.
"""

from __future__ import annotations

import atexit
import os
import secrets
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from szal.history.postgres import PostgresStore

PG_SH = Path(__file__).resolve().parent / "pg.sh"

_dsn: str | None = None


class PostgresUnavailable(RuntimeError):
    """The test Postgres server could not be started."""


def _pg_sh(command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(PG_SH), command],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
        check=False,
    )


def shared_dsn() -> str:
    """The DSN of the shared test server, starting it if needed."""
    global _dsn
    if _dsn is not None:
        return _dsn
    from_env = os.environ.get("SZAL_TEST_PG_DSN")
    if from_env:
        _dsn = from_env
        return _dsn
    was_running = _pg_sh("status").returncode == 0
    started = _pg_sh("start")
    if started.returncode != 0:
        raise PostgresUnavailable(
            f"tests/postgres/pg.sh start failed ({started.returncode}):\n{started.stderr}"
        )
    if not was_running:
        atexit.register(_pg_sh, "stop")
    _dsn = started.stdout.strip().splitlines()[-1]
    return _dsn


async def drop_schema(dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def new_schema() -> str:
    return f"t_{secrets.token_hex(6)}"


@asynccontextmanager
async def temporary_store(
    dsn: str | None = None, *, migrate: bool = True, **options: object
) -> AsyncIterator[PostgresStore]:
    """A store in a fresh schema (migrated unless ``migrate=False``), dropped afterwards."""
    dsn = dsn or shared_dsn()
    schema = new_schema()
    store = PostgresStore(dsn, schema=schema, **options)  # type: ignore[arg-type]
    try:
        if migrate:
            await store.migrate()
        yield store
    finally:
        await store.close()
        await drop_schema(dsn, schema)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Instance:
    """A private Postgres server driven through pg.sh (start, halt, stop)."""

    directory: Path
    port: int

    @property
    def env(self) -> dict[str, str]:
        return {"SZAL_PG_DIR": str(self.directory), "SZAL_PG_PORT": str(self.port)}

    def _run(self, command: str) -> str:
        done = _pg_sh(command, self.env)
        if done.returncode != 0:
            raise PostgresUnavailable(f"pg.sh {command} failed:\n{done.stderr}")
        return done.stdout.strip()

    def start(self) -> str:
        return self._run("start").splitlines()[-1]

    def halt(self) -> None:
        self._run("halt")

    def stop(self) -> None:
        self._run("stop")
