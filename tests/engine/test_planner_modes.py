"""Planner: how steps are ordered in each mode, and how failures propagate.

Covers Sequential (prior step failed), Parallel under maxParallel, Dag with
trigger All and Any (transitive ``dependency failed``, condition-skipped
steps unlocking dependents), failFast, Hierarchical (top level in order,
children in the parent's mode, ``parent step failed``), ``when`` evaluated
with the run's context, attempts 0 for steps that never ran, progress and
the run's outcome. Driven by the simulated executor in virtual time.
Deliberately not: retries/timeouts/deadline and suspend/cancel/rollback
(their own modules), randomized shapes (test_planner_properties).
"""

from __future__ import annotations

from typing import Any

from tests.engine.simulator import Outcome, Simulator, by_step, resolve

from szal.engine import Launch, RunPhase, StepPhase

FAIL = Outcome("Failed")


def step(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "command": ["true"], **fields}


def phases(sim: Simulator) -> dict[str, str]:
    return {name: rec.phase.value for name, rec in sim.state.steps.items()}


def messages(sim: Simulator) -> dict[str, str | None]:
    return {name: rec.message for name, rec in sim.state.steps.items()}


def start_order(sim: Simulator) -> list[str]:
    return [t.step for t in sim.transitions if t.event == "StepStarted" and t.step]


# -- Sequential --------------------------------------------------------------------


def test_sequential_runs_in_order() -> None:
    sim = Simulator(resolve({"steps": [step("a"), step("b"), step("c")]}))
    state = sim.run()
    assert state.phase is RunPhase.SUCCEEDED
    assert start_order(sim) == ["a", "b", "c"]
    launches = [(at, a.ref.step) for at, a in sim.launches]
    assert [at for at, _ in launches] == sorted(at for at, _ in launches)
    assert state.progress == "3/3"
    assert state.condition()["status"] == "True"


def test_sequential_failure_skips_the_rest() -> None:
    sim = Simulator(resolve({"steps": [step("a"), step("b"), step("c")]}), by_step({"a": FAIL}))
    state = sim.run()
    assert state.phase is RunPhase.FAILED
    assert phases(sim) == {"a": "Failed", "b": "Skipped", "c": "Skipped"}
    assert messages(sim)["b"] == "prior step failed"
    assert messages(sim)["c"] == "prior step failed"
    assert state.steps["b"].attempts == 0
    assert state.message == "step 'a' failed"
    assert state.condition()["status"] == "False"


def test_first_plan_starts_the_run() -> None:
    sim = Simulator(resolve({"steps": [step("a")]}))
    plan = sim.plan()
    assert plan.run_changed
    assert [(t.step, t.event) for t in plan.transitions] == [
        (None, "RunStarted"),
        ("a", "StepStarted"),
    ]
    (launch,) = plan.actions
    assert (
        isinstance(launch, Launch) and launch.ref.attempt == 1 and launch.command.argv() == ["true"]
    )
    assert plan.changed_steps == frozenset({"a"})
    assert sim.state.phase is RunPhase.RUNNING and sim.state.started_at == sim.now


# -- Parallel ------------------------------------------------------------------------


def test_parallel_starts_everything_at_once() -> None:
    sim = Simulator(resolve({"mode": "Parallel", "steps": [step(f"s{i}") for i in range(5)]}))
    plan = sim.plan()
    assert len(plan.actions) == 5
    assert sim.run().phase is RunPhase.SUCCEEDED


def test_parallel_respects_max_parallel() -> None:
    spec = {"mode": "Parallel", "maxParallel": 2, "steps": [step(f"s{i}") for i in range(5)]}
    peak = 0

    def watch(sim: Simulator, _: object) -> None:
        nonlocal peak
        running = sum(1 for r in sim.state.steps.values() if r.phase is StepPhase.RUNNING)
        peak = max(peak, running)

    sim = Simulator(resolve(spec))
    assert sim.run(on_plan=watch).phase is RunPhase.SUCCEEDED
    assert peak == 2
    assert start_order(sim) == [f"s{i}" for i in range(5)]


def test_parallel_failure_does_not_stop_siblings() -> None:
    sim = Simulator(
        resolve({"mode": "Parallel", "steps": [step("a"), step("b")]}), by_step({"a": FAIL})
    )
    assert sim.run().phase is RunPhase.FAILED
    assert phases(sim) == {"a": "Failed", "b": "Succeeded"}


# -- Dag ------------------------------------------------------------------------------


def diamond(**d_fields: Any) -> dict[str, Any]:
    return {
        "mode": "Dag",
        "steps": [
            step("a"),
            step("b", dependsOn=["a"]),
            step("c", dependsOn=["a"]),
            step("d", dependsOn=["b", "c"], **d_fields),
        ],
    }


