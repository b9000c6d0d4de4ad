"""HistoryMirror: the operator's durable, never-blocking writer of run history.

The operator calls :meth:`HistoryMirror.submit` with a :class:`HistoryBatch`
for every run and step transition it makes. Reconciliation must never wait
for the database, so ``submit`` only queues in memory and returns; background
asyncio workers write the queue to the :class:`~szal.history.store.ExecutionStore`
(Postgres in the cluster), retrying with exponential backoff and jitter while
the database is down or slow, and flushing the backlog once it answers.

:meth:`archived` and :meth:`wait_archived` tell whether everything
submitted for a run is committed, so the operator can hold back deleting a
finished run (its TTL, or a finalizer) until its history is in the database,
with a bounded wait. The queue is in memory: after an operator restart it
is empty and the operator resubmits what still needs archiving, which is
safe because every write is idempotent.

Decisions:

- **Order per run, not globally.** Each run has its own queue; a run is
  written by at most one worker at a time, so its rows arrive in submission
  order. Different runs are written concurrently (``workers``).
- **Coalescing bounds the backlog.** Batches queued behind each other for one
  run merge into one: the latest run record, attempts keyed by
  (step, attempt, rollback), events concatenated in order (duplicates
  dropped). Applying the merged batch gives the rows applying each batch
  would, so an outage costs memory proportional to the runs touched and
  their attempts and events, not to the number of transitions. The merge
  follows the store's rules field by field: the latest phase wins unless it
  would take a terminal row back, and a None never erases an earlier value.
- **Retries are per run.** A failing write puts only that run into backoff
  (``MirrorSettings.backoff``: Exponential, jittered to [50 %, 100 %]);
  other runs keep going. A database outage fails every run and so pauses
  them all; a single bad batch (a permanent error) retries alone at
  ``max_delay`` and shows up in :attr:`last_error` and :meth:`failing`,
  never blocking the rest. Nothing is dropped while the mirror runs.
- **The schema comes first.** Workers call ``store.migrate()`` (idempotent)
  before their first write, retrying like a write, so the operator can start
  while the database is down.
- Pure asyncio and the store interface: no kopf, Kubernetes or asyncpg here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final, TypeVar

from szal.engine.phases import RunPhase, StepPhase
from szal.history.store import (
    AttemptRecord,
    EventRecord,
    ExecutionStore,
    RunRecord,
    WorkflowRecord,
)
from szal.spec import BackoffSettings

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_TERMINAL_RUN = frozenset(p.value for p in RunPhase if p.is_terminal)
_TERMINAL_STEP = frozenset(p.value for p in StepPhase if p.is_terminal)


@dataclass(frozen=True, slots=True)
class HistoryBatch:
    """Rows for one transition of one run: its definition (first time only is
    enough), the run itself, attempts that changed and new events in order."""

    workflow: WorkflowRecord | None
    run: RunRecord
    attempts: Sequence[AttemptRecord] = ()
    events: Sequence[EventRecord] = ()


WRITE_BACKOFF: Final = BackoffSettings("Exponential", delay=0.2, max_delay=30.0, jitter=0.5)
"""The mirror's default: 0.2 s doubling to 30 s, each delay jittered to [50 %, 100 %]."""


@dataclass(frozen=True, slots=True)
class MirrorSettings:
    """How the mirror retries and drains."""

    workers: int = 4
    """Runs written concurrently (one run is never written by two workers)."""
    backoff: BackoffSettings = WRITE_BACKOFF
    """Delay before retrying a run's failed write: 0.2 s doubling to 30 s, jittered."""
    write_timeout: float = 30.0
    """Seconds one batch may take before it counts as failed and is retried."""
    remember_archived: int = 10_000
    """How many archived run uids :meth:`HistoryMirror.archived` remembers."""


def _merge_run(old: RunRecord, new: RunRecord) -> RunRecord:
    """``new`` as the store would leave it after writing ``old`` then ``new``."""
    if _terminal_run(old.phase) and not _terminal_run(new.phase):
        return old  # a stale replay: a terminal run never goes back
    return replace(
        new,
        started_at=_first(new.started_at, old.started_at),
        finished_at=_first(new.finished_at, old.finished_at),
        message=_first(new.message, old.message),
        progress=_first(new.progress, old.progress),
    )


def _merge_attempt(old: AttemptRecord, new: AttemptRecord) -> AttemptRecord:
    """Like :func:`_merge_run`: the store's upserts never forget a value."""
    if _terminal_step(old.phase) and not _terminal_step(new.phase):
        return old
    return replace(
        new,
        started_at=_first(new.started_at, old.started_at),
        finished_at=_first(new.finished_at, old.finished_at),
        exit_code=_first(new.exit_code, old.exit_code),
        message=_first(new.message, old.message),
        outputs=_first(new.outputs, old.outputs),
        node=_first(new.node, old.node),
    )


