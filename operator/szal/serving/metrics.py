"""Run, step and stream metrics for Prometheus, the same from the operator and ``szal serve``.

:class:`RunMetrics` turns phase changes into counters and histograms. The
operator feeds it every reconcile's transitions (the reconciler's
``observer`` hook, wired by :mod:`szal.cli.operator_cmd`) and registers it
beside its own metrics on ``--metrics-port``; ``szal serve`` feeds it the
history event log (:class:`EventTail`) and serves ``/metrics`` on its API
port. :class:`StreamCollector` reads the stream hub's counters at scrape
time.

Decisions:

- **Bounded labels**: namespace, workflow and phase, never a run, step or
  pod name (a cluster's workflows are few; its runs are not).
- A step's duration is its first attempt's start to its terminal phase
  (retries included); a run's duration its start to its terminal phase.
- **Hop latency** is the time from a step's last predecessor finishing to
  its first attempt starting (the moment the operator creates its pod):
  predecessors are its ``dependsOn`` in a Dag group and the previous
  sibling in a Sequential or Hierarchical group. A hop is only measured when
  every predecessor's finish was seen by this process (after an operator
  restart, the hops of steps whose predecessors finished before are not).
- Per-run tracking is dropped when the run ends, so memory follows the runs
  in flight. ``szal_runs`` (runs by current phase) counts runs in a
  non-terminal phase; finished ones are in ``szal_runs_finished_total``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter as Tally
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from szal.engine.actions import Transition
from szal.engine.phases import RunPhase, StepPhase
from szal.engine.state import RunState
from szal.engine.workflow import ResolvedWorkflow
from szal.history.store import ExecutionStore
from szal.runners.kubernetes.events import RunRef
from szal.runners.kubernetes.runtime import TransitionObserver
from szal.serving.hub import StreamHub

logger = logging.getLogger(__name__)

_RUN_TERMINAL = frozenset(p.value for p in RunPhase if p.is_terminal)
_STEP_TERMINAL = frozenset(p.value for p in StepPhase if p.is_terminal)
DURATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)
HOP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Change(Protocol):
    """A phase change: an engine Transition or a history EventRecord."""

    @property
    def step(self) -> str | None: ...
    @property
    def old(self) -> str | None: ...
    @property
    def new(self) -> str: ...
    @property
    def at(self) -> float: ...
    @property
    def attempt(self) -> int: ...
    @property
    def rollback(self) -> bool: ...


def predecessors(workflow: ResolvedWorkflow) -> dict[str, tuple[str, ...]]:
    """Each step's predecessors (whose finish may start it), for hop latency."""
    out: dict[str, tuple[str, ...]] = {}
    previous: dict[str | None, str] = {}
    for step in workflow.steps:
        if step.group_mode == "Dag":
            out[step.name] = step.depends_on
        elif step.group_mode in ("Sequential", "Hierarchical") and step.parent in previous:
            out[step.name] = (previous[step.parent],)
        previous[step.parent] = step.name
    return out


@dataclass
class _Run:
    namespace: str
    workflow: str
    predecessors: Mapping[str, tuple[str, ...]]
    phase: str = "Pending"
    started_at: float | None = None
    step_started: dict[str, float] = field(default_factory=dict)
    step_finished: dict[str, float] = field(default_factory=dict)


class RunMetrics(Collector):
    """Counters and histograms of runs and steps; register it in a registry."""

    def __init__(self) -> None:
        labels = ["namespace", "workflow"]
        self.runs_started = Counter("szal_runs_started", "Runs started", labels, registry=None)
        self.runs_finished = Counter(
            "szal_runs_finished", "Runs finished, by final phase", [*labels, "phase"], registry=None
        )
        self.steps_finished = Counter(
            "szal_steps_finished",
            "Steps finished, by final phase (Skipped included)",
            [*labels, "phase"],
            registry=None,
        )
        self.step_duration = Histogram(
            "szal_step_duration_seconds",
            "First attempt's start to the step's final phase (retries included)",
            [*labels, "phase"],
            buckets=DURATION_BUCKETS,
            registry=None,
        )
        self.run_duration = Histogram(
            "szal_run_duration_seconds",
            "A run's start to its final phase",
            [*labels, "phase"],
            buckets=DURATION_BUCKETS,
            registry=None,
        )
        self.hop_latency = Histogram(
            "szal_hop_latency_seconds",
            "A step's last predecessor finishing to its first attempt starting (pod created)",
            labels,
            buckets=HOP_BUCKETS,
            registry=None,
        )
        self._runs: dict[str, _Run] = {}

    def collect(self) -> Iterator[Any]:
        for metric in (
            self.runs_started,
            self.runs_finished,
            self.steps_finished,
            self.step_duration,
            self.run_duration,
            self.hop_latency,
        ):
            yield from metric.collect()
        gauge = GaugeMetricFamily(
            "szal_runs", "Runs in flight, by current phase", labels=["namespace", "phase"]
        )
        for (namespace, phase), count in sorted(
            Tally((r.namespace, r.phase) for r in self._runs.values()).items()
        ):
            gauge.add_metric([namespace, phase], count)
        yield gauge

    def tracking(self, run_uid: str) -> bool:
        """Whether ``run_uid`` is a run in flight that this has seen."""
        return run_uid in self._runs

    def observe(
        self,
        run_uid: str,
        namespace: str,
        workflow: str,
        changes: Iterable[Change],
        steps: Mapping[str, tuple[str, ...]] | None = None,
    ) -> None:
        """Count ``changes`` of one run (``steps``: its predecessors, see :func:`predecessors`)."""
        run = self._runs.get(run_uid)
        if run is None:
            run = self._runs[run_uid] = _Run(namespace, workflow, steps or {})
        for change in changes:
            if change.step:
                if not change.rollback:
                    self._step(run, change)
                continue
            run.phase = change.new
            if change.new == "Running" and run.started_at is None:
                run.started_at = change.at
                self.runs_started.labels(namespace, workflow).inc()
            elif change.new in _RUN_TERMINAL:
                self.runs_finished.labels(namespace, workflow, change.new).inc()
                if run.started_at is not None:
                    self.run_duration.labels(namespace, workflow, change.new).observe(
                        max(0.0, change.at - run.started_at)
                    )
                del self._runs[run_uid]
                return

    def _step(self, run: _Run, change: Change) -> None:
        step = change.step
        assert step is not None
        if change.new == "Running" and step not in run.step_started:
            run.step_started[step] = change.at
            before = run.predecessors.get(step, ())
            if before and all(p in run.step_finished for p in before):
                hop = change.at - max(run.step_finished[p] for p in before)
                self.hop_latency.labels(run.namespace, run.workflow).observe(max(0.0, hop))
        elif change.new in _STEP_TERMINAL:
            run.step_finished[step] = change.at
            self.steps_finished.labels(run.namespace, run.workflow, change.new).inc()
            started = run.step_started.get(step)
            if started is not None:
                self.step_duration.labels(run.namespace, run.workflow, change.new).observe(
                    max(0.0, change.at - started)
                )


