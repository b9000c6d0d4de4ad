"""A history store that tells the stream hub when a run's rows are committed.

The operator hands :class:`NotifyingStore` to its
:class:`~szal.history.mirror.HistoryMirror` instead of the bare store: after
each ``write_batch`` (the mirror's only write) it calls
:meth:`~szal.serving.hub.StreamHub.notify` for that run, so a watched run's
broadcast reads its new events at once instead of at its next poll. The
mirror's workers do the writing, so reconciliation is not delayed by this;
``notify`` only sets a flag. Every other method passes straight through.
"""

from __future__ import annotations

from collections.abc import Sequence

from szal.history.store import (
    AttemptRecord,
    EventRecord,
    ExecutionStore,
    RunDetail,
    RunPage,
    RunQuery,
    RunRecord,
    WorkflowRecord,
    WorkflowStats,
)
from szal.serving.hub import StreamHub


class NotifyingStore:
    """``store`` with a :meth:`StreamHub.notify` after each committed write of a run."""

    def __init__(self, store: ExecutionStore, hub: StreamHub) -> None:
        self.store = store
        self.hub = hub

    async def write_batch(
        self,
        run: RunRecord,
        attempts: Sequence[AttemptRecord] = (),
        events: Sequence[EventRecord] = (),
        workflows: Sequence[WorkflowRecord] = (),
    ) -> None:
        await self.store.write_batch(run, attempts, events, workflows)
        if events:
            self.hub.notify(run.uid)

    async def append_events(self, records: Sequence[EventRecord]) -> None:
        await self.store.append_events(records)
        for uid in {r.run_uid for r in records}:
            self.hub.notify(uid)

    async def migrate(self) -> int:
        return await self.store.migrate()

    async def close(self) -> None:
        await self.store.close()

    async def save_workflow(self, record: WorkflowRecord) -> None:
        await self.store.save_workflow(record)

    async def upsert_run(self, record: RunRecord) -> None:
        await self.store.upsert_run(record)

    async def upsert_attempts(self, records: Sequence[AttemptRecord]) -> None:
        await self.store.upsert_attempts(records)

    async def append_log(
        self, run_uid: str, step: str, attempt: int, rollback: bool, text: str
    ) -> None:
        await self.store.append_log(run_uid, step, attempt, rollback, text)

    async def list_runs(self, query: RunQuery) -> RunPage:
        return await self.store.list_runs(query)

    async def get_run(self, ref: str, namespace: str | None = None) -> RunDetail | None:
        return await self.store.get_run(ref, namespace)

    async def get_log(self, run_uid: str, step: str, attempt: int | None = None) -> str:
        return await self.store.get_log(run_uid, step, attempt)

    async def get_rollback_log(self, run_uid: str, step: str) -> str:
        return await self.store.get_rollback_log(run_uid, step)

    async def events_after(
        self, after_id: int, run_uid: str | None = None, limit: int = 1000
    ) -> list[EventRecord]:
        return await self.store.events_after(after_id, run_uid, limit)

    async def workflow_stats(
        self, workflow: str | None = None, namespace: str | None = None
    ) -> list[WorkflowStats]:
        return await self.store.workflow_stats(workflow, namespace)
