"""Fixtures for the live-surface tests: a real aiohttp server over a real store.

``api`` is parametrized over every history store (SQLite, and Postgres on
the test server, see tests/history/conftest.py): it yields an :class:`Api`
whose ``url`` is a running :func:`szal.serving.app.build_app` on a free
loopback port and whose ``store`` is the store behind it, so a test writes
rows with the store's own methods and reads them back over HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from tests.history.conftest import STORE_FACTORIES

from szal.history.store import ExecutionStore
from szal.serving.app import build_app, serving
from szal.serving.hub import StreamHub, StreamSettings
from szal.serving.sources import HistorySource


@dataclass
class Api:
    url: str
    store: ExecutionStore
    hub: StreamHub
    http: aiohttp.ClientSession


@pytest.fixture
def stream_settings() -> StreamSettings:
    """Hub settings of the ``api`` fixture; a test module may override it."""
    return StreamSettings(poll_interval=0.05, heartbeat=0.5, write_timeout=2.0)


@pytest.fixture(params=sorted(STORE_FACTORIES))
async def api(
    request: pytest.FixtureRequest, tmp_path: Path, stream_settings: StreamSettings
) -> AsyncIterator[Api]:
    async with STORE_FACTORIES[request.param](tmp_path) as store:
        hub = StreamHub(store, stream_settings)
        async with (
            serving(build_app(HistorySource(store), hub), "127.0.0.1", 0) as port,
            aiohttp.ClientSession() as http,
        ):
            yield Api(f"http://127.0.0.1:{port}", store, hub, http)
