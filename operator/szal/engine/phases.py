"""Step and run phases, and the one transition table for each.

Every phase change in the engine goes through :func:`step_transition` or
:func:`run_transition`; anything not in the table raises
:class:`InvalidTransition`, and a terminal phase never changes. The tables
are the contract in DESIGN.md section 4 ("Phase transitions").
"""

from __future__ import annotations

from enum import StrEnum


class StepPhase(StrEnum):
    """Where one step is in its life."""

    PENDING = "Pending"
    WAITING = "Waiting"  # backoff before the next attempt
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    TIMED_OUT = "TimedOut"
    SKIPPED = "Skipped"
    CANCELLED = "Cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in _STEP_TERMINAL

    @property
    def is_failure(self) -> bool:
        """Failed or TimedOut: the step's own command did not succeed."""
        return self in (StepPhase.FAILED, StepPhase.TIMED_OUT)


class RunPhase(StrEnum):
    """Where a run is in its life (the seed's Created is Pending, Completed is Succeeded)."""

    PENDING = "Pending"
    RUNNING = "Running"
    PAUSED = "Paused"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    ROLLING_BACK = "RollingBack"
    ROLLED_BACK = "RolledBack"
    CANCELLED = "Cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in _RUN_TERMINAL


_STEP_TERMINAL = frozenset(
    {
        StepPhase.SUCCEEDED,
        StepPhase.FAILED,
        StepPhase.TIMED_OUT,
        StepPhase.SKIPPED,
        StepPhase.CANCELLED,
    }
)
_RUN_TERMINAL = frozenset(
    {RunPhase.SUCCEEDED, RunPhase.FAILED, RunPhase.ROLLED_BACK, RunPhase.CANCELLED}
)

S = StepPhase
STEP_TRANSITIONS: dict[StepPhase, frozenset[StepPhase]] = {
    S.PENDING: frozenset({S.RUNNING, S.SKIPPED, S.CANCELLED}),
    S.RUNNING: frozenset({S.SUCCEEDED, S.FAILED, S.TIMED_OUT, S.WAITING, S.CANCELLED}),
    S.WAITING: frozenset({S.RUNNING, S.CANCELLED}),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
    S.TIMED_OUT: frozenset(),
    S.SKIPPED: frozenset(),
    S.CANCELLED: frozenset(),
}

R = RunPhase
RUN_TRANSITIONS: dict[RunPhase, frozenset[RunPhase]] = {
    R.PENDING: frozenset({R.RUNNING, R.CANCELLED, R.FAILED}),
    R.RUNNING: frozenset({R.PAUSED, R.SUCCEEDED, R.FAILED, R.ROLLING_BACK, R.CANCELLED}),
    R.PAUSED: frozenset({R.RUNNING, R.CANCELLED}),
    R.ROLLING_BACK: frozenset({R.ROLLED_BACK, R.FAILED}),
    R.SUCCEEDED: frozenset(),
    R.FAILED: frozenset(),
    R.ROLLED_BACK: frozenset(),
    R.CANCELLED: frozenset(),
}
del S, R


class InvalidTransition(Exception):
    """A phase change that the transition table does not allow."""

    def __init__(self, what: str, old: str, new: str) -> None:
        super().__init__(f"invalid {what} transition {old} -> {new}")
        self.what = what
        self.old = old
        self.new = new


def step_transition(old: StepPhase, new: StepPhase, *, step: str = "") -> StepPhase:
    """Return ``new`` if a step may go from ``old`` to it, else raise."""
    if new not in STEP_TRANSITIONS[old]:
        raise InvalidTransition(f"step {step!r}" if step else "step", old, new)
    return new


def run_transition(old: RunPhase, new: RunPhase) -> RunPhase:
    """Return ``new`` if a run may go from ``old`` to it, else raise."""
    if new not in RUN_TRANSITIONS[old]:
        raise InvalidTransition("run", old, new)
    return new
