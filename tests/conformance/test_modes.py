"""Conformance: how steps are ordered in each mode and how failures propagate.

Covers DESIGN.md section 4 Sequential, Parallel (maxParallel), Dag (trigger
All/Any, transitive ``dependency failed``, when-skipped steps unlocking
dependents, independent branches), failFast, Hierarchical (top level as
Sequential, a sibling after the previous sibling's whole subtree, children
after their parent Succeeded in the parent's mode, ``parent step failed``,
``prior step failed``), the fixed step messages and ``attempts: 0`` for steps
that never ran, and the run outcome. All through workflow documents and the
status object. Deliberately not: retries, timeouts, rollback, cancel (their
own modules) and randomized shapes (tests/engine/test_planner_properties.py).
"""

from __future__ import annotations

from tests.conformance.support import (
    FAIL,
    HANG,
    OK,
    T0,
    Outcome,
    doc,
    launch_times,
    messages,
    phases,
    run,
    simulator,
    started,
    step,
)

# -- Sequential -------------------------------------------------------------------


def test_sequential_runs_one_after_another() -> None:
    status, sim = run(doc([step("a"), step("b"), step("c")], mode="Sequential"))
    assert status["phase"] == "Succeeded"
    assert started(sim) == ["a", "b", "c"]
    assert launch_times(sim, "a") == [0.0]
    assert launch_times(sim, "b") == [1.0]
    assert launch_times(sim, "c") == [2.0]
    assert status["progress"] == "3/3"


def test_mode_defaults_to_sequential() -> None:
    _status, sim = run(doc([step("a"), step("b")]))
    assert started(sim) == ["a", "b"]
    assert launch_times(sim, "b") == [1.0]


def test_sequential_failure_skips_the_rest_with_prior_step_failed() -> None:
    status, _ = run(doc([step("a"), step("b"), step("c")]), {"b": FAIL})
    assert status["phase"] == "Failed"
    assert phases(status) == {"a": "Succeeded", "b": "Failed", "c": "Skipped"}
    assert messages(status)["c"] == "prior step failed"
    assert status["steps"]["c"]["attempts"] == 0
    assert status["steps"]["b"]["attempts"] == 1
    assert status["conditions"][0]["status"] == "False"
    assert status["conditions"][0]["reason"] == "Failed"
    assert "b" in status["message"]


def test_sequential_when_skip_does_not_stop_the_sequence() -> None:
    status, _ = run(doc([step("a", when="false"), step("b")]))
    assert phases(status) == {"a": "Skipped", "b": "Succeeded"}
    assert messages(status)["a"] == "condition not met"
    assert status["steps"]["a"]["attempts"] == 0
    assert status["phase"] == "Succeeded"


# -- Parallel ---------------------------------------------------------------------


def test_parallel_starts_everything_at_once() -> None:
    status, sim = run(doc([step("a"), step("b"), step("c")], mode="Parallel"))
    assert status["phase"] == "Succeeded"
    assert {launch_times(sim, n)[0] for n in "abc"} == {0.0}


def test_parallel_failure_does_not_stop_the_others() -> None:
    status, _ = run(doc([step("a"), step("b"), step("c")], mode="Parallel"), {"a": FAIL})
    assert phases(status) == {"a": "Failed", "b": "Succeeded", "c": "Succeeded"}
    assert status["phase"] == "Failed"


def test_max_parallel_bounds_running_steps() -> None:
    steps = [step(f"s{i}") for i in range(5)]
    status, sim = run(doc(steps, mode="Parallel", maxParallel=2))
    times = sorted(launch_times(sim, f"s{i}")[0] for i in range(5))
    assert times == [0.0, 0.0, 1.0, 1.0, 2.0]
    assert status["phase"] == "Succeeded"


def test_max_parallel_bounds_dag_too() -> None:
    steps = [step("root")] + [step(f"s{i}", dependsOn=["root"]) for i in range(3)]
    _, sim = run(doc(steps, mode="Dag", maxParallel=2))
    times = sorted(launch_times(sim, f"s{i}")[0] for i in range(3))
    assert times == [1.0, 1.0, 2.0]


# -- Dag --------------------------------------------------------------------------


def test_dag_runs_a_step_after_all_its_dependencies() -> None:
    steps = [
        step("a"),
        step("b", dependsOn=["a"]),
        step("c", dependsOn=["a"]),
        step("d", dependsOn=["b", "c"]),
    ]
    _, sim = run(doc(steps, mode="Dag"), {"b": Outcome(duration=5.0)})
    assert launch_times(sim, "b") == [1.0]
    assert launch_times(sim, "c") == [1.0]
    assert launch_times(sim, "d") == [6.0]


