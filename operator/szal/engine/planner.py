"""The planner's session: given what a run saw and ``now``, decide what to do.

Both runners (local processes, Kubernetes Pods) compile the workflow once
(:func:`~szal.engine.compiled.compile_workflow`), attach the run's state
(``session = compiled.attach(state)``: a new run's, or one read back from
status after a restart) and call ``session.plan(observations, now)`` every
time something happens (an attempt changed, a timer fired, the run's spec
changed). They carry out the returned :class:`~szal.engine.actions.Plan`:
launch and stop attempts, record the transitions, save ``session.state``
(or the patch of ``changed_steps``), and call again by ``wake_at`` at the
latest. No I/O, no clock: time is the ``now`` argument.

Semantics are DESIGN.md section 4. Decisions where it is silent:

* A step with children counts as *done* for its sibling group once it and its
  whole subtree are terminal; it counts as *failed* for its group when it did
  not succeed (a ``when``-skip aside) or anything in its subtree failed. So a
  Sequential (or Hierarchical top-level) group moves to the next sibling after
  the previous sibling's whole subtree finished, and a Dag dependent of a
  parent waits for the parent's subtree.
* A step Skipped with the message ``condition not met`` unlocks its
  dependents like a success (trigger All), but does not count as a success
  for trigger Any. Every other Skipped step counts as failed for its
  dependents, so skips cascade (``dependency failed``, ``prior step failed``).
  The run fails only when some step Failed or TimedOut.
* ``when`` is evaluated when the step becomes ready (its dependencies done),
  before it waits for a ``maxParallel`` slot; a false condition skips at once.
* A step with children and nothing to run goes Running then Succeeded in the
  same plan call, with ``attempts: 0`` (nothing was launched).
* failFast: after a step finally fails (retries exhausted), its failure
  propagates first (dependents ``dependency failed``, later siblings ``prior
  step failed``, children ``parent step failed``), then every other step not
  started yet is Skipped (``skipped by failFast: ...``); running steps run
  on, and steps already waiting for a retry still retry.
* Attempt timestamps come from observations (``Observation.at``); a retry's
  ``retry_at`` is the failure time plus the backoff delay.
* The run deadline (``spec.timeout``) counts from the run's start, also while
  Paused; it cancels all unfinished steps and fails the run (reason
  DeadlineExceeded) without rollback. A Paused run reaching its deadline is
  resumed and failed in the same call (the table has no Paused -> Failed).
  Rollback is not cut short by the deadline.
* Suspend while rolling back is ignored (rollback runs to its end); cancel
  while rolling back stops the running compensation, cancels the rest and
  fails the run with reason Cancelled.
* A Paused run whose steps are all finished stays Paused until resumed.
* ``maxParallel`` bounds running step attempts; retries due take free slots
  before newly ready steps.

Structure and performance: what depends only on the workflow is in the
immutable :class:`~szal.engine.compiled.CompiledWorkflow`; a
:class:`PlanSession` holds what is derived from one state (attempt and
timer indexes here, readiness counters in
:class:`~szal.engine.readiness.Readiness`, compensation sequencing in
:class:`~szal.engine.rollback.Rollback`). Attaching indexes the state in
O(n); each later call costs O(what changed). The session owns its state:
it is the one object it changes, and re-attaching the same status (a
restart) gives the same decisions. Heaps use lazy deletion; condition
contexts hold only the steps a condition names.

Where a new kind of decision goes: a new phase change is one more
``_step_change``/``_run_change`` call from the method that decides it
(attempts and timers here, readiness in ``readiness``, compensations in
``rollback``); a new run-level control (like ``suspend``) is a keyword of
:meth:`PlanSession.plan`.
"""

from __future__ import annotations

from collections.abc import Iterable

from szal.engine.actions import (
    Action,
    AttemptRef,
    Observation,
    Plan,
    Stop,
    StopReason,
    Transition,
)
from szal.engine.attempts import Attempts
from szal.engine.compiled import CompiledWorkflow, compile_workflow, new_run_state
from szal.engine.phases import (
    STEP_TRANSITIONS,
    EventReason,
    InvalidTransition,
    RunPhase,
    StepPhase,
    run_transition,
    step_transition,
)
from szal.engine.readiness import (
    CONDITION_NOT_MET,
    DEPENDENCY_FAILED,
    PARENT_STEP_FAILED,
    PRIOR_STEP_FAILED,
    Readiness,
)
from szal.engine.rollback import Rollback
from szal.engine.state import RunState, StepState

