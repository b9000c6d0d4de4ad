"""Conformance: rollback, cancel, suspend, and the phase transition tables.

Covers DESIGN.md section 4 "Rollback" (compensations of every Succeeded step,
one at a time, in reverse order of completion; a failing compensation does
not stop the others; RolledBack when all succeed, Failed naming the failed
one otherwise; cancel does not roll back; the run goes Running ->
RollingBack directly, never shown Failed first), cancel and suspend as the
WorkflowRun ``spec.cancel`` / ``spec.suspend`` flags, and the "Phase
transitions" details (the run table exactly; terminal phases never change;
invalid transitions are a typed error). Deliberately not: how runners
receive SIGINT (tests/local) or patch the resource (tests/kubernetes).
"""

from __future__ import annotations

from typing import Any

import pytest
from tests.conformance.support import (
    FAIL,
    HANG,
    OK,
    T0,
    Outcome,
    Simulator,
    doc,
    phases,
    run,
    simulator,
    step,
)

from szal.engine import (
    RUN_TRANSITIONS,
    STEP_TRANSITIONS,
    InvalidTransition,
    Plan,
    RunPhase,
    StepPhase,
    run_transition,
    step_transition,
)


def comp(name: str, **fields: Any) -> dict[str, Any]:
    return step(name, rollback={"command": ["undo", name]}, **fields)


def compensations(sim: Simulator) -> list[str]:
    return [ref.step for ref in sim.launched if ref.rollback]


def run_phases(sim: Simulator) -> list[str]:
    return [t.new for t in sim.transitions if t.step is None]


def test_rollback_runs_in_reverse_order_of_completion() -> None:
    document = doc([comp("a"), comp("b"), comp("c"), step("d")], rollbackOnFailure=True)
    status, sim = run(document, {"d": FAIL})
    assert compensations(sim) == ["c", "b", "a"]
    assert status["phase"] == "RolledBack"
    assert run_phases(sim) == ["Running", "RollingBack", "RolledBack"]
    for name in "abc":
        assert status["steps"][name]["phase"] == "Succeeded"  # the step itself stays
        rollback = status["steps"][name]["rollback"]
        assert rollback["phase"] == "Succeeded"
        assert rollback["startedAt"].endswith("Z") and rollback["finishedAt"].endswith("Z")
    assert status["steps"]["d"]["phase"] == "Failed"
    assert "rollback" not in status["steps"]["d"]
    condition = status["conditions"][0]
    assert (condition["status"], condition["reason"]) == ("False", "RolledBack")


def test_rollback_order_follows_completion_not_definition() -> None:
    document = doc(
        [comp("slow"), comp("fast"), comp("mid"), step("bad", dependsOn=["slow", "fast", "mid"])],
        mode="Dag",
        rollbackOnFailure=True,
    )
    status, sim = run(
        document,
        {
            "slow": Outcome(duration=9.0),
            "fast": Outcome(duration=1.0),
            "mid": Outcome(duration=4.0),
            "bad": FAIL,
        },
    )
    assert compensations(sim) == ["slow", "mid", "fast"]
    assert status["phase"] == "RolledBack"


def test_compensations_run_one_at_a_time() -> None:
    document = doc([comp("a"), comp("b"), step("c")], rollbackOnFailure=True)
    _, sim = run(
        document, {"c": FAIL}, rollback={"a": Outcome(duration=3.0), "b": Outcome(duration=3.0)}
    )
    times = [at - T0 for at, launch in sim.launches if launch.ref.rollback]
    assert times == [3.0, 6.0]


def test_failing_compensation_does_not_stop_the_others_and_is_named() -> None:
    document = doc([comp("a"), comp("b"), comp("c"), step("d")], rollbackOnFailure=True)
    status, sim = run(document, {"d": FAIL}, rollback={"b": FAIL})
    assert compensations(sim) == ["c", "b", "a"]
    assert status["phase"] == "Failed"
    assert status["steps"]["b"]["rollback"]["phase"] == "Failed"
    assert status["steps"]["a"]["rollback"]["phase"] == "Succeeded"
    assert "'b'" in status["message"]
    assert "compensation" in status["message"]
    assert run_phases(sim) == ["Running", "RollingBack", "Failed"]
    assert status["conditions"][0]["status"] == "False"


