"""The stream hub: one broadcast per run, bounded per-client buffers.

:class:`StreamHub` is shared by every stream handler of one application
(:mod:`szal.serving.streaming`). Whoever commits history may call
:meth:`StreamHub.notify` (the operator does, after each mirror write); it
only sets a flag, so the writer never waits for a client. Without notify
(``szal serve``, where another process writes SQLite) each broadcast polls
its run's events every ``poll_interval``.

Decisions:

- **The history event log is the only source.** A broadcast reads its run's
  new events with ``store.events_after(last_id, run_uid)`` and hands them to
  its clients; event ids are the log's, so a client resuming with
  ``Last-Event-ID`` reads exactly what it missed from the store and then
  joins the broadcast. Postgres commits events in id order (history.md), so
  ``events_after`` never skips one that commits late.
- **Joining without gaps or duplicates.** A handler first replays from the
  store up to the newest event, then :meth:`Subscription.attach` es
  synchronously: the broadcast keeps a window of the events it has read
  (``replay_window``), and hands the joiner those after its cursor. If the
  window does not reach back to the cursor the attach fails and the handler
  replays from the store again.
- **Slow clients are dropped, never waited for.** Each client has a buffer
  of ``client_buffer`` events; when it is full the client's buffer is
  replaced by a single RESYNC marker and the client leaves the broadcast
  (it reconnects with its last id and replays from the store). The
  broadcast itself never awaits a client.
- **The number of clients is limited** (``max_clients``, all runs together);
  :meth:`StreamHub.open` raises :class:`TooManyClients` beyond it.
- A broadcast ends when its run ends (a run-level event to a terminal
  phase: every client gets END) or when its last client leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections import deque
from dataclasses import dataclass, field

from szal.engine.phases import RunPhase
from szal.history.store import EventRecord, ExecutionStore

logger = logging.getLogger(__name__)

TERMINAL_RUN_PHASES = frozenset(p.value for p in RunPhase if p.is_terminal)
READ_BATCH = 500


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """Knobs of the stream hub (``szal serve`` and ``szal operator`` flags)."""

    max_clients: int = 1000
    """Stream clients allowed at once over all runs; more get 503."""
    client_buffer: int = 256
    """Events a client may fall behind before it is dropped with a resync."""
    heartbeat: float = 15.0
    """Seconds between heartbeat comments (SSE) or pings (WebSocket) on a quiet stream."""
    poll_interval: float = 1.0
    """Seconds between reads of a run's new events when nobody calls notify."""
    write_timeout: float = 10.0
    """Seconds one write to a client may take before the connection is closed."""
    replay_window: int = 10_000
    """Events a broadcast keeps for clients that join it late."""


class Marker(enum.Enum):
    """What a subscription yields besides events."""

    END = "end"
    RESYNC = "resync"
    CLOSED = "closed"  # the hub is shutting down: the client should reconnect


class TooManyClients(RuntimeError):
    """The hub serves ``max_clients`` streams already."""


def ends_run(event: EventRecord) -> bool:
    """Whether ``event`` takes the run itself to a terminal phase."""
    return not event.step and event.new in TERMINAL_RUN_PHASES


@dataclass(eq=False)
class Subscription:
    """One client of the hub; :meth:`close` it when the client goes."""

    hub: StreamHub
    run_uid: str
    _items: deque[EventRecord | Marker] = field(default_factory=deque)
    _ready: asyncio.Event = field(default_factory=asyncio.Event)
    _broadcast: _Broadcast | None = None
    closed: bool = False
    dropped: bool = False

    def attach(self, cursor: int, *, force: bool = False) -> bool:
        """Join the run's broadcast after event ``cursor``; False: replay more first."""
        return self.hub._attach(self, cursor, force)

    async def next(self, timeout: float) -> EventRecord | Marker | None:  # noqa: ASYNC109
        """The next event or marker; None when ``timeout`` passed quietly (heartbeat)."""
        if not self._items:
            self._ready.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), timeout)
        return self._items.popleft() if self._items else None

    def close(self) -> None:
        """Leave the broadcast and free the client slot (idempotent)."""
        if not self.closed:
            self.closed = True
            self.hub._release(self)

    def _offer(self, event: EventRecord, capacity: int) -> bool:
        if len(self._items) >= capacity:
            self._items.clear()
            self._finish(Marker.RESYNC)
            self.dropped = True
            return False
        self._items.append(event)
        self._ready.set()
        return True

    def _finish(self, marker: Marker) -> None:
        self._items.append(marker)
        self._ready.set()