def test_dag_failure_skips_dependents_transitively_and_branches_go_on() -> None:
    steps = [
        step("a"),
        step("b", dependsOn=["a"]),
        step("c", dependsOn=["b"]),
        step("x"),
        step("y", dependsOn=["x"]),
    ]
    status, _ = run(doc(steps, mode="Dag"), {"a": FAIL})
    assert phases(status) == {
        "a": "Failed",
        "b": "Skipped",
        "c": "Skipped",
        "x": "Succeeded",
        "y": "Succeeded",
    }
    assert messages(status)["b"] == "dependency failed"
    assert messages(status)["c"] == "dependency failed"
    assert status["steps"]["c"]["attempts"] == 0
    assert status["phase"] == "Failed"


def test_dag_when_skip_unlocks_dependents() -> None:
    steps = [step("a", when="false"), step("b", dependsOn=["a"]), step("c", dependsOn=["b"])]
    status, _ = run(doc(steps, mode="Dag"))
    assert phases(status) == {"a": "Skipped", "b": "Succeeded", "c": "Succeeded"}
    assert messages(status)["a"] == "condition not met"
    assert status["phase"] == "Succeeded"


def test_dag_step_with_one_failed_dependency_of_two_is_skipped() -> None:
    steps = [step("a"), step("b"), step("c", dependsOn=["a", "b"])]
    status, _ = run(doc(steps, mode="Dag"), {"b": FAIL})
    assert phases(status)["c"] == "Skipped"
    assert messages(status)["c"] == "dependency failed"


def test_trigger_any_runs_after_the_first_success() -> None:
    steps = [
        step("fast"),
        step("slow"),
        step("any", dependsOn=["fast", "slow"], trigger="Any"),
    ]
    status, sim = run(doc(steps, mode="Dag"), {"slow": Outcome(duration=10.0)})
    assert launch_times(sim, "any") == [1.0]
    assert status["phase"] == "Succeeded"


def test_trigger_any_runs_when_one_dependency_failed_and_another_succeeded() -> None:
    steps = [step("a"), step("b"), step("any", dependsOn=["a", "b"], trigger="Any")]
    status, _ = run(doc(steps, mode="Dag"), {"a": FAIL, "b": Outcome(duration=3.0)})
    assert phases(status)["any"] == "Succeeded"
    assert status["phase"] == "Failed"  # a failed


def test_trigger_any_skipped_only_when_no_dependency_succeeded() -> None:
    steps = [
        step("a"),
        step("b"),
        step("any", dependsOn=["a", "b"], trigger="Any"),
    ]
    status, _ = run(doc(steps, mode="Dag"), {"a": FAIL, "b": FAIL})
    assert phases(status)["any"] == "Skipped"
    assert messages(status)["any"] == "dependency failed"
    assert status["steps"]["any"]["attempts"] == 0


def test_trigger_any_waits_while_a_dependency_may_still_succeed() -> None:
    steps = [step("a"), step("b"), step("any", dependsOn=["a", "b"], trigger="Any")]
    _, sim = run(doc(steps, mode="Dag"), {"a": FAIL, "b": Outcome(duration=4.0)})
    assert launch_times(sim, "any") == [4.0]


# -- failFast ---------------------------------------------------------------------


def test_fail_fast_launches_nothing_new_after_a_failure() -> None:
    steps = [
        step("a"),
        step("long"),
        step("b", dependsOn=["a"]),
        step("later", dependsOn=["long"]),
    ]
    status, sim = run(
        doc(steps, mode="Dag", failFast=True), {"a": FAIL, "long": Outcome(duration=5.0)}
    )
    assert phases(status) == {
        "a": "Failed",
        "long": "Succeeded",  # running steps run on
        "b": "Skipped",
        "later": "Skipped",
    }
    assert messages(status)["b"] == "dependency failed"
    assert "later" not in started(sim)
    assert status["steps"]["later"]["attempts"] == 0
    assert status["phase"] == "Failed"


def test_without_fail_fast_independent_branches_go_on() -> None:
    steps = [step("a"), step("long"), step("later", dependsOn=["long"])]
    status, _ = run(doc(steps, mode="Dag"), {"a": FAIL, "long": Outcome(duration=5.0)})
    assert phases(status)["later"] == "Succeeded"


def test_fail_fast_in_sequential_keeps_prior_step_failed() -> None:
    status, _ = run(doc([step("a"), step("b")], failFast=True), {"a": FAIL})
    assert messages(status)["b"] == "prior step failed"


# -- Hierarchical -----------------------------------------------------------------


def test_hierarchical_children_run_after_their_parent_in_its_mode() -> None:
    tree = [
        step(
            "parent",
            mode="Parallel",
            steps=[step("c1"), step("c2")],
        ),
        step("next"),
    ]
    status, sim = run(doc(tree, mode="Hierarchical"))
    assert status["phase"] == "Succeeded"
    assert launch_times(sim, "parent") == [0.0]
    assert launch_times(sim, "c1") == [1.0]
    assert launch_times(sim, "c2") == [1.0]
    # A sibling starts after the previous sibling's whole subtree.
    assert launch_times(sim, "next") == [2.0]
    assert status["progress"] == "4/4"


