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

import heapq
from collections.abc import Iterable

from szal.engine.actions import (
    Action,
    AttemptRef,
    Launch,
    Observation,
    Plan,
    Stop,
    StopReason,
    Transition,
)
from szal.engine.compiled import CompiledWorkflow, compile_workflow, new_run_state
from szal.engine.phases import RunPhase, StepPhase, run_transition, step_transition
from szal.engine.readiness import (
    CONDITION_NOT_MET,
    DEPENDENCY_FAILED,
    PARENT_STEP_FAILED,
    PRIOR_STEP_FAILED,
    Readiness,
)
from szal.engine.rollback import Rollback
from szal.engine.state import RunState, StepState
from szal.spec.durations import format_duration

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

_PENDING = StepPhase.PENDING
_WAITING = StepPhase.WAITING
_RUNNING = StepPhase.RUNNING
_SUCCEEDED = StepPhase.SUCCEEDED
_FAILED = StepPhase.FAILED
_TIMED_OUT = StepPhase.TIMED_OUT
_SKIPPED = StepPhase.SKIPPED
_CANCELLED = StepPhase.CANCELLED

# Enum ``.value`` is a descriptor call; a dict lookup is several times faster.
_VALUE: dict[StepPhase, str] = {phase: phase.value for phase in StepPhase}

_OBS_RANK = {"Pending": 0, "Running": 1, "Succeeded": 2, "Failed": 2}

