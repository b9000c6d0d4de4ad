"""The ExecutionStore interface: where run history lives (SQLite or Postgres).

Both implementations share one logical schema of normalized rows (never one
JSON blob per run, Argo's archive's mistake): workflow definitions, runs,
step attempts, an ordered event log and captured logs. Every write is
idempotent, so a runner can replay the same transitions after a crash or a
database outage and nothing is duplicated: runs and attempts are upserts by
their natural keys, events are inserted once per natural key (run, step,
attempt, rollback, new phase, time) and get a monotonically increasing id
that live streams resume from.

Pagination is keyset (``after`` is the last row's cursor), never OFFSET.
The event table has the same columns in both schemas (:data:`EVENT_COLUMNS`);
docs/history.md lists the few columns only one store has, and why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

EVENT_COLUMNS = "id, run_uid, step, attempt, rollback, old_phase, new_phase, event, at, message"
"""The event log's columns, in :class:`EventRecord` order, as both stores name them."""


@dataclass(frozen=True, slots=True)
class WorkflowRecord:
    """One stored definition; (namespace, name, spec_hash) identifies it."""

    namespace: str
    name: str
    version: int
    spec_hash: str
    spec: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run. ``phase`` is the run phase; ``interrupted`` marks a run whose
    runner died before it ended (found non-terminal with no live runner)."""

    uid: str
    name: str
    namespace: str
    workflow: str
    workflow_version: int
    spec_hash: str
    params: dict[str, Any]
    phase: str
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    message: str | None = None
    progress: str | None = None
    interrupted: bool = False


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One attempt of one step (or its compensation, ``rollback=True``)."""

    run_uid: str
    step: str
    attempt: int
    rollback: bool
    phase: str
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    message: str | None = None
    outputs: dict[str, Any] | None = None
    node: str | None = None


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One transition in a run's event log. ``id`` is assigned by the store."""

    run_uid: str
    step: str | None
    attempt: int
    rollback: bool
    old: str | None
    new: str
    event: str
    at: float
    message: str = ""
    id: int | None = None


@dataclass(frozen=True, slots=True)
class RunQuery:
    """Filters for :meth:`ExecutionStore.list_runs`; ``after`` is a cursor."""

    workflow: str | None = None
    namespace: str | None = None
    name: str | None = None
    phase: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int = 50
    after: str | None = None


@dataclass(frozen=True, slots=True)
class RunPage:
    """A page of runs, newest first, and the cursor for the next page (or None)."""

    runs: list[RunRecord]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class RunDetail:
    """A run with its attempts (in start order) and events (in id order)."""

    run: RunRecord
    attempts: list[AttemptRecord] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class WorkflowStats:
    """Summary of one workflow's finished runs."""

    workflow: str
    namespace: str
    runs: int
    succeeded: int
    success_rate: float
    p50_seconds: float | None
    p95_seconds: float | None


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer Szál than this one."""


class ExecutionStore(Protocol):
    """History storage. All methods are async; all writes are idempotent."""

    async def migrate(self) -> int:
        """Create or upgrade the schema; return its version. Refuse newer ones."""

    async def close(self) -> None:
        """Release connections."""

    async def save_workflow(self, record: WorkflowRecord) -> None:
        """Store a definition (no-op if the same hash is stored)."""

    async def upsert_run(self, record: RunRecord) -> None:
        """Insert or update a run by uid."""

    async def upsert_attempts(self, records: Sequence[AttemptRecord]) -> None:
        """Insert or update attempts by (run, step, attempt, rollback)."""

    async def append_events(self, records: Sequence[EventRecord]) -> None:
        """Append events in order; an event already stored is skipped."""

    async def write_batch(
        self,
        run: RunRecord,
        attempts: Sequence[AttemptRecord] = (),
        events: Sequence[EventRecord] = (),
        workflows: Sequence[WorkflowRecord] = (),
    ) -> None:
        """All of the above for one run in ONE transaction: readers see all or nothing."""

    async def append_log(
        self, run_uid: str, step: str, attempt: int, rollback: bool, text: str
    ) -> None:
        """Store (append) captured output of one attempt."""

    async def list_runs(self, query: RunQuery) -> RunPage:
        """Runs matching the query, newest first, keyset-paginated."""

    async def get_run(self, ref: str, namespace: str | None = None) -> RunDetail | None:
        """A run by uid or by name (the newest of that name)."""

    async def get_log(self, run_uid: str, step: str, attempt: int | None = None) -> str:
        """Captured output of a step (the last attempt when ``attempt`` is None)."""

    async def get_rollback_log(self, run_uid: str, step: str) -> str:
        """Captured output of a step's compensation."""

    async def events_after(
        self, after_id: int, run_uid: str | None = None, limit: int = 1000
    ) -> list[EventRecord]:
        """Events with id greater than ``after_id``, in id order."""

    async def workflow_stats(
        self, workflow: str | None = None, namespace: str | None = None
    ) -> list[WorkflowStats]:
        """Per-workflow counts, success rate and p50/p95 duration."""
