"""The shape of a run's status, written once: wire enums and the status model.

Everything that names a phase, an Event reason or a status key reads it from
here: the engine (``szal.engine.phases`` re-exports the enums and keeps the
transition tables; ``szal.engine.state.RunState`` serializes to this shape),
the CRD status schema (``szal.spec.crd`` converts :class:`RunStatus`), the
operator's status merge patch (the reconciler's clearable keys), the history
stores (terminal phase sets) and ``szal run --json`` (validated and dumped
through :class:`RunStatus`). It lives in ``spec``, the bottom layer, so all
of them can import it; it imports nothing of the project.

Decisions:

* **Enums are ``StrEnum``**: a member equals its wire string (``StepPhase.
  FAILED == "Failed"``), so stores and JSON see plain strings while code
  compares members. ``is_terminal`` is a property of the phase (a wire fact:
  ``kubectl wait`` and history rely on it); the allowed *changes* between
  phases are engine behaviour and stay in ``szal.engine.phases``, whose
  tables agree with these sets (a phase is terminal exactly when the table
  allows no change from it; tests/engine checks it).
* **The model describes, the engine writes.** ``RunState.to_status`` builds
  dicts directly (it runs on every reconcile pass of a 5,000-step run); the
  model is the schema those dicts follow, checked by a test in both
  directions (tests/engine/test_status_shape.py). Unknown keys are refused
  here; the CRD still preserves them (see ``szal.spec.crd``).
* **Clearable keys.** A field marked :data:`CLEARABLE` may disappear from a
  record once written (a finished step drops ``attemptStartedAt``, a message
  is cleared); the operator's merge patch sends those as null when absent.
  Fields not marked (the pinned workflow, timestamps of the run) are never
  removed by a patch.
* Defaults follow ``RunState.from_status``: a record without ``phase`` is
  Pending, without ``attempts`` has made none.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class StepPhase(StrEnum):
    """Where one step (or its compensation) is in its life."""

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
        return self in TERMINAL_STEP_PHASES

    @property
    def is_failure(self) -> bool:
        """Failed or TimedOut: the step's own command did not succeed."""
        return self in _FAILURES


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
        return self in TERMINAL_RUN_PHASES


class EventReason(StrEnum):
    """Why a phase changed: the Kubernetes Event reason and the history event name."""

    RUN_STARTED = "RunStarted"
    RUN_SUCCEEDED = "RunSucceeded"
    RUN_FAILED = "RunFailed"
    RUN_PAUSED = "RunPaused"
    RUN_RESUMED = "RunResumed"
    RUN_CANCELLED = "RunCancelled"
    ROLLING_BACK = "RollingBack"
    ROLLED_BACK = "RolledBack"
    STEP_STARTED = "StepStarted"
    STEP_SUCCEEDED = "StepSucceeded"
    STEP_FAILED = "StepFailed"
    STEP_TIMED_OUT = "StepTimedOut"
    STEP_SKIPPED = "StepSkipped"
    STEP_CANCELLED = "StepCancelled"
    RETRYING = "Retrying"
    COMPENSATION_STARTED = "CompensationStarted"
    COMPENSATION_SUCCEEDED = "CompensationSucceeded"
    COMPENSATION_FAILED = "CompensationFailed"


TERMINAL_STEP_PHASES: Final = frozenset(
    {
        StepPhase.SUCCEEDED,
        StepPhase.FAILED,
        StepPhase.TIMED_OUT,
        StepPhase.SKIPPED,
        StepPhase.CANCELLED,
    }
)
TERMINAL_RUN_PHASES: Final = frozenset(
    {RunPhase.SUCCEEDED, RunPhase.FAILED, RunPhase.ROLLED_BACK, RunPhase.CANCELLED}
)
_FAILURES: Final = frozenset({StepPhase.FAILED, StepPhase.TIMED_OUT})


class _Clearable:
    """Marker (in ``Annotated``): a writer may remove this key from a written record."""

    def __repr__(self) -> str:
        return "CLEARABLE"


CLEARABLE: Final = _Clearable()

_TS = "(RFC 3339, UTC, milliseconds)."


def _timestamp(what: str) -> Any:
    return Field(default=None, description=f"{what} {_TS}")


