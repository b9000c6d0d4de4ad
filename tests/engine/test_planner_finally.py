"""Planner: finally steps (``spec.finally``), a stage after the main steps and rollback.

Covers: finally after success, failure, rollback (after the compensations)
and cancel; ``skip_finally``; a failed finally step failing the run with a
message naming it; the run keeping its phase (Running, RollingBack) while
finally runs; ``run.phase``/``run.failedSteps`` and main outputs in a
finally step's ``when``; Dag ``dependsOn`` among finally steps; the run
deadline not cutting finally short; suspend ignored; restarts from a status
saved mid-finally; ``finally: true`` in the status and progress counting
finally steps. Deliberately not: validation (test_validation), runners.
"""

from __future__ import annotations

from typing import Any

import pytest
from tests.engine.simulator import Outcome, Simulator, by_step, resolve

from szal.engine import RunPhase, RunState, StepPhase

FAIL = Outcome("Failed")
HANG = Outcome("Hang")


def step(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "command": ["true"], **fields}


def sim(spec: dict[str, Any], table: dict[str, Any] | None = None, **kw: Any) -> Simulator:
    return Simulator(resolve(spec), by_step(table or {}), **kw)


def phases(state: RunState) -> dict[str, str]:
    return {name: rec.phase.value for name, rec in state.steps.items()}


def started(s: Simulator, name: str) -> float:
    return next(
        at for at, launch in s.launches if launch.ref.step == name and not launch.ref.rollback
    )


def test_finally_runs_after_success_in_parallel_and_the_run_succeeds() -> None:
    s = sim({"steps": [step("a"), step("b")], "finally": [step("f1"), step("f2")]})
    state = s.run()
    assert state.phase is RunPhase.SUCCEEDED
    assert phases(state) == dict.fromkeys(["a", "b", "f1", "f2"], "Succeeded")
    assert started(s, "f1") == started(s, "f2") >= state.steps["b"].finished_at  # type: ignore[operator]
    status = state.to_status()
    assert status["steps"]["f1"]["finally"] is True and "finally" not in status["steps"]["a"]
    assert status["progress"] == "4/4"
    assert status["mainOutcome"] == {"phase": "Succeeded"}
    assert [t.event for t in s.transitions if t.step is None] == ["RunStarted", "RunSucceeded"]


def test_the_run_stays_running_while_finally_runs() -> None:
    s = sim({"steps": [step("a")], "finally": [step("f")]}, {"f": HANG})
    s.plan()
    s.advance(None)
    s.plan()  # a done: f launched
    assert s.state.phase is RunPhase.RUNNING
    assert s.state.steps["f"].phase is StepPhase.RUNNING
    assert s.state.progress == "1/2"


def test_finally_after_failure_reads_the_outcome_and_main_outputs() -> None:
    spec = {
        "steps": [step("a"), step("b")],
        "finally": [
            step("on-failure", when="run.phase == 'Failed' && 'b' in run.failedSteps"),
            step("on-success", when="run.phase == 'Succeeded'"),
            step("reads", when="steps.a.outputs.n == 3"),
        ],
        "mode": "Parallel",
    }
    s = sim(spec, {"b": FAIL, "a": Outcome(outputs={"n": 3})})
    state = s.run()
    assert state.phase is RunPhase.FAILED
    assert state.message == "step 'b' failed"
    assert phases(state)["on-failure"] == "Succeeded"
    assert phases(state)["on-success"] == "Skipped"
    assert phases(state)["reads"] == "Succeeded"


def test_a_failed_finally_step_fails_the_run_naming_it() -> None:
    s = sim({"steps": [step("a")], "finally": [step("f"), step("g")]}, {"f": FAIL})
    state = s.run()
    assert state.phase is RunPhase.FAILED
    assert state.message == "finally step 'f' failed"
    assert phases(state)["g"] == "Succeeded"


def test_finally_runs_after_rollback_and_keeps_rolled_back() -> None:
    spec = {
        "rollbackOnFailure": True,
        "steps": [step("a", rollback={"command": ["undo"]}), step("b")],
        "finally": [step("f", when="run.phase == 'RolledBack'")],
    }
    s = sim(spec, {"b": FAIL})
    seen: list[str] = []
    state = s.run(on_plan=lambda sm, _: seen.append(sm.state.phase.value))
    assert state.phase is RunPhase.ROLLED_BACK
    assert state.message == "step 'b' failed; rolled back 1 step(s)"
    undo = next(at for at, launch in s.launches if launch.ref.rollback)
    assert started(s, "f") >= undo
    assert phases(state)["f"] == "Succeeded"
    assert "RollingBack" in seen and "Failed" not in seen


def test_failed_finally_after_rollback_fails_the_run() -> None:
    spec = {
        "rollbackOnFailure": True,
        "steps": [step("a", rollback={"command": ["undo"]}), step("b")],
        "finally": [step("f")],
    }
    state = sim(spec, {"b": FAIL, "f": FAIL}).run()
    assert state.phase is RunPhase.FAILED
    assert state.message == "step 'b' failed; rolled back 1 step(s); finally step 'f' failed"


