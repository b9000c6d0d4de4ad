"""Retry from failed (engine/retrying.py): a seeded run keeps Succeeded steps, runs the rest.

Covers: which steps are carried over (Succeeded only; not compensated ones;
not a child under a re-run parent), what is carried (attempts, exit code,
outputs, times, completion order, ``reusedFrom`` naming the run that ran
it), that the planner goes on from them in every mode (the failed step
re-runs, what follows it runs, reused steps never launch), a restart in the
middle of a retried run, rollback of a retried run compensating reused steps
too, and which runs may be retried. Deliberately not: reading the original
(WorkflowRun status, local history: tests/local, e2e).
"""

from __future__ import annotations

from typing import Any

from tests.engine.simulator import Outcome, Simulator, by_step, resolve

from szal.engine import RunPhase, StepPhase
from szal.engine.retrying import retry_problem, reusable, seed_retry
from szal.engine.workflow import ResolvedWorkflow

FAIL = Outcome("Failed")


def step(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "command": ["true"], **fields}


def first_run(wf: ResolvedWorkflow, table: dict[str, Outcome | list[Outcome]]) -> Simulator:
    sim = Simulator(wf, by_step(table))
    sim.run()
    assert sim.state.phase.is_terminal
    return sim


def retried(
    wf: ResolvedWorkflow, original: Simulator, table: dict[str, Any] | None = None
) -> Simulator:
    steps = original.state.to_status()["steps"]
    sim = Simulator(wf, by_step(table or {}))
    sim.now = original.now + 100
    sim.state = seed_retry(wf, steps, "wf-1")
    sim.session = sim.compiled.attach(sim.state)
    return sim


def test_sequential_keeps_succeeded_outputs_and_reruns_the_failed_step_and_the_rest() -> None:
    wf = resolve({"steps": [step("a"), step("b"), step("c")]})
    out = {"artifact": "s3://x/1", "n": 3}
    original = first_run(wf, {"a": Outcome(outputs=out), "b": FAIL})
    assert original.state.phase is RunPhase.FAILED
    a_before = original.state.steps["a"]

    sim = retried(wf, original)
    final = sim.run()

    assert final.phase is RunPhase.SUCCEEDED
    assert sim.launched_steps() == ["b", "c"]
    a = final.steps["a"]
    assert a.phase is StepPhase.SUCCEEDED
    assert a.outputs == out
    assert (a.attempts, a.started_at, a.finished_at, a.exit_code) == (
        a_before.attempts,
        a_before.started_at,
        a_before.finished_at,
        a_before.exit_code,
    )
    assert a.reused_from == "wf-1"
    assert final.to_status()["steps"]["a"]["reusedFrom"] == "wf-1"
    assert final.steps["b"].reused_from is None and final.steps["b"].attempts == 1
    assert final.progress == "3/3"
    assert sim.events("a") == []  # a reused step has no transitions of its own


def test_a_retry_sees_reused_outputs_in_when_conditions() -> None:
    wf = resolve(
        {
            "steps": [
                step("a"),
                step("b"),
                step("c", when="steps.a.outputs.go == true"),
            ]
        }
    )
    original = first_run(wf, {"a": Outcome(outputs={"go": True}), "b": FAIL})
    sim = retried(wf, original)
    final = sim.run()
    assert final.steps["c"].phase is StepPhase.SUCCEEDED
    assert sim.launched_steps() == ["b", "c"]


def test_dag_reruns_only_the_failed_branch() -> None:
    wf = resolve(
        {
            "mode": "Dag",
            "steps": [
                step("a"),
                step("b", dependsOn=["a"]),
                step("c", dependsOn=["b"]),
                step("d"),
                step("e", dependsOn=["a", "d"]),
            ],
        }
    )
    original = first_run(wf, {"b": FAIL})
    assert original.state.steps["c"].phase is StepPhase.SKIPPED
    sim = retried(wf, original)
    final = sim.run()
    assert final.phase is RunPhase.SUCCEEDED
    assert sim.launched_steps() == ["b", "c"]
    assert {n for n, s in final.steps.items() if s.reused_from} == {"a", "d", "e"}


def test_a_step_failing_again_fails_the_retry() -> None:
    wf = resolve({"steps": [step("a"), step("b"), step("c")]})
    original = first_run(wf, {"b": FAIL})
    sim = retried(wf, original, {"b": FAIL})
    final = sim.run()
    assert final.phase is RunPhase.FAILED
    assert final.steps["c"].message == "prior step failed"
    assert final.steps["a"].reused_from == "wf-1"


def test_hierarchical_reuses_the_parent_and_reruns_its_failed_child() -> None:
    wf = resolve(
        {
            "mode": "Hierarchical",
            "steps": [
                step("p", steps=[step("p1"), step("p2")]),
                step("q"),
            ],
        }
    )
    original = first_run(wf, {"p2": FAIL})
    assert original.state.steps["q"].phase is StepPhase.SKIPPED
    sim = retried(wf, original)
    final = sim.run()
    assert final.phase is RunPhase.SUCCEEDED
    assert sim.launched_steps() == ["p2", "q"]
    assert final.steps["p"].reused_from == "wf-1"