__all__ = [
    "CONDITION_NOT_MET",
    "DEPENDENCY_FAILED",
    "PARENT_STEP_FAILED",
    "PRIOR_STEP_FAILED",
    "CompiledWorkflow",
    "PlanSession",
    "compile_workflow",
    "new_run_state",
]

_WAITING = StepPhase.WAITING
_RUNNING = StepPhase.RUNNING
_SUCCEEDED = StepPhase.SUCCEEDED
_FAILED = StepPhase.FAILED
_TIMED_OUT = StepPhase.TIMED_OUT
_SKIPPED = StepPhase.SKIPPED
_CANCELLED = StepPhase.CANCELLED
_STEP_DONE = frozenset(phase for phase in StepPhase if phase.is_terminal)

# Enum members are class attributes, several times slower to reach than
# module globals; the hot paths use these.
_R_PENDING = RunPhase.PENDING
_R_RUNNING = RunPhase.RUNNING
_R_PAUSED = RunPhase.PAUSED
_R_ROLLING_BACK = RunPhase.ROLLING_BACK
_RUN_DONE = frozenset(phase for phase in RunPhase if phase.is_terminal)

_E = EventReason
_STEP_EVENTS: dict[StepPhase, EventReason] = {
    _RUNNING: _E.STEP_STARTED,
    _SUCCEEDED: _E.STEP_SUCCEEDED,
    _FAILED: _E.STEP_FAILED,
    _TIMED_OUT: _E.STEP_TIMED_OUT,
    _SKIPPED: _E.STEP_SKIPPED,
    _CANCELLED: _E.STEP_CANCELLED,
    _WAITING: _E.RETRYING,
}
_COMPENSATION_EVENTS: dict[StepPhase, EventReason] = {
    _RUNNING: _E.COMPENSATION_STARTED,
    _SUCCEEDED: _E.COMPENSATION_SUCCEEDED,
    _FAILED: _E.COMPENSATION_FAILED,
    _TIMED_OUT: _E.COMPENSATION_FAILED,
    _CANCELLED: _E.COMPENSATION_FAILED,
}
del _E


