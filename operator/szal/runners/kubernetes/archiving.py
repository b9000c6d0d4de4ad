"""The operator's history hook: reconciles become HistoryMirror batches.

With ``szal operator --history-dsn postgresql://...``, every reconcile pass
that produced transitions hands them here; :class:`MirrorSink` maps them to
history rows with :mod:`szal.history.recording` (the same mapping the local
runner uses, so a cluster run and a local run leave identical rows) and
queues them on the never-blocking :class:`~szal.history.mirror.HistoryMirror`.

The reconciler asks :meth:`MirrorSink.archived` before it releases a run's
history finalizer (:mod:`szal.runners.kubernetes.finalizing`), so a
finished run object is not deleted before its rows are committed. The
mirror's queue lives in memory: a run that finished while the database was
away, and whose operator process died before the backlog was flushed, still
carries the finalizer when the next operator starts; :meth:`recover` then
queues what its status holds (the run row, the definition, each step's last
attempt - see :func:`~szal.history.recording.record_status`). The lost
process's earlier attempts and events of that run are not in the status
and stay missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from szal.engine.actions import Transition
from szal.engine.state import RunState
from szal.engine.timestamps import parse_timestamp
from szal.engine.workflow import ResolvedWorkflow
from szal.history.mirror import HistoryBatch, HistoryMirror
from szal.history.recording import RunIdentity, record_plan, record_start, record_status
from szal.runners.kubernetes.events import RunRef


class MirrorSink:
    """A :class:`~szal.runners.kubernetes.runtime.HistorySink` over a HistoryMirror."""

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
        identity = _identity(run, body, workflow, definition, state)
        definition_row = None
        if workflow is not None and run.uid not in self._started:
            definition_row, _ = record_start(workflow, identity, state)
            self._started.add(run.uid)
        run_row, attempts, events = record_plan(identity, state, transitions)
        self.mirror.submit(HistoryBatch(definition_row, run_row, attempts, events))
        if state.phase.is_terminal:
            self._started.discard(run.uid)

    def recover(
        self,
        run: RunRef,
        body: Mapping[str, Any],
        workflow: ResolvedWorkflow | None,
        definition: Mapping[str, Any],
        state: RunState,
    ) -> None:
        identity = _identity(run, body, workflow, definition, state)
        definition_row = record_start(workflow, identity, state)[0] if workflow else None
        run_row, attempts = record_status(identity, state)
        self.mirror.submit(HistoryBatch(definition_row, run_row, attempts, ()))

    def archived(self, run: RunRef) -> bool:
        return self.mirror.archived(run.uid)

    def pending(self, run: RunRef) -> int:
        return self.mirror.pending(run.uid)

    def last_error(self) -> str | None:
        error = self.mirror.last_error
        return None if error is None else (str(error) or type(error).__name__)

    async def wait_archived(self, run: RunRef, timeout: float) -> bool:  # noqa: ASYNC109
        return await self.mirror.wait_archived(run.uid, timeout)


def _identity(
    run: RunRef,
    body: Mapping[str, Any],
    workflow: ResolvedWorkflow | None,
    definition: Mapping[str, Any],
    state: RunState,
) -> RunIdentity:
    created = (body.get("metadata") or {}).get("creationTimestamp")
    return RunIdentity(
        uid=run.uid,
        name=run.name,
        namespace=run.namespace,
        created_at=parse_timestamp(created) if created else (state.started_at or 0.0),
        params=dict(workflow.params) if workflow is not None else {},
        definition=definition,
    )
