"""Planner and time: retries with backoff, per-attempt timeouts, the run deadline.

Covers: attempts = limit + 1, the Waiting phase with retry_at and the
delay formulas as the planner applies them, delay 0 retrying in the same
plan call, TimedOut attempts retried like failures, Stop(timeout) with a
message naming the limit, wake_at (retry times, attempt timeouts, the run
deadline; None when nothing is timed), and the deadline cancelling
everything with reason DeadlineExceeded. Deliberately not: the formulas in
isolation (test_resolve_and_migrations) or randomized runs (properties).
"""

from __future__ import annotations

from typing import Any

from tests.engine.simulator import T0, Outcome, Simulator, by_step, resolve

from szal.engine import (
    AttemptRef,
    Observation,
    RunPhase,
    StepPhase,
    Stop,
    compile_workflow,
    new_run_state,
)

FAIL = Outcome("Failed")
HANG = Outcome("Hang")


def step(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "command": ["true"], **fields}


def test_retries_until_success_with_exponential_backoff() -> None:
    spec = {"steps": [step("a", retries={"limit": 3, "backoff": "Exponential", "delay": "2s"})]}
    sim = Simulator(resolve(spec), by_step({"a": [FAIL, FAIL, FAIL, Outcome()]}))
    state = sim.run()
    assert state.phase is RunPhase.SUCCEEDED
    assert state.steps["a"].attempts == 4
    starts = [at - T0 for at, _ in sim.launches]
    # each attempt takes 1s; delays 2, 4, 8
    assert starts == [0, 3, 8, 17]
    assert sim.events("a").count("Retrying") == 3


def test_attempts_never_exceed_limit_plus_one() -> None:
    spec = {"steps": [step("a", retries={"limit": 2, "delay": "1s"}), step("b")]}
    sim = Simulator(resolve(spec), by_step({"a": FAIL}))
    state = sim.run()
    assert state.steps["a"].attempts == 3
    assert state.steps["a"].phase is StepPhase.FAILED
    assert [r.attempt for r in sim.launched] == [1, 2, 3]


def test_waiting_step_has_retry_at_and_wake_at() -> None:
    spec = {"steps": [step("a", retries={"limit": 1, "backoff": "Linear", "delay": "5s"})]}
    wf = resolve(spec)
    state = new_run_state(wf)
    session = compile_workflow(wf).attach(state)
    session.plan([], T0)
    failed = Observation(AttemptRef("a", 1), "Failed", T0 + 1, exit_code=3)
    plan = session.plan([failed], T0 + 1)
    rec = state.steps["a"]
    assert rec.phase is StepPhase.WAITING
    assert rec.retry_at == T0 + 6
    assert plan.wake_at == T0 + 6
    assert "retrying in 5s" in (rec.message or "")
    assert [(t.event, t.exit_code, t.attempt) for t in plan.transitions] == [("Retrying", 3, 1)]
    assert session.plan([], T0 + 5).actions == ()
    plan = session.plan([], T0 + 6)
    (launch,) = plan.actions
    assert launch.ref == AttemptRef("a", 2)
    assert [t.event for t in plan.transitions] == ["StepStarted"]
    assert plan.wake_at is None


def test_delay_zero_retries_in_the_same_plan_call() -> None:
    spec = {"steps": [step("a", retries={"limit": 1, "delay": "0s"})]}
    wf = resolve(spec)
    state = new_run_state(wf)
    session = compile_workflow(wf).attach(state)
    session.plan([], T0)
    plan = session.plan([Observation(AttemptRef("a", 1), "Failed", T0 + 1)], T0 + 1)
    assert [t.event for t in plan.transitions] == ["Retrying", "StepStarted"]
    assert [a.ref for a in plan.actions] == [AttemptRef("a", 2)]


def test_attempt_timeout_stops_and_names_the_limit() -> None:
    sim = Simulator(resolve({"steps": [step("a", timeout="10s"), step("b")]}), by_step({"a": HANG}))
    state = sim.run()
    assert state.phase is RunPhase.FAILED
    rec = state.steps["a"]
    assert rec.phase is StepPhase.TIMED_OUT
    assert "10s" in (rec.message or "") and "timed out" in (rec.message or "")
    assert rec.finished_at == T0 + 10
    assert [(at - T0, s.ref, s.reason) for at, s in sim.stops] == [
        (10, AttemptRef("a", 1), "timeout")
    ]
    assert sim.events("a")[-1] == "StepTimedOut"
    assert state.steps["b"].message == "prior step failed"
    assert state.message == "step 'a' timed out"


def test_timed_out_attempt_is_retried() -> None:
    spec = {"steps": [step("a", timeout="10s", retries={"limit": 1, "delay": "1s"})]}
    sim = Simulator(resolve(spec), by_step({"a": [HANG, Outcome()]}))
    state = sim.run()
    assert state.phase is RunPhase.SUCCEEDED
    assert state.steps["a"].attempts == 2
    assert [at - T0 for at, _ in sim.launches] == [0, 11]


def test_wake_at_is_the_attempt_timeout_and_the_killed_attempt_is_ignored() -> None:
    wf = resolve({"timeout": "1h", "steps": [step("a", timeout="30s")]})
    state = new_run_state(wf)
    session = compile_workflow(wf).attach(state)
    plan = session.plan([], T0)
    assert plan.wake_at == T0 + 30
    plan = session.plan([], T0 + 30)
    assert [type(a) for a in plan.actions] == [Stop]
    killed = Observation(AttemptRef("a", 1), "Failed", T0 + 31, exit_code=137)
    plan = session.plan([killed], T0 + 31)
    assert plan.transitions == () and plan.changed_steps == frozenset()
    assert state.steps["a"].phase is StepPhase.TIMED_OUT


def test_nothing_timed_means_no_wake_at() -> None:
    wf = resolve({"steps": [step("a")]})
    assert compile_workflow(wf).attach(new_run_state(wf)).plan([], T0).wake_at is None


def test_run_deadline_cancels_everything_and_fails_the_run() -> None:
    spec = {
        "mode": "Dag",
        "timeout": "1m",
        "rollbackOnFailure": True,
        "steps": [
            step("done", rollback={"command": ["undo"]}),
            step("long", dependsOn=["done"]),
            step("waiting", dependsOn=["long"]),
        ],
    }
    sim = Simulator(resolve(spec), by_step({"long": HANG}))
    state = sim.run()
    assert state.phase is RunPhase.FAILED
    assert state.reason == "DeadlineExceeded"
    assert state.condition()["reason"] == "DeadlineExceeded"
    assert "1m" in (state.message or "")
    assert {n: r.phase.value for n, r in state.steps.items()} == {
        "done": "Succeeded",
        "long": "Cancelled",
        "waiting": "Cancelled",
    }
    assert [(at - T0, s.ref.step, s.reason) for at, s in sim.stops] == [(60, "long", "deadline")]
    assert state.finished_at == T0 + 60
    assert not any(r.rollback for r in sim.launched)  # the deadline does not roll back


def test_deadline_while_paused() -> None:
    wf = resolve({"timeout": "10s", "steps": [step("a")]})
    state = new_run_state(wf)
    session = compile_workflow(wf).attach(state)
    session.plan([], T0, suspend=True)
    assert state.phase is RunPhase.PAUSED
    plan = session.plan([], T0 + 10, suspend=True)
    assert state.phase is RunPhase.FAILED and state.reason == "DeadlineExceeded"
    assert [t.event for t in plan.transitions if t.step is None] == ["RunResumed", "RunFailed"]
