"""The stream hub's buffering rules, driven directly over a real SQLite store.

Covers: a burst larger than a client's buffer reaches a reading client
completely and in order (it catches up from the broadcast's window); a
client that stops reading while the run moves past the window gets RESYNC
and leaves the broadcast; notify wakes a broadcast at once instead of after
its poll interval; closing the hub ends every subscription with CLOSED.
Does not cover HTTP (test_streams.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.history.records import run_record

from szal.history.sqlite import SqliteStore
from szal.history.store import EventRecord
from szal.serving.hub import Marker, StreamHub, StreamSettings, Subscription


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "history.db")
    await opened.migrate()
    await opened.upsert_run(run_record("r1"))
    try:
        yield opened
    finally:
        await opened.close()


async def commit(store: SqliteStore, hub: StreamHub, first: int, count: int) -> None:
    await store.append_events(
        [
            EventRecord("r1", f"s{i}", 1, False, "Pending", "Running", "StepStarted", float(i))
            for i in range(first, first + count)
        ]
    )
    hub.notify("r1")


async def drain(sub: Subscription, until: int) -> list[EventRecord | Marker]:
    """Items until event id ``until`` or a marker (bounded by a deadline)."""
    items: list[EventRecord | Marker] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        item = await sub.next(0.05)
        if item is None:
            continue
        items.append(item)
        if isinstance(item, Marker) or item.id == until:
            return items
    raise AssertionError(f"timed out after {len(items)} items")


async def test_burst_bigger_than_the_buffer_reaches_a_reading_client(store: SqliteStore) -> None:
    hub = StreamHub(store, StreamSettings(client_buffer=4, poll_interval=5.0))
    sub = hub.open("r1")
    assert sub.attach(0)
    await commit(store, hub, 0, 300)
    items = await drain(sub, until=300)
    assert [i.id for i in items if isinstance(i, EventRecord)] == list(range(1, 301))
    assert hub.clients_dropped == 0
    sub.close()
    await hub.close()


async def test_client_behind_the_window_is_dropped_with_resync(store: SqliteStore) -> None:
    hub = StreamHub(store, StreamSettings(client_buffer=4, replay_window=20, poll_interval=5.0))
    slow, fast = hub.open("r1"), hub.open("r1")
    assert slow.attach(0) and fast.attach(0)
    await commit(store, hub, 0, 100)
    fast_items = await drain(fast, until=100)
    assert [i.id for i in fast_items if isinstance(i, EventRecord)] == list(range(1, 101))
    slow_items = await drain(slow, until=-1)
    assert [i.id for i in slow_items[:-1] if isinstance(i, EventRecord)] == [1, 2, 3, 4]
    assert slow_items[-1] is Marker.RESYNC
    assert hub.clients_dropped == 1
    # The fast client still gets what comes next.
    await commit(store, hub, 100, 1)
    assert [getattr(i, "id", i) for i in await drain(fast, until=101)] == [101]
    slow.close()
    fast.close()
    assert hub.clients == 0
    await hub.close()


async def test_notify_wakes_the_broadcast_before_its_poll(store: SqliteStore) -> None:
    hub = StreamHub(store, StreamSettings(poll_interval=30.0))
    sub = hub.open("r1")
    assert sub.attach(0)
    await asyncio.sleep(0.1)  # the broadcast has read once and waits
    started = time.monotonic()
    await commit(store, hub, 0, 1)
    assert [getattr(i, "id", i) for i in await drain(sub, until=1)] == [1]
    assert time.monotonic() - started < 5
    sub.close()
    await hub.close()


async def test_close_ends_every_subscription(store: SqliteStore) -> None:
    hub = StreamHub(store, StreamSettings(poll_interval=0.05))
    sub = hub.open("r1")
    assert sub.attach(0)
    await hub.close()
    assert await sub.next(1.0) is Marker.CLOSED
    late = hub.open("r1")
    assert late.attach(0)
    assert await late.next(1.0) is Marker.CLOSED
    sub.close()
    late.close()
