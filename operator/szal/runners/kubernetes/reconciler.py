"""One WorkflowRun's reconciler: observe pods, ask the planner, apply, record.

Each run has exactly one :class:`RunReconciler`, a long-lived asyncio task
woken through its :class:`~szal.runners.kubernetes.runtime.Mailbox` by the
run's and its pods' watch events (see :mod:`szal.runners.kubernetes.operator`).
Bursts of events collapse into one pass; passes of one run never overlap.
A pass:

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

**Where the pieces live.** The reconciler is the loop and the status
writer; the rest is beside it: :mod:`~szal.runners.kubernetes.pinning`
(which workflow a run executes: ``status.pinnedSpec``, the refusal of a run
that cannot start), :mod:`~szal.runners.kubernetes.applying` (creating and
deleting Pods/Jobs, and what an API error means for the attempt),
:mod:`~szal.runners.kubernetes.finalizing` (after the end: the history
finalizer and the TTL deletion) and :mod:`~szal.runners.kubernetes.runtime`
(the settings, the mailbox and what all runs share).

**A pod that disappears** before finishing (deleted by someone, evicted
and garbage-collected) fails its attempt with a message saying so - but
only if the reconciler saw that pod, or the status recorded it as running
when the reconciler started (the pod index is complete then). A pod just
created but not yet seen through the watch is never taken for gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from szal.engine.actions import AttemptRef, Observation, Plan, Transition
from szal.engine.compiled import compile_workflow
from szal.engine.phases import EventReason, RunPhase, StepPhase
from szal.engine.planner import PlanSession
from szal.engine.state import PinnedWorkflow, RunState, StatusDict
from szal.engine.timestamps import format_timestamp
from szal.engine.workflow import ResolvedWorkflow
from szal.runners.kubernetes import finalizing
from szal.runners.kubernetes.applying import PlanApplier
from szal.runners.kubernetes.client import ApiError, Conflict, NotFound
from szal.runners.kubernetes.events import Note, RunRef
from szal.runners.kubernetes.finalizing import RunLifecycle
from szal.runners.kubernetes.health import API_WRITE_FAILING, advice, classify_write_error
from szal.runners.kubernetes.observing import observe, vanished
from szal.runners.kubernetes.pinning import Refusal, RunRefused, pin_run
from szal.runners.kubernetes.retrying import initial_state
from szal.runners.kubernetes.runtime import Mailbox, Runtime, patch_run_status, run_path
from szal.spec.status import TERMINAL_RUN_PHASES, RunStatus, StepStatus, clearable_keys

logger = logging.getLogger(__name__)

_TERMINAL_PHASES = TERMINAL_RUN_PHASES

#: Keys a record may drop once written (``CLEARABLE`` in the status model); a
#: changed record's absent ones are sent as null so the merge patch removes them.
_STEP_KEYS = clearable_keys(StepStatus)
_RUN_KEYS = clearable_keys(RunStatus)


# --- the status patch -------------------------------------------------------


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
        self._first_restore = True
        self._unwritten: set[str] = set()  # changed step records not written yet
        self._pending_since: float | None = None  # the oldest unwritten change
        self._written_phase: str | None = None
        self._object_bytes = 0  # the run object's size, from the latest answer
        self.applier = PlanApplier(
            runtime.client,
            runtime.settings,
            runtime.clock,
            self.ref,
            runtime.pod_limiter,
            on_write_error=self._write_failed,
        )
        self.lifecycle = RunLifecycle(runtime, mailbox, self.ref)

    # --- the loop -----------------------------------------------------------

    async def run(self) -> None:
        """Reconcile until the run ends (and its TTL passes) or is deleted."""
        try:
            await self._loop()
        finally:
            self.runtime.health.forget(self.ref.uid)
            await self.lifecycle.close()

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
            except RunRefused as refused:  # only after the start (see _restore)
                logger.error("run %s/%s: %s", self.ref.namespace, self.ref.name, refused.message)
                await self._fail_unrecoverable(refused)
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if classify_write_error(error) is not None:
                    # The cluster is unwell: counted, logged once a minute per kind.
                    self._write_failed(error, f"reconciling (retrying in {delay:.1f}s)")
                else:
                    logger.exception(
                        "reconciling %s/%s failed; retrying in %.1fs",
                        self.ref.namespace,
                        self.ref.name,
                        delay,
                    )
                wake_at = self.runtime.clock() + delay
                delay = min(delay * 2, self.runtime.settings.max_retry_delay)
                await self._reset(refetch=False)
            if self.finished and wake_at is None and not self.lifecycle.holding:
                return
            timeout = None if wake_at is None else max(0.0, wake_at - self.runtime.clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.mailbox.wake.wait(), timeout)

    def _write_failed(self, error: BaseException, what: str) -> None:
        """A write failed for a cluster-wide reason: count, log (rarely), warn on the run."""
        health = self.runtime.health
        kind = health.failed(error, f"run {self.ref.namespace}/{self.ref.name}: {what}")
        if kind is not None and health.should_note(self.ref.uid, kind):
            message = f"{what}: {advice(kind)}: {error}"
            self.runtime.events.note(
                self.ref, Note(API_WRITE_FAILING, message, self.runtime.clock())
            )

    async def _reset(self, refetch: bool = True) -> None:
        """Forget everything in memory; the next pass restores from status + pods."""
        self.state = None
        self.workflow = None
        self.planner = None
        self._fed.clear()
        self._suspects.clear()
        self._unwritten.clear()
        self._pending_since = None
        self.applier.forget_observations()
        if refetch:
            body = await self.runtime.client.get(run_path(self.ref))
            self.mailbox.body = body

    async def _fail_unrecoverable(self, refused: RunRefused) -> None:
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
        with contextlib.suppress(ApiError):
            await patch_run_status(self.runtime.client, self.mailbox, patch)
        if finalizing.has_finalizer(self.mailbox.body):
            # Nothing of this run can be archived: never hold its deletion.
            with contextlib.suppress(ApiError):
                await self.lifecycle.remove_finalizer()

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
        # A deleted run skips its finally steps: its pods are going away with it.
        skip_finally = bool(spec.get("skipFinally")) or (cancel and not spec.get("cancel"))
        plan = self.planner.plan(
            observations,
            now,
            suspend=bool(spec.get("suspend")),
            cancel=cancel,
            skip_finally=skip_finally,
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
                    skip_finally=skip_finally,
                ),
            )
        await self.applier.apply(plan, self.planner.compiled, self.state)
        changed = set(plan.changed_steps)
        for name in changed:
            # A succeeded step's pod is found by its labels; dropping the name
            # keeps a 5,000-step status under 1 MiB (docs/operator.md).
            record = self.state.steps[name]
            if record.phase is StepPhase.SUCCEEDED:
                record.pod_name = None
        self._unwritten |= changed
        dirty = changed or plan.run_changed or generation_changed or self._write_pin
        if dirty and self._pending_since is None:
            self._pending_since = now
        write_at = await self._write_when_due(now)
        wake_at: float | None
        if write_at is not None:
            wake_at = write_at if plan.wake_at is None else min(plan.wake_at, write_at)
        else:
            wake_at = plan.wake_at
        if plan.transitions:
            self.runtime.events.emit(self.ref, plan.transitions)
            if self.runtime.observer is not None:
                self.runtime.observer(self.ref, self.workflow, self.state, plan.transitions)
            if self.runtime.history is not None:
                self.runtime.history.record(
                    self.ref, body, self.workflow, self._definition, self.state, plan.transitions
                )
        if self.applier.retrying:
            retry_at = now + self.runtime.settings.quota_retry_delay
            wake_at = retry_at if wake_at is None else min(wake_at, retry_at)
        if self.applier.has_observations:
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
            # archived again from the status: see RunLifecycle.)
            self.state = RunState.from_status({k: v for k, v in status.items() if k != "steps"})
            return None
        state = RunState.from_status(status) if phase else None
        if state is not None and state.phase.is_terminal:
            self.state = state
            return None
        try:
            pin = await pin_run(self.runtime.client, self.ref, body)
            # A new run's state; a retry's is seeded from the run it retries.
            seeded = (
                await initial_state(self.runtime.client, self.ref, body, pin.workflow)
                if state is None
                else None
            )
        except RunRefused as refused:
            if refused.when is not Refusal.AT_START:
                raise
            self.state = self._refused_state(refused, now, body)
            await self._write_status(set())
            self.runtime.events.emit(
                self.ref,
                (
                    Transition(
                        None,
                        RunPhase.PENDING,
                        RunPhase.FAILED,
                        now,
                        EventReason.RUN_FAILED,
                        refused.message,
                    ),
                ),
            )
            return None
        if (
            self.runtime.history is not None
            and not finalizing.has_finalizer(self.mailbox.body)
            and finalizing.deletion_requested_at(self.mailbox.body) is None
        ):
            # Before the first pod exists: no history without the finalizer.
            await self.lifecycle.add_finalizer()
        workflow = pin.workflow
        self._definition = pin.definition
        if pin.text is not None:
            self._pinned_text = pin.text
            self._write_pin = True
        self.workflow = workflow
        self.applier.attach(workflow)
        if state is None:
            assert seeded is not None
            state = seeded
        elif (
            pin.first
            and state.workflow is not None
            and (state.workflow.spec_hash != workflow.spec_hash)
        ):
            # A status without pinnedSpec (written by something else): only
            # the Workflow it pinned by hash will do.
            raise RunRefused(
                "PinnedSpecLost",
                f"the run's pinned spec {state.workflow.spec_hash} is not in its status and "
                f"Workflow {workflow.name} now has {workflow.spec_hash}",
                when=Refusal.AFTER_START,
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
            if record.phase is StepPhase.RUNNING and self.applier.launcher_of(name) == "Pod":
                yield AttemptRef(name, record.attempts)
            if record.rollback is not None and record.rollback.phase is StepPhase.RUNNING:
                yield AttemptRef(name, 1, rollback=True)

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
        out = self.applier.take_observations()
        changes = list(self.mailbox.pods.values())
        self.mailbox.pods.clear()
        for event_type, view in changes:
            ref = view.ref
            if event_type == "DELETED":
                if (
                    not view.terminal
                    and not self.applier.stopped_by_us(ref)
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

    # --- status -------------------------------------------------------------

    async def _write_when_due(self, now: float) -> float | None:
        """Write the unwritten changes if the budget allows; else when to try again.

        See :mod:`szal.runners.kubernetes.coalescing`: small run objects,
        terminal phases, phase changes and the first write go at once.
        """
        assert self.state is not None
        if self._pending_since is None:
            return None
        budget = self.runtime.write_budget
        assert budget is not None
        phase = self.state.phase.value
        urgent = self._write_pin or self.state.phase.is_terminal or phase != self._written_phase
        due = budget.due(self._object_bytes, self._pending_since, now, urgent=urgent)
        if due > now:
            return due
        await self._write_status(self._unwritten)
        budget.spend(self._object_bytes, now)
        return None

    async def _write_status(self, changed: set[str]) -> None:
        assert self.state is not None
        patch = status_merge_patch(self.state, changed)
        if self._write_pin and self._pinned_text is not None:
            patch["pinnedSpec"] = self._pinned_text
            patch["steps"] = {n: s.to_status() for n, s in self.state.steps.items()}
        answer = await patch_run_status(self.runtime.client, self.mailbox, patch)
        self._object_bytes = self.runtime.client.last_answer_bytes
        self._write_pin = False
        self._unwritten = set()
        self._pending_since = None
        self._written_phase = self.state.phase.value
        if answer:
            self.mailbox.post_run(answer, significant=False)

    # --- after the end --------------------------------------------------------

    async def _after_finish(self, body: Mapping[str, Any], now: float) -> float | None:
        """A finished run: its finalizer and TTL (see :class:`RunLifecycle`)."""
        assert self.state is not None
        self.finished = True
        return await self.lifecycle.after_finish(body, self.state, now)


def _merge(first: Plan, second: Plan) -> Plan:
    wakes = [w for w in (first.wake_at, second.wake_at) if w is not None]
    return Plan(
        actions=first.actions + second.actions,
        transitions=first.transitions + second.transitions,
        wake_at=min(wakes) if wakes else None,
        changed_steps=first.changed_steps | second.changed_steps,
        run_changed=first.run_changed or second.run_changed,
    )