def test_hierarchical_children_mode_defaults_to_sequential() -> None:
    tree = [step("parent", steps=[step("c1"), step("c2")])]
    _, sim = run(doc(tree, mode="Hierarchical"))
    assert launch_times(sim, "c1") == [1.0]
    assert launch_times(sim, "c2") == [2.0]


def test_hierarchical_top_level_is_sequential() -> None:
    _, sim = run(doc([step("a"), step("b")], mode="Hierarchical"))
    assert launch_times(sim, "b") == [1.0]


def test_hierarchical_next_sibling_waits_for_grandchildren() -> None:
    tree = [
        step("p", steps=[step("c", steps=[step("g", command=["sleep"])])]),
        step("q"),
    ]
    _, sim = run(doc(tree, mode="Hierarchical"), {"g": Outcome(duration=7.0)})
    assert launch_times(sim, "g") == [2.0]
    assert launch_times(sim, "q") == [9.0]


def test_hierarchical_parent_failure_skips_children_and_later_siblings() -> None:
    tree = [
        step("p", steps=[step("c1"), step("c2", steps=[step("g")])]),
        step("q"),
    ]
    status, _ = run(doc(tree, mode="Hierarchical"), {"p": FAIL})
    assert phases(status) == {
        "p": "Failed",
        "c1": "Skipped",
        "c2": "Skipped",
        "g": "Skipped",
        "q": "Skipped",
    }
    assert messages(status)["c1"] == "parent step failed"
    assert messages(status)["c2"] == "parent step failed"
    assert messages(status)["g"] == "parent step failed"
    assert messages(status)["q"] == "prior step failed"
    assert all(status["steps"][n]["attempts"] == 0 for n in ("c1", "c2", "g", "q"))
    assert status["phase"] == "Failed"
    assert status["progress"] == "5/5"


def test_hierarchical_child_failure_skips_later_top_level_siblings() -> None:
    tree = [step("p", steps=[step("c1"), step("c2")]), step("q")]
    status, _ = run(doc(tree, mode="Hierarchical"), {"c1": FAIL})
    assert phases(status) == {"p": "Succeeded", "c1": "Failed", "c2": "Skipped", "q": "Skipped"}
    assert messages(status)["c2"] == "prior step failed"
    assert messages(status)["q"] == "prior step failed"


def test_hierarchical_children_in_dag_mode() -> None:
    tree = [
        step(
            "p",
            mode="Dag",
            steps=[step("x"), step("y", dependsOn=["x"]), step("z", dependsOn=["y"])],
        )
    ]
    status, _sim = run(doc(tree, mode="Hierarchical"), {"x": FAIL})
    assert phases(status) == {"p": "Succeeded", "x": "Failed", "y": "Skipped", "z": "Skipped"}
    assert messages(status)["z"] == "dependency failed"


def test_hierarchical_parent_without_command_orders_its_children() -> None:
    tree = [{"name": "group", "steps": [step("a"), step("b")]}, step("c")]
    status, sim = run(doc(tree, mode="Hierarchical"))
    assert status["phase"] == "Succeeded"
    assert started(sim) == ["a", "b", "c"]
    assert status["steps"]["group"]["phase"] == "Succeeded"


def test_hierarchical_when_skipped_parent_skips_children_but_not_siblings() -> None:
    tree = [step("p", when="false", steps=[step("c")]), step("q")]
    status, _ = run(doc(tree, mode="Hierarchical"))
    assert phases(status) == {"p": "Skipped", "c": "Skipped", "q": "Succeeded"}
    assert messages(status)["p"] == "condition not met"
    assert status["phase"] == "Succeeded"


# -- run outcome ------------------------------------------------------------------


def test_hanging_step_keeps_the_run_running() -> None:
    sim = simulator(doc([step("a")]), {"a": HANG})
    sim.plan()
    status = sim.state.to_status()
    assert status["phase"] == "Running"
    assert status["steps"]["a"]["phase"] == "Running"
    assert status["steps"]["a"]["attempts"] == 1
    assert status["progress"] == "0/1"
    assert status["conditions"][0]["status"] == "Unknown"
    assert sim.now == T0


def test_all_succeeded_is_succeeded_with_condition_true() -> None:
    status, _ = run(doc([step("a")]), {"a": OK})
    assert status["phase"] == "Succeeded"
    assert status["conditions"][0]["type"] == "Succeeded"
    assert status["conditions"][0]["status"] == "True"
    assert status["conditions"][0]["reason"] == "Succeeded"


def test_hierarchical_parent_does_not_run_the_template_command() -> None:
    tree = [{"name": "group", "steps": [{"name": "a"}, {"name": "b"}]}]
    status, sim = run(doc(tree, mode="Hierarchical", template={"command": ["make"]}))
    assert started(sim) == ["a", "b"]
    group = status["steps"]["group"]
    assert (group["phase"], group["attempts"]) == ("Succeeded", 0)
    assert not [ref for ref in sim.launched if ref.step == "group"]
    assert status["phase"] == "Succeeded"
