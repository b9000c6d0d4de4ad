"""Fixtures for the Postgres store and mirror tests (see server.py).

``pg_dsn`` is the shared test server (started if ``make test`` did not);
``pg_store`` a migrated store in a schema of its own; ``pg_instance`` a
private server for outage tests, removed afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from tests.postgres.server import Instance, free_port, shared_dsn, temporary_store

from szal.history.postgres import PostgresStore


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    return shared_dsn()


@pytest.fixture
async def pg_store(pg_dsn: str) -> AsyncIterator[PostgresStore]:
    async with temporary_store(pg_dsn) as store:
        yield store


@pytest.fixture
def pg_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    # A short path: the Unix socket path must stay under 108 bytes.
    directory = Path("/tmp") / f"szal-pg-{tmp_path_factory.getbasetemp().name}-{free_port()}"
    instance = Instance(directory=directory, port=free_port())
    try:
        yield instance
    finally:
        instance.stop()
