"""The pure mapping from engine transitions to history rows (recording.py).

Covers: attempt rows built from transitions (start and finish times, exit
codes, outputs on the attempt that produced them), retried attempts keeping
their own outcome (Failed or TimedOut), a step cancelled while waiting not
rewriting its last attempt, never-run steps leaving events but no attempt
rows, compensation rows, and one event per transition in order; rows rebuilt from a finished
run's status alone (record_status: last attempts, compensations, no
cancelled steps). Storage is covered by the store contract tests.
"""

from __future__ import annotations

from szal.engine.actions import Transition
from szal.engine.phases import EventReason, RunPhase, StepPhase
from szal.engine.state import RollbackState, RunState, StepState
from szal.history.recording import (
    RunIdentity,
    attempt_records,
    event_records,
    record_plan,
    record_status,
)

ID = RunIdentity(uid="u", name="r", namespace="default", created_at=0.0, params={"p": 1})


S = StepPhase
E = EventReason


def step(
    name: str, old: StepPhase | None, new: StepPhase, at: float, attempt: int, **kw: object
) -> Transition:
    event = kw.pop("event", E.STEP_STARTED)
    return Transition(name, old, new, at, event, attempt=attempt, **kw)  # type: ignore[arg-type]


def test_retry_attempts_keep_their_outcomes() -> None:
    state = RunState(
        steps={"a": StepState(phase=StepPhase.SUCCEEDED, attempts=3, outputs={"o": 1})}
    )
    rows = attempt_records(
        ID,
        state,
        [
            step("a", S.PENDING, S.RUNNING, 1.0, 1),
            step("a", S.RUNNING, S.WAITING, 2.0, 1, exit_code=1, outcome=S.FAILED),
            step("a", S.WAITING, S.RUNNING, 3.0, 2),
            step("a", S.RUNNING, S.WAITING, 4.0, 2, outcome=S.TIMED_OUT),
            step("a", S.WAITING, S.RUNNING, 5.0, 3),
            step("a", S.RUNNING, S.SUCCEEDED, 6.0, 3, exit_code=0, outcome=S.SUCCEEDED),
        ],
    )
    got = [(r.attempt, r.phase, r.started_at, r.finished_at, r.exit_code, r.outputs) for r in rows]
    assert got == [
        (1, "Failed", 1.0, 2.0, 1, None),
        (2, "TimedOut", 3.0, 4.0, None, None),
        (3, "Succeeded", 5.0, 6.0, 0, {"o": 1}),
    ]


def test_the_outcome_field_decides_never_the_message() -> None:
    """A retried attempt's row is what ``outcome`` says, whatever its message reads."""
    state = RunState(steps={"a": StepState(phase=StepPhase.WAITING, attempts=2)})
    rows = attempt_records(
        ID,
        state,
        [
            step("a", S.PENDING, S.RUNNING, 1.0, 1),
            step(
                "a",
                S.RUNNING,
                S.WAITING,
                2.0,
                1,
                exit_code=28,
                message="attempt 1 curl: (28) Connection timed out; retrying in 1s",
                outcome=S.FAILED,
            ),
            step("a", S.WAITING, S.RUNNING, 3.0, 2),
            step(
                "a", S.RUNNING, S.WAITING, 4.0, 2, message="attempt 2 failed", outcome=S.TIMED_OUT
            ),
        ],
    )
    assert [(r.attempt, r.phase) for r in rows] == [(1, "Failed"), (2, "TimedOut")]


def test_cancel_while_waiting_and_never_run_steps() -> None:
    state = RunState(steps={"a": StepState(), "b": StepState()})
    transitions = [
        step("a", S.WAITING, S.CANCELLED, 1.0, 2),
        step("b", S.PENDING, S.SKIPPED, 1.0, 0, message="dependency failed"),
    ]
    assert attempt_records(ID, state, transitions) == []
    events = event_records(ID, transitions)
    assert [(e.step, e.new, e.message) for e in events] == [
        ("a", "Cancelled", ""),
        ("b", "Skipped", "dependency failed"),
    ]


def test_compensation_rows_and_run_record() -> None:
    state = RunState(steps={"a": StepState(phase=StepPhase.SUCCEEDED, attempts=1)})
    run, rows, events = record_plan(
        ID,
        state,
        [
            Transition(None, RunPhase.RUNNING, RunPhase.ROLLING_BACK, 1.0, E.ROLLING_BACK),
            Transition("a", S.PENDING, S.RUNNING, 1.0, E.COMPENSATION_STARTED, "", 1, True),
            Transition(
                "a",
                S.RUNNING,
                S.SUCCEEDED,
                2.0,
                E.COMPENSATION_SUCCEEDED,
                "",
                1,
                True,
                0,
                S.SUCCEEDED,
            ),
        ],
    )
    assert [
        (r.step, r.attempt, r.rollback, r.phase, r.started_at, r.finished_at) for r in rows
    ] == [("a", 1, True, "Succeeded", 1.0, 2.0)]
    assert run.uid == "u" and run.params == {"p": 1} and run.progress == "0/1"
    assert [e.event for e in events] == [
        "RollingBack",
        "CompensationStarted",
        "CompensationSucceeded",
    ]


def test_record_status_rebuilds_last_attempts_from_a_finished_status() -> None:
    state = RunState(
        phase=RunPhase.FAILED,
        started_at=1.0,
        finished_at=9.0,
        steps={
            "once": StepState(
                phase=StepPhase.SUCCEEDED,
                attempts=1,
                started_at=1.0,
                finished_at=2.0,
                exit_code=0,
                outputs={"k": "v"},
                rollback=RollbackState(StepPhase.SUCCEEDED, 7.0, 8.0, 0),
            ),
            "retried": StepState(
                phase=StepPhase.FAILED, attempts=3, started_at=2.0, finished_at=6.0, exit_code=2
            ),
            "cancelled": StepState(phase=StepPhase.CANCELLED, attempts=1, started_at=2.0),
            "skipped": StepState(phase=StepPhase.SKIPPED),
        },
    )
    run, rows = record_status(ID, state)
    assert run.phase == "Failed" and run.finished_at == 9.0 and run.params == {"p": 1}
    got = {(r.step, r.attempt, r.rollback): r for r in rows}
    assert set(got) == {("once", 1, False), ("once", 1, True), ("retried", 3, False)}
    assert got[("once", 1, False)].outputs == {"k": "v"}
    assert got[("once", 1, False)].started_at == 1.0
    # The status keeps the step's first start only: a later attempt's start is unknown.
    assert got[("retried", 3, False)].started_at is None
    assert got[("retried", 3, False)].exit_code == 2
    assert got[("once", 1, True)].finished_at == 8.0