@dataclass(eq=False)
class StreamCollector(Collector):
    """The stream hub's counters, read at scrape time."""

    hub: StreamHub

    def collect(self) -> Iterator[Any]:
        yield CounterMetricFamily(
            "szal_stream_events",
            "Run events written to stream clients",
            value=self.hub.events_streamed,
        )
        yield GaugeMetricFamily(
            "szal_stream_clients",
            "Stream clients (SSE and WebSocket) connected",
            value=self.hub.clients,
        )
        yield CounterMetricFamily(
            "szal_stream_clients_dropped",
            "Stream clients dropped (fell behind: resync; or stopped reading)",
            value=self.hub.clients_dropped,
        )


def operator_observer(metrics: RunMetrics) -> TransitionObserver:
    """The reconciler's observer hook feeding ``metrics`` (``szal operator``)."""

    def observe(
        ref: RunRef,
        workflow: ResolvedWorkflow | None,
        state: RunState,
        transitions: tuple[Transition, ...],
    ) -> None:
        name = state.workflow.name if state.workflow else (workflow.name if workflow else "")
        steps = None
        if workflow is not None and not metrics.tracking(ref.uid):
            steps = predecessors(workflow)
        metrics.observe(ref.uid, ref.namespace, name, transitions, steps)

    return observe


class EventTail:
    """``szal serve``'s feed of :class:`RunMetrics`: the history event log, in id order."""

    def __init__(self, store: ExecutionStore, metrics: RunMetrics, interval: float) -> None:
        self.store = store
        self.metrics = metrics
        self.interval = interval
        self.last_id = 0
        self._labels: dict[str, tuple[str, str, dict[str, tuple[str, ...]]]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="szal-event-tail")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def read(self) -> int:
        """Feed every event committed since the last read; return how many."""
        total = 0
        while True:
            events = await self.store.events_after(self.last_id, None, limit=1000)
            by_run: dict[str, list[Any]] = {}
            for event in events:
                by_run.setdefault(event.run_uid, []).append(event)
            for uid, changes in by_run.items():
                namespace, workflow, steps = await self._run_labels(uid)
                self.metrics.observe(uid, namespace, workflow, changes, steps)
                if not self.metrics.tracking(uid):
                    self._labels.pop(uid, None)
            if events:
                self.last_id = events[-1].id or self.last_id
            total += len(events)
            if len(events) < 1000:
                return total

    async def _run_labels(self, uid: str) -> tuple[str, str, dict[str, tuple[str, ...]]]:
        known = self._labels.get(uid)
        if known is not None:
            return known
        from szal.engine.workflow import resolve_workflow
        from szal.spec.models import WorkflowSpec

        detail = await self.store.get_run(uid)
        if detail is None:
            return ("", "", {})
        run = detail.run
        steps: dict[str, tuple[str, ...]] = {}
        lookup = getattr(self.store, "get_workflow", None)
        if lookup is not None:
            record = await lookup(run.namespace, run.workflow, run.spec_hash)
            if record is not None:
                try:
                    spec = WorkflowSpec.model_validate(record.spec)
                    resolved = resolve_workflow(
                        spec, name=run.workflow, params=run.params, validate=False
                    )
                    steps = predecessors(resolved)
                except Exception as error:  # an old definition this szal cannot read: no hops
                    logger.info("run %s: no step graph for hop latency: %s", uid, error)
        labels = (run.namespace, run.workflow, steps)
        self._labels[uid] = labels
        return labels

    async def _run(self) -> None:
        while True:
            try:
                await self.read()
            except Exception as error:
                logger.warning("reading the event log for metrics failed: %s", error)
            await asyncio.sleep(self.interval)
