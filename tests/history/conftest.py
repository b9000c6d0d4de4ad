"""Store factories for the ExecutionStore contract tests.

``store`` is parametrized over every implementation: each factory is an
async context manager yielding a migrated, empty store. Add a store by
appending one entry to ``STORE_FACTORIES`` (the Postgres store adds its own,
backed by the server the test setup starts).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest
from tests.postgres.server import temporary_store

from szal.history.sqlite import SqliteStore
from szal.history.store import ExecutionStore

StoreFactory = Callable[[Path], AbstractAsyncContextManager[ExecutionStore]]


@asynccontextmanager
async def sqlite_store(tmp_path: Path) -> AsyncIterator[ExecutionStore]:
    store = SqliteStore(tmp_path / "history.db")
    await store.migrate()
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def postgres_store(tmp_path: Path) -> AsyncIterator[ExecutionStore]:
    # A schema of its own on the test server (tests/postgres/server.py).
    async with temporary_store() as store:
        yield store


STORE_FACTORIES: dict[str, StoreFactory] = {"sqlite": sqlite_store, "postgres": postgres_store}


@pytest.fixture(params=sorted(STORE_FACTORIES))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ExecutionStore]:
    async with STORE_FACTORIES[request.param](tmp_path) as opened:
        yield opened