def _terminal_run(phase: str) -> bool:
    return phase in _TERMINAL_RUN


def _terminal_step(phase: str) -> bool:
    return phase in _TERMINAL_STEP


def _first(value: _T | None, fallback: _T | None) -> _T | None:
    return fallback if value is None else value


def _event_key(event: EventRecord) -> tuple[object, ...]:
    return (event.run_uid, event.step, event.attempt, event.rollback, event.new, event.at)


@dataclass(slots=True)
class _Pending:
    """The coalesced, not yet written changes of one run."""

    run: RunRecord
    workflows: dict[tuple[str, str, str], WorkflowRecord] = field(default_factory=dict)
    attempts: dict[tuple[str, int, bool], AttemptRecord] = field(default_factory=dict)
    events: list[EventRecord] = field(default_factory=list)
    event_keys: set[tuple[object, ...]] = field(default_factory=set)
    batches: int = 0

    def add(self, batch: HistoryBatch) -> None:
        self._merge(batch.run, [batch.workflow] if batch.workflow else [], batch.attempts)
        self._extend(batch.events)
        self.batches += 1

    def absorb(self, later: _Pending) -> None:
        """Append ``later``'s changes after this one's (for a retry with new work)."""
        self._merge(later.run, later.workflows.values(), later.attempts.values())
        self._extend(later.events)
        self.batches += later.batches

    def _merge(
        self,
        run: RunRecord,
        workflows: Iterable[WorkflowRecord],
        attempts: Iterable[AttemptRecord],
    ) -> None:
        self.run = _merge_run(self.run, run)
        for w in workflows:
            self.workflows.setdefault((w.namespace, w.name, w.spec_hash), w)
        for attempt in attempts:
            key = (attempt.step, attempt.attempt, attempt.rollback)
            old = self.attempts.get(key)
            self.attempts[key] = attempt if old is None else _merge_attempt(old, attempt)

    def _extend(self, events: Iterable[EventRecord]) -> None:
        for event in events:
            key = _event_key(event)
            if key not in self.event_keys:
                self.event_keys.add(key)
                self.events.append(event)


@dataclass(slots=True)
class _RunState:
    queued: _Pending | None = None
    in_flight: _Pending | None = None
    failures: int = 0
    retry_at: float = 0.0
    archived: asyncio.Event = field(default_factory=asyncio.Event)


