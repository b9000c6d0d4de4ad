"""Retry from failed: a new run that keeps what an earlier run already did.

``szal retry RUN`` (cluster) and ``szal run --retry-from RUN`` (local) both
start a new run of the *original's pinned spec* whose state is seeded by
:func:`seed_retry`: every step the original finished Succeeded is carried
over as it was (phase, attempts, exit code, outputs, times, completion
order) and marked ``reusedFrom: <original>``; every other step is Pending
and runs. The planner needs nothing else: a run that starts with finished
steps goes on from them (``Readiness.resume``), exactly as a run restored
from its status does, so a failed step re-runs and what follows it runs.

Decisions (docs/engine.md, "Retry from failed"):

* Only Succeeded steps are reused. A step skipped by its ``when``, or any
  other skipped, failed, timed-out or cancelled step, is decided again.
* A step whose compensation ran (the original rolled back) is not reused:
  its effect was undone.
* A nested step is reused only when its parent is: children run after
  their parent, so a reused child under a re-run parent would be out of
  order.
* Reused steps keep the original's completion order, so a rollback of the
  new run compensates them too, in reverse order, after the steps it ran.
* Only finished runs that did not succeed can be retried (a run still
  going, or one that Succeeded, is refused by the callers with
  :func:`retry_problem`).

Pure: no I/O, no clock; the callers read the original (WorkflowRun status,
or the local history's attempts) and pass its step records in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from szal.engine.compiled import new_run_state
from szal.engine.phases import RunPhase, StepPhase
from szal.engine.state import RunState, StepState
from szal.engine.workflow import ResolvedWorkflow

__all__ = ["retry_problem", "reusable", "seed_retry"]


def retry_problem(name: str, phase: str | None) -> str | None:
    """Why run ``name`` in ``phase`` cannot be retried (None: it can)."""
    try:
        run_phase = RunPhase(phase or "Pending")
    except ValueError:
        return f"run {name!r} has an unknown phase {phase!r}"
    if not run_phase.is_terminal:
        return f"run {name!r} is still {run_phase.value}: retry it once it has ended"
    if run_phase is RunPhase.SUCCEEDED:
        return f"run {name!r} Succeeded: there is nothing to retry"
    return None


def reusable(record: Mapping[str, Any]) -> bool:
    """May a retry carry this step record (``status.steps.<name>``) over?"""
    if record.get("phase") != StepPhase.SUCCEEDED.value:
        return False
    rollback = record.get("rollback")
    return not rollback or rollback.get("phase", "Pending") == StepPhase.PENDING.value


def seed_retry(
    workflow: ResolvedWorkflow, original_steps: Mapping[str, Mapping[str, Any]], original: str
) -> RunState:
    """A new run's state with the reusable steps of run ``original`` carried over.

    ``workflow`` is the original's pinned workflow (resolved with its
    params); ``original_steps`` its ``status.steps`` (steps the workflow
    does not have are ignored).
    """
    state = new_run_state(workflow)
    carried: set[str] = set()
    for step in workflow.steps:  # definition order: parents before children
        if step.final:
            continue  # finally steps run again in every run, a retry included
        record = original_steps.get(step.name)
        if record is None or not reusable(record):
            continue
        if step.parent is not None and step.parent not in carried:
            continue
        old = StepState.from_status(dict(record))
        state.steps[step.name] = StepState(
            phase=StepPhase.SUCCEEDED,
            attempts=old.attempts,
            started_at=old.started_at,
            finished_at=old.finished_at,
            exit_code=old.exit_code,
            outputs=old.outputs,
            finish_order=old.finish_order,
            reused_from=old.reused_from or original,
        )
        carried.add(step.name)
    return state
