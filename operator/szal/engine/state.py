"""The run's state: what the planner reads and changes, and its status form.

DESIGN.md: "the status is the state". :class:`RunState` is the in-memory
form of a WorkflowRun's ``status``; :meth:`RunState.to_status` and
:meth:`RunState.from_status` convert losslessly (timestamps at millisecond
resolution), so a runner can stop at any moment and resume from the status
it last saved. The shape of that status is the model in
:mod:`szal.spec.status` (``RunStatus``); the dicts are built by hand here
because this runs on every pass, and tests/engine/test_status_shape.py
checks they agree with the model in both directions.

RunState is mutable on purpose, and only the planner mutates it: a run of
10,000 steps re-planned once per step would cost O(n^2) if every plan call
copied the status. Instead the planner changes the records it touches and
reports which ones (``Plan.changed_steps``), so a runner writes a small
merge patch and the total cost stays linear. Nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from szal.engine.phases import RunPhase, StepPhase
from szal.engine.timestamps import format_timestamp, parse_timestamp
from szal.spec.durations import format_duration

StatusDict = dict[str, Any]


def _ts(value: float | None) -> str | None:
    return None if value is None else format_timestamp(value)


def _parse_ts(value: Any) -> float | None:
    return None if value in (None, "") else parse_timestamp(str(value))


@dataclass(slots=True)
class RollbackState:
    """The compensation of one step."""

    phase: StepPhase = StepPhase.PENDING
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    message: str | None = None

    def to_status(self) -> StatusDict:
        out: StatusDict = {"phase": self.phase.value}
        if self.started_at is not None:
            out["startedAt"] = _ts(self.started_at)
        if self.finished_at is not None:
            out["finishedAt"] = _ts(self.finished_at)
        if self.exit_code is not None:
            out["exitCode"] = self.exit_code
        if self.message:
            out["message"] = self.message
        return out

    @classmethod
    def from_status(cls, data: StatusDict) -> RollbackState:
        return cls(
            phase=StepPhase(data.get("phase", "Pending")),
            started_at=_parse_ts(data.get("startedAt")),
            finished_at=_parse_ts(data.get("finishedAt")),
            exit_code=data.get("exitCode"),
            message=data.get("message"),
        )


@dataclass(slots=True)
class StepState:
    """One step's record in the run status (``status.steps.<name>``).

    ``attempt_started_at`` is when the current attempt was launched (for the
    per-attempt timeout); ``retry_at`` is when a Waiting step may start its
    next attempt; ``finish_order`` numbers steps in order of completion so
    rollback can run in exact reverse order even when timestamps tie;
    ``reused_from`` names the run a retry carried this Succeeded step over
    from (:mod:`szal.engine.retrying`).
    """

    phase: StepPhase = StepPhase.PENDING
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    attempt_started_at: float | None = None
    retry_at: float | None = None
    exit_code: int | None = None
    message: str | None = None
    outputs: dict[str, Any] | None = None
    pod_name: str | None = None
    finish_order: int | None = None
    rollback: RollbackState | None = None
    final: bool = False  # a finally step (spec.finally)
    reused_from: str | None = None

    def to_status(self) -> StatusDict:
        out: StatusDict = {"phase": self.phase.value, "attempts": self.attempts}
        if self.started_at is not None:
            out["startedAt"] = _ts(self.started_at)
        if self.finished_at is not None:
            out["finishedAt"] = _ts(self.finished_at)
        if self.attempt_started_at is not None and not self.phase.is_terminal:
            out["attemptStartedAt"] = _ts(self.attempt_started_at)
        if self.retry_at is not None and self.phase is StepPhase.WAITING:
            out["retryAt"] = _ts(self.retry_at)
        if self.exit_code is not None:
            out["exitCode"] = self.exit_code
        if self.message:
            out["message"] = self.message
        if self.outputs is not None:
            out["outputs"] = self.outputs
        if self.pod_name:
            out["podName"] = self.pod_name
        if self.finish_order is not None:
            out["finishOrder"] = self.finish_order
        if self.rollback is not None:
            out["rollback"] = self.rollback.to_status()
        if self.final:
            out["finally"] = True
        if self.reused_from is not None:
            out["reusedFrom"] = self.reused_from
        return out

    @classmethod
    def from_status(cls, data: StatusDict) -> StepState:
        rb = data.get("rollback")
        return cls(
            phase=StepPhase(data.get("phase", "Pending")),
            attempts=int(data.get("attempts", 0)),
            started_at=_parse_ts(data.get("startedAt")),
            finished_at=_parse_ts(data.get("finishedAt")),
            attempt_started_at=_parse_ts(data.get("attemptStartedAt")),
            retry_at=_parse_ts(data.get("retryAt")),
            exit_code=data.get("exitCode"),
            message=data.get("message"),
            outputs=data.get("outputs"),
            pod_name=data.get("podName"),
            finish_order=data.get("finishOrder"),
            rollback=RollbackState.from_status(rb) if rb else None,
            final=bool(data.get("finally", False)),
            reused_from=data.get("reusedFrom"),
        )


@dataclass(frozen=True, slots=True)
class MainOutcome:
    """How the main steps ended; the run ends so once its finally steps are done.

    Set when the finally steps start; its presence is what says they did, so
    a restart from a status saved mid-finally goes on with them.
    """

    phase: RunPhase
    event: str
    message: str | None = None
    reason: str | None = None

    def to_status(self) -> StatusDict:
        out: StatusDict = {"phase": self.phase.value}
        if self.message:
            out["message"] = self.message
        if self.reason:
            out["reason"] = self.reason
        return out

    @classmethod
    def from_status(cls, data: StatusDict) -> MainOutcome:
        phase = RunPhase(data["phase"])
        return cls(phase, _END_EVENTS[phase], data.get("message"), data.get("reason"))


#: The event of each run end (what the main steps' end would have emitted).
_END_EVENTS = {
    RunPhase.SUCCEEDED: "RunSucceeded",
    RunPhase.FAILED: "RunFailed",
    RunPhase.ROLLED_BACK: "RolledBack",
    RunPhase.CANCELLED: "RunCancelled",
}


@dataclass(slots=True)
class PinnedWorkflow:
    """The Workflow a run executes, pinned when it started."""

    name: str
    version: int
    spec_hash: str

    def to_status(self) -> StatusDict:
        return {"name": self.name, "version": self.version, "specHash": self.spec_hash}


@dataclass(slots=True)
class RunState:
    """A run's whole state; ``to_status()`` is the WorkflowRun ``status``.

    ``reason`` is the Succeeded condition's reason (the phase, or e.g.
    ``DeadlineExceeded``); ``condition_changed_at`` its lastTransitionTime.
    """

    phase: RunPhase = RunPhase.PENDING
    steps: dict[str, StepState] = field(default_factory=dict)
    started_at: float | None = None
    finished_at: float | None = None
    message: str | None = None
    reason: str | None = None
    condition_changed_at: float | None = None
    observed_generation: int | None = None
    workflow: PinnedWorkflow | None = None
    main_outcome: MainOutcome | None = None  # set once the finally steps started
    finished_count: int = 0  # derived: steps in a terminal phase
    next_finish_order: int = 0  # derived: 1 + the largest finish_order

    @property
    def progress(self) -> str:
        return f"{self.finished_count}/{len(self.steps)}"

    def duration(self, now: float | None = None) -> float | None:
        """Seconds from start to finish (or to ``now`` while running)."""
        if self.started_at is None:
            return None
        end = self.finished_at if self.finished_at is not None else now
        return None if end is None else max(0.0, end - self.started_at)

    def condition(self) -> StatusDict:
        """The ``Succeeded`` condition, as Tekton and ``kubectl wait`` expect."""
        if self.phase is RunPhase.SUCCEEDED:
            status = "True"
        elif self.phase.is_terminal:
            status = "False"
        else:
            status = "Unknown"
        cond: StatusDict = {
            "type": "Succeeded",
            "status": status,
            "reason": self.reason or self.phase.value,
            "message": self.message or "",
        }
        if self.condition_changed_at is not None:
            cond["lastTransitionTime"] = _ts(self.condition_changed_at)
        return cond

    def run_fields(self) -> StatusDict:
        """Everything in the status except ``steps`` (for merge patches)."""
        out: StatusDict = {
            "phase": self.phase.value,
            "conditions": [self.condition()],
            "progress": self.progress,
        }
        if self.started_at is not None:
            out["startedAt"] = _ts(self.started_at)
        if self.finished_at is not None:
            out["finishedAt"] = _ts(self.finished_at)
            out["duration"] = format_duration(self.duration() or 0.0)
        if self.message:
            out["message"] = self.message
        if self.observed_generation is not None:
            out["observedGeneration"] = self.observed_generation
        if self.workflow is not None:
            out["workflow"] = self.workflow.to_status()
        if self.main_outcome is not None:
            out["mainOutcome"] = self.main_outcome.to_status()
        return out

    def to_status(self) -> StatusDict:
        """The full status object (DESIGN.md section 3)."""
        out = self.run_fields()
        out["steps"] = {name: st.to_status() for name, st in self.steps.items()}
        return out

    def status_patch(self, changed_steps: frozenset[str] | set[str]) -> StatusDict:
        """A merge patch for ``status``: run fields plus the changed steps."""
        out = self.run_fields()
        out["steps"] = {name: self.steps[name].to_status() for name in changed_steps}
        return out

    @classmethod
    def from_status(cls, data: StatusDict | None) -> RunState:
        """Rebuild from a saved status; an empty or missing one is a new run."""
        if not data:
            return cls()
        steps = {name: StepState.from_status(s) for name, s in (data.get("steps") or {}).items()}
        cond: StatusDict = next(
            (c for c in data.get("conditions") or [] if c.get("type") == "Succeeded"), {}
        )
        wf = data.get("workflow")
        orders = [s.finish_order for s in steps.values() if s.finish_order is not None]
        return cls(
            phase=RunPhase(data.get("phase", "Pending")),
            steps=steps,
            started_at=_parse_ts(data.get("startedAt")),
            finished_at=_parse_ts(data.get("finishedAt")),
            message=data.get("message"),
            reason=cond.get("reason"),
            condition_changed_at=_parse_ts(cond.get("lastTransitionTime")),
            observed_generation=data.get("observedGeneration"),
            workflow=PinnedWorkflow(wf["name"], int(wf["version"]), wf["specHash"]) if wf else None,
            main_outcome=MainOutcome.from_status(main)
            if (main := data.get("mainOutcome"))
            else None,
            finished_count=sum(1 for s in steps.values() if s.phase.is_terminal),
            next_finish_order=(max(orders) + 1) if orders else 0,
        )
