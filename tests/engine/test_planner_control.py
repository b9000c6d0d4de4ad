"""Planner: suspend/resume, cancel, rollback, observations, restarts, status, env.

Covers: suspend launching nothing new (Paused) and resume; cancel stopping
running attempts, cancelling everything else, no rollback; rollback of
Succeeded steps one at a time in reverse completion order, a failing
compensation not stopping the others, RolledBack vs Failed naming it, no
compensations -> plain Failed, Running -> RollingBack directly; observations
being idempotent, stale ones ignored, launched-but-unsaved attempts adopted
rather than launched again; re-planning from a saved status; the status
round trip and transition tables; step_environment. Deliberately not:
mode ordering and timers (other modules).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.engine.simulator import T0, Outcome, Simulator, by_step, resolve

from szal.engine import (
    AttemptRef,
    InvalidTransition,
    Launch,
    Observation,
    RunPhase,
    RunState,
    StepPhase,
    Stop,
    compile_workflow,
    new_run_state,
    run_transition,
    step_environment,
    step_transition,
)

FAIL = Outcome("Failed")
HANG = Outcome("Hang")


def step(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "command": ["true"], **fields}


def comp(name: str, **fields: Any) -> dict[str, Any]:
    return step(name, rollback={"command": ["undo", name]}, **fields)


# -- suspend / resume ---------------------------------------------------------------


def test_suspend_launches_nothing_new_and_resume_continues() -> None:
    wf = resolve({"steps": [step("a"), step("b")]})
    state = new_run_state(wf)
    session = compile_workflow(wf).attach(state)
    session.plan([], T0)
    plan = session.plan([], T0 + 0.5, suspend=True)
    assert state.phase is RunPhase.PAUSED
    assert [t.event for t in plan.transitions] == ["RunPaused"]
    done = Observation(AttemptRef("a", 1), "Succeeded", T0 + 1, exit_code=0)
    plan = session.plan([done], T0 + 1, suspend=True)
    assert plan.actions == ()  # the running step finished; b waits
    assert state.steps["a"].phase is StepPhase.SUCCEEDED
    assert state.steps["b"].phase is StepPhase.PENDING
    plan = session.plan([], T0 + 2)
    assert [t.event for t in plan.transitions] == ["RunResumed", "StepStarted"]
    assert [a.ref for a in plan.actions] == [AttemptRef("b", 1)]


def test_paused_run_with_everything_done_finishes_on_resume() -> None:
    wf = resolve({"steps": [step("a")]})
    state = new_run_state(wf)
    session = compile_workflow(wf).attach(state)
    session.plan([], T0)
    done = Observation(AttemptRef("a", 1), "Succeeded", T0 + 1, exit_code=0)
    session.plan([done], T0 + 1, suspend=True)
    assert state.phase is RunPhase.PAUSED
    session.plan([], T0 + 2)
    assert state.phase is RunPhase.SUCCEEDED


# -- cancel ---------------------------------------------------------------------------


def test_cancel_stops_running_cancels_rest_and_does_not_roll_back() -> None:
    spec = {
        "mode": "Dag",
        "rollbackOnFailure": True,
        "steps": [comp("a"), step("b", dependsOn=["a"]), step("c", dependsOn=["b"])],
    }
    wf = resolve(spec)
    state = new_run_state(wf)
    session = compile_workflow(wf).attach(state)
    session.plan([], T0)
    session.plan([Observation(AttemptRef("a", 1), "Succeeded", T0 + 1)], T0 + 1)
    plan = session.plan([], T0 + 2, cancel=True)
    assert plan.actions == (Stop(AttemptRef("b", 1), "cancel"),)
    assert state.phase is RunPhase.CANCELLED
    assert {n: r.phase.value for n, r in state.steps.items()} == {
        "a": "Succeeded",
        "b": "Cancelled",
        "c": "Cancelled",
    }
    assert state.steps["c"].attempts == 0
    assert state.finished_at == T0 + 2
    assert plan.wake_at is None
    assert session.plan([], T0 + 3, cancel=True).transitions == ()


def test_cancel_before_start() -> None:
    wf = resolve({"steps": [step("a")]})
    state = new_run_state(wf)
    plan = compile_workflow(wf).attach(state).plan([], T0, cancel=True)
    assert plan.actions == ()
    assert state.phase is RunPhase.CANCELLED
    assert state.steps["a"].phase is StepPhase.CANCELLED


# -- rollback -------------------------------------------------------------------------


def rollback_spec(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"mode": "Dag", "rollbackOnFailure": True, "steps": list(steps)}


def test_rollback_in_reverse_completion_order_one_at_a_time() -> None:
    spec = rollback_spec(
        comp("a"),
        comp("b", dependsOn=["a"]),
        comp("slow"),
        step("plain", dependsOn=["a"]),
        step("bad", dependsOn=["b"]),
    )
    script = by_step({"bad": FAIL, "slow": Outcome(duration=10)})
    sim = Simulator(resolve(spec), script)
    seen_running: list[int] = []

    def watch(s: Simulator, _: object) -> None:
        seen_running.append(
            sum(
                1
                for r in s.state.steps.values()
                if r.rollback and r.rollback.phase.value == "Running"
            )
        )

    state = sim.run(on_plan=watch)
    assert state.phase is RunPhase.ROLLED_BACK
    order = [ref.step for ref in sim.launched if ref.rollback]
    assert order == ["slow", "b", "a"]  # completion order was a, b, slow
    assert max(seen_running) == 1
    compensations = [a for _, a in sim.launches if a.ref.rollback]
    assert all(a.ref.attempt == 1 for a in compensations)
    assert compensations[0].command.argv() == ["undo", "slow"]
    assert "'bad' failed" in (state.message or "")
    run_events = [t.event for t in sim.transitions if t.step is None]
    assert run_events == ["RunStarted", "RollingBack", "RolledBack"]
    rb = state.steps["a"].rollback
    assert rb is not None and rb.phase is StepPhase.SUCCEEDED and rb.finished_at is not None
    assert state.steps["plain"].rollback is None


def test_failing_compensation_does_not_stop_others_and_is_named() -> None:
    spec = rollback_spec(comp("a"), comp("b", dependsOn=["a"]), step("bad", dependsOn=["b"]))
    sim = Simulator(resolve(spec), by_step({"bad": FAIL}))
    sim.rollback_script = by_step({"b": FAIL})
    state = sim.run()
    assert state.phase is RunPhase.FAILED
    assert [r.step for r in sim.launched if r.rollback] == ["b", "a"]
    assert "compensation of step 'b' failed" in (state.message or "")
    events = [t.event for t in sim.transitions if t.rollback]
    assert events == [
        "CompensationStarted",
        "CompensationFailed",
        "CompensationStarted",
        "CompensationSucceeded",
    ]


def test_no_compensation_means_plain_failed() -> None:
    spec = rollback_spec(step("a"), step("bad", dependsOn=["a"]))
    sim = Simulator(resolve(spec), by_step({"bad": FAIL}))
    assert sim.run().phase is RunPhase.FAILED
    assert [t.event for t in sim.transitions if t.step is None] == ["RunStarted", "RunFailed"]


def test_rollback_waits_for_running_steps() -> None:
    spec = rollback_spec(comp("bad"), comp("long"))
    sim = Simulator(resolve(spec), by_step({"bad": FAIL, "long": Outcome(duration=20)}))
    state = sim.run()
    assert state.phase is RunPhase.ROLLED_BACK
    first_comp = next(at for at, a in sim.launches if a.ref.rollback)
    assert first_comp == T0 + 20


def test_compensation_timeout() -> None:
    spec = rollback_spec(
        step("a", rollback={"command": ["undo"], "timeout": "5s"}),
        step("bad", dependsOn=["a"]),
    )
    sim = Simulator(resolve(spec), by_step({"bad": FAIL}))
    sim.rollback_script = by_step({"a": HANG})
    state = sim.run()
    assert state.phase is RunPhase.FAILED
    rb = state.steps["a"].rollback
    assert rb is not None and rb.phase is StepPhase.TIMED_OUT and "5s" in (rb.message or "")
    assert any(s.ref == AttemptRef("a", 1, True) for _, s in sim.stops)


# -- observations ----------------------------------------------------------------------


def test_observations_are_idempotent_and_stale_ones_ignored() -> None:
    wf = resolve({"steps": [step("a", retries={"limit": 1, "delay": "1s"}), step("b")]})
    state = new_run_state(wf)
    session = compile_workflow(wf).attach(state)
    session.plan([], T0)
    failed = Observation(AttemptRef("a", 1), "Failed", T0 + 1, exit_code=1)
    session.plan([failed], T0 + 1)
    again = session.plan([failed], T0 + 1.5)
    assert again.transitions == () and again.actions == ()
    session.plan([], T0 + 2)
    assert state.steps["a"].attempts == 2
    stale = session.plan([failed, Observation(AttemptRef("a", 7), "Succeeded", T0)], T0 + 2)
    assert stale.transitions == ()
    ok = Observation(AttemptRef("a", 2), "Succeeded", T0 + 3, exit_code=0)
    session.plan([ok], T0 + 3)
    assert session.plan([ok], T0 + 3).transitions == ()
    assert session.plan([Observation(AttemptRef("ghost", 1), "Failed", T0)], T0 + 3).actions == ()


def test_pending_observation_message_is_recorded() -> None:
    wf = resolve({"steps": [step("a")]})
    state = new_run_state(wf)
    session = compile_workflow(wf).attach(state)
    session.plan([], T0)
    why = Observation(AttemptRef("a", 1), "Pending", T0 + 1, message="Unschedulable: 0/3 nodes")
    plan = session.plan([why], T0 + 1)
    assert plan.changed_steps == frozenset({"a"})
    assert state.steps["a"].message == "Unschedulable: 0/3 nodes"
    session.plan([Observation(AttemptRef("a", 1), "Running", T0 + 2)], T0 + 2)
    assert state.steps["a"].message is None


def test_unsaved_launch_is_adopted_not_launched_again() -> None:
    wf = resolve({"steps": [step("a"), step("b")]})
    state = new_run_state(wf)
    session = compile_workflow(wf).attach(state)
    saved = state.to_status()  # the runner crashes before saving the next status
    session.plan([], T0)
    restored = RunState.from_status(saved)
    running = Observation(AttemptRef("a", 1), "Running", T0 + 0.1)
    plan = compile_workflow(wf).attach(restored).plan([running], T0 + 1)
    assert plan.actions == ()
    assert restored.steps["a"].phase is StepPhase.RUNNING and restored.steps["a"].attempts == 1


def test_unsaved_retry_is_adopted() -> None:
    wf = resolve({"steps": [step("a", retries={"limit": 2, "delay": "0s"})]})
    state = new_run_state(wf)
    session = compile_workflow(wf).attach(state)
    session.plan([], T0)
    saved = state.to_status()
    session.plan([Observation(AttemptRef("a", 1), "Failed", T0 + 1)], T0 + 1)
    # attempt 2 was launched; restart from the status saved before that
    restored = RunState.from_status(saved)
    observations = [
        Observation(AttemptRef("a", 2), "Running", T0 + 1),
        Observation(AttemptRef("a", 1), "Failed", T0 + 1),
    ]
    plan = compile_workflow(wf).attach(restored).plan(observations, T0 + 2)
    assert plan.actions == ()
    assert restored.steps["a"].attempts == 2 and restored.steps["a"].phase is StepPhase.RUNNING


@pytest.mark.parametrize("point", range(1, 12))
def test_restart_from_saved_status_at_any_point(point: int) -> None:
    spec = rollback_spec(
        comp("a", retries={"limit": 1, "delay": "2s"}),
        comp("b", dependsOn=["a"], timeout="5s"),
        step("c", dependsOn=["a"]),
        step("d", dependsOn=["b", "c"]),
    )
    script = by_step({"a": [FAIL, Outcome()], "b": Outcome(duration=3), "d": FAIL})
    reference = Simulator(resolve(spec), script, rollback_script=lambda ref: Outcome())
    expected = reference.run()
    for stale in (False, True):
        sim = Simulator(resolve(spec), script, rollback_script=lambda ref: Outcome())
        state = sim.run(restart_at={point}, stale=stale)
        assert state.phase is expected.phase is RunPhase.ROLLED_BACK
        assert sorted(sim.launched, key=str) == sorted(reference.launched, key=str)


def test_compensation_seen_before_the_rollback_restarts_is_adopted_not_relaunched() -> None:
    # The call that began the rollback launched a's compensation, then the
    # runner lost that status (a stale restart) and the run was suspended: the
    # compensation's observations arrive while the run is Paused. On resume the
    # rollback begins again and must adopt the running compensation (found by
    # hypothesis; the old planner dropped the observations and launched twice).
    spec = {**rollback_spec(comp("a"), step("b")), "mode": "Sequential"}
    sim = Simulator(resolve(spec), by_step({"b": FAIL}), rollback_script=lambda ref: Outcome())
    for _ in range(3):  # start a; a done, start b; b failed, rolling back, start undo-a
        sim.advance(sim.plan().wake_at)
    assert sim.state.phase is RunPhase.ROLLING_BACK
    sim.restart(stale=True)
    sim.suspend = True
    sim.plan()
    assert sim.state.phase is RunPhase.PAUSED
    sim.suspend = False
    state = sim.run()
    assert state.phase is RunPhase.ROLLED_BACK
    assert [ref for ref in sim.launched if ref.rollback] == [AttemptRef("a", 1, True)]


# -- status, tables, environment ----------------------------------------------------------


def test_status_round_trip_mid_run() -> None:
    spec = rollback_spec(comp("a"), step("b", dependsOn=["a"]), step("c", dependsOn=["a"]))
    sim = Simulator(resolve(spec), by_step({"b": FAIL, "c": Outcome(duration=5)}))
    sim.plan()
    sim.advance(None)
    sim.plan()
    status = sim.state.to_status()
    assert status["progress"] == "1/3"
    assert status["conditions"][0]["status"] == "Unknown"
    text = json.dumps(status)
    again = RunState.from_status(json.loads(text)).to_status()
    assert again == status
    assert status["steps"]["b"]["attempts"] == 1
    assert status["workflow"]["name"] == "wf"


def test_transition_tables_refuse_invalid_changes() -> None:
    with pytest.raises(InvalidTransition):
        step_transition(StepPhase.SUCCEEDED, StepPhase.RUNNING)
    with pytest.raises(InvalidTransition):
        step_transition(StepPhase.PENDING, StepPhase.SUCCEEDED)
    with pytest.raises(InvalidTransition):
        run_transition(RunPhase.PAUSED, RunPhase.FAILED)
    assert run_transition(RunPhase.RUNNING, RunPhase.ROLLING_BACK) is RunPhase.ROLLING_BACK
    for phase in RunPhase:
        if phase.is_terminal:
            for other in RunPhase:
                with pytest.raises(InvalidTransition):
                    run_transition(phase, other)


def test_step_environment() -> None:
    spec = {
        "mode": "Dag",
        "params": [{"name": "target-env", "default": "dev"}, {"name": "n", "default": 3}],
        "steps": [
            step("a"),
            step(
                "b",
                dependsOn=["a"],
                env=[{"name": "X", "value": "1"}, {"name": "SZAL_RUN", "value": "x"}],
            ),
        ],
    }
    wf = resolve(spec)
    sim = Simulator(wf, by_step({"a": Outcome(outputs={"k": "v"})}))
    sim.plan()
    sim.advance(None)
    plan = sim.plan()
    (launch,) = [a for a in plan.actions if isinstance(a, Launch)]
    env = step_environment(
        compile_workflow(wf), sim.state, "b", launch.ref.attempt, run_name="run-1"
    )
    assert env["X"] == "1"
    assert env["SZAL_RUN"] == "run-1"
    assert env["SZAL_STEP"] == "b" and env["SZAL_ATTEMPT"] == "1"
    assert env["SZAL_PARAM_TARGET_ENV"] == "dev" and env["SZAL_PARAM_N"] == "3"
    assert json.loads(env["SZAL_CONTEXT"]) == {
        "params": {"target-env": "dev", "n": 3},
        "steps": {"a": {"phase": "Succeeded", "exitCode": 0, "outputs": {"k": "v"}}},
    }
    assert "SZAL_OUTPUTS" not in env
