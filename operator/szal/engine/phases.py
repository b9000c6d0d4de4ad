"""The one transition table for step phases and for run phases.

Every phase change in the engine goes through :func:`step_transition` or
:func:`run_transition`; anything not in the table raises
:class:`InvalidTransition`, and a terminal phase never changes. The tables
are the contract in DESIGN.md section 4 ("Phase transitions").

The phases themselves (and the Event reasons) are wire enums and live in
:mod:`szal.spec.status` with the status model; they are re-exported here so
``from szal.engine.phases import StepPhase`` keeps working. A phase is
terminal (``is_terminal``) exactly when its table row is empty; tests/engine
checks that the two agree.
"""

from __future__ import annotations

from szal.spec.status import EventReason, RunPhase, StepPhase

__all__ = [
    "RUN_TRANSITIONS",
    "STEP_TRANSITIONS",
    "EventReason",
    "InvalidTransition",
    "RunPhase",
    "StepPhase",
    "run_transition",
    "step_transition",
]


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
