"""A recorded run's step records, for ``szal run --retry-from`` (local history).

The local history keeps attempts, not the run's final status, so the step
records :func:`szal.engine.retrying.seed_retry` takes are rebuilt from them
here (:func:`step_records`): per step, the latest attempt's phase, exit
code and outputs, the first attempt's start, the attempt count, a
completion order from the finish times, and ``rollback`` when a
compensation attempt was recorded (so a compensated step is not reused).
A step that never launched an attempt (a parent with nothing to run) has
no record and runs again (at no cost).

:func:`reused_attempts` is the other direction: the retry records its
reused steps' attempts as its own rows (message ``reused from <run>``), so
``szal show`` lists their outputs and a retry of the retry finds them.
"""

from __future__ import annotations

from typing import Any

from szal.engine.state import RunState, StatusDict
from szal.engine.timestamps import format_timestamp
from szal.history.store import AttemptRecord, RunDetail

__all__ = ["reused_attempts", "step_records"]


def step_records(detail: RunDetail) -> dict[str, StatusDict]:
    """``status.steps`` of a recorded run, as far as its attempts tell."""
    latest: dict[str, AttemptRecord] = {}
    first_start: dict[str, float] = {}
    compensated: set[str] = set()
    for attempt in detail.attempts:
        if attempt.rollback:
            compensated.add(attempt.step)
            continue
        if attempt.started_at is not None:
            first_start[attempt.step] = min(
                first_start.get(attempt.step, attempt.started_at), attempt.started_at
            )
        before = latest.get(attempt.step)
        if before is None or attempt.attempt >= before.attempt:
            latest[attempt.step] = attempt
    finished = sorted(
        (a.finished_at, name) for name, a in latest.items() if a.finished_at is not None
    )
    order = {name: i for i, (_, name) in enumerate(finished)}
    records: dict[str, StatusDict] = {}
    for name, attempt in latest.items():
        record: dict[str, Any] = {"phase": attempt.phase, "attempts": attempt.attempt}
        if name in first_start:
            record["startedAt"] = format_timestamp(first_start[name])
        if attempt.finished_at is not None:
            record["finishedAt"] = format_timestamp(attempt.finished_at)
        if attempt.exit_code is not None:
            record["exitCode"] = attempt.exit_code
        if attempt.outputs is not None:
            record["outputs"] = attempt.outputs
        if name in order:
            record["finishOrder"] = order[name]
        if name in compensated:
            record["rollback"] = {"phase": "Succeeded"}
        records[name] = record
    return records


def reused_attempts(run_uid: str, state: RunState) -> list[AttemptRecord]:
    """The new run's rows for the steps a retry carried over (one per step)."""
    return [
        AttemptRecord(
            run_uid=run_uid,
            step=name,
            attempt=max(1, record.attempts),
            rollback=False,
            phase=record.phase.value,
            started_at=record.started_at,
            finished_at=record.finished_at,
            exit_code=record.exit_code,
            message=f"reused from {record.reused_from}",
            outputs=record.outputs,
        )
        for name, record in state.steps.items()
        if record.reused_from is not None
    ]