def test_dag_runs_after_dependencies() -> None:
    sim = Simulator(resolve(diamond()), by_step({"b": Outcome(duration=5)}))
    assert sim.run().phase is RunPhase.SUCCEEDED
    started = {a.ref.step: at for at, a in sim.launches}
    finished = {n: r.finished_at for n, r in sim.state.steps.items()}
    assert started["b"] == started["c"] == finished["a"]
    assert started["d"] == max(finished["b"], finished["c"])  # type: ignore[type-var]


def test_dag_failure_skips_dependents_transitively_others_go_on() -> None:
    spec = {
        "mode": "Dag",
        "steps": [
            step("a"),
            step("b", dependsOn=["a"]),
            step("c", dependsOn=["b"]),
            step("side"),
            step("after-side", dependsOn=["side"]),
        ],
    }
    sim = Simulator(resolve(spec), by_step({"a": FAIL}))
    assert sim.run().phase is RunPhase.FAILED
    assert phases(sim) == {
        "a": "Failed",
        "b": "Skipped",
        "c": "Skipped",
        "side": "Succeeded",
        "after-side": "Succeeded",
    }
    assert messages(sim)["b"] == messages(sim)["c"] == "dependency failed"
    assert sim.state.steps["c"].attempts == 0


def test_dependent_skipped_as_soon_as_one_dependency_fails() -> None:
    sim = Simulator(resolve(diamond()), by_step({"b": FAIL, "c": Outcome(duration=100)}))
    sim.run()
    assert sim.state.steps["d"].finished_at == sim.state.steps["b"].finished_at


def test_condition_skipped_step_unlocks_dependents() -> None:
    spec = {
        "mode": "Dag",
        "params": [{"name": "env", "default": "dev"}],
        "steps": [
            step("a", when="params.env == 'prod'"),
            step("b", dependsOn=["a"]),
        ],
    }
    sim = Simulator(resolve(spec))
    assert sim.run().phase is RunPhase.SUCCEEDED
    assert phases(sim) == {"a": "Skipped", "b": "Succeeded"}
    assert messages(sim)["a"] == "condition not met"
    assert sim.state.steps["a"].attempts == 0
    assert sim.state.progress == "2/2"


def test_when_reads_upstream_outputs_and_params() -> None:
    spec = {
        "mode": "Dag",
        "params": [{"name": "env", "default": "dev"}],
        "steps": [
            step("test"),
            step(
                "deploy",
                dependsOn=["test"],
                when="params.env == 'prod' && steps.test.outputs.coverage >= 0.8",
            ),
            step("report", dependsOn=["test"], when="steps.test.exitCode == 0"),
        ],
    }
    script = by_step({"test": Outcome(outputs={"coverage": 0.9})})
    sim = Simulator(resolve(spec, {"env": "prod"}), script)
    sim.run()
    assert phases(sim) == {"test": "Succeeded", "deploy": "Succeeded", "report": "Succeeded"}
    sim = Simulator(resolve(spec, {"env": "dev"}), script)
    sim.run()
    assert phases(sim)["deploy"] == "Skipped"
    assert sim.state.steps["test"].outputs == {"coverage": 0.9}


def test_trigger_any_runs_after_first_success() -> None:
    spec = {
        "mode": "Dag",
        "steps": [
            step("fast"),
            step("slow"),
            step("either", dependsOn=["fast", "slow"], trigger="Any"),
        ],
    }
    sim = Simulator(resolve(spec), by_step({"slow": Outcome(duration=50)}))
    assert sim.run().phase is RunPhase.SUCCEEDED
    started = {a.ref.step: at for at, a in sim.launches}
    assert started["either"] == sim.state.steps["fast"].finished_at
    assert len([r for r in sim.launched if r.step == "either"]) == 1


def test_trigger_any_runs_if_a_later_dependency_succeeds() -> None:
    spec = {
        "mode": "Dag",
        "steps": [step("a"), step("b"), step("c", dependsOn=["a", "b"], trigger="Any")],
    }
    sim = Simulator(resolve(spec), by_step({"a": FAIL, "b": Outcome(duration=3)}))
    assert sim.run().phase is RunPhase.FAILED
    assert phases(sim) == {"a": "Failed", "b": "Succeeded", "c": "Succeeded"}


def test_trigger_any_skipped_only_when_every_dependency_did_not_succeed() -> None:
    spec = {
        "mode": "Dag",
        "steps": [
            step("a"),
            step("b", when="1 == 2"),
            step("c", dependsOn=["a", "b"], trigger="Any"),
        ],
    }
    sim = Simulator(resolve(spec), by_step({"a": FAIL}))
    sim.run()
    assert phases(sim) == {"a": "Failed", "b": "Skipped", "c": "Skipped"}
    assert messages(sim)["c"] == "dependency failed"