@dataclass(eq=False)
class _Broadcast:
    run_uid: str
    last_id: int
    floor: int
    window: deque[EventRecord] = field(default_factory=deque)
    clients: set[Subscription] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    stopped: bool = False
    task: asyncio.Task[None] | None = None


class StreamHub:
    """Fans each run's new history events out to its stream clients."""

    def __init__(self, store: ExecutionStore, settings: StreamSettings | None = None) -> None:
        self.store = store
        self.settings = settings or StreamSettings()
        self._broadcasts: dict[str, _Broadcast] = {}
        self._clients = 0
        self._closed = False
        self.events_streamed = 0
        """Events handed to clients (for the metrics)."""
        self.clients_dropped = 0
        """Clients dropped for falling behind."""

    @property
    def clients(self) -> int:
        """Stream clients connected now."""
        return self._clients

    def notify(self, run_uid: str | None = None) -> None:
        """New events of ``run_uid`` (None: of any run) are committed: read them now."""
        if run_uid is None:
            for every in self._broadcasts.values():
                every.wake.set()
        elif (one := self._broadcasts.get(run_uid)) is not None:
            one.wake.set()

    def open(self, run_uid: str) -> Subscription:
        """A client slot for a stream of ``run_uid``; raises :class:`TooManyClients`."""
        if self._clients >= self.settings.max_clients:
            raise TooManyClients(f"{self._clients} stream clients connected (the limit)")
        self._clients += 1
        return Subscription(self, run_uid)

    async def close(self) -> None:
        """Stop every broadcast; clients get CLOSED (their stream ends without END)."""
        self._closed = True
        broadcasts = list(self._broadcasts.values())
        self._broadcasts.clear()
        for broadcast in broadcasts:
            broadcast.stopped = True
            for client in broadcast.clients:
                client._finish(Marker.CLOSED)
            if broadcast.task is not None:
                broadcast.task.cancel()
        for broadcast in broadcasts:
            if broadcast.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await broadcast.task

    def _attach(self, sub: Subscription, cursor: int, force: bool) -> bool:
        if self._closed:
            sub._finish(Marker.CLOSED)
            return True
        broadcast = self._broadcasts.get(sub.run_uid)
        if broadcast is None:
            broadcast = _Broadcast(sub.run_uid, last_id=cursor, floor=cursor)
            self._broadcasts[sub.run_uid] = broadcast
            broadcast.task = asyncio.get_running_loop().create_task(
                self._run(broadcast), name=f"szal-stream-{sub.run_uid}"
            )
        elif cursor < broadcast.floor and not force:
            return False
        missing = [e for e in broadcast.window if e.id is not None and e.id > cursor]
        if len(missing) > self.settings.client_buffer:
            return False
        sub._items.extend(missing)
        if missing:
            sub._ready.set()
        sub._broadcast = broadcast
        broadcast.clients.add(sub)
        return True

    def _release(self, sub: Subscription) -> None:
        self._clients -= 1
        broadcast = sub._broadcast
        if broadcast is not None:
            self._leave(broadcast, sub)

    def _leave(self, broadcast: _Broadcast, sub: Subscription) -> None:
        broadcast.clients.discard(sub)
        sub._broadcast = None
        if not broadcast.clients and not broadcast.stopped:
            broadcast.stopped = True
            broadcast.wake.set()
            if self._broadcasts.get(broadcast.run_uid) is broadcast:
                del self._broadcasts[broadcast.run_uid]

    async def _run(self, broadcast: _Broadcast) -> None:
        settings = self.settings
        while not broadcast.stopped:
            broadcast.wake.clear()
            try:
                events = await self.store.events_after(
                    broadcast.last_id, broadcast.run_uid, limit=READ_BATCH
                )
            except Exception as error:  # the store is down: keep clients, try again
                logger.warning(
                    "stream of run %s: reading events failed: %s", broadcast.run_uid, error
                )
                events = []
            ended = False
            for event in events:
                if broadcast.stopped:
                    return
                assert event.id is not None
                broadcast.last_id = event.id
                broadcast.window.append(event)
                if len(broadcast.window) > settings.replay_window:
                    broadcast.floor = broadcast.window.popleft().id or broadcast.floor
                for client in list(broadcast.clients):
                    if client._offer(event, settings.client_buffer):
                        self.events_streamed += 1
                    else:
                        self.clients_dropped += 1
                        self._leave(broadcast, client)
                ended = ended or ends_run(event)
            if ended:
                for client in list(broadcast.clients):
                    client._finish(Marker.END)
                    self._leave(broadcast, client)
                return
            if len(events) < READ_BATCH:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(broadcast.wake.wait(), settings.poll_interval)
