"""The run event streams: SSE and WebSocket on one path, over the hub.

``GET /api/v1/namespaces/{namespace}/workflowruns/{name}/events`` answers
with Server-Sent Events, or with a WebSocket when the request asks to
upgrade. Registered by :func:`szal.serving.app.build_app`; reads the
:class:`~szal.serving.hub.StreamHub` stored under :data:`HUB`.

A stream: replay from the history store after the client's cursor
(``Last-Event-ID`` header, else ``?after=``, else 0: the whole log), join the
run's broadcast (:mod:`szal.serving.hub`), then forward its events.
Decisions:

- SSE messages: ``id:`` the event log id, ``event:`` ``run`` or ``step``,
  ``data:`` the event as JSON (:func:`szal.serving.encoding.event_json`). A
  stream ends with ``event: end`` (data: the run's phase) once the run has
  ended; a dropped client gets ``event: resync`` (data: its last id). A
  comment (``: heartbeat``) every ``heartbeat`` seconds keeps proxies from
  closing a quiet stream. ``retry: 2000`` tells browsers when to reconnect.
- WebSocket messages are JSON objects ``{"type": "event", "event": ...}``,
  ``{"type": "end", "phase": ...}``, ``{"type": "resync", "lastEventId": N}``;
  heartbeats are WebSocket pings.
- An event is encoded once (an LRU of the last 4,096), not once per client.
- Every write has a deadline (``write_timeout``): a client that stops
  reading is disconnected rather than holding a slot forever.
- A 503 with ``Retry-After`` when the hub is at its client limit; a 503 too
  when the application has no history store (the operator without
  ``--history-dsn``): the event ids are the store's.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from szal.history.store import EventRecord
from szal.serving.encoding import event_json
from szal.serving.hub import (
    READ_BATCH,
    TERMINAL_RUN_PHASES,
    Marker,
    StreamHub,
    Subscription,
    TooManyClients,
    ends_run,
)
from szal.serving.rest import SOURCE, BadParameter, not_found

HUB: web.AppKey[StreamHub | None] = web.AppKey("hub", StreamHub)
ATTACH_TRIES = 3


class _Sink(Protocol):
    async def event(self, event: EventRecord) -> None: ...
    async def heartbeat(self) -> None: ...
    async def end(self, phase: str) -> None: ...
    async def resync(self, last_id: int) -> None: ...


# One broadcast event goes to every client of the run: encode it once, not per client.
@functools.lru_cache(maxsize=4096)
def _sse_message(event: EventRecord) -> bytes:
    kind = "step" if event.step else "run"
    data = json.dumps(event_json(event), separators=(",", ":"))
    return f"id: {event.id}\nevent: {kind}\ndata: {data}\n\n".encode()


@functools.lru_cache(maxsize=4096)
def _ws_message(event: EventRecord) -> str:
    return json.dumps({"type": "event", "event": event_json(event)}, separators=(",", ":"))


class _SseSink:
    def __init__(self, response: web.StreamResponse, timeout: float) -> None:
        self.response = response
        self.timeout = timeout

    async def _write(self, text: str) -> None:
        async with asyncio.timeout(self.timeout):
            await self.response.write(text.encode())

    async def event(self, event: EventRecord) -> None:
        async with asyncio.timeout(self.timeout):
            await self.response.write(_sse_message(event))

    async def heartbeat(self) -> None:
        await self._write(": heartbeat\n\n")

    async def end(self, phase: str) -> None:
        await self._write(f"event: end\ndata: {json.dumps({'phase': phase})}\n\n")

    async def resync(self, last_id: int) -> None:
        await self._write(f"event: resync\ndata: {json.dumps({'lastEventId': last_id})}\n\n")


class _WsSink:
    def __init__(self, ws: web.WebSocketResponse, timeout: float) -> None:
        self.ws = ws
        self.timeout = timeout

    async def _send(self, payload: dict[str, Any]) -> None:
        async with asyncio.timeout(self.timeout):
            await self.ws.send_json(payload)

    async def event(self, event: EventRecord) -> None:
        async with asyncio.timeout(self.timeout):
            await self.ws.send_str(_ws_message(event))

    async def heartbeat(self) -> None:
        async with asyncio.timeout(self.timeout):
            await self.ws.ping()

    async def end(self, phase: str) -> None:
        await self._send({"type": "end", "phase": phase})

    async def resync(self, last_id: int) -> None:
        await self._send({"type": "resync", "lastEventId": last_id})


def _cursor(request: web.Request) -> int:
    raw = request.headers.get("Last-Event-ID")
    name = "Last-Event-ID"
    if raw is None:
        raw, name = request.query.get("after", "0"), "after"
    try:
        value = int(raw)
    except ValueError:
        raise BadParameter(name, f"not an event id: {raw!r}") from None
    if value < 0:
        raise BadParameter(name, f"not an event id: {raw!r}")
    return value


async def _forward(hub: StreamHub, sub: Subscription, sink: _Sink, cursor: int) -> None:
    """Replay from the store after ``cursor``, join the broadcast, forward until the end."""
    tries = 0

    async def send(event: EventRecord) -> None:
        nonlocal cursor
        await sink.event(event)
        hub.events_streamed += 1
        cursor = event.id or cursor

    while True:
        while True:
            batch = await hub.store.events_after(cursor, sub.run_uid, limit=READ_BATCH)
            for event in batch:
                await send(event)
                if ends_run(event):
                    await sink.end(event.new)
                    return
            if len(batch) < READ_BATCH:
                break
        detail = await hub.store.get_run(sub.run_uid)
        if detail is not None and detail.run.phase in TERMINAL_RUN_PHASES:
            # Ended without a terminal event after the cursor (re-archived from its status).
            for event in await hub.store.events_after(cursor, sub.run_uid, limit=READ_BATCH):
                await send(event)
            await sink.end(detail.run.phase)
            return
        if sub.attach(cursor, force=tries >= ATTACH_TRIES):
            break
        tries += 1
    while True:
        item = await sub.next(hub.settings.heartbeat)
        if item is None:
            await sink.heartbeat()
        elif item is Marker.END:
            # A lagging client may not have every event yet: the store has them all.
            for event in await hub.store.events_after(cursor, sub.run_uid, limit=READ_BATCH):
                await send(event)
            detail = await hub.store.get_run(sub.run_uid)
            await sink.end(detail.run.phase if detail is not None else "Unknown")
            return
        elif item is Marker.RESYNC:
            await sink.resync(cursor)
            return
        elif item is Marker.CLOSED:
            return
        elif isinstance(item, EventRecord) and item.id is not None and item.id > cursor:
            await send(item)


async def _guarded(request: web.Request, hub: StreamHub, stream: Awaitable[None]) -> None:
    try:
        await stream
    except TimeoutError:
        # The client stopped reading: drop the connection, unsent bytes and all.
        hub.clients_dropped += 1
        if request.transport is not None:
            request.transport.abort()
    except ConnectionError:
        pass  # the client is gone


async def stream_events(request: web.Request) -> web.StreamResponse:
    """SSE (or a WebSocket) of one run's events."""
    hub = request.app[HUB]
    if hub is None:
        raise web.HTTPServiceUnavailable(
            text=json.dumps(
                {"error": "streams need the history store (szal operator --history-dsn)"}
            ),
            content_type="application/json",
        )
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    cursor = _cursor(request)
    detail = await request.app[SOURCE].get_run(namespace, name)
    if detail is None:
        raise not_found(f"workflowrun {namespace}/{name}")
    try:
        sub = hub.open(detail.run.uid)
    except TooManyClients as error:
        raise web.HTTPServiceUnavailable(
            text=json.dumps({"error": str(error)}),
            content_type="application/json",
            headers={"Retry-After": "5"},
        ) from None
    timeout = hub.settings.write_timeout
    try:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            forwarding = asyncio.ensure_future(
                _guarded(request, hub, _forward(hub, sub, _WsSink(ws, timeout), cursor))
            )
            receiving = asyncio.ensure_future(_drain(ws))
            await asyncio.wait({forwarding, receiving}, return_when=asyncio.FIRST_COMPLETED)
            for task in (forwarding, receiving):
                task.cancel()
            await asyncio.gather(forwarding, receiving, return_exceptions=True)
            await ws.close()
            return ws
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        await response.write(b"retry: 2000\n\n")
        await _guarded(request, hub, _forward(hub, sub, _SseSink(response, timeout), cursor))
        return response
    finally:
        sub.close()


async def _drain(ws: web.WebSocketResponse) -> None:
    """Read (and ignore) client messages until it closes: that is how a close is seen."""
    async for message in ws:
        if message.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
            break


def add_routes(app: web.Application) -> None:
    """Register the stream route on ``app``."""
    app.router.add_get("/api/v1/namespaces/{namespace}/workflowruns/{name}/events", stream_events)