def test_only_succeeded_steps_are_compensated() -> None:
    document = doc(
        [comp("ok"), comp("skipped", when="false"), comp("bad"), comp("never")],
        rollbackOnFailure=True,
    )
    status, sim = run(document, {"bad": FAIL})
    assert compensations(sim) == ["ok"]
    assert phases(status)["never"] == "Skipped"
    assert "rollback" not in status["steps"]["never"]
    assert "rollback" not in status["steps"]["bad"]


def test_without_rollback_on_failure_nothing_is_compensated() -> None:
    status, sim = run(doc([comp("a"), step("b")]), {"b": FAIL})
    assert compensations(sim) == []
    assert status["phase"] == "Failed"


def test_nothing_to_compensate_fails_directly() -> None:
    status, sim = run(doc([step("a"), step("b")], rollbackOnFailure=True), {"b": FAIL})
    assert status["phase"] == "Failed"
    assert run_phases(sim) == ["Running", "Failed"]


def test_successful_run_never_rolls_back() -> None:
    status, sim = run(doc([comp("a")], rollbackOnFailure=True))
    assert status["phase"] == "Succeeded"
    assert compensations(sim) == []


def test_run_is_never_shown_failed_before_rolling_back() -> None:
    seen: list[str] = []

    def watch(sim: Simulator, plan: Plan) -> None:
        seen.append(sim.state.to_status()["phase"])

    sim = simulator(
        doc([comp("a"), step("b")], rollbackOnFailure=True),
        {"b": FAIL},
        rollback={"a": Outcome(duration=5.0)},
    )
    sim.run(on_plan=watch)
    assert "Failed" not in seen
    assert seen[-1] == "RolledBack"
    rolling = [p for p in seen if p == "RollingBack"]
    assert rolling
    status_while_rolling = seen.index("RollingBack")
    assert status_while_rolling > 0


# -- cancel -----------------------------------------------------------------------


def test_cancel_stops_running_steps_and_cancels_the_rest_without_rollback() -> None:
    sim = simulator(doc([comp("a"), comp("b"), step("c")], rollbackOnFailure=True), {"b": HANG})
    sim.run()  # until only the hanging b is left
    assert sim.state.phase is RunPhase.RUNNING
    sim.cancel = True
    sim.plan()
    status = sim.state.to_status()
    assert status["phase"] == "Cancelled"
    assert phases(status) == {"a": "Succeeded", "b": "Cancelled", "c": "Cancelled"}
    assert status["steps"]["c"]["attempts"] == 0
    assert [s.ref.step for _, s in sim.stops] == ["b"]
    assert [s.reason for _, s in sim.stops] == ["cancel"]
    assert compensations(sim) == []
    condition = status["conditions"][0]
    assert (condition["status"], condition["reason"]) == ("False", "Cancelled")
    assert status["progress"] == "3/3"


def test_cancel_before_start() -> None:
    sim = simulator(doc([step("a")]))
    sim.cancel = True
    sim.plan()
    status = sim.state.to_status()
    assert status["phase"] == "Cancelled"
    assert status["steps"]["a"] == {
        "phase": "Cancelled",
        "attempts": 0,
        "finishedAt": "2027-01-15T08:00:00.000Z",
        "message": "run cancelled",
    }
    assert sim.launched == []


def test_cancelled_run_stays_cancelled() -> None:
    sim = simulator(doc([step("a"), step("b")]), {"a": HANG})
    sim.plan()
    sim.cancel = True
    sim.plan()
    before = sim.state.to_status()
    sim.cancel = False
    sim.now += 10
    plan = sim.plan()
    assert sim.state.to_status() == before
    assert plan.actions == ()


# -- suspend ----------------------------------------------------------------------


