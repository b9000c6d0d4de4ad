"""Rollback: the compensations of a failed run, one at a time, newest first.

DESIGN.md section 4: when a run fails and ``rollbackOnFailure`` is set, the
``rollback`` command of every Succeeded step runs, one at a time, in
reverse order of completion (``finish_order``); a failing compensation does
not stop the others; all succeed -> RolledBack, any fails -> Failed with a
message naming them. Cancel stops the running compensation, cancels the
rest and fails the run (reason Cancelled); suspend and the run deadline do
not interrupt a rollback.

:class:`Rollback` is owned by a :class:`~szal.engine.planner.PlanSession`
and holds only what sequencing needs: the compensations in order, a cursor,
the compensation observations not applied yet and the compensation
timeout heap. Phase changes go through the session's
``_compensation_change`` and ``_run_change`` (the one place that records
transitions). A compensation is attempt 1 of its step with ``rollback=True``.
Its state is rebuilt from ``StepState.rollback`` on attach, so a restart
mid-rollback resumes where the status says.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

from szal.engine.actions import AttemptRef, Launch, Observation, Stop
from szal.engine.phases import RunPhase, StepPhase
from szal.engine.state import RollbackState

if TYPE_CHECKING:
    from szal.engine.planner import PlanSession

_PENDING = StepPhase.PENDING
_RUNNING = StepPhase.RUNNING
_SUCCEEDED = StepPhase.SUCCEEDED
_FAILED = StepPhase.FAILED
_TIMED_OUT = StepPhase.TIMED_OUT
_CANCELLED = StepPhase.CANCELLED


def _quote_list(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names)


class Rollback:
    """Compensation sequencing for one session (see the module docstring)."""

    __slots__ = ("_cursor", "_heap", "_observations", "_session", "compensations")

    def __init__(self, session: PlanSession) -> None:
        self._session = session
        self.compensations: list[int] = []
        self._cursor = 0
        self._observations: list[tuple[int, Observation]] = []
        self._heap: list[tuple[float, int]] = []  # (deadline, step) of running compensations
        if session.state.phase is RunPhase.ROLLING_BACK:
            self.compensations = self._compensable()
            compiled = session.compiled
            for i in self.compensations:
                rec = session._rec[i]
                if rec.rollback is None:
                    rec.rollback = RollbackState()
                    session._changed.add(compiled.names[i])
                rb = rec.rollback
                timeout = compiled.rollback_timeout[i]
                if rb.phase is _RUNNING and timeout is not None:
                    start = rb.started_at if rb.started_at is not None else 0.0
                    self._heap.append((start + timeout, i))
            heapq.heapify(self._heap)

    def _compensable(self) -> list[int]:
        """Succeeded steps with a compensation, in reverse order of completion."""
        compensable = self._session.compiled.compensable
        found = [
            (rec.finish_order if rec.finish_order is not None else -1, i)
            for i, rec in enumerate(self._session._rec)
            if rec.phase is _SUCCEEDED and compensable[i]
        ]
        found.sort(reverse=True)
        return [i for _, i in found]

    def begin(self, now: float, cause: str) -> bool:
        """The run failed: start rolling back, or return False if nothing compensates."""
        comps = self._compensable()
        if not comps:
            return False
        session = self._session
        self.compensations = comps
        self._cursor = 0
        names = session.compiled.names
        for i in comps:
            session._rec[i].rollback = RollbackState()
            session._changed.add(names[i])
        session._run_change(
            RunPhase.ROLLING_BACK, now, "RollingBack", f"{cause}; rolling back {len(comps)} step(s)"
        )
        return True

    # -- observations --------------------------------------------------------

    def defer(self, i: int, obs: Observation) -> None:
        """Hold a compensation's observation until the run is rolling back.

        That may be this call, or a later one: after a stale restart the
        compensations launched by the lost call are seen while the run is
        still Running or Paused; kept, they are adopted when the rollback
        begins again instead of being launched twice.
        """
        self._observations.append((i, obs))

    def apply_observations(self) -> None:
        for i, obs in self._observations:
            self._observe(i, obs)
        self._observations.clear()

    def _observe(self, i: int, obs: Observation) -> None:
        session = self._session
        rb = session._rec[i].rollback
        if rb is None or obs.ref.attempt != 1:
            return
        if rb.phase is _PENDING and session.state.phase is RunPhase.ROLLING_BACK:
            session._compensation_change(i, _RUNNING, obs.at, None)  # adopt
            timeout = session.compiled.rollback_timeout[i]
            if timeout is not None:
                heapq.heappush(self._heap, (obs.at + timeout, i))
        if rb.phase is not _RUNNING:
            return
        if obs.state == "Succeeded":
            session._compensation_change(i, _SUCCEEDED, obs.at, obs.message, obs.exit_code)
        elif obs.state == "Failed":
            message = obs.message or (
                f"failed with exit code {obs.exit_code}" if obs.exit_code is not None else "failed"
            )
            session._compensation_change(i, _FAILED, obs.at, message, obs.exit_code)

    # -- time ----------------------------------------------------------------

    def expire(self, now: float) -> None:
        """Stop every running compensation past its timeout (TimedOut)."""
        heap = self._heap
        session = self._session
        compiled = session.compiled
        while heap and heap[0][0] <= now:
            _, i = heapq.heappop(heap)
            rb = session._rec[i].rollback
            if rb is None or rb.phase is not _RUNNING:
                continue
            session._actions.append(Stop(AttemptRef(compiled.names[i], 1, True), "timeout"))
            message = compiled.rollback_timeout_message[i]
            session._compensation_change(i, _TIMED_OUT, now, message)

    def next_timeout(self) -> float | None:
        """The earliest timeout of a running compensation (stale entries dropped)."""
        heap = self._heap
        recs = self._session._rec
        while heap:
            at, i = heap[0]
            rb = recs[i].rollback
            if rb is not None and rb.phase is _RUNNING:
                return at
            heapq.heappop(heap)
        return None

    # -- sequencing ----------------------------------------------------------

    def advance(self, now: float) -> None:
        """Run compensations one at a time; end the run when all are done."""
        session = self._session
        compiled = session.compiled
        comps = self.compensations
        recs = session._rec
        while self._cursor < len(comps):
            i = comps[self._cursor]
            rb = recs[i].rollback
            assert rb is not None
            if rb.phase is _RUNNING:
                return
            if rb.phase.is_terminal:
                self._cursor += 1
                continue
            step = compiled.steps[i]
            assert step.rollback is not None
            session._compensation_change(i, _RUNNING, now, None)
            timeout = step.rollback_timeout
            session._actions.append(
                Launch(AttemptRef(compiled.names[i], 1, True), step, step.rollback, timeout)
            )
            if timeout is not None:
                heapq.heappush(self._heap, (now + timeout, i))
            return
        failed = [
            compiled.names[i]
            for i in comps
            if (rb_state := recs[i].rollback) is not None and rb_state.phase is not _SUCCEEDED
        ]
        cause = session._failure_message() if session._failures else "run failed"
        if failed:
            noun = "compensation of step" if len(failed) == 1 else "compensations of steps"
            session._run_change(
                RunPhase.FAILED, now, "RunFailed", f"{cause}; {noun} {_quote_list(failed)} failed"
            )
        else:
            session._run_change(
                RunPhase.ROLLED_BACK,
                now,
                "RolledBack",
                f"{cause}; rolled back {len(comps)} step(s)",
            )

    def cancel(self, now: float) -> None:
        """Cancel during rollback: stop the running compensation, cancel the rest, fail."""
        session = self._session
        names = session.compiled.names
        for i in self.compensations:
            rb = session._rec[i].rollback
            if rb is None or rb.phase.is_terminal:
                continue
            if rb.phase is _RUNNING:
                session._actions.append(Stop(AttemptRef(names[i], 1, True), "cancel"))
            session._compensation_change(i, _CANCELLED, now, "run cancelled")
        session._run_change(
            RunPhase.FAILED, now, "RunFailed", "run cancelled during rollback", reason="Cancelled"
        )