def test_cancel_runs_finally_then_ends_cancelled() -> None:
    s = sim(
        {"steps": [step("a"), step("b")], "finally": [step("f", when="run.phase == 'Cancelled'")]},
        {"a": HANG},
    )
    s.plan()
    s.cancel = True  # stays set, as a WorkflowRun's spec.cancel does
    s.plan()
    assert s.state.phase is RunPhase.RUNNING  # finally is running
    assert phases(s.state) == {"a": "Cancelled", "b": "Cancelled", "f": "Running"}
    state = s.run()
    assert state.phase is RunPhase.CANCELLED and phases(state)["f"] == "Succeeded"


def test_cancel_with_skip_finally_runs_nothing_more() -> None:
    s = sim({"steps": [step("a")], "finally": [step("f")]}, {"a": HANG})
    s.plan()
    s.cancel = s.skip_finally = True
    state = s.run()
    assert state.phase is RunPhase.CANCELLED
    assert phases(state) == {"a": "Cancelled", "f": "Cancelled"}
    assert s.launched_steps() == ["a"]


def test_skip_finally_during_finally_stops_it() -> None:
    s = sim({"steps": [step("a")], "finally": [step("f")]}, {"f": HANG})
    s.plan()
    s.advance(None)
    s.plan()
    s.cancel = True
    s.plan()
    assert s.state.steps["f"].phase is StepPhase.RUNNING  # a plain cancel does not stop it
    s.skip_finally = True
    s.plan()
    assert s.state.phase is RunPhase.SUCCEEDED  # the main steps' outcome
    assert s.state.steps["f"].phase is StepPhase.CANCELLED
    assert [stop.ref.step for _, stop in s.stops] == ["f"]


def test_cancel_before_start_runs_no_finally() -> None:
    s = sim({"steps": [step("a")], "finally": [step("f")]})
    s.cancel = True
    state = s.run()
    assert state.phase is RunPhase.CANCELLED and s.launched == []
    assert phases(state) == {"a": "Cancelled", "f": "Cancelled"}


def test_cancel_while_paused_still_runs_finally() -> None:
    s = sim({"steps": [step("a"), step("b")], "finally": [step("f")]})
    s.plan()
    s.suspend = True
    s.advance(None)
    s.plan()
    assert s.state.phase is RunPhase.PAUSED
    s.cancel = True
    state = s.run()
    assert state.phase is RunPhase.CANCELLED
    assert phases(state) == {"a": "Succeeded", "b": "Cancelled", "f": "Succeeded"}


def test_the_deadline_bounds_the_main_steps_only() -> None:
    spec = {
        "timeout": "10s",
        "steps": [step("a")],
        "finally": [step("f")],
    }
    s = sim(spec, {"a": HANG, "f": Outcome(duration=30.0)})
    state = s.run()
    assert state.phase is RunPhase.FAILED and state.reason == "DeadlineExceeded"
    assert phases(state) == {"a": "Cancelled", "f": "Succeeded"}
    assert state.finished_at == pytest.approx(s.workflow and state.steps["f"].finished_at)


def test_finally_dag_dependencies_and_step_timeouts() -> None:
    spec = {
        "mode": "Dag",
        "steps": [step("a")],
        "finally": [
            step("collect", timeout="2s"),
            step("report", dependsOn=["collect"]),
            step("cleanup", dependsOn=["collect"], trigger="Any"),
        ],
    }
    s = sim(spec, {"collect": HANG})
    state = s.run()
    assert phases(state) == {
        "a": "Succeeded",
        "collect": "TimedOut",
        "report": "Skipped",
        "cleanup": "Skipped",
    }
    assert state.phase is RunPhase.FAILED and state.message == "finally step 'collect' failed"


def test_fail_fast_does_not_skip_finally() -> None:
    spec = {
        "failFast": True,
        "mode": "Parallel",
        "steps": [step("a"), step("b")],
        "finally": [step("f")],
    }
    state = sim(spec, {"a": FAIL, "b": Outcome(duration=5.0)}).run()
    assert phases(state)["f"] == "Succeeded" and state.phase is RunPhase.FAILED


@pytest.mark.parametrize("stale", [False, True])
def test_restart_mid_finally_goes_on(stale: bool) -> None:
    spec = {
        "rollbackOnFailure": True,
        "steps": [step("a", rollback={"command": ["undo"]}), step("b")],
        "finally": [step("f", retries={"limit": 1, "delay": "1s"}), step("g")],
    }
    reference = sim(spec, {"b": FAIL, "f": [FAIL, Outcome()]}).run()
    for call in range(1, 12):
        s = sim(spec, {"b": FAIL, "f": [FAIL, Outcome()]})
        state = s.run(restart_at={call, call + 2}, stale=stale)
        assert state.phase is reference.phase is RunPhase.ROLLED_BACK, call
        assert phases(state) == phases(reference), call
        assert state.steps["f"].attempts == 2