def test_fail_fast_launches_nothing_new() -> None:
    spec = {
        "mode": "Dag",
        "failFast": True,
        "steps": [
            step("bad"),
            step("long"),
            step("after-bad", dependsOn=["bad"]),
            step("after-long", dependsOn=["long"]),
        ],
    }
    sim = Simulator(resolve(spec), by_step({"bad": FAIL, "long": Outcome(duration=10)}))
    assert sim.run().phase is RunPhase.FAILED
    assert phases(sim) == {
        "bad": "Failed",
        "long": "Succeeded",  # already running: runs on
        "after-bad": "Skipped",
        "after-long": "Skipped",
    }
    assert "failFast" in (messages(sim)["after-long"] or "")
    assert sorted(sim.launched_steps()) == ["bad", "long"]


def test_without_fail_fast_independent_branches_go_on() -> None:
    spec = {
        "mode": "Dag",
        "steps": [step("bad"), step("long"), step("after-long", dependsOn=["long"])],
    }
    sim = Simulator(resolve(spec), by_step({"bad": FAIL, "long": Outcome(duration=10)}))
    sim.run()
    assert phases(sim)["after-long"] == "Succeeded"


# -- Hierarchical ----------------------------------------------------------------------


def tree(**p_fields: Any) -> dict[str, Any]:
    return {
        "mode": "Hierarchical",
        "steps": [
            step("p", steps=[step("c1"), step("c2", steps=[step("g")])], **p_fields),
            step("q"),
        ],
    }


def test_hierarchical_parent_then_children_then_next_sibling() -> None:
    sim = Simulator(resolve(tree()))
    assert sim.run().phase is RunPhase.SUCCEEDED
    assert start_order(sim) == ["p", "c1", "c2", "g", "q"]
    started = {a.ref.step: at for at, a in sim.launches}
    assert started["q"] == sim.state.steps["g"].finished_at


def test_hierarchical_children_in_parallel_mode() -> None:
    sim = Simulator(resolve(tree(mode="Parallel")))
    sim.run()
    started = {a.ref.step: at for at, a in sim.launches}
    assert started["c1"] == started["c2"] == sim.state.steps["p"].finished_at


def test_hierarchical_children_in_dag_mode() -> None:
    spec = {
        "mode": "Hierarchical",
        "steps": [step("p", mode="Dag", steps=[step("x"), step("y", dependsOn=["x"])])],
    }
    sim = Simulator(resolve(spec))
    assert sim.run().phase is RunPhase.SUCCEEDED
    assert start_order(sim) == ["p", "x", "y"]


def test_children_of_a_failed_parent_are_skipped() -> None:
    sim = Simulator(resolve(tree()), by_step({"p": FAIL}))
    assert sim.run().phase is RunPhase.FAILED
    assert phases(sim) == {
        "p": "Failed",
        "c1": "Skipped",
        "c2": "Skipped",
        "g": "Skipped",
        "q": "Skipped",
    }
    assert messages(sim)["c1"] == messages(sim)["g"] == "parent step failed"
    assert messages(sim)["q"] == "prior step failed"


def test_failure_inside_a_subtree_skips_later_top_level_siblings() -> None:
    sim = Simulator(resolve(tree()), by_step({"c1": FAIL}))
    assert sim.run().phase is RunPhase.FAILED
    assert phases(sim) == {
        "p": "Succeeded",
        "c1": "Failed",
        "c2": "Skipped",
        "g": "Skipped",
        "q": "Skipped",
    }
    assert messages(sim)["c2"] == "prior step failed"
    assert messages(sim)["g"] == "parent step failed"
    assert messages(sim)["q"] == "prior step failed"


def test_parent_without_command_only_orders_children() -> None:
    spec = {"mode": "Hierarchical", "steps": [{"name": "group", "steps": [step("a"), step("b")]}]}
    sim = Simulator(resolve(spec))
    assert sim.run().phase is RunPhase.SUCCEEDED
    assert sim.launched_steps() == ["a", "b"]
    assert sim.state.steps["group"].phase is StepPhase.SUCCEEDED
    assert sim.state.steps["group"].attempts == 0


def test_parent_skipped_by_condition_skips_subtree_without_failing() -> None:
    spec = {
        "mode": "Hierarchical",
        "steps": [step("p", when="1 == 2", steps=[step("c")]), step("q")],
    }
    sim = Simulator(resolve(spec))
    assert sim.run().phase is RunPhase.SUCCEEDED
    assert phases(sim) == {"p": "Skipped", "c": "Skipped", "q": "Succeeded"}
    assert messages(sim)["p"] == "condition not met"


def test_transition_events_and_attempts() -> None:
    sim = Simulator(resolve({"steps": [step("a"), step("b")]}), by_step({"a": FAIL}))
    sim.run()
    assert [(t.step, t.old, t.new, t.event) for t in sim.transitions] == [
        (None, "Pending", "Running", "RunStarted"),
        ("a", "Pending", "Running", "StepStarted"),
        ("a", "Running", "Failed", "StepFailed"),
        ("b", "Pending", "Skipped", "StepSkipped"),
        (None, "Running", "Failed", "RunFailed"),
    ]
    failed = sim.transitions[2]
    assert failed.exit_code == 1 and failed.attempt == 1
