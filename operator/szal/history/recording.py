"""From the engine's state and transitions to history rows: one pure mapping.

Both writers of history call this: the local runner after every plan, and
the operator's Postgres mirror after every reconcile. Sharing the mapping
means a local run and a cluster run of the same workflow leave identical
rows, and the two stores are tested against one contract.

:func:`record_plan` takes the run's identity, its :class:`RunState` (after
the plan) and the plan's transitions and returns a :class:`RunRecord`, the
:class:`AttemptRecord` rows the transitions touched and one
:class:`EventRecord` per transition. It reads no clock and does no I/O.

Decisions:

- Attempt rows are built from the transitions themselves (the transition's
  ``at`` is the attempt's start or finish time), not only from the state: a
  step may start attempt 2 in the same plan that ended attempt 1, and the
  state then only remembers attempt 2. Fields an attempt row does not know
  yet are None, and stores keep what they had (upserts never forget).
- An attempt row's phase is the transition's ``outcome`` when it ends the
  attempt, else the step's new phase. A retried attempt ends with the step
  going to ``Waiting``: its row is ``TimedOut`` or ``Failed`` as the
  outcome says, never guessed from the message (a command printing
  ``Connection timed out`` failed, it did not time out).
- A step cancelled while Waiting keeps its last attempt's outcome (the
  attempt had already ended); the cancel is in the event log.
- A transition for a step that never ran (``attempt == 0``: Skipped,
  Cancelled before starting) produces an event but no attempt row.
- :func:`record_status` rebuilds what it can from a finished run's status
  alone, for the operator re-archiving a run whose transitions died with a
  previous operator process: the run row and each step's *last* attempt
  (and its compensation). Earlier attempts and the event log are not in the
  status and are not invented. Cancelled steps are left out: their last
  attempt may have ended Failed before the cancel, and an upsert would
  overwrite that outcome.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from szal.engine.actions import Transition
from szal.engine.phases import StepPhase
from szal.engine.state import RunState
from szal.engine.workflow import ResolvedWorkflow
from szal.history.store import AttemptRecord, EventRecord, RunRecord, WorkflowRecord


@dataclass(frozen=True, slots=True)
class RunIdentity:
    """What names a run in history; fixed for the run's life."""

    uid: str
    name: str
    namespace: str
    created_at: float
    params: Mapping[str, Any] = field(default_factory=dict)
    definition: Mapping[str, Any] = field(default_factory=dict)
    """The workflow spec as the user wrote it (wire names), stored once per hash."""


def run_record(
    identity: RunIdentity,
    state: RunState,
    workflow: ResolvedWorkflow | None = None,
) -> RunRecord:
    """The run row for ``state``."""
    pinned = state.workflow
    name = pinned.name if pinned else (workflow.name if workflow else "")
    version = pinned.version if pinned else (workflow.version if workflow else 1)
    spec_hash = pinned.spec_hash if pinned else (workflow.spec_hash if workflow else "")
    return RunRecord(
        uid=identity.uid,
        name=identity.name,
        namespace=identity.namespace,
        workflow=name,
        workflow_version=version,
        spec_hash=spec_hash,
        params=dict(identity.params),
        phase=state.phase.value,
        created_at=identity.created_at,
        started_at=state.started_at,
        finished_at=state.finished_at,
        message=state.message,
        progress=state.progress,
    )


def record_start(
    workflow: ResolvedWorkflow, identity: RunIdentity, state: RunState
) -> tuple[WorkflowRecord, RunRecord]:
    """The definition row and the first run row, written before anything runs."""
    definition = WorkflowRecord(
        namespace=identity.namespace,
        name=workflow.name,
        version=workflow.version,
        spec_hash=workflow.spec_hash,
        spec=dict(identity.definition),
    )
    return definition, run_record(identity, state, workflow)


def _attempt_phase(transition: Transition) -> StepPhase:
    phase = transition.outcome if transition.outcome is not None else transition.new
    assert isinstance(phase, StepPhase), "a step transition carries step phases"
    return phase


def attempt_records(
    identity: RunIdentity, state: RunState, transitions: Iterable[Transition]
) -> list[AttemptRecord]:
    """One row per (step, attempt, rollback) the transitions touched, last word wins."""
    rows: dict[tuple[str, int, bool], AttemptRecord] = {}
    for t in transitions:
        if t.step is None or t.attempt <= 0:
            continue
        if t.old is StepPhase.WAITING and t.new is not StepPhase.RUNNING:
            continue  # cancelled while waiting to retry: the last attempt already ended
        phase = _attempt_phase(t)
        key = (t.step, t.attempt, t.rollback)
        before = rows.get(key)
        started = t.at if phase is StepPhase.RUNNING else None
        ended = phase.is_terminal
        outputs: dict[str, Any] | None = None
        step_state = state.steps.get(t.step)
        if (
            ended
            and not t.rollback
            and step_state is not None
            and step_state.attempts == t.attempt
            and step_state.outputs is not None
        ):
            outputs = dict(step_state.outputs)
        rows[key] = AttemptRecord(
            run_uid=identity.uid,
            step=t.step,
            attempt=t.attempt,
            rollback=t.rollback,
            phase=phase.value,
            started_at=started if started is not None else (before.started_at if before else None),
            finished_at=t.at if ended else None,
            exit_code=t.exit_code,
            message=t.message or None,
            outputs=outputs,
        )
    return list(rows.values())


def event_records(identity: RunIdentity, transitions: Iterable[Transition]) -> list[EventRecord]:
    """One event per transition, in order."""
    return [
        EventRecord(
            run_uid=identity.uid,
            step=t.step,
            attempt=t.attempt,
            rollback=t.rollback,
            old=None if t.old is None else t.old.value,
            new=t.new.value,
            event=t.event.value,
            at=t.at,
            message=t.message,
        )
        for t in transitions
    ]


def record_plan(
    identity: RunIdentity, state: RunState, transitions: Iterable[Transition]
) -> tuple[RunRecord, list[AttemptRecord], list[EventRecord]]:
    """Everything one plan changes in history (see the module docstring)."""
    transitions = list(transitions)
    return (
        run_record(identity, state),
        attempt_records(identity, state, transitions),
        event_records(identity, transitions),
    )


def record_status(identity: RunIdentity, state: RunState) -> tuple[RunRecord, list[AttemptRecord]]:
    """The run row and each step's last attempt, from a (finished) run's state alone."""
    rows: list[AttemptRecord] = []
    for name, step in state.steps.items():
        if step.attempts > 0 and step.phase.is_terminal and step.phase is not StepPhase.CANCELLED:
            rows.append(
                AttemptRecord(
                    run_uid=identity.uid,
                    step=name,
                    attempt=step.attempts,
                    rollback=False,
                    phase=step.phase.value,
                    # The status keeps the step's first start, not the last attempt's.
                    started_at=step.started_at if step.attempts == 1 else None,
                    finished_at=step.finished_at,
                    exit_code=step.exit_code,
                    message=step.message or None,
                    outputs=dict(step.outputs) if step.outputs is not None else None,
                )
            )
        rb = step.rollback
        if rb is not None and rb.phase.is_terminal and rb.phase is not StepPhase.CANCELLED:
            rows.append(
                AttemptRecord(
                    run_uid=identity.uid,
                    step=name,
                    attempt=1,
                    rollback=True,
                    phase=rb.phase.value,
                    started_at=rb.started_at,
                    finished_at=rb.finished_at,
                    exit_code=rb.exit_code,
                    message=rb.message or None,
                )
            )
    return run_record(identity, state), rows