class PlanSession:
    """Plans one run: made by :meth:`CompiledWorkflow.attach`, then ``plan`` often.

    ``state`` is the run's state, changed in place by every call.
    """

    def __init__(
        self,
        compiled: CompiledWorkflow,
        state: RunState,
        *,
        run_name: str | None = None,
        namespace: str = "",
    ) -> None:
        self.compiled = compiled
        self.state = state
        self._state = state
        workflow = compiled.workflow
        self._run_ctx = {
            "name": run_name if run_name is not None else workflow.name,
            "namespace": namespace,
        }
        self._names = compiled.names
        self._index = compiled.index
        self._steps = compiled.steps
        self._timeout = compiled.timeout
        self._retries = compiled.retries
        self._max_parallel = compiled.max_parallel
        self._n = compiled.n
        self._actions: list[Action] = []
        self._transitions: list[Transition] = []
        self._changed: set[str] = set()
        self._run_changed = False
        recs: list[StepState] = []
        for name in compiled.names:
            rec = state.steps.get(name)
            if rec is None:
                rec = state.steps[name] = StepState()
            recs.append(rec)
        self._rec = recs
        n = compiled.n
        finished = 0
        orders: list[int] = []
        failures: list[tuple[int, int]] = []
        for i, rec in enumerate(recs):
            phase = rec.phase
            if phase in _STEP_DONE:
                finished += 1
                if rec.finish_order is not None:
                    orders.append(rec.finish_order)
                if phase is _FAILED or phase is _TIMED_OUT:
                    failures.append((rec.finish_order if rec.finish_order is not None else n, i))
        state.finished_count = finished
        state.next_finish_order = max(orders) + 1 if orders else 0
        failures.sort()
        self._failures = [i for _, i in failures]
        # The parts, in dependency order: attempts bind readiness and rollback.
        readiness = self._readiness = Readiness(self)
        self._work = readiness.work
        self._rollback = Rollback(self)
        attempts = self._attempts = Attempts(self)
        self._observe = attempts.observe
        self._launch = attempts.launch

    # ------------------------------------------------------------------
    # The entry point
    # ------------------------------------------------------------------

    def plan(
        self,
        observations: Iterable[Observation],
        now: float,
        *,
        suspend: bool = False,
        cancel: bool = False,
    ) -> Plan:
        """Apply ``observations`` to the state (in place) and decide what to do at ``now``."""
        self._readiness.sweep = None
        rollback = self._rollback
        state = self.state
        if state.phase in _RUN_DONE:
            return self._result(None)
        if state.phase is _R_PENDING:
            if cancel:
                self._cancel_all(now, "run cancelled", "cancel")
                self._run_change(RunPhase.CANCELLED, now, "RunCancelled", "run cancelled")
                return self._result(None)
            state.started_at = now
            self._run_change(RunPhase.RUNNING, now, "RunStarted", "")
            if state.finished_count:
                # Seeded with steps a retry carried over: go on from them.
                self._readiness.resume()
            else:
                self._readiness.activate(0, now)
        self._observe(observations, now)
        if self._readiness.deferred:
            self._readiness.decide_deferred(now)
        phase = state.phase
        if cancel:
            if phase is _R_ROLLING_BACK:
                rollback.apply_observations()
                rollback.cancel(now)
            else:
                self._cancel_all(now, "run cancelled", "cancel")
                self._run_change(RunPhase.CANCELLED, now, "RunCancelled", "run cancelled")
            return self._result(None)
        deadline = self._deadline()
        if deadline is not None and now >= deadline and (phase is _R_RUNNING or phase is _R_PAUSED):
            limit = self.compiled.deadline_message
            self._cancel_all(now, f"run deadline exceeded ({limit})", "deadline")
            if phase is _R_PAUSED:
                self._run_change(_R_RUNNING, now, "RunResumed", "")
            self._run_change(
                RunPhase.FAILED,
                now,
                "RunFailed",
                f"run exceeded its timeout of {limit}",
                reason="DeadlineExceeded",
            )
            return self._result(None)
        attempts = self._attempts
        if attempts.timeout_heap:
            attempts.expire(now)
        if phase is _R_ROLLING_BACK:
            rollback.expire(now)
        phase = state.phase
        if phase is _R_RUNNING:
            if suspend:
                self._run_change(_R_PAUSED, now, "RunPaused", "run suspended")
        elif phase is _R_PAUSED and not suspend:
            self._run_change(_R_RUNNING, now, "RunResumed", "")
        phase = state.phase
        if phase is _R_RUNNING:
            if attempts.retry_heap or self._readiness.queue:
                self._launch(now)
            if state.finished_count == self._n:
                self._finish_run(now)
                phase = state.phase
        if phase is _R_ROLLING_BACK:
            rollback.apply_observations()
            rollback.expire(now)
            rollback.advance(now)
        return self._result(self._wake_at(now))

    def _result(self, wake_at: float | None) -> Plan:
        plan = Plan(
            actions=tuple(self._actions),
            transitions=tuple(self._transitions),
            wake_at=wake_at,
            changed_steps=frozenset(self._changed),
            run_changed=self._run_changed,
        )
        # Cleared, not replaced: the parts hold these very objects. Changes
        # made while attaching (a missing rollback record) go out with the
        # first plan.
        self._actions.clear()
        self._transitions.clear()
        self._changed.clear()
        self._run_changed = False
        return plan

    # ------------------------------------------------------------------
    # Phase changes
    # ------------------------------------------------------------------

    def _step_change(
        self,
        i: int,
        new: StepPhase,
        now: float,
        message: str | None,
        exit_code: int | None = None,
        outcome: StepPhase | None = None,
    ) -> StepState:
        """``outcome``: how the attempt ended, when ``new`` (Waiting) does not say it."""
        rec = self._rec[i]
        old = rec.phase
        name = self._names[i]
        if new not in STEP_TRANSITIONS[old]:  # phases.step_transition, inlined (hot)
            raise InvalidTransition(f"step {name!r}", old, new)
        rec.phase = new
        rec.message = message
        if outcome is None and old is _RUNNING:
            outcome = new
        self._transitions.append(
            Transition(
                name,
                old,
                new,
                now,
                _STEP_EVENTS[new],
                message or "",
                rec.attempts,
                False,
                exit_code,
                outcome,
            )
        )
        self._changed.add(name)
        return rec

    def _run_change(
        self,
        new: RunPhase,
        now: float,
        event: str,
        message: str | None,
        *,
        reason: str | None = None,
    ) -> None:
        state = self._state
        assert state is not None
        old = state.phase
        state.phase = run_transition(old, new)
        state.reason = reason
        if message is not None:
            state.message = message or None
        state.condition_changed_at = now
        if new.is_terminal:
            state.finished_at = now
        self._transitions.append(Transition(None, old, new, now, EventReason(event), message or ""))
        self._run_changed = True

    def _compensation_change(
        self,
        i: int,
        new: StepPhase,
        at: float,
        message: str | None,
        exit_code: int | None = None,
    ) -> None:
        rb = self._rec[i].rollback
        assert rb is not None
        old = rb.phase
        name = self._names[i]
        rb.phase = step_transition(old, new, step=name)
        rb.message = message
        if new is _RUNNING:
            rb.started_at = at
        elif new.is_terminal:
            rb.finished_at = at
        if exit_code is not None:
            rb.exit_code = exit_code
        self._transitions.append(
            Transition(
                name,
                old,
                new,
                at,
                _COMPENSATION_EVENTS[new],
                message or "",
                1,
                True,
                exit_code,
                new if old is _RUNNING else None,
            )
        )
        self._changed.add(name)

    def _terminal(self, i: int, at: float) -> None:
        """Bookkeeping for a step that just reached a terminal phase."""
        rec = self._rec[i]
        state = self.state
        rec.finished_at = at
        state.finished_count += 1
        phase = rec.phase
        if phase is _SUCCEEDED or phase is _FAILED or phase is _TIMED_OUT:
            rec.finish_order = state.next_finish_order
            state.next_finish_order += 1
        self._work.append(i)
        if (phase is _FAILED or phase is _TIMED_OUT) and rec.attempts > 0:
            self._failures.append(i)
            readiness = self._readiness
            if self.compiled.workflow.fail_fast and not readiness.stopping:
                # Skip the rest once the failure has propagated (see Readiness.drain),
                # so its dependents, later siblings and children keep their words.
                readiness.stopping = True
                readiness.sweep = (at, f"skipped by failFast: step {self._names[i]!r} failed")

    def _fail_fast_message(self) -> str:
        failed = self._names[self._failures[0]] if self._failures else "?"
        return f"skipped by failFast: step {failed!r} failed"

    # ------------------------------------------------------------------
    # Ending a run
    # ------------------------------------------------------------------

    def _deadline(self) -> float | None:
        timeout = self.compiled.workflow.timeout
        started = self.state.started_at
        if timeout is None or started is None:
            return None
        return started + timeout

    def _cancel_all(self, now: float, message: str, reason: StopReason) -> None:
        """Stop every running attempt and cancel every unfinished step (scan once)."""
        state = self.state
        for i, rec in enumerate(self._rec):
            phase = rec.phase
            if phase in _STEP_DONE:
                continue
            if phase is _RUNNING and rec.attempts > 0:
                self._actions.append(Stop(AttemptRef(self._names[i], rec.attempts), reason))
                self._attempts.running -= 1
            self._step_change(i, _CANCELLED, now, message)
            rec.finished_at = now
            state.finished_count += 1
        self._readiness.queue.clear()

    def _failure_message(self) -> str:
        failures = self._failures
        first = self._rec[failures[0]]
        verb = "timed out" if first.phase is _TIMED_OUT else "failed"
        text = f"step {self._names[failures[0]]!r} {verb}"
        if len(failures) > 1:
            text += f" (and {len(failures) - 1} more)"
        return text

    def _finish_run(self, now: float) -> None:
        if not self._failures:
            self._run_change(RunPhase.SUCCEEDED, now, "RunSucceeded", "")
            return
        cause = self._failure_message()
        if self.compiled.workflow.rollback_on_failure and self._rollback.begin(now, cause):
            return
        self._run_change(RunPhase.FAILED, now, "RunFailed", cause)

    # ------------------------------------------------------------------
    # Timers
    # ------------------------------------------------------------------

    def _wake_at(self, now: float) -> float | None:
        """The earliest live timer: attempt timeout, compensation timeout, retry, deadline."""
        phase = self.state.phase
        if phase in _RUN_DONE:
            return None
        attempts = self._attempts
        wake = attempts.next_timeout() if attempts.timeout_heap else None
        if phase is _R_ROLLING_BACK:
            compensation = self._rollback.next_timeout()
            if compensation is not None and (wake is None or compensation < wake):
                wake = compensation
        if phase is _R_RUNNING and attempts.retry_heap:
            retry = attempts.next_retry()
            if retry is not None and (wake is None or retry < wake):
                wake = retry
        if phase is _R_RUNNING or phase is _R_PAUSED:
            deadline = self._deadline()
            if deadline is not None and (wake is None or deadline < wake):
                wake = deadline
        return wake