def test_a_child_is_not_reused_under_a_parent_that_runs_again() -> None:
    wf = resolve({"mode": "Hierarchical", "steps": [step("p", steps=[step("p1")])]})
    status_steps = {
        "p": {"phase": "Failed", "attempts": 1},
        "p1": {"phase": "Succeeded", "attempts": 1, "finishOrder": 0},
    }
    state = seed_retry(wf, status_steps, "wf-1")
    assert state.steps["p1"].phase is StepPhase.PENDING


def test_compensated_steps_are_not_reused() -> None:
    wf = resolve(
        {
            "rollbackOnFailure": True,
            "steps": [step("a", rollback={"command": ["undo"]}), step("b")],
        }
    )
    original = first_run(wf, {"b": FAIL})
    assert original.state.phase is RunPhase.ROLLED_BACK
    assert not reusable(original.state.to_status()["steps"]["a"])
    sim = retried(wf, original)
    sim.run()
    assert sim.launched_steps() == ["a", "b"]


def test_rollback_of_a_retry_compensates_reused_steps_after_the_new_ones() -> None:
    wf = resolve(
        {
            "rollbackOnFailure": True,
            "mode": "Dag",
            "steps": [
                step("a", rollback={"command": ["undo"]}),
                step("b", rollback={"command": ["undo"]}),
                step("c", dependsOn=["a", "b"], rollback={"command": ["undo"]}),
                step("d", dependsOn=["c"]),
            ],
        }
    )
    # An original that failed at c without rolling back (say, rollbackOnFailure
    # was off then): its step records, as its status held them.
    steps = {
        "a": {"phase": "Succeeded", "attempts": 1, "finishOrder": 1},
        "b": {"phase": "Succeeded", "attempts": 1, "finishOrder": 0},
        "c": {"phase": "Failed", "attempts": 1, "finishOrder": 2},
        "d": {"phase": "Skipped", "attempts": 0},
    }
    sim = Simulator(wf, by_step({"d": FAIL}))
    sim.state = seed_retry(wf, steps, "wf-1")
    sim.session = sim.compiled.attach(sim.state)
    final = sim.run()
    assert final.phase is RunPhase.ROLLED_BACK
    compensated = [ref.step for ref in sim.launched if ref.rollback]
    assert compensated == ["c", "a", "b"]


def test_a_restarted_runner_goes_on_with_the_retry_and_launches_nothing_twice() -> None:
    wf = resolve({"mode": "Dag", "steps": [step("a"), step("b", dependsOn=["a"]), step("c")]})
    original = first_run(wf, {"b": FAIL, "c": FAIL})
    for restart_at in ({1}, {2}, {1, 2, 3}):
        sim = retried(wf, original)
        final = sim.run(restart_at=restart_at)
        assert final.phase is RunPhase.SUCCEEDED
        assert sorted(sim.launched_steps()) == ["b", "c"]
        assert final.steps["a"].reused_from == "wf-1"


def test_a_retry_of_a_retry_names_the_run_that_ran_the_step() -> None:
    wf = resolve({"steps": [step("a"), step("b"), step("c")]})
    original = first_run(wf, {"b": FAIL})
    second = retried(wf, original, {"c": FAIL})
    second.run()
    steps = second.state.to_status()["steps"]
    third = seed_retry(wf, steps, "wf-2")
    assert third.steps["a"].reused_from == "wf-1"
    assert third.steps["b"].reused_from == "wf-2"
    assert third.steps["c"].phase is StepPhase.PENDING


def test_cancel_of_a_seeded_run_before_it_started_keeps_the_reused_steps() -> None:
    wf = resolve({"steps": [step("a"), step("b")]})
    original = first_run(wf, {"b": FAIL})
    sim = retried(wf, original)
    sim.cancel = True
    final = sim.run()
    assert final.phase is RunPhase.CANCELLED
    assert final.steps["a"].phase is StepPhase.SUCCEEDED
    assert final.steps["b"].phase is StepPhase.CANCELLED
    assert sim.launched == []


def test_which_runs_may_be_retried() -> None:
    assert retry_problem("r", "Failed") is None
    assert retry_problem("r", "Cancelled") is None
    assert retry_problem("r", "RolledBack") is None
    assert retry_problem("r", "Succeeded") == "run 'r' Succeeded: there is nothing to retry"
    assert retry_problem("r", "Running") == "run 'r' is still Running: retry it once it has ended"
    assert retry_problem("r", None) == "run 'r' is still Pending: retry it once it has ended"


def test_finally_steps_run_again_in_a_retry() -> None:
    wf = resolve({"steps": [step("a"), step("b")], "finally": [step("notify")]})
    original = first_run(wf, {"b": FAIL})
    assert original.state.steps["notify"].phase is StepPhase.SUCCEEDED

    sim = retried(wf, original)
    final = sim.run()

    assert final.phase is RunPhase.SUCCEEDED
    assert sim.launched_steps() == ["b", "notify"]
    assert final.steps["notify"].reused_from is None
    assert final.steps["a"].reused_from == "wf-1"
