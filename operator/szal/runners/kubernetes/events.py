"""Kubernetes Events for run and step transitions, posted off the hot path.

kopf's own event posting is off (``settings.posting.enabled = False``): it
turns log lines into Events, several per handler cycle. The operator posts
exactly one Event per transition the planner reports
(:class:`~szal.engine.actions.Transition`), with the planner's reason
(StepSucceeded, StepFailed, Retrying, RollingBack, ...), so ``kubectl
describe workflowrun`` tells the run's story.

Events are posted by a background worker from a bounded queue: a run's next
pod is created before its Events go out, and a slow or failing events API
never delays or fails a reconcile. When the queue is full, Events are
dropped (and counted): they are best-effort by nature in Kubernetes too.

Which transitions become Events is a setting (:class:`EventSettings`):
by default every transition except ``StepStarted``, because each Event is an
API write and the step's start is already in its status record
(``startedAt``, ``attempts``); with it, a run costs four writes per step
instead of three. ``--step-started-events`` turns them on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from szal.engine.actions import Transition
from szal.engine.phases import EventReason, StepPhase
from szal.runners.kubernetes.client import ApiClient, ApiError, core_path
from szal.spec import API_VERSION

logger = logging.getLogger(__name__)

WARNING_REASONS: frozenset[EventReason] = frozenset(
    {
        EventReason.RUN_FAILED,
        EventReason.STEP_FAILED,
        EventReason.STEP_TIMED_OUT,
        EventReason.RETRYING,
        EventReason.ROLLING_BACK,
        EventReason.COMPENSATION_FAILED,
    }
)


@dataclass(frozen=True, slots=True)
class EventSettings:
    """Which transitions become Kubernetes Events."""

    enabled: bool = True
    """Post Events at all."""
    step_started: bool = False
    """Also post StepStarted (one more API write per step)."""
    queue_size: int = 10_000
    """Events waiting to be posted at most; beyond it they are dropped."""
    concurrency: int = 4
    """Events posted at once."""


@dataclass(frozen=True, slots=True)
class RunRef:
    """The WorkflowRun an Event is about."""

    namespace: str
    name: str
    uid: str


def describe(transition: Transition) -> str:
    """The Event message for one transition."""
    what = "run" if transition.step is None else f"step {transition.step}"
    if transition.rollback:
        what = f"compensation of step {transition.step}"
    text = f"{what}: {transition.old or 'new'} -> {transition.new}"
    if transition.attempt and transition.step is not None:
        outcome = transition.outcome
        # Running -> Waiting: only the outcome field says how the attempt ended.
        ended = f" {_OUTCOME_WORDS[outcome]}" if outcome and outcome is not transition.new else ""
        text += f" (attempt {transition.attempt}{ended})"
    if transition.exit_code is not None:
        text += f", exit code {transition.exit_code}"
    if transition.message:
        text += f": {transition.message}"
    return text[:1024]


#: How an attempt that a Waiting step left behind ended (``Transition.outcome``).
_OUTCOME_WORDS: dict[StepPhase, str] = {
    StepPhase.FAILED: "failed",
    StepPhase.TIMED_OUT: "timed out",
    StepPhase.SUCCEEDED: "succeeded",
    StepPhase.CANCELLED: "cancelled",
}


def _event_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_body(run: RunRef, transition: Transition, instance: str) -> dict[str, object]:
    """A core/v1 Event for ``transition`` of ``run``."""
    return _body(
        run,
        reason=transition.event.value,
        message=describe(transition),
        warning=transition.event in WARNING_REASONS,
        at=transition.at,
        instance=instance,
    )


def _body(
    run: RunRef, *, reason: str, message: str, warning: bool, at: float, instance: str
) -> dict[str, object]:
    stamp = _event_time(at)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{run.name}.", "namespace": run.namespace},
        "involvedObject": {
            "apiVersion": API_VERSION,
            "kind": "WorkflowRun",
            "name": run.name,
            "namespace": run.namespace,
            "uid": run.uid,
        },
        "reason": reason,
        "message": message,
        "type": "Warning" if warning else "Normal",
        "count": 1,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "source": {"component": "szal-operator"},
        "reportingComponent": "szal.dev/operator",
        "reportingInstance": instance,
    }


@dataclass(frozen=True, slots=True)
class Note:
    """An Event about a run that is no transition (e.g. its history finalizer)."""

    reason: str
    message: str
    at: float
    warning: bool = True


def note_body(run: RunRef, note: Note, instance: str) -> dict[str, object]:
    """A core/v1 Event for ``note`` about ``run``."""
    return _body(
        run,
        reason=note.reason,
        message=note.message[:1024],
        warning=note.warning,
        at=note.at,
        instance=instance,
    )


@dataclass
class EventPoster:
    """Posts Events in the background; :meth:`emit` never blocks or raises."""

    client: ApiClient
    settings: EventSettings = field(default_factory=EventSettings)
    instance: str = field(default_factory=socket.gethostname)
    dropped: int = 0
    posted: int = 0
    _queue: asyncio.Queue[tuple[RunRef, Transition | Note]] | None = None
    _workers: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        if self._queue is not None:
            return
        self._queue = asyncio.Queue(self.settings.queue_size)
        self._workers = [
            asyncio.create_task(self._work(), name=f"szal-events-{i}")
            for i in range(self.settings.concurrency)
        ]

    def wanted(self, transition: Transition) -> bool:
        if not self.settings.enabled:
            return False
        return transition.event is not EventReason.STEP_STARTED or self.settings.step_started

    def emit(self, run: RunRef, transitions: Iterable[Transition]) -> None:
        if self._queue is None:
            return
        for transition in transitions:
            if not self.wanted(transition):
                continue
            try:
                self._queue.put_nowait((run, transition))
            except asyncio.QueueFull:
                self.dropped += 1

    def note(self, run: RunRef, note: Note) -> None:
        """Queue one :class:`Note` Event; never blocks or raises."""
        if self._queue is None or not self.settings.enabled:
            return
        try:
            self._queue.put_nowait((run, note))
        except asyncio.QueueFull:
            self.dropped += 1

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            run, item = await self._queue.get()
            if isinstance(item, Note):
                body, reason = note_body(run, item, self.instance), item.reason
            else:
                body, reason = event_body(run, item, self.instance), item.event
            try:
                await self.client.create(
                    core_path(run.namespace, "events"), body, resource="events"
                )
                self.posted += 1
            except ApiError as error:
                logger.warning("could not post Event %s for %s: %s", reason, run, error)
            finally:
                self._queue.task_done()

    async def drain(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - bounded, never raises
        """Wait (bounded) until queued Events are posted."""
        if self._queue is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), timeout)

    async def stop(self) -> None:
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers = []
        self._queue = None
