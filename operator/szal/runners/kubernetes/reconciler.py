"""One WorkflowRun's reconciler: observe pods, ask the planner, apply, record.

Each run has exactly one :class:`RunReconciler`, a long-lived asyncio task
woken through its :class:`Mailbox` by the run's and its pods' watch events
(see :mod:`szal.runners.kubernetes.operating`). Bursts of events collapse
into one pass; passes of one run never overlap. A pass:

1. takes the pod changes queued since the last pass (at start: every pod of
   the run, from the operator's pod index, which kopf fills completely
   before any handler runs) and turns them into *new*
   :class:`~szal.engine.actions.Observation` values;
2. calls the planner with them, the run's ``suspend``/``cancel`` and
   ``now``; the planner mutates the one in-memory :class:`RunState` of
   this run and returns actions, transitions, changed steps and a wake-up
   time;
3. applies the actions - creates pods/Jobs (deterministic names: a repeated
   create hits 409 AlreadyExists, which means done), deletes stopped ones;
4. writes ONE merge patch to ``workflowruns/<name>/status`` holding the run
   fields and the changed step records, with ``metadata.resourceVersion``
   as a precondition; a 409 means someone else changed the object: the
   reconciler drops its state, re-reads the run and re-plans from status
   plus pods, exactly as after a restart;
5. queues Events (and history records) for the transitions, and sleeps
   until news arrives or the planner's ``wake_at`` (backoff, timeouts,
   deadline) passes.

Crash safety is "create, then record": a pod exists before the status says
it was launched. After a crash the status may lag behind the pods, never
lead them; the planner, fed every observed pod, adopts attempts the status
does not know yet, and re-launching a recorded-but-missing attempt
re-creates the same name.

**The pinned spec.** At a run's start the reconciler resolves
``workflowRef`` (or the inline ``workflow``), validates the spec and the
params, and pins ``status.workflow`` (name, version, specHash) plus
``status.pinnedSpec``: the spec and resolved params as compressed JSON
(zlib, base64; a 5,000-step spec compresses to a few tens of KiB). A
restarted operator rebuilds the run from ``pinnedSpec``, never from the
Workflow as it is now, so editing or deleting a Workflow changes no run in
flight. It lives in status (not an annotation): status is written anyway
in the run's first patch (no extra write), status is the operator's alone
(users cannot edit it by accident), and annotations are capped at 256 KiB.

**A pod that disappears** before finishing (deleted by someone, evicted
and garbage-collected) fails its attempt with a message saying so - but
only if the reconciler saw that pod, or the status recorded it as running
when the reconciler started (the pod index is complete then). A pod just
created but not yet seen through the watch is never taken for gone.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from szal.engine.actions import AttemptRef, Launch, Observation, Plan, Stop, Transition
from szal.engine.compiled import compile_workflow, new_run_state
from szal.engine.environment import step_environment
from szal.engine.migrations import upgrade
from szal.engine.phases import RunPhase, StepPhase
from szal.engine.planner import PlanSession
from szal.engine.state import PinnedWorkflow, RunState, StatusDict
from szal.engine.timestamps import format_timestamp
from szal.engine.validation import (
    SpecIssue,
    WorkflowInvalid,
    parse_workflow,
    spec_hash,
    validate_run_params,
    validate_workflow,
)
from szal.engine.workflow import ResolvedWorkflow, resolve_workflow
from szal.runners.kubernetes import finalizing
from szal.runners.kubernetes import pods as manifests
from szal.runners.kubernetes.client import (
    AlreadyExists,
    ApiClient,
    ApiError,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    group_path,
)
from szal.runners.kubernetes.events import EventPoster, Note, RunRef
from szal.runners.kubernetes.observing import PodView, observe, vanished
from szal.spec import API_VERSION, WorkflowSpec

logger = logging.getLogger(__name__)

RUNS = "workflowruns"
_TERMINAL_PHASES = frozenset(p.value for p in RunPhase if p.is_terminal)
WORKFLOWS = "workflows"

#: Keys a step record may hold; a changed record's absent keys are sent as
#: null so the merge patch removes what the record no longer has.
_STEP_KEYS = (
    "startedAt",
    "finishedAt",
    "attemptStartedAt",
    "retryAt",
    "exitCode",
    "message",
    "outputs",
    "podName",
    "finishOrder",
    "rollback",
)
_RUN_KEYS = ("message",)
_FOREVER = 365 * 24 * 3600.0  # wait_archived's bound when only news should end the wait


# --- shared pieces ----------------------------------------------------------


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
    default_image: str = "busybox:1.36"
    """Image of steps that name none (neither the step nor the template)."""
    history_finalizer_timeout: float = 300.0
    """Seconds a finished run may wait for its history to be archived before it
    shows ``HistoryArchived=False``, and a requested deletion before the history
    finalizer is released anyway (see :mod:`szal.runners.kubernetes.finalizing`)."""


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
    clock: Callable[[], float] = time.time
    passes: int = 0
    """Reconcile passes done, all runs (for metrics)."""


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


def _rv(body: Mapping[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("resourceVersion") or "")


def _newer(candidate: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """Is ``candidate`` a later version of the object than ``current``?

    resourceVersions are opaque, but etcd-backed API servers hand out
    increasing integers; when both parse, compare them, else trust arrival order.
    """
    a, b = _rv(candidate), _rv(current)
    if a.isdigit() and b.isdigit():
        return int(a) >= int(b)
    return True


# --- pinning ----------------------------------------------------------------


def encode_pinned(workflow_name: str, spec: WorkflowSpec, params: Mapping[str, Any]) -> str:
    """``status.pinnedSpec``: the spec and params a run executes, compressed."""
    doc = {
        "workflow": workflow_name,
        "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True),
        "params": dict(params),
    }
    raw = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    return base64.b64encode(zlib.compress(raw, 9)).decode()


def decode_pinned(text: str) -> tuple[str, WorkflowSpec, dict[str, Any]]:
    doc = json.loads(zlib.decompress(base64.b64decode(text)))
    return doc["workflow"], WorkflowSpec.model_validate(doc["spec"]), dict(doc["params"])


class RunRefusedLate(Exception):
    """A started run whose spec cannot be recovered; it fails (a permanent error)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class RunRefused(Exception):
    """The run cannot start: its workflow is missing or invalid (a permanent error)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _null_absent(record: StatusDict, keys: Iterable[str]) -> StatusDict:
    out = dict(record)
    for key in keys:
        out.setdefault(key, None)
    return out


def status_merge_patch(state: RunState, changed: Iterable[str]) -> StatusDict:
    """The ``status`` merge patch for the run fields and the ``changed`` step records.

    Unlike :meth:`RunState.status_patch`, a key a record no longer has (a
    finished step's ``attemptStartedAt``, a cleared ``message``) is sent as
    null, so the stored status equals ``state.to_status()`` and a restarted
    operator restores exactly what was in memory.
    """
    patch = _null_absent(state.run_fields(), _RUN_KEYS)
    patch["steps"] = {
        name: _null_absent(state.steps[name].to_status(), _STEP_KEYS) for name in changed
    }
    return patch


# --- the reconciler ---------------------------------------------------------


class RunReconciler:
    """The single writer of one run's status; see the module docstring."""

    def __init__(self, runtime: Runtime, mailbox: Mailbox) -> None:
        self.runtime = runtime
        self.mailbox = mailbox
        self.ref = RunRef(mailbox.namespace, mailbox.name, mailbox.uid)
        self.state: RunState | None = None
        self.workflow: ResolvedWorkflow | None = None
        self.planner: PlanSession | None = None
        self.finished = False
        self._pinned_text: str | None = None  # written with the first patch
        self._definition: dict[str, Any] = {}
        self._write_pin = False
        self._fed: dict[AttemptRef, tuple[Any, ...]] = {}
        self._seen: dict[AttemptRef, str] = {}  # attempts whose pod we saw: pod name
        self._suspects: set[AttemptRef] = set()  # running at restore: gone if no pod
        self._pending_obs: list[Observation] = []
        self._retry_launches: dict[AttemptRef, Launch] = {}
        self._deleted_by_us: set[AttemptRef] = set()
        self._launchers: dict[str, str] = {}
        self._first_restore = True
        self._holding = False  # a finished run whose history finalizer is still on
        self._ttl_deleted = False
        self._archive_waiter: asyncio.Task[None] | None = None

    # --- the loop -----------------------------------------------------------

    async def run(self) -> None:
        """Reconcile until the run ends (and its TTL passes) or is deleted."""
        try:
            await self._loop()
        finally:
            if self._archive_waiter is not None:
                self._archive_waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._archive_waiter

    async def _loop(self) -> None:
        delay = self.runtime.settings.retry_delay
        while not self.mailbox.deleted:
            self.mailbox.wake.clear()
            wake_at: float | None
            try:
                wake_at = await self.reconcile()
                delay = self.runtime.settings.retry_delay
            except Conflict:
                logger.info(
                    "run %s/%s changed under us; re-reading", self.ref.namespace, self.ref.name
                )
                await self._reset()
                continue
            except NotFound:
                logger.info("run %s/%s is gone", self.ref.namespace, self.ref.name)
                return
            except RunRefusedLate as refused:
                logger.error("run %s/%s: %s", self.ref.namespace, self.ref.name, refused.message)
                await self._fail_unrecoverable(refused)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception(
                    "reconciling %s/%s failed; retrying in %.1fs",
                    self.ref.namespace,
                    self.ref.name,
                    delay,
                )
                wake_at = self.runtime.clock() + delay
                delay = min(delay * 2, self.runtime.settings.max_retry_delay)
                await self._reset(refetch=False)
            if self.finished and wake_at is None and not self._holding:
                return
            timeout = None if wake_at is None else max(0.0, wake_at - self.runtime.clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.mailbox.wake.wait(), timeout)

    async def _reset(self, refetch: bool = True) -> None:
        """Forget everything in memory; the next pass restores from status + pods."""
        self.state = None
        self.workflow = None
        self.planner = None
        self._fed.clear()
        self._suspects.clear()
        self._pending_obs.clear()
        if refetch:
            body = await self.runtime.client.get(self._path())
            self.mailbox.body = body

    async def _fail_unrecoverable(self, refused: RunRefusedLate) -> None:
        now = self.runtime.clock()
        patch = {
            "phase": RunPhase.FAILED.value,
            "message": refused.message,
            "finishedAt": format_timestamp(now),
            "conditions": [
                {
                    "type": "Succeeded",
                    "status": "False",
                    "reason": refused.reason,
                    "message": refused.message,
                    "lastTransitionTime": format_timestamp(now),
                }
            ],
        }
        body = {"metadata": {"resourceVersion": _rv(self.mailbox.body)}, "status": patch}
        with contextlib.suppress(ApiError):
            await self.runtime.client.merge_patch(
                self._path(status=True), body, resource="workflowruns/status"
            )
        if finalizing.has_finalizer(self.mailbox.body):
            # Nothing of this run can be archived: never hold its deletion.
            with contextlib.suppress(ApiError):
                await self._remove_finalizer()

    def _path(self, status: bool = False) -> str:
        path = group_path(API_VERSION, self.ref.namespace, RUNS, self.ref.name)
        return path + "/status" if status else path

    # --- one pass -----------------------------------------------------------

    async def reconcile(self) -> float | None:
        """One pass; returns when to wake at the latest (None: only on news)."""
        self.runtime.passes += 1
        body = self.mailbox.body
        now = self.runtime.clock()
        if self.state is None:
            restored = await self._restore(body, now)
            if restored is not None:
                return restored
        assert self.state is not None
        if self.state.phase.is_terminal:
            return await self._after_finish(body, now)
        assert self.planner is not None and self.workflow is not None

        observations = self._observations(now)
        spec = body.get("spec") or {}
        generation = (body.get("metadata") or {}).get("generation")
        generation_changed = generation is not None and generation != self.state.observed_generation
        self.state.observed_generation = generation
        suspects = {r for r in self._suspects if self._still_running(r)}
        # A run deleted while it runs (its history finalizer holds the object)
        # is cancelled, so its history ends with a terminal row.
        cancel = bool(spec.get("cancel")) or (
            finalizing.has_finalizer(body) and finalizing.deletion_requested_at(body) is not None
        )
        plan = self.planner.plan(
            observations,
            now,
            suspend=bool(spec.get("suspend")),
            cancel=cancel,
        )
        gone = [
            vanished(r, self._seen.get(r, "of this attempt"), now)
            for r in suspects
            if self._still_running(r)
        ]
        self._suspects.clear()
        if gone:
            plan = _merge(
                plan,
                self.planner.plan(
                    gone,
                    now,
                    suspend=bool(spec.get("suspend")),
                    cancel=cancel,
                ),
            )
        await self._apply(plan, now)
        changed = set(plan.changed_steps)
        for name in changed:
            # A succeeded step's pod is found by its labels; dropping the name
            # keeps a 5,000-step status under 1 MiB (docs/operator.md).
            record = self.state.steps[name]
            if record.phase is StepPhase.SUCCEEDED:
                record.pod_name = None
        if changed or plan.run_changed or generation_changed or self._write_pin:
            await self._write_status(changed)
        if plan.transitions:
            self.runtime.events.emit(self.ref, plan.transitions)
            if self.runtime.history is not None:
                self.runtime.history.record(
                    self.ref, body, self.workflow, self._definition, self.state, plan.transitions
                )
        wake_at = plan.wake_at
        if self._retry_launches:
            retry_at = now + self.runtime.settings.quota_retry_delay
            wake_at = retry_at if wake_at is None else min(wake_at, retry_at)
        if self._pending_obs:
            wake_at = now
        if self.state.phase.is_terminal:
            return await self._after_finish(body, now)
        return wake_at

    def _still_running(self, ref: AttemptRef) -> bool:
        assert self.state is not None
        record = self.state.steps.get(ref.step)
        if record is None:
            return False
        if ref.rollback:
            rb = record.rollback
            return rb is not None and rb.phase is StepPhase.RUNNING
        return record.phase is StepPhase.RUNNING and record.attempts == ref.attempt

    # --- restoring ----------------------------------------------------------

    async def _restore(self, body: dict[str, Any], now: float) -> float | None:
        """Build the in-memory state from status (+ pinned spec); None when ready to plan."""
        status = body.get("status") or {}
        self.mailbox.pods.clear()  # the full scan below covers them
        phase = status.get("phase")
        if phase in _TERMINAL_PHASES and not (
            self.runtime.history is not None and finalizing.has_finalizer(body)
        ):
            # Nothing to plan: only the run fields matter (TTL), skip the steps.
            # (With the history finalizer still on, the steps may have to be
            # archived again from the status: see _hold_for_history.)
            self.state = RunState.from_status({k: v for k, v in status.items() if k != "steps"})
            return None
        state = RunState.from_status(status) if phase else None
        if state is not None and state.phase.is_terminal:
            self.state = state
            return None
        try:
            workflow, first = await self._pin(body, status)
        except RunRefused as refused:
            self.state = self._refused_state(refused, now, body)
            await self._write_status(set())
            self.runtime.events.emit(
                self.ref,
                (Transition(None, "Pending", "Failed", now, "RunFailed", refused.message),),
            )
            return None
        if (
            self.runtime.history is not None
            and not finalizing.has_finalizer(self.mailbox.body)
            and finalizing.deletion_requested_at(self.mailbox.body) is None
        ):
            # Before the first pod exists: no history without the finalizer.
            await self._add_finalizer()
        self.workflow = workflow
        self._launchers = {s.name: s.launcher for s in workflow.steps}
        if state is None:
            state = new_run_state(workflow)
        elif (
            first
            and state.workflow is not None
            and (state.workflow.spec_hash != workflow.spec_hash)
        ):
            # A status without pinnedSpec (written by something else): only
            # the Workflow it pinned by hash will do.
            raise RunRefusedLate(
                "PinnedSpecLost",
                f"the run's pinned spec {state.workflow.spec_hash} is not in its status and "
                f"Workflow {workflow.name} now has {workflow.spec_hash}",
            )
        if state.workflow is None:
            state.workflow = PinnedWorkflow(workflow.name, workflow.version, workflow.spec_hash)
        self.state = state
        self.planner = compile_workflow(workflow).attach(state)
        # Everything observed so far, oldest finish first (rollback order).
        views = sorted(
            self.runtime.pods_of(self.ref.namespace, self.ref.name),
            key=lambda v: (v.finished_at or float("inf"), v.name),
        )
        known = {v.ref for v in views}
        for view in views:
            self.mailbox.pods[view.uid] = ("RESTORED", view)
        if self._first_restore:
            # Only now is "recorded running, no pod in the index" proof of a
            # vanished pod: kopf listed every pod before this task started and
            # this process has created none yet. After a reset mid-life, a pod
            # we just created may not have come through the watch yet.
            self._suspects = {ref for ref in self._running_refs() if ref not in known}
        self._first_restore = False
        return None

    def _running_refs(self) -> Iterable[AttemptRef]:
        assert self.state is not None
        for name, record in self.state.steps.items():
            if record.phase is StepPhase.RUNNING and self._launchers.get(name, "Pod") == "Pod":
                yield AttemptRef(name, record.attempts)
            if record.rollback is not None and record.rollback.phase is StepPhase.RUNNING:
                yield AttemptRef(name, 1, rollback=True)

    async def _pin(
        self, body: dict[str, Any], status: Mapping[str, Any]
    ) -> tuple[ResolvedWorkflow, bool]:
        """The run's workflow: from ``status.pinnedSpec``, else resolved now and pinned.

        Returns the resolved workflow and whether this is the run's start.
        """
        pinned = status.get("pinnedSpec")
        if isinstance(pinned, str) and pinned:
            name, spec, params = decode_pinned(pinned)
            workflow = resolve_workflow(spec, name=name, params=params)
            self._definition = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
            return workflow, False
        run_spec = body.get("spec") or {}
        if run_spec.get("workflow") is not None:
            name = self.ref.name
            try:
                spec = WorkflowSpec.model_validate(upgrade({"spec": run_spec["workflow"]})["spec"])
            except Exception as error:  # pydantic or migration errors
                raise RunRefused("InvalidWorkflow", f"invalid inline workflow: {error}") from None
        else:
            name = str((run_spec.get("workflowRef") or {}).get("name") or "")
            if not name:
                raise RunRefused("InvalidWorkflow", "give either workflowRef or workflow")
            try:
                doc = await self.runtime.client.get(
                    group_path(API_VERSION, self.ref.namespace, WORKFLOWS, name)
                )
            except NotFound:
                raise RunRefused(
                    "WorkflowNotFound",
                    f"Workflow {name!r} not found in namespace {self.ref.namespace}",
                ) from None
            try:
                spec = parse_workflow(upgrade(doc), source=f"Workflow {name}").spec
            except (WorkflowInvalid, ValueError) as error:
                raise RunRefused("InvalidWorkflow", str(error)) from None
        issues: list[SpecIssue] = list(validate_workflow(spec))
        params, param_issues = validate_run_params(spec, run_spec.get("params") or {})
        issues.extend(param_issues)
        if issues:
            raise RunRefused("InvalidWorkflow", "; ".join(str(i) for i in issues))
        try:
            workflow = resolve_workflow(spec, name=name, params=params)
        except WorkflowInvalid as error:
            raise RunRefused("InvalidWorkflow", str(error)) from None
        if workflow.spec_hash != spec_hash(spec):  # pragma: no cover - engine contract
            logger.warning("resolved spec hash differs from spec_hash(spec)")
        self._pinned_text = encode_pinned(name, spec, params)
        self._definition = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
        self._write_pin = True
        return workflow, True

    def _refused_state(self, refused: RunRefused, now: float, body: Mapping[str, Any]) -> RunState:
        state = RunState(
            phase=RunPhase.FAILED,
            started_at=now,
            finished_at=now,
            message=refused.message,
            reason=refused.reason,
            condition_changed_at=now,
            observed_generation=(body.get("metadata") or {}).get("generation"),
        )
        return state

    # --- observations -------------------------------------------------------

    def _observations(self, now: float) -> list[Observation]:
        """New observations since the last pass (each pod change at most once)."""
        out = list(self._pending_obs)
        self._pending_obs.clear()
        changes = list(self.mailbox.pods.values())
        self.mailbox.pods.clear()
        for event_type, view in changes:
            ref = view.ref
            if event_type == "DELETED":
                if (
                    not view.terminal
                    and ref not in self._deleted_by_us
                    and view.job is None
                    and self._still_running(ref)
                ):
                    out.append(vanished(ref, view.name, now))
                continue
            self._seen[ref] = view.name
            obs = observe(view, now)
            if obs is None:
                continue
            key = (
                obs.state,
                obs.exit_code,
                obs.message,
                json.dumps(obs.outputs, sort_keys=True) if obs.outputs else None,
            )
            if self._fed.get(ref) == key:
                continue
            if self._fed.get(ref, ("",))[0] in ("Succeeded", "Failed"):
                continue  # a finished attempt stays finished (e.g. a Job's replacement pod)
            self._fed[ref] = key
            out.append(obs)
        return out

    # --- actions ------------------------------------------------------------

    async def _apply(self, plan: Plan, now: float) -> None:
        launches = [a for a in plan.actions if isinstance(a, Launch)]
        stops = [a for a in plan.actions if isinstance(a, Stop)]
        retries = list(self._retry_launches.values())
        self._retry_launches.clear()
        sem = asyncio.Semaphore(self.runtime.settings.launch_concurrency)

        async def guarded(coro: Any) -> None:
            async with sem:
                await coro

        await asyncio.gather(
            *(guarded(self._launch(a)) for a in [*retries, *launches]),
            *(guarded(self._stop(a)) for a in stops),
        )

    def _plural(self, ref: AttemptRef) -> str:
        """Compensations always run as Pods; attempts as their step's launcher says."""
        if ref.rollback:
            return "pods"
        return "jobs" if self._launchers.get(ref.step) == "Job" else "pods"

    def _manifest(self, launch: Launch) -> tuple[str, str, dict[str, Any]]:
        """(resource plural, object name, manifest) for an attempt."""
        assert self.workflow is not None and self.state is not None
        ref = launch.ref
        env = step_environment(
            self.workflow,
            self.state,
            ref.step,
            ref.attempt,
            run_name=self.ref.name,
            namespace=self.ref.namespace,
            rollback=ref.rollback,
        )
        run: manifests.RunMeta = {
            "name": self.ref.name,
            "namespace": self.ref.namespace,
            "uid": self.ref.uid,
        }
        plural = self._plural(ref)
        build = manifests.build_job if plural == "jobs" else manifests.build_pod
        manifest = build(
            run, launch.step, launch.command, ref, env, self.runtime.settings.default_image
        )
        if plural == "jobs":
            template_meta = manifest["spec"]["template"]["metadata"]
            per_attempt_annotations(template_meta, ref)
        else:
            per_attempt_annotations(manifest["metadata"], ref)
        name = str(manifest["metadata"]["name"])
        if not ref.rollback:
            self.state.steps[ref.step].pod_name = name
        return plural, name, manifest

    async def _launch(self, launch: Launch) -> None:
        plural, name, manifest = self._manifest(launch)
        path = (
            f"/apis/batch/v1/namespaces/{self.ref.namespace}/jobs"
            if plural == "jobs"
            else f"/api/v1/namespaces/{self.ref.namespace}/pods"
        )
        try:
            await self.runtime.client.create(path, manifest, resource=plural)
        except AlreadyExists:
            pass
        except Forbidden as error:
            if "exceeded quota" in error.message or "forbidden: exceeded" in error.message:
                self._retry_launches[launch.ref] = launch
                self._pending_obs.append(
                    Observation(launch.ref, "Pending", self.runtime.clock(), message=error.message)
                )
            else:
                self._launch_failed(launch, f"cannot create {plural[:-1]} {name}: {error}")
        except NotFound:
            raise
        except ApiError as error:
            if error.status in (0, 429) or error.status >= 500:
                self._retry_launches[launch.ref] = launch
            else:
                self._launch_failed(launch, f"cannot create {plural[:-1]} {name}: {error}")

    def _launch_failed(self, launch: Launch, message: str) -> None:
        logger.warning("run %s/%s: %s", self.ref.namespace, self.ref.name, message)
        self._pending_obs.append(
            Observation(launch.ref, "Failed", self.runtime.clock(), message=message[:1024])
        )

    async def _stop(self, stop: Stop) -> None:
        self._deleted_by_us.add(stop.ref)
        self._retry_launches.pop(stop.ref, None)
        plural = self._plural(stop.ref)
        name = manifests.attempt_name(
            self.ref.name, stop.ref.step, stop.ref.attempt, rollback=stop.ref.rollback
        )
        path = (
            f"/apis/batch/v1/namespaces/{self.ref.namespace}/jobs/{name}"
            if plural == "jobs"
            else f"/api/v1/namespaces/{self.ref.namespace}/pods/{name}"
        )
        with contextlib.suppress(NotFound):
            await self.runtime.client.delete(path, resource=plural, propagation="Background")

    # --- status -------------------------------------------------------------

    async def _write_status(self, changed: set[str]) -> None:
        assert self.state is not None
        patch = status_merge_patch(self.state, changed)
        if self._write_pin and self._pinned_text is not None:
            patch["pinnedSpec"] = self._pinned_text
            patch["steps"] = {n: s.to_status() for n, s in self.state.steps.items()}
        body = {"metadata": {"resourceVersion": _rv(self.mailbox.body)}, "status": patch}
        answer = await self.runtime.client.merge_patch(
            self._path(status=True), body, resource="workflowruns/status"
        )
        self._write_pin = False
        if answer:
            self.mailbox.post_run(answer, significant=False)

    # --- after the end --------------------------------------------------------

    async def _after_finish(self, body: Mapping[str, Any], now: float) -> float | None:
        """A finished run: release its history finalizer, delete it when its TTL passed.

        Returns when to look again; None with ``_holding`` False: nothing left to do.
        """
        assert self.state is not None
        self.finished = True
        self._holding = False
        wakes: list[float] = []
        if finalizing.has_finalizer(body):
            if self.runtime.history is None:
                # Mirroring was turned off since the run started: nothing to wait for.
                await self._remove_finalizer()
            else:
                hold_wake = await self._hold_for_history(body, now)
                if hold_wake is not None:
                    wakes.append(hold_wake)
        ttl = (body.get("spec") or {}).get("ttlSecondsAfterFinished")
        if ttl is not None and finalizing.deletion_requested_at(body) is None:
            ended = self.state.finished_at if self.state.finished_at is not None else now
            due = ended + float(ttl)
            if now < due:
                wakes.append(due)
            elif not self._ttl_deleted:
                # The history finalizer, if on, holds the object until archived.
                with contextlib.suppress(NotFound):
                    await self.runtime.client.delete(
                        self._path(), resource=RUNS, propagation="Background"
                    )
                self._ttl_deleted = True
                if not self._holding:
                    self.mailbox.deleted = True
        return min(wakes) if wakes else None

    # --- the history finalizer (szal.runners.kubernetes.finalizing) ------------

    async def _hold_for_history(self, body: Mapping[str, Any], now: float) -> float | None:
        """Keep or release the finalizer of a finished run; sets ``_holding``."""
        history = self.runtime.history
        assert history is not None and self.state is not None
        archived = history.archived(self.ref)
        if not archived:
            if history.pending(self.ref) == 0:
                # Nothing queued for it: a new operator process (the run finished
                # while the previous one could not write), or the mirror forgot it.
                self._recover_history(body)
            if self._archive_waiter is None or self._archive_waiter.done():
                self._archive_waiter = asyncio.create_task(
                    self._wake_when_archived(), name=f"szal-archived-{self.ref.name}"
                )
        settings = self.runtime.settings
        hold = finalizing.decide(
            archived=archived,
            finished_at=self.state.finished_at,
            deletion_at=finalizing.deletion_requested_at(body),
            warned=finalizing.warned(body),
            timeout=settings.history_finalizer_timeout,
            now=now,
        )
        deleting = finalizing.deletion_requested_at(body) is not None
        if hold.warn:
            reason = history.last_error() or "the history database did not answer"
            message = (
                f"history not archived {settings.history_finalizer_timeout:.0f}s after the run"
                f" finished: {reason}"
            )
            logger.warning("run %s/%s: %s", self.ref.namespace, self.ref.name, message)
            await self._set_history_condition(
                body, "False", finalizing.REASON_UNAVAILABLE, message, now
            )
            self.runtime.events.note(self.ref, Note(finalizing.EVENT_NOT_ARCHIVED, message, now))
        if hold.recovered and not deleting:
            await self._set_history_condition(
                body, "True", finalizing.REASON_ARCHIVED, "history archived", now
            )
        if not hold.release:
            self._holding = True
            return hold.wake_at
        if hold.timed_out:
            message = (
                f"deleting without archived history: the database stayed away"
                f" {settings.history_finalizer_timeout:.0f}s after the deletion was requested"
                f" ({history.last_error() or 'no answer'}); the operator keeps the rows queued"
            )
            logger.warning("run %s/%s: %s", self.ref.namespace, self.ref.name, message)
            self.runtime.events.note(self.ref, Note(finalizing.EVENT_RELEASED, message, now))
        await self._remove_finalizer()
        return None

    def _recover_history(self, body: Mapping[str, Any]) -> None:
        assert self.runtime.history is not None and self.state is not None
        workflow: ResolvedWorkflow | None = None
        definition: dict[str, Any] = {}
        pinned = (body.get("status") or {}).get("pinnedSpec")
        if isinstance(pinned, str) and pinned:
            try:
                name, spec, params = decode_pinned(pinned)
                workflow = resolve_workflow(spec, name=name, params=params)
                definition = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
            except Exception as error:  # a damaged pin: archive the run row anyway
                logger.warning("run %s/%s: pinned spec unreadable: %s", *self._names(), error)
        logger.info("run %s/%s: archiving its history again from its status", *self._names())
        self.runtime.history.recover(self.ref, body, workflow, definition, self.state)

    def _names(self) -> tuple[str, str]:
        return self.ref.namespace, self.ref.name

    async def _wake_when_archived(self) -> None:
        assert self.runtime.history is not None
        if await self.runtime.history.wait_archived(self.ref, _FOREVER):
            self.mailbox.wake.set()

    async def _set_history_condition(
        self, body: Mapping[str, Any], status: str, reason: str, message: str, now: float
    ) -> None:
        patch = {
            "metadata": {"resourceVersion": _rv(self.mailbox.body)},
            "status": {
                "conditions": finalizing.conditions_with(body, status, reason, message, now)
            },
        }
        answer = await self.runtime.client.merge_patch(
            self._path(status=True), patch, resource="workflowruns/status"
        )
        if answer:
            self.mailbox.post_run(answer, significant=False)

    async def _add_finalizer(self) -> None:
        await self._patch_finalizers(finalizing.add_patch, lambda b: finalizing.has_finalizer(b))

    async def _remove_finalizer(self) -> None:
        await self._patch_finalizers(
            finalizing.remove_patch, lambda b: not finalizing.has_finalizer(b)
        )

    async def _patch_finalizers(
        self,
        build: Callable[[Mapping[str, Any]], list[dict[str, Any]]],
        done: Callable[[Mapping[str, Any]], bool],
    ) -> None:
        """One JSON patch of ``metadata.finalizers``; re-read and retry if it raced."""
        body: Mapping[str, Any] = self.mailbox.body
        for _ in range(3):
            if done(body):
                return
            try:
                answer = await self.runtime.client.json_patch(
                    self._path(), build(body), resource=RUNS
                )
            except (Invalid, Conflict):
                body = await self.runtime.client.get(self._path())
                self.mailbox.post_run(dict(body), significant=False)
                continue
            if answer:
                self.mailbox.post_run(answer, significant=False)
            return
        raise Conflict(409, "Conflict", "the run's finalizers kept changing")


def per_attempt_annotations(metadata: dict[str, Any], ref: AttemptRef) -> None:
    """Apply ``szal.dev/<key>-attempt-<n>`` and ``szal.dev/<key>-rollback`` annotations.

    Annotations are copied from the step's ``pod.metadata`` onto every
    attempt alike; a per-attempt override lets one attempt differ - the
    test cluster's kwok stages read ``szal.dev/sim-exit-code`` and friends,
    so ``szal.dev/sim-exit-code-attempt-1: "1"`` makes only the first attempt
    fail ("retry then succeed"), ``szal.dev/sim-exit-code-rollback`` only the
    compensation. Only keys under ``szal.dev/`` are rewritten; the suffixed
    keys stay on the pod as given.
    """
    annotations = metadata.get("annotations")
    if not annotations:
        return
    suffix = "-rollback" if ref.rollback else f"-attempt-{ref.attempt}"
    for key, value in list(annotations.items()):
        if key.startswith("szal.dev/") and key.endswith(suffix):
            annotations[key[: -len(suffix)]] = value


def _merge(first: Plan, second: Plan) -> Plan:
    wakes = [w for w in (first.wake_at, second.wake_at) if w is not None]
    return Plan(
        actions=first.actions + second.actions,
        transitions=first.transitions + second.transitions,
        wake_at=min(wakes) if wakes else None,
        changed_steps=first.changed_steps | second.changed_steps,
        run_changed=first.run_changed or second.run_changed,
    )