def test_suspend_launches_nothing_new_and_resume_goes_on() -> None:
    sim = simulator(doc([step("a", command=["sleep"]), step("b")]), {"a": Outcome(duration=2.0)})
    sim.suspend = True
    sim.plan()  # starts, and pauses before launching? (suspend from the start)
    first = sim.state.to_status()
    sim.suspend = False
    sim.run()
    assert first["phase"] == "Paused"
    assert first["conditions"][0]["status"] == "Unknown"
    assert sim.state.phase is RunPhase.SUCCEEDED


def test_suspend_while_running_lets_the_running_step_finish() -> None:
    sim = simulator(doc([step("a"), step("b")]), {"a": Outcome(duration=2.0)})
    sim.plan()
    sim.suspend = True
    sim.plan()
    assert sim.state.phase is RunPhase.PAUSED
    sim.advance(None)
    sim.plan()
    status = sim.state.to_status()
    assert phases(status) == {"a": "Succeeded", "b": "Pending"}
    assert status["phase"] == "Paused"
    sim.suspend = False
    sim.run()
    assert sim.state.phase is RunPhase.SUCCEEDED
    assert [t.new for t in sim.transitions if t.step is None] == [
        "Running",
        "Paused",
        "Running",
        "Succeeded",
    ]


# -- transition tables ------------------------------------------------------------

R = RunPhase
DESIGN_RUN_TABLE = {
    R.PENDING: {R.RUNNING, R.CANCELLED, R.FAILED},
    R.RUNNING: {R.PAUSED, R.SUCCEEDED, R.FAILED, R.ROLLING_BACK, R.CANCELLED},
    R.PAUSED: {R.RUNNING, R.CANCELLED},
    R.ROLLING_BACK: {R.ROLLED_BACK, R.FAILED},
    R.SUCCEEDED: set(),
    R.FAILED: set(),
    R.ROLLED_BACK: set(),
    R.CANCELLED: set(),
}


def test_run_transition_table_is_designs() -> None:
    assert {k: set(v) for k, v in RUN_TRANSITIONS.items()} == DESIGN_RUN_TABLE
    assert {p.value for p in RunPhase} == {
        "Pending",
        "Running",
        "Paused",
        "Succeeded",
        "Failed",
        "RollingBack",
        "RolledBack",
        "Cancelled",
    }
    assert {p for p in RunPhase if p.is_terminal} == {
        R.SUCCEEDED,
        R.FAILED,
        R.ROLLED_BACK,
        R.CANCELLED,
    }


@pytest.mark.parametrize("old", list(RunPhase))
@pytest.mark.parametrize("new", list(RunPhase))
def test_run_transitions_allowed_exactly_as_the_table(old: RunPhase, new: RunPhase) -> None:
    if new in DESIGN_RUN_TABLE[old]:
        assert run_transition(old, new) is new
    else:
        with pytest.raises(InvalidTransition):
            run_transition(old, new)


def test_step_phases_and_terminal_steps_never_change() -> None:
    assert {p.value for p in StepPhase} == {
        "Pending",
        "Waiting",
        "Running",
        "Succeeded",
        "Failed",
        "TimedOut",
        "Skipped",
        "Cancelled",
    }
    terminal = {p for p in StepPhase if p.is_terminal}
    assert {p.value for p in terminal} == {
        "Succeeded",
        "Failed",
        "TimedOut",
        "Skipped",
        "Cancelled",
    }
    for phase in terminal:
        assert STEP_TRANSITIONS[phase] == frozenset()
        for new in StepPhase:
            with pytest.raises(InvalidTransition):
                step_transition(phase, new)
    assert StepPhase.WAITING in STEP_TRANSITIONS[StepPhase.RUNNING]
    assert StepPhase.RUNNING in STEP_TRANSITIONS[StepPhase.WAITING]


def test_finished_run_ignores_late_observations() -> None:
    sim = simulator(doc([step("a")]), {"a": OK})
    sim.run()
    before = sim.state.to_status()
    sim.inbox = list(sim.known.values())
    sim.now += 100
    sim.plan()
    assert sim.state.to_status() == before