class _Status(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class RollbackStatus(_Status):
    """The step's compensation, when the run rolled back."""

    phase: StepPhase = StepPhase.PENDING
    started_at: Annotated[str | None, CLEARABLE] = _timestamp("When the compensation started")
    finished_at: Annotated[str | None, CLEARABLE] = _timestamp("When the compensation finished")
    exit_code: Annotated[int | None, CLEARABLE] = None
    message: Annotated[str | None, CLEARABLE] = None


class StepStatus(_Status):
    """One step's record."""

    phase: StepPhase = StepPhase.PENDING
    attempts: int = Field(default=0, description="Attempts launched so far.")
    started_at: Annotated[str | None, CLEARABLE] = _timestamp("When the first attempt started")
    finished_at: Annotated[str | None, CLEARABLE] = _timestamp("When the step ended")
    attempt_started_at: Annotated[str | None, CLEARABLE] = _timestamp(
        "When the current attempt started"
    )
    retry_at: Annotated[str | None, CLEARABLE] = _timestamp(
        "When a Waiting step starts its next attempt"
    )
    exit_code: Annotated[int | None, CLEARABLE] = None
    message: Annotated[str | None, CLEARABLE] = None
    outputs: Annotated[dict[str, Any] | None, CLEARABLE] = Field(
        default=None, description="The JSON object the step wrote to $SZAL_OUTPUTS."
    )
    pod_name: Annotated[str | None, CLEARABLE] = None
    finish_order: Annotated[int | None, CLEARABLE] = Field(
        default=None, description="Completion order (for rollback)."
    )
    rollback: Annotated[RollbackStatus | None, CLEARABLE] = Field(
        default=None, description="The step's compensation, when the run rolled back."
    )
    finally_: Annotated[bool | None, CLEARABLE] = Field(
        default=None, alias="finally", description="A finally step (spec.finally)."
    )
    reused_from: Annotated[str | None, CLEARABLE] = Field(
        default=None,
        description="The run this Succeeded step was carried over from by a retry"
        " (its attempts, outputs and times are that run's).",
    )


class Condition(_Status):
    """One Tekton-style condition; type Succeeded is True, False or Unknown."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str | None = None
    message: str | None = None
    last_transition_time: str | None = None


class PinnedWorkflowStatus(_Status):
    """The Workflow this run executes, pinned when it started."""

    name: str
    version: int
    spec_hash: str


class MainOutcomeStatus(_Status):
    """How the main steps ended (the run's phase once its finally steps are done)."""

    phase: RunPhase
    message: str | None = None
    reason: str | None = None


class RunStatus(_Status):
    """Observed state of the run, written by the operator only."""

    phase: RunPhase = RunPhase.PENDING
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Tekton-style conditions; type Succeeded is True, False or Unknown.",
    )
    progress: str | None = Field(default=None, description="Finished steps / all steps.")
    started_at: str | None = _timestamp("When the run started")
    finished_at: str | None = _timestamp("When the run ended")
    duration: str | None = Field(default=None, description="Run time, e.g. 1m12.4s.")
    message: Annotated[str | None, CLEARABLE] = None
    observed_generation: int | None = None
    workflow: PinnedWorkflowStatus | None = Field(
        default=None, description="The Workflow this run executes, pinned when it started."
    )
    main_outcome: MainOutcomeStatus | None = Field(
        default=None,
        description="How the main steps ended, set when the finally steps start.",
    )
    steps: dict[str, StepStatus] = Field(
        default_factory=dict, description="Per-step records, by step name."
    )


def wire_keys(model: type[BaseModel]) -> tuple[str, ...]:
    """Every key a record of ``model`` may hold, in declaration order."""
    return tuple(f.alias or name for name, f in model.model_fields.items())


def clearable_keys(model: type[BaseModel]) -> tuple[str, ...]:
    """The keys of ``model`` marked :data:`CLEARABLE`, in declaration order."""
    return tuple(
        f.alias or name for name, f in model.model_fields.items() if CLEARABLE in f.metadata
    )


def status_document(status: dict[str, Any]) -> dict[str, Any]:
    """``status`` checked against :class:`RunStatus` and dumped in its key order.

    Raises ``pydantic.ValidationError`` when ``status`` does not have the
    model's shape. Only the keys present in ``status`` are written.
    """
    model = RunStatus.model_validate(status)
    return model.model_dump(mode="json", by_alias=True, exclude_unset=True)


__all__ = [
    "CLEARABLE",
    "TERMINAL_RUN_PHASES",
    "TERMINAL_STEP_PHASES",
    "Condition",
    "EventReason",
    "PinnedWorkflowStatus",
    "RollbackStatus",
    "RunPhase",
    "RunStatus",
    "StepPhase",
    "StepStatus",
    "clearable_keys",
    "status_document",
    "wire_keys",
]
