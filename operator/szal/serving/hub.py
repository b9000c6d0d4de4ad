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
  store up to the newest event, then attaches synchronously
  (:meth:`Subscription.attach`): the broadcast keeps a window of the events
  it has read (``replay_window``) and hands the joiner those after its
  cursor. If the window does not reach back to the cursor the attach fails
  and the handler replays from the store again.
- **Slow clients are dropped, never waited for.** The broadcast never awaits
  a client: it appends to each client's buffer (at most ``client_buffer``
  events). A client whose buffer is full is marked lagging and gets nothing
  more pushed; once it has written its buffer it pulls what it missed from
  the broadcast's window (shared memory, no store read). A client that
  falls behind the window's start is dropped with RESYNC (it reconnects
  with its last id and replays from the store); one whose socket stops
  taking bytes is cut off by the handler's write deadline. So a burst
  bigger than a buffer (a wide fan-out starting at once) costs no client
  anything, and memory is one window per watched run plus one buffer per
  client.
- **The number of clients is limited** (``max_clients``, all runs together);
  :meth:`StreamHub.open` raises :class:`TooManyClients` beyond it.
- A broadcast ends when its run ends (a run-level event to a terminal
  phase: every client gets END) or when its last client leaves.
"""

from __future__ import annotations

import asyncio
import bisect
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
    """Events queued per client; a client with a full buffer catches up from the window."""
    heartbeat: float = 15.0
    """Seconds between heartbeat comments (SSE) or pings (WebSocket) on a quiet stream."""
    poll_interval: float = 1.0
    """Seconds between reads of a run's new events when nobody calls notify."""
    write_timeout: float = 10.0
    """Seconds one write to a client may take before the connection is closed."""
    replay_window: int = 10_000
    """Events a broadcast keeps for late joiners and lagging clients; behind it: resync."""


class Marker(enum.Enum):
    """What a subscription yields besides events."""

    END = "end"  # the run ended (the handler reads the store once more, then ends)
    RESYNC = "resync"  # the client fell behind the window
    CLOSED = "closed"  # the hub is shutting down: the client should reconnect


class TooManyClients(RuntimeError):
    """The hub serves ``max_clients`` streams already."""


def ends_run(event: EventRecord) -> bool:
    """Whether ``event`` takes the run itself to a terminal phase."""
    return not event.step and event.new in TERMINAL_RUN_PHASES


def _event_id(event: EventRecord) -> int:
    return event.id or 0


@dataclass(eq=False)
class _Broadcast:
    run_uid: str
    last_id: int
    floor: int  # the window holds every event of the run with floor < id <= last_id
    window: list[EventRecord] = field(default_factory=list)
    clients: set[Subscription] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    stopped: bool = False
    task: asyncio.Task[None] | None = None

    def after(self, cursor: int, limit: int) -> list[EventRecord]:
        start = bisect.bisect_right(self.window, cursor, key=_event_id)
        return self.window[start : start + limit]

    def keep(self, event: EventRecord, size: int) -> None:
        self.window.append(event)
        self.last_id = _event_id(event)
        if len(self.window) > size + size // 4:
            # Trim in chunks: a list's front deletion is O(n).
            cut = len(self.window) - size
            self.floor = _event_id(self.window[cut - 1])
            del self.window[:cut]


@dataclass(eq=False)
class Subscription:
    """One client of the hub; :meth:`close` it when the client goes."""

    hub: StreamHub
    run_uid: str
    cursor: int = 0
    """The id of the last event handed to the client."""
    closed: bool = False
    dropped: bool = False
    _items: deque[EventRecord | Marker] = field(default_factory=deque)
    _ready: asyncio.Event = field(default_factory=asyncio.Event)
    _broadcast: _Broadcast | None = None
    _lagging: bool = False

    def attach(self, cursor: int, *, force: bool = False) -> bool:
        """Join the run's broadcast after event ``cursor``; False: replay more first."""
        return self.hub._attach(self, cursor, force)

    async def next(self, timeout: float) -> EventRecord | Marker | None:  # noqa: ASYNC109
        """The next event or marker; None when ``timeout`` passed quietly (heartbeat)."""
        if not self._items and self._lagging:
            self._catch_up()
        if not self._items:
            self._ready.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._ready.wait()
        if not self._items:
            return None
        item = self._items.popleft()
        if isinstance(item, EventRecord):
            self.cursor = _event_id(item)
        return item

    def close(self) -> None:
        """Leave the broadcast and free the client slot (idempotent)."""
        if not self.closed:
            self.closed = True
            self.hub._release(self)

    def _offer(self, event: EventRecord, capacity: int) -> None:
        if self._lagging:
            return
        if len(self._items) >= capacity:
            self._lagging = True
            return
        self._items.append(event)
        self._ready.set()

    def _catch_up(self) -> None:
        broadcast = self._broadcast
        if broadcast is None:
            self._lagging = False
            return
        if self.cursor < broadcast.floor:
            self.hub.clients_dropped += 1
            self.hub._leave(broadcast, self)
            self._finish(Marker.RESYNC)
            return
        missed = broadcast.after(self.cursor, self.hub.settings.client_buffer)
        self._items.extend(missed)
        if not missed or _event_id(missed[-1]) >= broadcast.last_id:
            self._lagging = False

    def _finish(self, marker: Marker) -> None:
        self._items.append(marker)
        self._ready.set()


class StreamHub:
    """Fans each run's new history events out to its stream clients."""

    def __init__(self, store: ExecutionStore, settings: StreamSettings | None = None) -> None:
        self.store = store
        self.settings = settings or StreamSettings()
        self._broadcasts: dict[str, _Broadcast] = {}
        self._clients = 0
        self._closed = False
        self.events_streamed = 0
        """Events written to clients (counted by the stream handlers, for the metrics)."""
        self.clients_dropped = 0
        """Clients dropped for falling behind (resync) or for a write deadline."""

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
        sub.cursor = cursor
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
        sub._broadcast = broadcast
        broadcast.clients.add(sub)
        missed = broadcast.after(cursor, self.settings.client_buffer)
        if missed:
            sub._items.extend(missed)
            sub._ready.set()
            sub._lagging = _event_id(missed[-1]) < broadcast.last_id
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
        # Reads of at most half the window, with the clients running while each
        # read is awaited: a client that keeps reading never falls out of it.
        batch = max(1, min(READ_BATCH, settings.replay_window // 2))
        while not broadcast.stopped:
            broadcast.wake.clear()
            try:
                events = await self.store.events_after(
                    broadcast.last_id, broadcast.run_uid, limit=batch
                )
            except Exception as error:  # the store is down: keep the clients, read again
                logger.warning(
                    "stream of run %s: reading events failed: %s", broadcast.run_uid, error
                )
                events = []
            if broadcast.stopped:
                return
            ended = False
            for event in events:
                broadcast.keep(event, settings.replay_window)
                for client in broadcast.clients:
                    client._offer(event, settings.client_buffer)
                ended = ended or ends_run(event)
            if ended:
                for client in list(broadcast.clients):
                    client._finish(Marker.END)
                    self._leave(broadcast, client)
                return
            if len(events) < batch:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(settings.poll_interval):
                        await broadcast.wake.wait()
