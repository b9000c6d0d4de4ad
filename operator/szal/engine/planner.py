"""The planner: given a run's state, what it saw and ``now``, decide what to do.

Both runners (local processes, Kubernetes Pods) call
``Planner(workflow).plan(state, observations, now)`` every time something
happens (an attempt changed, a timer fired, the run's spec changed) and carry
out the returned :class:`~szal.engine.actions.Plan`: launch and stop
attempts, record the transitions, save ``state`` (or the patch of
``changed_steps``), and call again by ``wake_at`` at the latest. No I/O, no
clock: time is the ``now`` argument.

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

Performance: everything that depends only on the workflow is precomputed in
``__init__``; everything derived from the state (remaining-dependency
counters, ready queue, running count, timer heaps) lives here too, tied to
the identity of the :class:`RunState` last planned. A different RunState
object (after a restart) is re-indexed in O(n); otherwise each call costs
O(what changed). Heaps use lazy deletion; condition contexts hold only the
steps a condition names.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable
from typing import Any

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
from szal.engine.phases import (
    EventReason,
    RunPhase,
    StepPhase,
    run_transition,
    step_transition,
)
from szal.engine.state import PinnedWorkflow, RollbackState, RunState, StepState
from szal.engine.workflow import ResolvedWorkflow
from szal.spec.durations import format_duration

CONDITION_NOT_MET = "condition not met"
PRIOR_STEP_FAILED = "prior step failed"
DEPENDENCY_FAILED = "dependency failed"
PARENT_STEP_FAILED = "parent step failed"

_PENDING = StepPhase.PENDING
_WAITING = StepPhase.WAITING
_RUNNING = StepPhase.RUNNING
_SUCCEEDED = StepPhase.SUCCEEDED
_FAILED = StepPhase.FAILED
_TIMED_OUT = StepPhase.TIMED_OUT
_SKIPPED = StepPhase.SKIPPED
_CANCELLED = StepPhase.CANCELLED

# Outcome of a step's unit (the step and its subtree) for its sibling group.
_OK = 0  # succeeded
_COND = 1  # skipped by its own `when`: unlocks All, is no success for Any
_BAD = 2  # anything else

_SEQUENTIAL = 0
_PARALLEL = 1
_DAG = 2

_OBS_RANK = {"Pending": 0, "Running": 1, "Succeeded": 2, "Failed": 2}

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


def new_run_state(workflow: ResolvedWorkflow) -> RunState:
    """A run that has not started: every step Pending with ``attempts: 0``, workflow pinned."""
    return RunState(
        steps={step.name: StepState() for step in workflow.steps},
        workflow=PinnedWorkflow(workflow.name, workflow.version, workflow.spec_hash),
    )


def _quote_list(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names)


class Planner:
    """Plans one run of one resolved workflow; build once per run, call ``plan`` often.

    ``run_name`` and ``namespace`` fill ``run.name`` / ``run.namespace`` in
    conditions (``run_name`` defaults to the workflow's name).
    """

    def __init__(
        self, workflow: ResolvedWorkflow, *, run_name: str | None = None, namespace: str = ""
    ) -> None:
        self.workflow = workflow
        steps = workflow.steps
        n = len(steps)
        self._n = n
        index = {step.name: i for i, step in enumerate(steps)}
        self._index = index
        self._names = [step.name for step in steps]
        self._steps = steps
        self._parent = [index[s.parent] if s.parent is not None else -1 for s in steps]
        self._children = [[index[c] for c in s.children] for s in steps]
        self._deps = [[index[d] for d in s.depends_on] for s in steps]
        dependents: list[list[int]] = [[] for _ in range(n)]
        for i, deps in enumerate(self._deps):
            for d in deps:
                dependents[d].append(i)
        self._dependents = dependents
        self._any = [s.trigger == "Any" for s in steps]
        self._runs = [s.command.script is not None or bool(s.command.argv()) for s in steps]
        self._when = [s.when for s in steps]
        self._when_refs: list[tuple[str, ...]] = []
        for s in steps:
            if s.when is None:
                self._when_refs.append(())
            else:
                refs = {r.name for r in s.when.references if r.root == "steps" and r.name in index}
                self._when_refs.append(tuple(sorted(refs)))
        self._timeout = [s.timeout for s in steps]
        self._retries = [s.retries for s in steps]
        # Sibling groups: 0 is the top level; the children of step p are a group.
        self._group_of = [0] * n
        self._pos = [0] * n
        members: list[list[int]] = [[i for i in range(n) if self._parent[i] == -1]]
        modes = [self._mode_code(workflow.mode)]
        owners = [-1]
        self._child_group = [-1] * n
        for i, s in enumerate(steps):
            if s.children:
                self._child_group[i] = len(members)
                members.append(self._children[i])
                modes.append(self._mode_code(s.mode))
                owners.append(i)
        for g, group in enumerate(members):
            for pos, i in enumerate(group):
                self._group_of[i] = g
                self._pos[i] = pos
        self._members = members
        self._group_mode = modes
        self._group_owner = owners
        self._max_parallel = workflow.max_parallel if workflow.max_parallel else n + 1
        self._params: dict[str, Any] = dict(workflow.params)
        self._run_ctx = {
            "name": run_name if run_name is not None else workflow.name,
            "namespace": namespace,
        }
        self._state: RunState | None = None
        self._reset_call()

    @staticmethod
    def _mode_code(mode: str) -> int:
        if mode == "Parallel":
            return _PARALLEL
        if mode == "Dag":
            return _DAG
        return _SEQUENTIAL  # Sequential, and Hierarchical (its top level runs in order)

    # ------------------------------------------------------------------
    # Per-state indexes
    # ------------------------------------------------------------------

    def _reset_call(self) -> None:
        self._actions: list[Action] = []
        self._transitions: list[Transition] = []
        self._changed: set[str] = set()
        self._run_changed = False
        self._comp_obs: list[tuple[int, Observation]] = []
        self._sweep: tuple[float, str] | None = None  # failFast: skip all Pending after drain

    def _index_state(self, state: RunState) -> None:
        """(Re)build every derived index from ``state`` in O(n)."""
        n = self._n
        self._state = state
        recs: list[StepState] = []
        for name in self._names:
            rec = state.steps.get(name)
            if rec is None:
                rec = state.steps[name] = StepState()
            recs.append(rec)
        self._rec = recs
        self._work: deque[int] = deque()  # steps that just became terminal
        self._launch_queue: deque[int] = deque()
        self._retry_heap: list[tuple[float, int, int]] = []
        self._timeout_heap: list[tuple[float, int, int, bool]] = []
        self._decided = [rec.phase is not _PENDING for rec in recs]
        self._remaining = [len(d) for d in self._deps]
        self._dep_bad = [False] * n
        self._dep_ok = [False] * n
        self._open_children = [len(c) for c in self._children]
        self._child_bad = [False] * n
        self._unit_done = [False] * n
        self._outcome = [_BAD] * n
        self._deferred: list[int] = []
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
                    self._timeout_heap.append((start + timeout, i, rec.attempts, False))
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
        self._stopping = self.workflow.fail_fast and bool(self._failures)
        # Units, bottom-up: definition order has parents before children.
        for i in range(n - 1, -1, -1):
            rec = recs[i]
            open_children = 0
            child_bad = False
            for c in self._children[i]:
                if not self._unit_done[c]:
                    open_children += 1
                elif self._outcome[c] == _BAD:
                    child_bad = True
            self._open_children[i] = open_children
            self._child_bad[i] = child_bad
            if rec.phase.is_terminal and open_children == 0:
                self._unit_done[i] = True
                self._outcome[i] = self._unit_outcome(i)
        # Readiness in active groups; decisions are deferred until the
        # observations of this call were applied (they may adopt launches).
        if state.phase is not RunPhase.PENDING:
            for g, group in enumerate(self._members):
                owner = self._group_owner[g]
                if owner >= 0 and recs[owner].phase is not _SUCCEEDED:
                    continue
                mode = self._group_mode[g]
                if mode == _DAG:
                    for d in group:
                        if recs[d].phase is not _PENDING:
                            continue
                        remaining = 0
                        for dep in self._deps[d]:
                            if not self._unit_done[dep]:
                                remaining += 1
                            elif self._outcome[dep] == _BAD:
                                self._dep_bad[d] = True
                            elif self._outcome[dep] == _OK:
                                self._dep_ok[d] = True
                        self._remaining[d] = remaining
                        self._deferred.append(d)
                elif mode == _PARALLEL:
                    self._deferred.extend(d for d in group if recs[d].phase is _PENDING)
                else:
                    for d in group:
                        if not self._unit_done[d]:
                            if recs[d].phase is _PENDING:
                                self._deferred.append(d)
                            break
        # Rollback.
        self._compensations: list[int] = []
        self._comp_cursor = 0
        if state.phase is RunPhase.ROLLING_BACK:
            self._compensations = self._compensable()
            for i in self._compensations:
                rec = recs[i]
                if rec.rollback is None:
                    rec.rollback = RollbackState()
                    self._changed.add(self._names[i])
                rb = rec.rollback
                timeout = self._steps[i].rollback_timeout
                if rb.phase is _RUNNING and timeout is not None:
                    start = rb.started_at if rb.started_at is not None else 0.0
                    heapq.heappush(self._timeout_heap, (start + timeout, i, 1, True))

    def _unit_outcome(self, i: int) -> int:
        rec = self._rec[i]
        if rec.phase is _SUCCEEDED:
            return _BAD if self._child_bad[i] else _OK
        if rec.phase is _SKIPPED and rec.message == CONDITION_NOT_MET:
            return _COND
        return _BAD

    def _compensable(self) -> list[int]:
        """Succeeded steps with a compensation, in reverse order of completion."""
        found = [
            (rec.finish_order if rec.finish_order is not None else -1, i)
            for i, rec in enumerate(self._rec)
            if rec.phase is _SUCCEEDED and self._steps[i].rollback is not None
        ]
        found.sort(reverse=True)
        return [i for _, i in found]

    # ------------------------------------------------------------------
    # The entry point
    # ------------------------------------------------------------------

    def plan(
        self,
        state: RunState,
        observations: Iterable[Observation],
        now: float,
        *,
        suspend: bool = False,
        cancel: bool = False,
    ) -> Plan:
        """Apply ``observations`` to ``state`` (in place) and decide what to do at ``now``."""
        self._reset_call()
        if state is not self._state:
            self._index_state(state)
        if state.phase.is_terminal:
            return self._result(None)
        if state.phase is RunPhase.PENDING:
            if cancel:
                self._cancel_all(now, "run cancelled", "cancel")
                self._run_change(RunPhase.CANCELLED, now, "RunCancelled", "run cancelled")
                return self._result(None)
            state.started_at = now
            self._run_change(RunPhase.RUNNING, now, "RunStarted", "")
            self._activate(0, now)
        self._observe(observations, now)
        if self._deferred:
            deferred, self._deferred = self._deferred, []
            for i in deferred:
                self._decide(i, now)
            self._drain(now)
        phase = state.phase
        if cancel:
            if phase is RunPhase.ROLLING_BACK:
                self._apply_compensation_observations()
                self._cancel_rollback(now)
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
            limit = self.workflow.timeout_text or format_duration(self.workflow.timeout or 0.0)
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
        self._expire_timeouts(now)
        if state.phase is RunPhase.RUNNING and suspend:
            self._run_change(RunPhase.PAUSED, now, "RunPaused", "run suspended")
        elif state.phase is RunPhase.PAUSED and not suspend:
            self._run_change(RunPhase.RUNNING, now, "RunResumed", "")
        if state.phase is RunPhase.RUNNING:
            self._launch(now)
            if state.finished_count == self._n:
                self._finish_run(now)
        if state.phase is RunPhase.ROLLING_BACK:
            self._apply_compensation_observations()
            self._expire_timeouts(now)
            self._advance_rollback(now)
        return self._result(self._wake_at(now))

    def _apply_compensation_observations(self) -> None:
        for i, obs in self._comp_obs:
            self._observe_compensation(i, obs)
        self._comp_obs.clear()

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
        outcome: StepPhase | None = None,
    ) -> StepState:
        """``outcome``: how the attempt ended, when ``new`` (Waiting) does not say it."""
        rec = self._rec[i]
        old = rec.phase
        name = self._names[i]
        rec.phase = step_transition(old, new, step=name)
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

    def _terminal(self, i: int, at: float) -> None:
        """Bookkeeping for a step that just reached a terminal phase."""
        rec = self._rec[i]
        state = self._state
        assert state is not None
        rec.finished_at = at
        state.finished_count += 1
        phase = rec.phase
        if phase is _SUCCEEDED or phase is _FAILED or phase is _TIMED_OUT:
            rec.finish_order = state.next_finish_order
            state.next_finish_order += 1
        self._work.append(i)
        if (phase is _FAILED or phase is _TIMED_OUT) and rec.attempts > 0:
            self._failures.append(i)
            if self.workflow.fail_fast and not self._stopping:
                # Skip the rest once the failure has propagated (see _drain), so
                # its dependents, later siblings and children keep their words.
                self._stopping = True
                self._sweep = (at, f"skipped by failFast: step {self._names[i]!r} failed")

    def _skip(self, i: int, now: float, message: str) -> None:
        if self._rec[i].phase is _PENDING:
            self._decided[i] = True
            self._step_change(i, _SKIPPED, now, message)
            self._terminal(i, now)

    def _skip_everything_pending(self, now: float, message: str) -> None:
        for i, rec in enumerate(self._rec):
            if rec.phase is _PENDING:
                self._skip(i, now, message)

    # ------------------------------------------------------------------
    # Progress through groups
    # ------------------------------------------------------------------

    def _activate(self, g: int, now: float) -> None:
        """A sibling group may start: its owner Succeeded (or the run started)."""
        group = self._members[g]
        mode = self._group_mode[g]
        if mode == _SEQUENTIAL:
            if group:
                self._ready(group[0], now)
        elif mode == _PARALLEL:
            for i in group:
                self._ready(i, now)
        else:
            for i in group:
                if not self._deps[i]:
                    self._ready(i, now)
        self._drain(now)

    def _drain(self, now: float) -> None:
        """Propagate every step that became terminal, iteratively (no deep recursion)."""
        work = self._work
        recs = self._rec
        while True:
            while work:
                i = work.popleft()
                children = self._children[i]
                if children:
                    if recs[i].phase is _SUCCEEDED:
                        self._activate(self._child_group[i], now)
                    else:
                        for c in children:
                            self._skip(c, now, PARENT_STEP_FAILED)
                else:
                    self._unit_finished(i, now)
            if self._sweep is None:
                return
            at, message = self._sweep
            self._sweep = None
            self._skip_everything_pending(at, message)

    def _unit_finished(self, i: int, now: float) -> None:
        """Step ``i`` and its whole subtree are terminal: tell its parent and group."""
        while True:
            self._unit_done[i] = True
            outcome = self._outcome[i] = self._unit_outcome(i)
            p = self._parent[i]
            parent_done = False
            if p >= 0:
                if outcome == _BAD:
                    self._child_bad[p] = True
                self._open_children[p] -= 1
                parent_done = self._open_children[p] == 0
                if self._rec[p].phase is not _SUCCEEDED:
                    # The group never started; the parent's skip loop handles siblings.
                    if parent_done:
                        i = p
                        continue
                    return
            g = self._group_of[i]
            mode = self._group_mode[g]
            recs = self._rec
            if mode == _SEQUENTIAL:
                group = self._members[g]
                nxt = self._pos[i] + 1
                if nxt < len(group):
                    j = group[nxt]
                    if recs[j].phase is _PENDING:
                        if outcome == _BAD:
                            self._skip(j, now, PRIOR_STEP_FAILED)
                        else:
                            self._ready(j, now)
            elif mode == _DAG:
                for d in self._dependents[i]:
                    if recs[d].phase is not _PENDING or self._decided[d]:
                        continue
                    self._remaining[d] -= 1
                    if outcome == _BAD:
                        self._dep_bad[d] = True
                    elif outcome == _OK:
                        self._dep_ok[d] = True
                    self._decide(d, now)
            if parent_done:
                i = p
                continue
            return

    def _decide(self, i: int, now: float) -> None:
        """Make a Pending step in an active group ready or skip it, if its inputs allow."""
        if self._decided[i] or self._rec[i].phase is not _PENDING:
            return
        g = self._group_of[i]
        mode = self._group_mode[g]
        if mode == _DAG:
            if self._any[i]:
                if self._dep_ok[i]:
                    self._ready(i, now)
                elif self._remaining[i] <= 0:
                    self._skip(i, now, DEPENDENCY_FAILED)
            elif self._dep_bad[i]:
                self._skip(i, now, DEPENDENCY_FAILED)
            elif self._remaining[i] <= 0:
                self._ready(i, now)
        elif mode == _SEQUENTIAL and self._pos[i] > 0:
            prev = self._members[g][self._pos[i] - 1]
            if self._unit_done[prev]:
                if self._outcome[prev] == _BAD:
                    self._skip(i, now, PRIOR_STEP_FAILED)
                else:
                    self._ready(i, now)
        else:
            self._ready(i, now)

    def _ready(self, i: int, now: float) -> None:
        """Step ``i`` may run now: check failFast and ``when``, then queue it."""
        if self._decided[i]:
            return
        self._decided[i] = True
        if self._rec[i].phase is not _PENDING:
            return
        if self._stopping:
            failed = self._names[self._failures[0]] if self._failures else "?"
            self._skip(i, now, f"skipped by failFast: step {failed!r} failed")
            return
        condition = self._when[i]
        if condition is not None:
            try:
                met = condition.evaluate(self._context(i))
            except Exception as exc:  # the DSL promises not to raise; never crash a run
                self._skip(i, now, f"condition error: {exc}")
                return
            if not met:
                self._skip(i, now, CONDITION_NOT_MET)
                return
        if not self._runs[i]:
            # A parent with nothing of its own to run: it only orders its children.
            rec = self._step_change(i, _RUNNING, now, None)
            rec.started_at = now
            self._step_change(i, _SUCCEEDED, now, None)
            self._terminal(i, now)
            return
        self._launch_queue.append(i)

    def _context(self, i: int) -> dict[str, Any]:
        steps: dict[str, Any] = {}
        index = self._index
        for name in self._when_refs[i]:
            rec = self._rec[index[name]]
            steps[name] = {
                "phase": rec.phase.value,
                "exitCode": rec.exit_code,
                "attempts": rec.attempts,
                "outputs": rec.outputs if rec.outputs is not None else {},
            }
        return {"params": self._params, "steps": steps, "run": self._run_ctx}

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
            heapq.heappush(self._timeout_heap, (now + timeout, i, rec.attempts, False))

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
                _TIMED_OUT if timed_out else _FAILED,
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
        for obs in obs_list:
            ref = obs.ref
            i = index.get(ref.step)
            if i is None:
                continue
            if ref.rollback:
                # Applied once the run is rolling back: the rollback may begin in this call.
                self._comp_obs.append((i, obs))
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
                    heapq.heappush(self._timeout_heap, (obs.at + timeout, i, attempt, False))
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
                self._drain(now)
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
                self._drain(now)
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
            _, i, attempt, rollback = heapq.heappop(heap)
            rec = recs[i]
            name = self._names[i]
            if rollback:
                rb = rec.rollback
                if rb is None or rb.phase is not _RUNNING:
                    continue
                limit = self._steps[i].rollback_timeout_text or format_duration(
                    self._steps[i].rollback_timeout or 0.0
                )
                self._actions.append(Stop(AttemptRef(name, 1, True), "timeout"))
                self._compensation_change(
                    i, _TIMED_OUT, now, f"timed out: exceeded the timeout of {limit}"
                )
                continue
            if rec.phase is not _RUNNING or rec.attempts != attempt:
                continue
            limit = self._steps[i].timeout_text or format_duration(self._timeout[i] or 0.0)
            self._actions.append(Stop(AttemptRef(name, attempt), "timeout"))
            self._running -= 1
            self._fail_attempt(
                i, now, f"timed out: exceeded the timeout of {limit}", None, timed_out=True
            )
            self._drain(now)

    # ------------------------------------------------------------------
    # Ending a run
    # ------------------------------------------------------------------

    def _deadline(self) -> float | None:
        state = self._state
        timeout = self.workflow.timeout
        if timeout is None or state is None or state.started_at is None:
            return None
        return state.started_at + timeout

    def _cancel_all(self, now: float, message: str, reason: StopReason) -> None:
        """Stop every running attempt and cancel every unfinished step (scan once)."""
        for i, rec in enumerate(self._rec):
            phase = rec.phase
            if phase.is_terminal:
                continue
            if phase is _RUNNING and rec.attempts > 0:
                self._actions.append(Stop(AttemptRef(self._names[i], rec.attempts), reason))
                self._running -= 1
            self._step_change(i, _CANCELLED, now, message)
            rec.finished_at = now
            assert self._state is not None
            self._state.finished_count += 1
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
        if self.workflow.rollback_on_failure:
            comps = self._compensable()
            if comps:
                self._compensations = comps
                self._comp_cursor = 0
                for i in comps:
                    self._rec[i].rollback = RollbackState()
                    self._changed.add(self._names[i])
                self._run_change(
                    RunPhase.ROLLING_BACK,
                    now,
                    "RollingBack",
                    f"{cause}; rolling back {len(comps)} step(s)",
                )
                return
        self._run_change(RunPhase.FAILED, now, "RunFailed", cause)

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

    def _observe_compensation(self, i: int, obs: Observation) -> None:
        rb = self._rec[i].rollback
        if rb is None or obs.ref.attempt != 1 or self._state is None:
            return
        if rb.phase is _PENDING and self._state.phase is RunPhase.ROLLING_BACK:
            self._compensation_change(i, _RUNNING, obs.at, None)  # adopt
            timeout = self._steps[i].rollback_timeout
            if timeout is not None:
                heapq.heappush(self._timeout_heap, (obs.at + timeout, i, 1, True))
        if rb.phase is not _RUNNING:
            return
        if obs.state == "Succeeded":
            self._compensation_change(i, _SUCCEEDED, obs.at, obs.message, obs.exit_code)
        elif obs.state == "Failed":
            message = obs.message or (
                f"failed with exit code {obs.exit_code}" if obs.exit_code is not None else "failed"
            )
            self._compensation_change(i, _FAILED, obs.at, message, obs.exit_code)

    def _advance_rollback(self, now: float) -> None:
        """Run compensations one at a time; end the run when all are done."""
        comps = self._compensations
        recs = self._rec
        while self._comp_cursor < len(comps):
            i = comps[self._comp_cursor]
            rb = recs[i].rollback
            assert rb is not None
            if rb.phase is _RUNNING:
                return
            if rb.phase.is_terminal:
                self._comp_cursor += 1
                continue
            step = self._steps[i]
            assert step.rollback is not None
            self._compensation_change(i, _RUNNING, now, None)
            self._actions.append(
                Launch(
                    AttemptRef(self._names[i], 1, True), step, step.rollback, step.rollback_timeout
                )
            )
            if step.rollback_timeout is not None:
                heapq.heappush(self._timeout_heap, (now + step.rollback_timeout, i, 1, True))
            return
        failed = [
            self._names[i]
            for i in comps
            if (rb_state := recs[i].rollback) is not None and rb_state.phase is not _SUCCEEDED
        ]
        cause = self._failure_message() if self._failures else "run failed"
        if failed:
            noun = "compensation of step" if len(failed) == 1 else "compensations of steps"
            self._run_change(
                RunPhase.FAILED, now, "RunFailed", f"{cause}; {noun} {_quote_list(failed)} failed"
            )
        else:
            self._run_change(
                RunPhase.ROLLED_BACK,
                now,
                "RolledBack",
                f"{cause}; rolled back {len(comps)} step(s)",
            )

    def _cancel_rollback(self, now: float) -> None:
        for i in self._compensations:
            rb = self._rec[i].rollback
            if rb is None or rb.phase.is_terminal:
                continue
            if rb.phase is _RUNNING:
                self._actions.append(Stop(AttemptRef(self._names[i], 1, True), "cancel"))
            self._compensation_change(i, _CANCELLED, now, "run cancelled")
        self._run_change(
            RunPhase.FAILED, now, "RunFailed", "run cancelled during rollback", reason="Cancelled"
        )

    # ------------------------------------------------------------------
    # Timers
    # ------------------------------------------------------------------

    def _wake_at(self, now: float) -> float | None:
        state = self._state
        assert state is not None
        if state.phase.is_terminal:
            return None
        candidates: list[float] = []
        heap = self._timeout_heap
        recs = self._rec
        while heap:
            _, i, attempt, rollback = heap[0]
            rec = recs[i]
            if rollback:
                live = rec.rollback is not None and rec.rollback.phase is _RUNNING
            else:
                live = rec.phase is _RUNNING and rec.attempts == attempt
            if live:
                candidates.append(heap[0][0])
                break
            heapq.heappop(heap)
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
