"""What runners tell the planner, and what the planner tells runners.

All plain frozen data. Runners turn :class:`Launch` and :class:`Stop` into
processes or Pods; they feed back :class:`Observation` values, which are
*idempotent*: passing the same observation twice, or every observation again
after a restart, changes nothing the second time. :class:`Transition` values
describe each phase change for Events, history and live progress.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from szal.engine.phases import EventReason, RunPhase, StepPhase
from szal.engine.workflow import Command, ResolvedStep

ObservedState = Literal["Pending", "Running", "Succeeded", "Failed"]
StopReason = Literal["timeout", "cancel", "deadline"]


@dataclass(frozen=True, slots=True)
class AttemptRef:
    """One attempt of one step; a compensation is ``rollback=True, attempt=1``."""

    step: str
    attempt: int
    rollback: bool = False


@dataclass(frozen=True, slots=True)
class Observation:
    """What a runner saw of an attempt (a process or a Pod).

    ``Pending`` with a message reports why it has not started (for example
    the Pod's Unschedulable reason); ``Running`` confirms it started;
    ``Succeeded``/``Failed`` end it, with the exit code, the outputs parsed
    from the outputs file or termination message, and a message.
    """

    ref: AttemptRef
    state: ObservedState
    at: float
    exit_code: int | None = None
    outputs: Mapping[str, Any] | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class Launch:
    """Start an attempt. ``command`` is the step's (or its compensation's) command."""

    ref: AttemptRef
    step: ResolvedStep
    command: Command
    timeout: float | None


@dataclass(frozen=True, slots=True)
class Stop:
    """Kill an attempt (process group / delete the Pod)."""

    ref: AttemptRef
    reason: StopReason


Action = Launch | Stop


Phase = StepPhase | RunPhase
"""A step's (or compensation's) phase, or the run's when ``step`` is None."""


@dataclass(frozen=True, slots=True)
class Transition:
    """One phase change. ``step`` is None for the run itself.

    ``old``/``new`` are :class:`StepPhase` values for a step or its
    compensation (``rollback=True``) and :class:`RunPhase` values for the run;
    ``old`` is None only for a record that did not exist before. ``event``
    is the Kubernetes Event reason and the history event name.

    ``outcome`` is how attempt ``attempt`` ended, set exactly when this
    change ends it (Succeeded, Failed, TimedOut, Cancelled): a retried
    attempt goes Running -> Waiting, and only ``outcome`` says whether it
    failed or timed out. History and Events read it; no consumer ever
    parses ``message`` (a command may well print "timed out" and fail).
    """

    step: str | None
    old: Phase | None
    new: Phase
    at: float
    event: EventReason
    message: str = ""
    attempt: int = 0
    rollback: bool = False
    exit_code: int | None = None
    outcome: StepPhase | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """The planner's answer: act, record, and wake me at ``wake_at`` at the latest."""

    actions: tuple[Action, ...] = ()
    transitions: tuple[Transition, ...] = ()
    wake_at: float | None = None
    changed_steps: frozenset[str] = field(default_factory=frozenset)
    run_changed: bool = False
