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
* Finally steps (``spec.finally``, docs/engine.md "Finally steps") are a
  stage after the main steps and their rollback: the run change that would
  end the run is held in ``state.main_outcome`` instead (:meth:`_run_change`),
  the finally group is activated, and the run ends with that outcome once
  every finally step is terminal (Failed, naming them, if one failed).
  While they run the run keeps its phase; cancel, suspend and the deadline
  do not stop them (cancel with ``skip_finally`` does).

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
from szal.engine.state import MainOutcome, RunState, StepState

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
        main_n = self._main_n = compiled.main_n
        self._skip_finally = False
        recs: list[StepState] = []
        for i, name in enumerate(compiled.names):
            rec = state.steps.get(name)
            if rec is None:
                rec = state.steps[name] = StepState()
            if i >= main_n:
                rec.final = True
            recs.append(rec)
        self._rec = recs
        n = compiled.n
        finished = 0
        orders: list[int] = []
        failures: list[tuple[int, int]] = []
        self._finally_failures: list[int] = []
        # Finally steps may end before the stage began: a stale restart adopts
        # their attempts from observations. The main steps' end is counted apart.
        self._finally_finished = 0
        for i, rec in enumerate(recs):
            phase = rec.phase
            if phase in _STEP_DONE:
                finished += 1
                if i >= main_n:
                    self._finally_finished += 1
                if rec.finish_order is not None:
                    orders.append(rec.finish_order)
                if (phase is _FAILED or phase is _TIMED_OUT) and i >= main_n:
                    self._finally_failures.append(i)
                elif phase is _FAILED or phase is _TIMED_OUT:
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
        skip_finally: bool = False,
    ) -> Plan:
        """Apply ``observations`` to the state (in place) and decide what to do at ``now``.

        ``skip_finally`` (with ``cancel``): do not run the finally steps, or
        stop them if they run.
        """
        self._readiness.sweep = None
        rollback = self._rollback
        state = self.state
        if state.phase in _RUN_DONE:
            return self._result(None)
        if state.phase is _R_PENDING:
            if cancel:  # nothing ran: nothing to clean up, the finally steps neither
                self._cancel_all(now, "run cancelled", "cancel", self._n)
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
        if state.main_outcome is not None:
            return self._plan_finally(now, cancel and skip_finally)
        phase = state.phase
        if cancel:
            self._skip_finally = skip_finally
            if phase is _R_ROLLING_BACK:
                rollback.apply_observations()
                rollback.cancel(now)
                if skip_finally:
                    self._cancel_all(now, "run cancelled", "cancel", self._n)
            else:
                self._cancel_all(now, "run cancelled", "cancel", self._n if skip_finally else None)
                self._run_change(RunPhase.CANCELLED, now, "RunCancelled", "run cancelled")
            self._skip_finally = False
            if state.main_outcome is not None:
                return self._plan_finally(now, False)
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
            if state.main_outcome is not None:
                return self._plan_finally(now, False)
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
            if attempts.retry_heap or self._readiness.queue or attempts.holding:
                self._launch(now)
            if state.finished_count - self._finally_finished == self._main_n:
                self._finish_run(now)
                phase = state.phase
        if phase is _R_ROLLING_BACK and state.main_outcome is None:
            rollback.apply_observations()
            rollback.expire(now)
            rollback.advance(now)
        if state.main_outcome is not None:
            return self._plan_finally(now, False)
        return self._result(self._wake_at(now))

    def _plan_finally(self, now: float, stop: bool) -> Plan:
        """The finally stage: run the finally steps, then end the run (``stop``: cancel them)."""
        if stop:
            self._cancel_all(now, "run cancelled: finally steps skipped", "cancel", self._n)
        attempts = self._attempts
        if attempts.timeout_heap:
            attempts.expire(now)
        if attempts.retry_heap or self._readiness.queue:
            self._launch(now)
        if self.state.finished_count == self._n:
            self._finish_finally(now)
            return self._result(None)
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
        if (
            new.is_terminal
            and self.compiled.finally_group >= 0
            and state.main_outcome is None
            and old is not _R_PENDING
            and not self._skip_finally
        ):
            self._begin_finally(MainOutcome(new, event, message or None, reason), now)
            return
        state.phase = run_transition(old, new)
        state.reason = reason
        if message is not None:
            state.message = message or None
        state.condition_changed_at = now
        if new.is_terminal:
            state.finished_at = now
        self._transitions.append(Transition(None, old, new, now, EventReason(event), message or ""))
        self._run_changed = True

    def _begin_finally(self, outcome: MainOutcome, now: float) -> None:
        """The main steps (and their rollback) ended: hold the outcome, start the finally steps."""
        state = self.state
        state.main_outcome = outcome
        if state.phase is _R_PAUSED:  # cancelled while paused: the finally steps still run
            self._run_change(_R_RUNNING, now, "RunResumed", "")
        state.message = f"{outcome.message}; running finally steps" if outcome.message else None
        self._run_changed = True
        # Counted from the state: a stale restart may have adopted finally attempts already.
        self._readiness.resume_group(self.compiled.finally_group)
        self._readiness.decide_deferred(now)

    def _finish_finally(self, now: float) -> None:
        """Every finally step is terminal: end the run as the main steps did, unless one failed."""
        outcome = self.state.main_outcome
        assert outcome is not None
        failed = [self._names[i] for i in self._finally_failures]
        if not failed:
            self._run_change(
                outcome.phase, now, outcome.event, outcome.message or "", reason=outcome.reason
            )
            return
        noun = "finally step" if len(failed) == 1 else "finally steps"
        text = f"{noun} {', '.join(repr(name) for name in failed)} failed"
        if outcome.message:
            text = f"{outcome.message}; {text}"
        self._run_change(RunPhase.FAILED, now, "RunFailed", text, reason=outcome.reason)

    def finally_context(self) -> dict[str, object]:
        """``run`` in a finally step's ``when``: the main outcome and failed main steps."""
        outcome = self.state.main_outcome
        return {
            **self._run_ctx,
            "phase": outcome.phase.value if outcome is not None else None,
            "failedSteps": [self._names[i] for i in self._failures],
        }

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
        if i >= self._main_n:
            self._finally_finished += 1
        phase = rec.phase
        if phase is _SUCCEEDED or phase is _FAILED or phase is _TIMED_OUT:
            rec.finish_order = state.next_finish_order
            state.next_finish_order += 1
        self._work.append(i)
        if (phase is _FAILED or phase is _TIMED_OUT) and rec.attempts > 0 and i >= self._main_n:
            self._finally_failures.append(i)
        elif (phase is _FAILED or phase is _TIMED_OUT) and rec.attempts > 0:
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

    def _cancel_all(
        self, now: float, message: str, reason: StopReason, stop: int | None = None
    ) -> None:
        """Stop every running attempt and cancel every unfinished step (scan once).

        Only the main steps unless ``stop`` says how many (``self._n``: all).
        """
        state = self.state
        for i, rec in enumerate(self._rec[: self._main_n if stop is None else stop]):
            phase = rec.phase
            if phase in _STEP_DONE:
                continue
            if phase is _RUNNING and rec.attempts > 0:
                self._actions.append(Stop(AttemptRef(self._names[i], rec.attempts), reason))
                self._attempts.running -= 1
            self._step_change(i, _CANCELLED, now, message)
            rec.finished_at = now
            state.finished_count += 1
            if i >= self._main_n:
                self._finally_finished += 1
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
        finishing = self.state.main_outcome is not None
        if (phase is _R_RUNNING or finishing) and attempts.retry_heap:
            retry = attempts.next_retry()
            if retry is not None and (wake is None or retry < wake):
                wake = retry
        if (phase is _R_RUNNING or phase is _R_PAUSED) and not finishing:
            deadline = self._deadline()
            if deadline is not None and (wake is None or deadline < wake):
                wake = deadline
        return wake
