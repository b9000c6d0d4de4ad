"""Run event streams (SSE and WebSocket) over a real server and real stores.

Covers: a stream replays the run's event log and then forwards new events,
ends with ``end`` when the run ends; ``Last-Event-ID`` and ``?after=`` resume
exactly after that id, also while a writer keeps committing events (no gap,
no duplicate, for many reconnecting clients); heartbeats on a quiet stream;
the WebSocket equivalent; the client limit (503); a stalled client is
disconnected while a reading client of the same run gets every event
without waiting for it; a stream of a run already ended closes at once.
Does not cover the operator's notify hook (e2e) or auth (test_auth.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

import aiohttp
import pytest
from tests.history.records import run_record
from tests.serving.conftest import Api
from tests.serving.sse import Message, messages

from szal.history.store import EventRecord
from szal.serving.hub import StreamSettings

STREAM = "/api/v1/namespaces/default/workflowruns/run-r1/events"


def step_event(step: str, new: str, at: float, message: str = "") -> EventRecord:
    return EventRecord("r1", step, 1, False, "Pending", new, "Step" + new, at, message)


def run_ended(at: float) -> EventRecord:
    return EventRecord("r1", None, 0, False, "Running", "Succeeded", "RunSucceeded", at)


async def commit(api: Api, *events: EventRecord, phase: str = "Running") -> None:
    await api.store.write_batch(run_record("r1", phase=phase), events=events)
    api.hub.notify("r1")


async def read_until_end(
    api: Api, headers: dict[str, str] | None = None, query: str = ""
) -> list[Message]:
    """Every non-comment message of one stream, until the server closes it."""
    received: list[Message] = []
    async with api.http.get(api.url + STREAM + query, headers=headers) as response:
        assert response.status == 200
        assert response.content_type == "text/event-stream"
        async for message in messages(response):
            if message.event != ":":
                received.append(message)
    return received


async def stored_ids(api: Api) -> list[int]:
    return [e.id for e in await api.store.events_after(0, "r1") if e.id is not None]


async def test_replay_then_live_then_end(api: Api) -> None:
    await commit(api, step_event("a", "Running", 1001.0))
    reader = asyncio.create_task(read_until_end(api))
    await wait_for_clients(api, 1)
    await commit(api, step_event("a", "Succeeded", 1002.0))
    await commit(api, run_ended(1003.0), phase="Succeeded")
    received = await asyncio.wait_for(reader, 30)
    assert [m.event for m in received] == ["step", "step", "run", "end"]
    assert [m.json()["new"] for m in received[:3]] == ["Running", "Succeeded", "Succeeded"]
    assert [int(m.id or 0) for m in received[:3]] == await stored_ids(api)
    assert received[-1].json() == {"phase": "Succeeded"}
    assert api.hub.clients == 0


async def test_resume_after_last_event_id(api: Api) -> None:
    await commit(api, *(step_event(s, "Running", 1001.0 + i) for i, s in enumerate("abcd")))
    await commit(api, run_ended(1010.0), phase="Succeeded")
    ids = await stored_ids(api)
    resumed = await read_until_end(api, headers={"Last-Event-ID": str(ids[1])})
    assert [int(m.id or 0) for m in resumed if m.id] == ids[2:]
    by_query = await read_until_end(api, query=f"?after={ids[3]}")
    assert [int(m.id or 0) for m in by_query if m.id] == ids[4:]
    # An ended run with nothing after the cursor: just the end.
    assert [m.event for m in await read_until_end(api, query=f"?after={ids[-1]}")] == ["end"]


async def test_reconnecting_clients_see_every_event_once_while_events_commit(api: Api) -> None:
    """Clients drop and resume with Last-Event-ID at random moments of a busy run."""
    total = 120

    async def writer() -> None:
        for i in range(total):
            await commit(api, step_event(f"s{i}", "Running", 2000.0 + i))
            await asyncio.sleep(0.002)
        await commit(api, run_ended(3000.0), phase="Succeeded")

    async def reconnecting_client(seed: int) -> list[int]:
        seen: list[int] = []
        last = 0
        connection = 0
        while True:
            connection += 1
            headers = {"Last-Event-ID": str(last)} if last else {}
            async with api.http.get(api.url + STREAM, headers=headers) as response:
                assert response.status == 200
                count = 0
                async for message in messages(response):
                    if message.event == "end":
                        return seen
                    if message.id is not None:
                        seen.append(int(message.id))
                        last = int(message.id)
                        count += 1
                    # Hang up after a few events, a different number per client and connection.
                    if count >= 3 + (seed * 7 + connection * 5) % 11:
                        break

    await commit(api, step_event("first", "Running", 1999.0))
    writing = asyncio.create_task(writer())
    results = await asyncio.wait_for(
        asyncio.gather(*(reconnecting_client(seed) for seed in range(8))), 60
    )
    await writing
    expected = await stored_ids(api)
    assert len(expected) == total + 2
    for seen in results:
        assert seen == expected


async def test_heartbeat_on_a_quiet_stream(api: Api) -> None:
    await commit(api, step_event("a", "Running", 1001.0))
    async with api.http.get(api.url + STREAM) as response:
        kinds: list[str] = []
        started = time.monotonic()
        async for message in messages(response):
            kinds.append(message.event)
            if message.event == ":":
                assert message.data == "heartbeat"
                break
        assert kinds == ["step", ":"]
        assert time.monotonic() - started < 5


async def test_websocket_stream(api: Api) -> None:
    await commit(api, step_event("a", "Running", 1001.0))
    ids = await stored_ids(api)
    async with api.http.ws_connect(api.url + STREAM) as ws:
        first = await ws.receive_json(timeout=10)
        assert first["type"] == "event" and first["event"]["id"] == ids[0]
        await commit(
            api, step_event("a", "Succeeded", 1002.0), run_ended(1003.0), phase="Succeeded"
        )
        second = await ws.receive_json(timeout=10)
        third = await ws.receive_json(timeout=10)
        assert [second["event"]["new"], third["event"]["step"]] == ["Succeeded", None]
        assert await ws.receive_json(timeout=10) == {"type": "end", "phase": "Succeeded"}
        closing = await ws.receive(timeout=10)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    ids = await stored_ids(api)
    async with api.http.ws_connect(api.url + STREAM + f"?after={ids[1]}") as ws:
        resumed = await ws.receive_json(timeout=10)
        assert resumed["event"]["id"] == ids[2]


async def test_bad_cursor_and_unknown_run(api: Api) -> None:
    await commit(api, step_event("a", "Running", 1001.0))
    async with api.http.get(api.url + STREAM, headers={"Last-Event-ID": "x"}) as response:
        assert response.status == 400
        assert (await response.json())["parameter"] == "Last-Event-ID"
    async with api.http.get(api.url + STREAM.replace("run-r1", "nope")) as response:
        assert response.status == 404


async def wait_for_clients(api: Api, count: int) -> None:
    deadline = time.monotonic() + 10
    while api.hub.clients != count:
        assert time.monotonic() < deadline, f"{api.hub.clients} clients, expected {count}"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("stream_settings", [StreamSettings(max_clients=2, poll_interval=0.05)])
async def test_client_limit(api: Api) -> None:
    await commit(api, step_event("a", "Running", 1001.0))
    async with api.http.get(api.url + STREAM), api.http.get(api.url + STREAM):
        await wait_for_clients(api, 2)
        async with api.http.get(api.url + STREAM) as third:
            assert third.status == 503
            assert third.headers["Retry-After"] == "5"
    await wait_for_clients(api, 0)


@pytest.mark.parametrize(
    "stream_settings",
    [StreamSettings(client_buffer=8, poll_interval=0.05, write_timeout=1.0, heartbeat=0.5)],
)
async def test_stalled_client_is_dropped_and_never_waited_for(api: Api) -> None:
    await commit(api, step_event("a", "Running", 1001.0))
    port = int(api.url.rsplit(":", 1)[1])
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    stalled.connect(("127.0.0.1", port))
    stalled.sendall(f"GET {STREAM} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    reader = asyncio.create_task(read_until_end(api))
    try:
        await wait_for_clients(api, 2)
        # Big events, so the stalled client's socket fills and the server's writes block.
        padding = "x" * 16_000
        batches = 40
        for b in range(batches):
            await commit(
                api,
                *(
                    step_event(f"s{b}-{i}", "Running", 5000 + b * 10 + i, padding)
                    for i in range(10)
                ),
            )
        await commit(api, run_ended(9000.0), phase="Succeeded")
        received = await asyncio.wait_for(reader, 60)
        assert [int(m.id or 0) for m in received if m.id] == await stored_ids(api)
        assert received[-1].event == "end"
        await wait_for_clients(api, 0)
        assert api.hub.clients_dropped >= 1
        # The server cut the stalled connection off: reading it ends.
        stalled.settimeout(10)
        with contextlib.suppress(ConnectionResetError):
            while await asyncio.to_thread(stalled.recv, 1 << 20):
                pass
    finally:
        with contextlib.suppress(OSError):
            stalled.close()
