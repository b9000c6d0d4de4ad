"""What the per-run reconcilers share, and what the watch handlers hand them.

:class:`Runtime` is built once by the operator at startup (the client, the
Event poster, the pod index, settings, the history sink); a
:class:`Mailbox` per run is filled by the watch handlers in
:mod:`szal.runners.kubernetes.operator` and emptied by that run's
:class:`~szal.runners.kubernetes.reconciler.RunReconciler`. They live here,
apart from the reconciler, so the operator, the applying and finalizing
modules and the CLI can name them without importing the reconcile loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from szal.engine.actions import Transition
from szal.engine.state import RunState
from szal.engine.workflow import ResolvedWorkflow
from szal.runners.kubernetes.client import ApiClient, JsonDict, group_path
from szal.runners.kubernetes.coalescing import CoalescingSettings, WriteBudget
from szal.runners.kubernetes.events import EventPoster, RunRef
from szal.runners.kubernetes.health import ApiHealth
from szal.runners.kubernetes.observing import PodView
from szal.runners.kubernetes.ratelimiting import TokenBucket
from szal.spec import API_VERSION

RUNS = "workflowruns"
WORKFLOWS = "workflows"


@dataclass(frozen=True, slots=True)
class ReconcilerSettings:
    """Knobs of the per-run reconcilers (``szal operator --help`` documents them)."""

    launch_concurrency: int = 32
    """Pod/Job creations in flight at once per run."""
    retry_delay: float = 2.0
    """Seconds before retrying a failed API call (doubles up to ``max_retry_delay``)."""
    max_retry_delay: float = 60.0
    """Cap of that delay."""
    quota_retry_delay: float = 5.0
    """Seconds before re-trying a pod creation refused by a quota."""
    pod_creation_rate: float | None = 50.0
    """Pod/Job creations per second, for the whole operator (None: unlimited);
    a token bucket (:mod:`szal.runners.kubernetes.ratelimiting`)."""
    pod_creation_burst: int = 100
    """Creations allowed at once before ``pod_creation_rate`` applies."""
    default_image: str = "busybox:1.36"
    """Image of steps that name none (neither the step nor the template)."""
    history_finalizer_timeout: float = 300.0
    """Seconds a finished run may wait for its history to be archived before it
    shows ``HistoryArchived=False``, and a requested deletion before the history
    finalizer is released anyway (see :mod:`szal.runners.kubernetes.finalizing`)."""
    coalescing: CoalescingSettings = field(default_factory=CoalescingSettings)
    """How status writes of big run objects are spread out under a byte budget
    (:mod:`szal.runners.kubernetes.coalescing`)."""


TransitionObserver = Callable[
    [RunRef, ResolvedWorkflow | None, RunState, tuple[Transition, ...]], None
]
"""Something told each reconcile's transitions, with the run's workflow and state."""


class HistorySink(Protocol):
    """Where transitions are mirrored for history (Postgres), if anywhere."""

    def record(
        self,
        run: RunRef,
        body: Mapping[str, Any],
        workflow: ResolvedWorkflow | None,
        definition: Mapping[str, Any],
        state: RunState,
        transitions: tuple[Transition, ...],
    ) -> None:
        """Queue the run's new transitions and state; must not block or raise."""

    def recover(
        self,
        run: RunRef,
        body: Mapping[str, Any],
        workflow: ResolvedWorkflow | None,
        definition: Mapping[str, Any],
        state: RunState,
    ) -> None:
        """Queue what a finished run's status holds (after a restart); must not block."""

    def archived(self, run: RunRef) -> bool:
        """Is everything recorded for ``run`` committed?"""

    def pending(self, run: RunRef) -> int:
        """Batches recorded for ``run`` and not yet committed."""

    def last_error(self) -> str | None:
        """Why the latest write failed (None after a success)."""

    async def wait_archived(self, run: RunRef, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait until everything recorded for ``run`` is stored."""


@dataclass
class Runtime:
    """What every run's reconciler shares: the client, Events, settings, the pod index."""

    client: ApiClient
    events: EventPoster
    pods_of: Callable[[str, str], Iterable[PodView]]
    """All pods of (namespace, run) currently known, from the pod index."""
    settings: ReconcilerSettings = field(default_factory=ReconcilerSettings)
    history: HistorySink | None = None
    observer: TransitionObserver | None = None
    """Told every pass's transitions (the run metrics, szal.serving.metrics); must not block."""
    clock: Callable[[], float] = time.time
    passes: int = 0
    """Reconcile passes done, all runs (for metrics)."""
    health: ApiHealth = field(default_factory=ApiHealth)
    """Failing writes by kind: counted, logged at most once a minute per kind."""
    write_budget: WriteBudget | None = None
    """The status-write budget all runs share; made from ``settings`` when None."""
    pod_limiter: TokenBucket | None = None
    """Every creation takes a token first; made from ``settings`` when None."""

    def __post_init__(self) -> None:
        if self.pod_limiter is None:
            self.pod_limiter = TokenBucket(
                self.settings.pod_creation_rate, self.settings.pod_creation_burst
            )
        if self.write_budget is None:
            self.write_budget = WriteBudget(self.settings.coalescing)


@dataclass
class Mailbox:
    """News for one run's reconciler, left by the watch handlers.

    ``body`` is the latest run object seen; ``pods`` the pod changes since
    the last pass, by pod uid (only the latest per pod matters); ``wake``
    is set whenever something arrived.
    """

    namespace: str
    name: str
    uid: str
    body: dict[str, Any]
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    pods: dict[str, tuple[str, PodView]] = field(default_factory=dict)
    deleted: bool = False
    task: asyncio.Task[None] | None = None

    def post_run(self, body: dict[str, Any], *, significant: bool = True) -> None:
        if _newer(body, self.body):
            self.body = body
        if significant:
            self.wake.set()

    def post_pod(self, event_type: str, view: PodView) -> None:
        self.pods[view.uid] = (event_type, view)
        self.wake.set()


def resource_version(body: Mapping[str, Any]) -> str:
    """``metadata.resourceVersion`` ("" when absent): the precondition of our patches."""
    return str((body.get("metadata") or {}).get("resourceVersion") or "")


def _newer(candidate: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """Is ``candidate`` a later version of the object than ``current``?

    resourceVersions are opaque, but etcd-backed API servers hand out
    increasing integers; when both parse, compare them, else trust arrival order.
    """
    a, b = resource_version(candidate), resource_version(current)
    if a.isdigit() and b.isdigit():
        return int(a) >= int(b)
    return True


def run_path(ref: RunRef, *, status: bool = False) -> str:
    """The run object's API path (its ``/status`` subresource with ``status``)."""
    return group_path(
        API_VERSION, ref.namespace, RUNS, ref.name, subresource="status" if status else None
    )


async def patch_run_status(
    client: ApiClient, mailbox: Mailbox, status: Mapping[str, Any]
) -> JsonDict:
    """Merge-patch the run's status, preconditioned on the latest ``resourceVersion`` seen.

    A stale one answers :class:`~szal.runners.kubernetes.client.Conflict`.
    """
    ref = RunRef(mailbox.namespace, mailbox.name, mailbox.uid)
    body = {"metadata": {"resourceVersion": resource_version(mailbox.body)}, "status": status}
    return await client.merge_patch(
        run_path(ref, status=True), body, resource="workflowruns/status"
    )