class HistoryMirror:
    """Queue history batches in memory; write them to ``store`` in the background.

    Use as ``async with HistoryMirror(store) as mirror:`` or call
    :meth:`start` and :meth:`close`. ``submit`` never blocks and never fails
    for a database reason.
    """

    def __init__(self, store: ExecutionStore, settings: MirrorSettings | None = None) -> None:
        self.store = store
        self.settings = settings or MirrorSettings()
        self.last_error: BaseException | None = None
        """The most recent write failure (None after a success), for status conditions."""
        self.written_batches = 0
        self._runs: dict[str, _RunState] = {}
        self._ready: deque[str] = deque()
        self._archived: OrderedDict[str, None] = OrderedDict()
        self._wakeup = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._migrated = False
        self._migrate_lock = asyncio.Lock()
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()

    # -- lifecycle --------------------------------------------------------------

    async def __aenter__(self) -> HistoryMirror:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def start(self) -> None:
        """Start the background workers (in the running event loop)."""
        if self._workers:
            return
        self._workers = [
            asyncio.create_task(self._work(), name=f"szal-history-mirror-{i}")
            for i in range(max(1, self.settings.workers))
        ]

    # A bounded wait that answers (instead of raising) is the API here: ASYNC109.
    async def close(self, timeout: float = 10.0) -> int:  # noqa: ASYNC109
        """Stop accepting batches, drain for up to ``timeout`` seconds, stop.

        Returns the number of submitted batches left unwritten (0 when drained);
        those are logged (the operator resubmits what still needs archiving
        after its restart).
        """
        if self._closing:
            return self.pending()  # already closed (e.g. close() inside ``async with``)
        self._closing = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers = []
        left = self.pending()
        if left:
            logger.warning(
                "history mirror closed with %d batch(es) of %d run(s) unwritten: %s",
                left,
                len(self._runs),
                self.last_error,
            )
        return left

    # -- the operator's side ----------------------------------------------------

    def submit(self, batch: HistoryBatch) -> None:
        """Queue one transition's rows; returns at once. Order per run is kept."""
        if self._closing:
            raise RuntimeError("history mirror is closed")
        uid = batch.run.uid
        state = self._runs.get(uid)
        if state is None:
            state = self._runs[uid] = _RunState()
        state.archived.clear()
        self._archived.pop(uid, None)
        if state.queued is None:
            state.queued = _Pending(run=batch.run)
            if state.in_flight is None:
                self._ready.append(uid)
        state.queued.add(batch)
        self._idle.clear()
        self._wakeup.set()

    def archived(self, run_uid: str) -> bool:
        """True when everything submitted for the run is committed to the store."""
        return run_uid in self._archived

    async def wait_archived(self, run_uid: str, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait up to ``timeout`` seconds for :meth:`archived`; return it."""
        if self.archived(run_uid):
            return True
        state = self._runs.get(run_uid)
        if state is None:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.archived.wait(), timeout)
        return self.archived(run_uid)

    def forget(self, run_uid: str) -> None:
        """Drop what the mirror remembers of an archived run (the caller is done with it)."""
        self._archived.pop(run_uid, None)

    def pending(self, run_uid: str | None = None) -> int:
        """Batches submitted but not yet committed (for one run, or all)."""
        states = (
            self._runs.values()
            if run_uid is None
            else [s for s in [self._runs.get(run_uid)] if s is not None]
        )
        return sum(
            (s.queued.batches if s.queued else 0) + (s.in_flight.batches if s.in_flight else 0)
            for s in states
        )

    def failing(self) -> list[str]:
        """Runs whose last write failed and that wait for a retry."""
        return sorted(uid for uid, s in self._runs.items() if s.failures)

    # -- the workers ------------------------------------------------------------
    #
    # Invariant: a run's uid is in ``_ready`` exactly when it has queued work
    # and no worker is writing it, so one run is never written twice at once.

    def _next_ready(self) -> tuple[str | None, float]:
        """A run whose retry time has come, or the seconds until the earliest one."""
        now = time.monotonic()
        earliest = float("inf")
        for _ in range(len(self._ready)):
            uid = self._ready.popleft()
            state = self._runs[uid]
            if state.retry_at <= now:
                return uid, 0.0
            earliest = min(earliest, state.retry_at - now)
            self._ready.append(uid)
        return None, earliest

    async def _work(self) -> None:
        while True:
            uid, wait = self._next_ready()
            if uid is None:
                # No await between the check and clear(): a submit cannot slip in.
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._wakeup.wait(), None if wait == float("inf") else wait
                    )
                continue
            await self._write_one(uid)

    async def _write_one(self, uid: str) -> None:
        state = self._runs[uid]
        pending = state.queued
        assert pending is not None and state.in_flight is None
        state.queued, state.in_flight = None, pending
        try:
            async with asyncio.timeout(self.settings.write_timeout):
                await self._ensure_schema()
                await self._write(pending)
        except BaseException as error:
            # Put it back first in line; whatever was submitted meanwhile goes after it.
            if state.queued is not None:
                pending.absorb(state.queued)
            state.queued, state.in_flight = pending, None
            self._ready.append(uid)
            if not isinstance(error, Exception):
                raise  # cancelled: the mirror is closing
            self._failed(uid, state, error)
            return
        state.in_flight = None
        self.written_batches += pending.batches
        if state.failures:
            logger.info("history of run %s written after %d retries", uid, state.failures)
            state.failures, state.retry_at = 0, 0.0
        self.last_error = None
        if state.queued is not None:
            self._ready.append(uid)
            return
        del self._runs[uid]
        self._archived[uid] = None
        while len(self._archived) > self.settings.remember_archived:
            self._archived.popitem(last=False)
        state.archived.set()
        if not self._runs:
            self._idle.set()

    def _failed(self, uid: str, state: _RunState, error: Exception) -> None:
        state.failures += 1
        delay = self.settings.backoff.delay_after(state.failures, random.random())
        state.retry_at = time.monotonic() + delay
        if state.failures == 1:
            logger.warning("history write for run %s failed, retrying with backoff: %r", uid, error)
        self.last_error = error

    async def _ensure_schema(self) -> None:
        if self._migrated:
            return
        async with self._migrate_lock:
            if not self._migrated:
                await self.store.migrate()
                self._migrated = True

    async def _write(self, pending: _Pending) -> None:
        await self.store.write_batch(
            pending.run,
            list(pending.attempts.values()),
            pending.events,
            list(pending.workflows.values()),
        )