_STEP_EVENTS = {
    _RUNNING: "StepStarted",
    _SUCCEEDED: "StepSucceeded",
    _FAILED: "StepFailed",
    _TIMED_OUT: "StepTimedOut",
    _SKIPPED: "StepSkipped",
    _CANCELLED: "StepCancelled",
    _WAITING: "Retrying",
}
_COMPENSATION_EVENTS = {
    _RUNNING: "CompensationStarted",
    _SUCCEEDED: "CompensationSucceeded",
    _FAILED: "CompensationFailed",
    _TIMED_OUT: "CompensationFailed",
    _CANCELLED: "CompensationFailed",
}


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
        self._retry_heap: list[tuple[float, int, int]] = []
        self._timeout_heap: list[tuple[float, int, int]] = []
        n = compiled.n
        finished = 0
        orders: list[int] = []
        running = 0
        failures: list[tuple[int, int]] = []
        for i, rec in enumerate(recs):
            phase = rec.phase
            if phase.is_terminal:
                finished += 1
                if rec.finish_order is not None:
                    orders.append(rec.finish_order)
                if phase is _FAILED or phase is _TIMED_OUT:
                    failures.append((rec.finish_order if rec.finish_order is not None else n, i))
            elif phase is _RUNNING:
                if rec.attempts > 0:
                    running += 1
                timeout = self._timeout[i]
                if timeout is not None and rec.attempts > 0:
                    start = rec.attempt_started_at
                    if start is None:
                        start = rec.started_at if rec.started_at is not None else 0.0
                    self._timeout_heap.append((start + timeout, i, rec.attempts))
            elif phase is _WAITING:
                at = rec.retry_at if rec.retry_at is not None else 0.0
                self._retry_heap.append((at, i, rec.attempts))
        heapq.heapify(self._timeout_heap)
        heapq.heapify(self._retry_heap)
        state.finished_count = finished
        state.next_finish_order = max(orders) + 1 if orders else 0
        self._running = running
        failures.sort()
        self._failures = [i for _, i in failures]
        readiness = self._readiness = Readiness(self)
        self._work = readiness.work
        self._launch_queue = readiness.queue
        self._decided = readiness.decided
        self._rollback = Rollback(self)

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
        self._actions = []
        self._transitions = []
        self._changed = set()
        self._run_changed = False
        self._readiness.sweep = None
        rollback = self._rollback
        rollback.forget_observations()
        state = self.state
        if state.phase.is_terminal:
            return self._result(None)
        if state.phase is RunPhase.PENDING:
            if cancel:
                self._cancel_all(now, "run cancelled", "cancel")
                self._run_change(RunPhase.CANCELLED, now, "RunCancelled", "run cancelled")
                return self._result(None)
            state.started_at = now
            self._run_change(RunPhase.RUNNING, now, "RunStarted", "")
            self._readiness.activate(0, now)
        self._observe(observations, now)
        if self._readiness.deferred:
            self._readiness.decide_deferred(now)
        phase = state.phase
        if cancel:
            if phase is RunPhase.ROLLING_BACK:
                rollback.apply_observations()
                rollback.cancel(now)
            else:
                self._cancel_all(now, "run cancelled", "cancel")
                self._run_change(RunPhase.CANCELLED, now, "RunCancelled", "run cancelled")
            return self._result(None)
        deadline = self._deadline()
        if (
            deadline is not None
            and now >= deadline
            and phase in (RunPhase.RUNNING, RunPhase.PAUSED)
        ):
            limit = self.compiled.deadline_message
            self._cancel_all(now, f"run deadline exceeded ({limit})", "deadline")
            if phase is RunPhase.PAUSED:
                self._run_change(RunPhase.RUNNING, now, "RunResumed", "")
            self._run_change(
                RunPhase.FAILED,
                now,
                "RunFailed",
                f"run exceeded its timeout of {limit}",
                reason="DeadlineExceeded",
            )
            return self._result(None)
        if self._timeout_heap:
            self._expire_timeouts(now)
        if phase is RunPhase.ROLLING_BACK:
            rollback.expire(now)
        if state.phase is RunPhase.RUNNING and suspend:
            self._run_change(RunPhase.PAUSED, now, "RunPaused", "run suspended")
        elif state.phase is RunPhase.PAUSED and not suspend:
            self._run_change(RunPhase.RUNNING, now, "RunResumed", "")
        if state.phase is RunPhase.RUNNING:
            self._launch(now)
            if state.finished_count == self.compiled.n:
                self._finish_run(now)
        if state.phase is RunPhase.ROLLING_BACK:
            rollback.apply_observations()
            rollback.expire(now)
            rollback.advance(now)
        return self._result(self._wake_at(now))

    def _result(self, wake_at: float | None) -> Plan:
        return Plan(
            actions=tuple(self._actions),
            transitions=tuple(self._transitions),
            wake_at=wake_at,
            changed_steps=frozenset(self._changed),
            run_changed=self._run_changed,
        )

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
    ) -> StepState:
        rec = self._rec[i]
        old = rec.phase
        name = self._names[i]
        rec.phase = step_transition(old, new, step=name)
        rec.message = message
        self._transitions.append(
            Transition(
                name,
                _VALUE[old],
                _VALUE[new],
                now,
                _STEP_EVENTS[new],
                message or "",
                rec.attempts,
                False,
                exit_code,
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
        self._transitions.append(Transition(None, old.value, new.value, now, event, message or ""))
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
                _VALUE[old],
                _VALUE[new],
                at,
                _COMPENSATION_EVENTS[new],
                message or "",
                1,
                True,
                exit_code,
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
    # Attempts
    # ------------------------------------------------------------------

    def _start_attempt(self, i: int, now: float) -> None:
        rec = self._rec[i]
        rec.attempts += 1
        self._step_change(i, _RUNNING, now, None)
        if rec.started_at is None:
            rec.started_at = now
        rec.attempt_started_at = now
        rec.retry_at = None
        rec.exit_code = None  # exit code and outputs are the current attempt's
        rec.outputs = None
        self._running += 1
        step = self._steps[i]
        timeout = self._timeout[i]
        self._actions.append(
            Launch(AttemptRef(self._names[i], rec.attempts), step, step.command, timeout)
        )
        if timeout is not None:
            heapq.heappush(self._timeout_heap, (now + timeout, i, rec.attempts))

    def _launch(self, now: float) -> None:
        limit = self._max_parallel
        recs = self._rec
        heap = self._retry_heap
        while heap and heap[0][0] <= now and self._running < limit:
            _, i, attempt = heapq.heappop(heap)
            rec = recs[i]
            if rec.phase is _WAITING and rec.attempts == attempt:
                self._start_attempt(i, now)
        queue = self._launch_queue
        while queue and self._running < limit:
            i = queue.popleft()
            if recs[i].phase is _PENDING:
                self._start_attempt(i, now)

    def _fail_attempt(
        self, i: int, at: float, message: str, exit_code: int | None, timed_out: bool
    ) -> None:
        rec = self._rec[i]
        policy = self._retries[i]
        if rec.attempts < policy.limit + 1:
            delay = policy.delay_after(rec.attempts)
            rec.retry_at = at + delay
            self._step_change(
                i,
                _WAITING,
                at,
                f"attempt {rec.attempts} {message}; retrying in {format_duration(delay)}",
                exit_code,
            )
            heapq.heappush(self._retry_heap, (rec.retry_at, i, rec.attempts))
        else:
            self._step_change(i, _TIMED_OUT if timed_out else _FAILED, at, message, exit_code)
            self._terminal(i, at)

    def _observe(self, observations: Iterable[Observation], now: float) -> None:
        obs_list = list(observations)
        if not obs_list:
            return
        if len(obs_list) > 1:
            obs_list.sort(key=self._obs_key)
        index = self._index
        recs = self._rec
        readiness = self._readiness
        for obs in obs_list:
            ref = obs.ref
            i = index.get(ref.step)
            if i is None:
                continue
            if ref.rollback:
                # Applied once the run is rolling back: the rollback may begin in this call.
                self._rollback.defer(i, obs)
                continue
            rec = recs[i]
            attempt = ref.attempt
            phase = rec.phase
            if phase is _RUNNING and attempt == rec.attempts:
                pass
            elif (phase is _PENDING or phase is _WAITING) and attempt == rec.attempts + 1:
                # Launched, then the runner stopped before saving: adopt, never relaunch.
                self._decided[i] = True
                rec.attempts = attempt
                self._step_change(i, _RUNNING, obs.at, None)
                if rec.started_at is None:
                    rec.started_at = obs.at
                rec.attempt_started_at = obs.at
                rec.retry_at = None
                rec.exit_code = None
                rec.outputs = None
                self._running += 1
                timeout = self._timeout[i]
                if timeout is not None:
                    heapq.heappush(self._timeout_heap, (obs.at + timeout, i, attempt))
            else:
                continue  # stale: an older attempt, or a step already finished
            state = obs.state
            if state == "Succeeded":
                self._running -= 1
                rec.exit_code = obs.exit_code
                if obs.outputs is not None:
                    rec.outputs = dict(obs.outputs)
                self._step_change(i, _SUCCEEDED, obs.at, obs.message, obs.exit_code)
                self._terminal(i, obs.at)
                readiness.drain(now)
            elif state == "Failed":
                self._running -= 1
                rec.exit_code = obs.exit_code
                if obs.outputs is not None:
                    rec.outputs = dict(obs.outputs)
                if obs.message:
                    message = obs.message
                elif obs.exit_code is not None:
                    message = f"failed with exit code {obs.exit_code}"
                else:
                    message = "failed"
                self._fail_attempt(i, obs.at, message, obs.exit_code, timed_out=False)
                readiness.drain(now)
            elif state == "Pending":
                if obs.message and obs.message != rec.message:
                    rec.message = obs.message
                    self._changed.add(ref.step)
            elif rec.message is not None:  # Running: the wait is over
                rec.message = None
                self._changed.add(ref.step)

    def _obs_key(self, obs: Observation) -> tuple[int, int, int]:
        ref = obs.ref
        if ref.rollback:
            i = self._index.get(ref.step)
            order = self._rec[i].finish_order if i is not None else None
            return (1, -(order if order is not None else -1), _OBS_RANK.get(obs.state, 0))
        return (0, ref.attempt, _OBS_RANK.get(obs.state, 0))

    def _expire_timeouts(self, now: float) -> None:
        heap = self._timeout_heap
        recs = self._rec
        while heap and heap[0][0] <= now:
            _, i, attempt = heapq.heappop(heap)
            rec = recs[i]
            if rec.phase is not _RUNNING or rec.attempts != attempt:
                continue
            self._actions.append(Stop(AttemptRef(self._names[i], attempt), "timeout"))
            self._running -= 1
            message = self.compiled.timeout_message[i]
            assert message is not None
            self._fail_attempt(i, now, message, None, timed_out=True)
            self._readiness.drain(now)

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
            if phase.is_terminal:
                continue
            if phase is _RUNNING and rec.attempts > 0:
                self._actions.append(Stop(AttemptRef(self._names[i], rec.attempts), reason))
                self._running -= 1
            self._step_change(i, _CANCELLED, now, message)
            rec.finished_at = now
            state.finished_count += 1
        self._launch_queue.clear()

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
        state = self.state
        if state.phase.is_terminal:
            return None
        candidates: list[float] = []
        heap = self._timeout_heap
        recs = self._rec
        while heap:
            _, i, attempt = heap[0]
            rec = recs[i]
            if rec.phase is _RUNNING and rec.attempts == attempt:
                candidates.append(heap[0][0])
                break
            heapq.heappop(heap)
        compensation = self._rollback.next_timeout()
        if compensation is not None:
            candidates.append(compensation)
        retries = self._retry_heap
        while retries:
            _, i, attempt = retries[0]
            rec = recs[i]
            if rec.phase is _WAITING and rec.attempts == attempt:
                if state.phase is RunPhase.RUNNING and self._running < self._max_parallel:
                    candidates.append(retries[0][0])
                break
            heapq.heappop(retries)
        if state.phase in (RunPhase.RUNNING, RunPhase.PAUSED):
            deadline = self._deadline()
            if deadline is not None:
                candidates.append(deadline)
        return min(candidates) if candidates else None
