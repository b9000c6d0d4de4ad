"""Attempts: launching step attempts, what runners saw of them, retries, timeouts.

Owned by a :class:`~szal.engine.planner.PlanSession`. It holds the
attempt-level indexes of one run: how many attempts run (``maxParallel``
counts them), the heap of Waiting steps by ``retry_at`` and the heap of
running attempts by their per-attempt deadline (both with lazy deletion:
an entry is live while the step is still in that attempt). The session
calls :meth:`Attempts.observe` with each plan call's observations,
:meth:`Attempts.expire` for timeouts and :meth:`Attempts.launch` to fill
free slots from due retries first, then from the readiness queue (ready
steps in definition order).

Decisions: observations are applied oldest attempt first, a terminal state
after Running (so a batch replayed after a restart lands in order); an
observation of attempt ``attempts + 1`` of a Pending or Waiting step
*adopts* that attempt (it was launched, then the runner stopped before
saving), so nothing is ever launched twice; anything older is stale and
ignored. A compensation's observation is handed to the rollback.

Where a new kind of attempt outcome goes: :meth:`Attempts.observe` (what
the runner reports) or :meth:`Attempts._fail` (whether it is retried).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import TYPE_CHECKING

from szal.engine.actions import AttemptRef, Launch, Observation, Stop
from szal.engine.matrices import Pools
from szal.engine.phases import StepPhase
from szal.spec.durations import format_duration

if TYPE_CHECKING:
    from szal.engine.planner import PlanSession

_PENDING = StepPhase.PENDING
_WAITING = StepPhase.WAITING
_RUNNING = StepPhase.RUNNING
_SUCCEEDED = StepPhase.SUCCEEDED
_FAILED = StepPhase.FAILED
_TIMED_OUT = StepPhase.TIMED_OUT

_OBS_RANK = {"Pending": 0, "Running": 1, "Succeeded": 2, "Failed": 2}


class Attempts:
    """The attempt indexes of one session (see the module docstring)."""

    __slots__ = (
        "_actions",
        "_changed",
        "_decided",
        "_defer_compensation",
        "_drain",
        "_index",
        "_max_parallel",
        "_names",
        "_pools",
        "_queue",
        "_rec",
        "_retries",
        "_step_change",
        "_steps",
        "_terminal",
        "_timeout",
        "_timeout_message",
        "retry_heap",
        "running",
        "timeout_heap",
    )

    def __init__(self, session: PlanSession) -> None:
        compiled = session.compiled
        # The session's per-call lists and its methods, bound once (hot paths).
        self._actions = session._actions
        self._changed = session._changed
        self._step_change = session._step_change
        self._terminal = session._terminal
        self._drain = session._readiness.drain
        self._queue = session._readiness.queue
        self._decided = session._readiness.decided
        self._defer_compensation = session._rollback.defer
        self._rec = recs = session._rec
        self._names = compiled.names
        self._index = compiled.index
        self._steps = compiled.steps
        self._timeout = compiled.timeout
        self._timeout_message = compiled.timeout_message
        self._retries = compiled.retries
        self._max_parallel = compiled.max_parallel
        # Each matrix's own maxParallel (szal.engine.matrices).
        self._pools = Pools(
            compiled.parent, [s.matrix_max_parallel or 0 for s in compiled.steps], recs, _RUNNING
        )
        self.retry_heap: list[tuple[float, int, int]] = []  # (retry_at, step, attempt)
        self.timeout_heap: list[tuple[float, int, int]] = []  # (deadline, step, attempt)
        running = 0
        for i, rec in enumerate(recs):
            phase = rec.phase
            if phase is _RUNNING:
                if rec.attempts > 0:
                    running += 1
                timeout = self._timeout[i]
                if timeout is not None and rec.attempts > 0:
                    start = rec.attempt_started_at
                    if start is None:
                        start = rec.started_at if rec.started_at is not None else 0.0
                    self.timeout_heap.append((start + timeout, i, rec.attempts))
            elif phase is _WAITING:
                at = rec.retry_at if rec.retry_at is not None else 0.0
                self.retry_heap.append((at, i, rec.attempts))
        heapq.heapify(self.timeout_heap)
        heapq.heapify(self.retry_heap)
        self.running = running

    def _start(self, i: int, now: float) -> None:
        rec = self._rec[i]
        rec.attempts += 1
        self._step_change(i, _RUNNING, now, None)
        if rec.started_at is None:
            rec.started_at = now
        rec.attempt_started_at = now
        rec.retry_at = None
        rec.exit_code = None  # exit code and outputs are the current attempt's
        rec.outputs = None
        self.running += 1
        step = self._steps[i]
        timeout = self._timeout[i]
        self._actions.append(
            Launch(AttemptRef(self._names[i], rec.attempts), step, step.command, timeout)
        )
        if timeout is not None:
            heapq.heappush(self.timeout_heap, (now + timeout, i, rec.attempts))

    @property
    def holding(self) -> bool:
        """Whether ready matrix instances wait for their matrix's own slot."""
        return self._pools.holding

    def launch(self, now: float) -> None:
        """Start due retries, then ready steps, while ``maxParallel`` allows."""
        limit = self._max_parallel
        recs = self._rec
        heap = self.retry_heap
        pools = self._pools
        blocked: list[tuple[float, int, int]] = []  # due retries of a matrix at its cap
        while heap and heap[0][0] <= now and self.running < limit:
            entry = heapq.heappop(heap)
            _, i, attempt = entry
            rec = recs[i]
            if rec.phase is _WAITING and rec.attempts == attempt:
                if pools.may_start(i, hold=False):
                    self._start(i, now)
                else:
                    blocked.append(entry)
        for entry in blocked:
            heapq.heappush(heap, entry)
        queue = self._queue
        pools = self._pools
        if pools.holding:
            pools.release(queue)
        while queue and self.running < limit:
            i = heapq.heappop(queue)
            if recs[i].phase is _PENDING and pools.may_start(i):
                self._start(i, now)

    def _fail(
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
            heapq.heappush(self.retry_heap, (rec.retry_at, i, rec.attempts))
        else:
            self._step_change(i, _TIMED_OUT if timed_out else _FAILED, at, message, exit_code)
            self._terminal(i, at)

    def observe(self, observations: Iterable[Observation], now: float) -> None:
        """Apply what the runner saw: adopt, finish, fail or annotate attempts."""
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
                self._defer_compensation(i, obs)
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
                self.running += 1
                timeout = self._timeout[i]
                if timeout is not None:
                    heapq.heappush(self.timeout_heap, (obs.at + timeout, i, attempt))
            else:
                continue  # stale: an older attempt, or a step already finished
            state = obs.state
            if state == "Succeeded":
                self.running -= 1
                rec.exit_code = obs.exit_code
                if obs.outputs is not None:
                    rec.outputs = dict(obs.outputs)
                self._step_change(i, _SUCCEEDED, obs.at, obs.message, obs.exit_code)
                self._terminal(i, obs.at)
                self._drain(now)
            elif state == "Failed":
                self.running -= 1
                rec.exit_code = obs.exit_code
                if obs.outputs is not None:
                    rec.outputs = dict(obs.outputs)
                if obs.message:
                    message = obs.message
                elif obs.exit_code is not None:
                    message = f"failed with exit code {obs.exit_code}"
                else:
                    message = "failed"
                self._fail(i, obs.at, message, obs.exit_code, timed_out=False)
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

    def expire(self, now: float) -> None:
        """Stop every attempt past its timeout (retry or TimedOut)."""
        heap = self.timeout_heap
        recs = self._rec
        while heap and heap[0][0] <= now:
            _, i, attempt = heapq.heappop(heap)
            rec = recs[i]
            if rec.phase is not _RUNNING or rec.attempts != attempt:
                continue
            self._actions.append(Stop(AttemptRef(self._names[i], attempt), "timeout"))
            self.running -= 1
            message = self._timeout_message[i]
            assert message is not None
            self._fail(i, now, message, None, timed_out=True)
            self._drain(now)

    # ------------------------------------------------------------------

    def next_timeout(self) -> float | None:
        """The earliest deadline of a running attempt (stale entries dropped)."""
        heap = self.timeout_heap
        recs = self._rec
        while heap:
            at, i, attempt = heap[0]
            rec = recs[i]
            if rec.phase is _RUNNING and rec.attempts == attempt:
                return at
            heapq.heappop(heap)
        return None

    def next_retry(self) -> float | None:
        """When the earliest Waiting step may retry, if a slot is free for it."""
        heap = self.retry_heap
        recs = self._rec
        while heap:
            at, i, attempt = heap[0]
            rec = recs[i]
            if rec.phase is _WAITING and rec.attempts == attempt:
                if self.running >= self._max_parallel:
                    return None
                if self._pools.full(i):
                    # Its matrix is at its cap (an instance's end wakes the run):
                    # the earliest other retry that could start.
                    free = [
                        e[0]
                        for e in heap
                        if recs[e[1]].phase is _WAITING
                        and recs[e[1]].attempts == e[2]
                        and not self._pools.full(e[1])
                    ]
                    return min(free) if free else None
                return at
            heapq.heappop(heap)
        return None
