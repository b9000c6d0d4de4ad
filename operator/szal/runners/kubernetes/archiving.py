"""The operator's history hook: reconciles become HistoryMirror batches.

With ``szal operator --history-dsn postgresql://...``, every reconcile pass
that produced transitions hands them here; :class:`MirrorSink` maps them to
history rows with :mod:`szal.history.recording` (the same mapping the local
runner uses, so a cluster run and a local run leave identical rows) and
queues them on the never-blocking :class:`~szal.history.mirror.HistoryMirror`.

No finalizer guards archiving: batches are queued as the run goes, so
deleting a run loses nothing the mirror holds; a run deleted by its
``ttlSecondsAfterFinished`` is deleted only after :meth:`wait_archived`
(bounded by a timeout). What a crash of the operator *and* a database
outage at once can lose is the unflushed tail of runs finished during the
outage; the run objects still hold their full status until deleted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from szal.engine.actions import Transition
from szal.engine.state import RunState
from szal.engine.timestamps import parse_timestamp
from szal.engine.workflow import ResolvedWorkflow
from szal.history.mirror import HistoryBatch, HistoryMirror
from szal.history.recording import RunIdentity, record_plan, record_start
from szal.runners.kubernetes.events import RunRef


class MirrorSink:
    """A :class:`~szal.runners.kubernetes.reconciler.HistorySink` over a HistoryMirror."""

    def __init__(self, mirror: HistoryMirror) -> None:
        self.mirror = mirror
        self._started: set[str] = set()

    def record(
        self,
        run: RunRef,
        body: Mapping[str, Any],
        workflow: ResolvedWorkflow | None,
        definition: Mapping[str, Any],
        state: RunState,
        transitions: tuple[Transition, ...],
    ) -> None:
        meta = body.get("metadata") or {}
        created = meta.get("creationTimestamp")
        identity = RunIdentity(
            uid=run.uid,
            name=run.name,
            namespace=run.namespace,
            created_at=parse_timestamp(created) if created else (state.started_at or 0.0),
            params=dict(workflow.params) if workflow is not None else {},
            definition=definition,
        )
        definition_row = None
        if workflow is not None and run.uid not in self._started:
            definition_row, _ = record_start(workflow, identity, state)
            self._started.add(run.uid)
        run_row, attempts, events = record_plan(identity, state, transitions)
        self.mirror.submit(HistoryBatch(definition_row, run_row, attempts, events))
        if state.phase.is_terminal:
            self._started.discard(run.uid)

    async def wait_archived(self, run: RunRef, timeout: float) -> bool:  # noqa: ASYNC109
        return await self.mirror.wait_archived(run.uid, timeout)
