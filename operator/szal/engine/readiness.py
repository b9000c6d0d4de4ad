"""Readiness: which Pending steps may run now, and which are skipped.

Owned by a :class:`~szal.engine.planner.PlanSession`. When a step becomes
terminal the session appends it to :attr:`Readiness.work` and calls
:meth:`Readiness.drain`, which propagates it through its sibling group
(Sequential: the next sibling; Dag: its dependents' counters; a parent:
its children's group) and up to its parent, iteratively, so a 10,000-step
chain never recurses. Steps found ready go through failFast and ``when``
and land in :attr:`Readiness.queue`, which the session launches from under
``maxParallel`` in definition order (a heap of step indexes, not arrival
order: the set of ready steps can be rebuilt from the status, their arrival
order cannot, so a restart launches in the same order a session that never
stopped would); steps that may never run are Skipped with the reason in
their message (``dependency failed``, ``prior step failed``,
``parent step failed``, ``condition not met``).

A step's *unit* is the step and its whole subtree: a unit is done when all
of it is terminal, and its outcome for its group is OK, COND (skipped by
its own ``when``: unlocks trigger All, is no success for trigger Any) or
BAD. The counters here are rebuilt from the state in O(n) on attach; each
later call costs O(what changed).

Where a new kind of readiness rule goes (a trigger, a group mode): here, in
:meth:`Readiness._decide` and :meth:`Readiness._unit_finished`, with its
precomputed per-step data in :mod:`szal.engine.compiled`.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import TYPE_CHECKING, Any

from szal.engine.compiled import DAG, PARALLEL, SEQUENTIAL
from szal.engine.matrices import fan_out_message, fan_out_outputs
from szal.engine.phases import RunPhase, StepPhase

if TYPE_CHECKING:
    from szal.engine.planner import PlanSession

CONDITION_NOT_MET = "condition not met"
PRIOR_STEP_FAILED = "prior step failed"
DEPENDENCY_FAILED = "dependency failed"
PARENT_STEP_FAILED = "parent step failed"

_PENDING = StepPhase.PENDING
_RUNNING = StepPhase.RUNNING
_SUCCEEDED = StepPhase.SUCCEEDED
_SKIPPED = StepPhase.SKIPPED
_STEP_DONE = frozenset(phase for phase in StepPhase if phase.is_terminal)

# Outcome of a step's unit (the step and its subtree) for its sibling group.
OK = 0  # succeeded
COND = 1  # skipped by its own `when`
BAD = 2  # anything else


class Readiness:
    """The readiness indexes of one session (see the module docstring)."""

    __slots__ = (
        "_child_bad",
        "_children",
        "_dep_bad",
        "_dep_ok",
        "_dependents",
        "_deps",
        "_group_mode",
        "_group_of",
        "_members",
        "_open_children",
        "_outcome",
        "_parent",
        "_pos",
        "_recs",
        "_remaining",
        "_session",
        "_unit_done",
        "decided",
        "deferred",
        "queue",
        "stopping",
        "sweep",
        "work",
    )

    def __init__(self, session: PlanSession) -> None:
        compiled = session.compiled
        self._session = session
        recs = self._recs = session._rec
        n = compiled.n
        self._children = compiled.children
        self._deps = compiled.deps
        self._dependents = compiled.dependents
        self._parent = compiled.parent
        self._group_of = compiled.group_of
        self._group_mode = compiled.group_mode
        self._members = compiled.members
        self._pos = compiled.pos
        self.work: deque[int] = deque()  # steps that just became terminal
        self.queue: list[int] = []  # heap: ready steps waiting for a slot
        self.decided = [rec.phase is not _PENDING for rec in recs]
        self._remaining = [len(d) for d in compiled.deps]
        self._dep_bad = [False] * n
        self._dep_ok = [False] * n
        self._open_children = [len(c) for c in compiled.children]
        self._child_bad = [False] * n
        self._unit_done = [False] * n
        self._outcome = [BAD] * n
        # Steps to decide once this call's observations were applied (they may
        # adopt launches the status does not know of yet).
        self.deferred: list[int] = []
        self.sweep: tuple[float, str] | None = None  # failFast: skip all Pending after drain
        self.stopping = compiled.workflow.fail_fast and bool(session._failures)
        # Units, bottom-up: definition order has parents before children.
        for i in range(n - 1, -1, -1):
            open_children = 0
            child_bad = False
            for c in compiled.children[i]:
                if not self._unit_done[c]:
                    open_children += 1
                elif self._outcome[c] == BAD:
                    child_bad = True
            self._open_children[i] = open_children
            self._child_bad[i] = child_bad
            if recs[i].phase in _STEP_DONE and open_children == 0:
                self._unit_done[i] = True
                self._outcome[i] = self._unit_outcome(i)
        if session.state.phase is not RunPhase.PENDING:
            self.resume()

    def resume(self) -> None:
        """Queue for decision every Pending step its finished steps may unlock.

        At attach for a run already under way, and when a run seeded with
        finished steps (a retry, :mod:`szal.engine.retrying`) starts: both
        go on from the steps recorded as finished, not from the first step.
        The finally steps wait for the main outcome.
        """
        session = self._session
        compiled = session.compiled
        recs = self._recs
        for g in range(len(compiled.members)):
            if g == compiled.finally_group and session.state.main_outcome is None:
                continue  # the finally steps start after the main ones
            owner = compiled.group_owner[g]
            if owner >= 0 and recs[owner].phase is not _SUCCEEDED:
                continue
            self.resume_group(g)

    def resume_group(self, g: int) -> None:
        """Count an active group's inputs from the state; defer its Pending steps' decision."""
        compiled = self._session.compiled
        recs = self._recs
        group = compiled.members[g]
        mode = compiled.group_mode[g]
        if mode == DAG:
            for d in group:
                if recs[d].phase is not _PENDING:
                    continue
                remaining = 0
                for dep in compiled.deps[d]:
                    if not self._unit_done[dep]:
                        remaining += 1
                    elif self._outcome[dep] == BAD:
                        self._dep_bad[d] = True
                    elif self._outcome[dep] == OK:
                        self._dep_ok[d] = True
                self._remaining[d] = remaining
                self.deferred.append(d)
        elif mode == PARALLEL:
            self.deferred.extend(d for d in group if recs[d].phase is _PENDING)
        else:
            for d in group:
                if not self._unit_done[d]:
                    if recs[d].phase is _PENDING:
                        self.deferred.append(d)
                    break

    def _unit_outcome(self, i: int) -> int:
        rec = self._recs[i]
        if rec.phase is _SUCCEEDED:
            return BAD if self._child_bad[i] else OK
        if rec.phase is _SKIPPED and rec.message == CONDITION_NOT_MET:
            return COND
        return BAD

    def decide_deferred(self, now: float) -> None:
        deferred, self.deferred = self.deferred, []
        for i in deferred:
            self._decide(i, now)
        self.drain(now)

    def skip(self, i: int, now: float, message: str) -> None:
        if self._recs[i].phase is _PENDING:
            self.decided[i] = True
            self._session._step_change(i, _SKIPPED, now, message)
            self._session._terminal(i, now)

    def _skip_everything_pending(self, now: float, message: str) -> None:
        for i, rec in enumerate(self._recs[: self._session.compiled.main_n]):
            if rec.phase is _PENDING:
                self.skip(i, now, message)

    # -- progress through groups ----------------------------------------------

    def activate(self, g: int, now: float) -> None:
        """A sibling group may start: its owner Succeeded (or the run started)."""
        group = self._members[g]
        mode = self._group_mode[g]
        if mode == SEQUENTIAL:
            if group:
                self._ready(group[0], now)
        elif mode == PARALLEL:
            for i in group:
                self._ready(i, now)
        else:
            deps = self._deps
            for i in group:
                if not deps[i]:
                    self._ready(i, now)
        self.drain(now)

    def drain(self, now: float) -> None:
        """Propagate every step that became terminal, iteratively (no deep recursion)."""
        work = self.work
        recs = self._recs
        while True:
            while work:
                i = work.popleft()
                children = self._children[i]
                if children:
                    if recs[i].phase is _SUCCEEDED:
                        self.activate(self._session.compiled.child_group[i], now)
                    else:
                        for c in children:
                            self.skip(c, now, PARENT_STEP_FAILED)
                else:
                    self._unit_finished(i, now)
            if self.sweep is None:
                return
            at, message = self.sweep
            self.sweep = None
            self._skip_everything_pending(at, message)

    def _unit_finished(self, i: int, now: float) -> None:
        """Step ``i`` and its whole subtree are terminal: tell its parent and group."""
        recs = self._recs
        while True:
            self._unit_done[i] = True
            outcome = self._outcome[i] = self._unit_outcome(i)
            session = self._session
            if i >= session.compiled.main_n and session.state.main_outcome is None:
                return  # adopted before the finally stage: counted when it begins
            p = self._parent[i]
            parent_done = False
            if p >= 0:
                if outcome == BAD:
                    self._child_bad[p] = True
                self._open_children[p] -= 1
                parent_done = self._open_children[p] == 0
                if recs[p].phase is not _SUCCEEDED:
                    # The group never started; the parent's skip loop handles siblings.
                    if parent_done:
                        i = p
                        continue
                    return
            g = self._group_of[i]
            mode = self._group_mode[g]
            if mode == SEQUENTIAL:
                group = self._members[g]
                nxt = self._pos[i] + 1
                if nxt < len(group):
                    j = group[nxt]
                    if recs[j].phase is _PENDING:
                        if outcome == BAD:
                            self.skip(j, now, PRIOR_STEP_FAILED)
                        else:
                            self._ready(j, now)
            elif mode == DAG:
                decided = self.decided
                remaining = self._remaining
                for d in self._dependents[i]:
                    if decided[d] or recs[d].phase is not _PENDING:
                        continue
                    remaining[d] -= 1
                    if outcome == BAD:
                        self._dep_bad[d] = True
                    elif outcome == OK:
                        self._dep_ok[d] = True
                    self._decide(d, now)
            if parent_done:
                i = p
                continue
            return

    def _decide(self, i: int, now: float) -> None:
        """Make a Pending step in an active group ready or skip it, if its inputs allow."""
        if self.decided[i] or self._recs[i].phase is not _PENDING:
            return
        g = self._group_of[i]
        mode = self._group_mode[g]
        if mode == DAG:
            if self._session.compiled.any_trigger[i]:
                if self._dep_ok[i]:
                    self._ready(i, now)
                elif self._remaining[i] <= 0:
                    self.skip(i, now, DEPENDENCY_FAILED)
            elif self._dep_bad[i]:
                self.skip(i, now, DEPENDENCY_FAILED)
            elif self._remaining[i] <= 0:
                self._ready(i, now)
        elif mode == SEQUENTIAL and self._pos[i] > 0:
            prev = self._members[g][self._pos[i] - 1]
            if self._unit_done[prev]:
                if self._outcome[prev] == BAD:
                    self.skip(i, now, PRIOR_STEP_FAILED)
                else:
                    self._ready(i, now)
        else:
            self._ready(i, now)

    def _ready(self, i: int, now: float) -> None:
        """Step ``i`` may run now: check failFast and ``when``, then queue it."""
        decided = self.decided
        if decided[i]:
            return
        decided[i] = True
        if self._recs[i].phase is not _PENDING:
            return
        if self.stopping and i < self._session.compiled.main_n:
            self.skip(i, now, self._session._fail_fast_message())
            return
        compiled = self._session.compiled
        condition = compiled.when[i]
        if condition is not None:
            try:
                met = condition.evaluate(self._context(i))
            except Exception as exc:  # the DSL promises not to raise; never crash a run
                self.skip(i, now, f"condition error: {exc}")
                return
            if not met:
                self.skip(i, now, CONDITION_NOT_MET)
                return
        if not compiled.runs[i]:
            # A parent with nothing of its own to run: it only orders its children.
            session = self._session
            rec = session._step_change(i, _RUNNING, now, None)
            rec.started_at = now
            message = fan_out_message(len(self._children[i])) if compiled.steps[i].fan_out else None
            session._step_change(i, _SUCCEEDED, now, message)
            session._terminal(i, now)
            return
        heapq.heappush(self.queue, i)

    def _context(self, i: int) -> dict[str, Any]:
        session = self._session
        compiled = session.compiled
        steps: dict[str, Any] = {}
        index = compiled.index
        for name in compiled.when_refs[i]:
            j = index[name]
            rec = self._recs[j]
            steps[name] = {
                "phase": rec.phase.value,
                "exitCode": rec.exit_code,
                "attempts": rec.attempts,
                "outputs": (
                    fan_out_outputs(self._recs, self._children[j])
                    if compiled.steps[j].fan_out
                    else rec.outputs
                    if rec.outputs is not None
                    else {}
                ),
            }
        run = session.finally_context() if i >= compiled.main_n else session._run_ctx
        context = {"params": compiled.params, "steps": steps, "run": run}
        matrix = compiled.steps[i].matrix
        if matrix is not None:
            context["matrix"] = matrix
        return context
