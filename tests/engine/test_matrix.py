"""Matrix fan-out in the engine: validation, expansion, planning, restarts.

Covers every misuse refused by validation or admission (with the step and
field named), the expansion (cross product order, include, forEach over a
params list or a literal, instance env and context), and the planner over
instances in virtual time: dependents wait for every instance, a failed
instance fails the unit (``dependency failed``, failFast), trigger Any,
the workflow's and the matrix's own maxParallel, outputs reaching a
dependent as a list, and a restart from a status saved mid-expansion.
Deliberately not: processes (tests/local) or random workflows
(tests/engine/test_planner_properties.py draws matrices too).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.engine.simulator import Outcome, Simulator, by_step, resolve

from szal.engine import Admitted, Refused, admit, step_environment, validate_workflow
from szal.engine.matrices import fan_out_message
from szal.spec import WorkflowSpec


def step(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "command": ["run", name], **fields}


def texts(spec: dict[str, Any]) -> list[str]:
    return [str(i) for i in validate_workflow(WorkflowSpec.model_validate(spec))]


def refused(spec: dict[str, Any], params: dict[str, Any] | None = None) -> list[str]:
    outcome = admit(spec, params or {})
    assert isinstance(outcome, Refused), outcome
    return [str(issue) for issue in outcome.issues]


CROSS = {"params": {"lr": [0.1, 0.01], "batch": [32, 64]}}


# -- validation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"steps": [step("t", matrix=CROSS, when="matrix.epochs > 1")]},
            "step 't': when: unknown matrix param 'epochs' (the matrix has: batch, lr)",
        ),
        (
            {"steps": [step("t", when="matrix.lr > 1")]},
            "step 't': when: 'matrix.lr' in a step without matrix or forEach",
        ),
        (
            {"steps": [step("t", matrix={})]},
            "step 't': matrix: empty matrix: give matrix.params, matrix.include or forEach",
        ),
        (
            {"steps": [step("t", matrix={"params": {"lr": []}})]},
            "step 't': matrix.params.lr: matrix param 'lr' has no values",
        ),
        (
            {"steps": [step("t", matrix={"include": [{}]})]},
            "step 't': matrix.include[0]: an include entry needs at least one value",
        ),
        (
            {"steps": [step("t", matrix={"params": {"x": list(range(1001))}})]},
            "step 't': matrix: expands to 1001 instances; at most 1000 are allowed",
        ),
        (
            {
                "steps": [
                    step(
                        "t",
                        matrix={"params": {"a": list(range(40)), "b": list(range(30))}},
                    )
                ]
            },
            "step 't': matrix: expands to 1200 instances; at most 1000 are allowed",
        ),
        (
            {"steps": [step("t", forEach="params.items")]},
            "step 't': forEach: unknown param 'items'",
        ),
        (
            {
                "mode": "Dag",
                "steps": [step("a"), step("t", dependsOn=["a"], forEach="steps.a.outputs")],
            },
            "step 't': forEach: forEach over step outputs (steps.a) is not supported yet:"
            " use a list from params",
        ),
        (
            {
                "params": [{"name": "xs", "default": "[1]"}],
                "steps": [step("t", forEach="params.xs", matrix=CROSS)],
            },
            "step 't': matrix: give matrix.params/matrix.include or forEach, not both",
        ),
        (
            {
                "mode": "Hierarchical",
                "steps": [step("t", matrix=CROSS, steps=[step("child")])],
            },
            "step 't': matrix: a step with a matrix or forEach cannot have children (steps)",
        ),
        (
            {"steps": [step("a")], "finally": [step("notify", matrix=CROSS)]},
            "step 'notify': matrix: a finally step cannot fan out (matrix, forEach)",
        ),
        (
            {"steps": [step("a")], "finally": [step("notify", forEach="params.xs")]},
            "step 'notify': forEach: a finally step cannot fan out (matrix, forEach)",
        ),
        (
            {"steps": [step("t" * 62, matrix={"params": {"x": list(range(11))}})]},
            f"step '{'t' * 62}': name: instance name '{'t' * 62}-10' is longer than 63 characters",
        ),
    ],
)
def test_each_misuse_is_an_issue_naming_step_and_field(spec: dict[str, Any], expected: str) -> None:
    assert expected in texts(spec)
    assert expected in refused(spec)


def test_a_valid_matrix_has_no_issue() -> None:
    spec = {"steps": [step("t", matrix={**CROSS, "maxParallel": 2}, when="matrix.lr > 0.05")]}
    assert texts(spec) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("eu", "forEach over a non-list: 'params.xs' is the text 'eu', not a JSON list"),
        ('{"a": 1}', "forEach over a non-list: 'params.xs' is {\"a\": 1}, not a list"),
        (3, "forEach over a non-list: 'params.xs' is 3, not a list"),
        ("[]", "forEach over an empty list: 'params.xs' has no items"),
        (json.dumps(list(range(1001))), "expands to 1001 instances; at most 1000 are allowed"),
    ],
)
def test_a_foreach_that_gives_no_usable_list_is_refused_at_admission(
    value: Any, expected: str
) -> None:
    # An untyped param with no default is a string: 3 needs a declared type to get here.
    declared = {"name": "xs", "type": "integer"} if isinstance(value, int) else {"name": "xs"}
    spec = {"params": [declared], "steps": [step("t", forEach="params.xs")]}
    assert texts(spec) == []  # only the run's params show it
    assert refused(spec, {"xs": value}) == [f"step 't': forEach: {expected}"]


def test_an_instance_name_taken_by_another_step_is_refused() -> None:
    spec = {"steps": [step("t", matrix={"params": {"x": [1, 2]}}), step("t-1")]}
    assert refused(spec) == ["step 't': name: instance 't-1' has the name of another step"]


# -- expansion -------------------------------------------------------------------


def test_the_cross_product_then_include_in_order_with_env_and_context() -> None:
    spec = {
        "mode": "Dag",
        "steps": [
            step(
                "train",
                matrix={**CROSS, "include": [{"lr": 0.5, "batch": 8, "tag": "x"}]},
                env=[{"name": "KEEP", "value": "1"}],
            ),
            step("report", dependsOn=["train"]),
        ],
    }
    outcome = admit(spec, {})
    assert isinstance(outcome, Admitted)
    wf = outcome.workflow
    names = [s.name for s in wf.steps]
    assert names == ["train", *(f"train-{k}" for k in range(5)), "report"]
    assert [wf.by_name[f"train-{k}"].matrix for k in range(5)] == [
        {"lr": 0.1, "batch": 32},
        {"lr": 0.1, "batch": 64},
        {"lr": 0.01, "batch": 32},
        {"lr": 0.01, "batch": 64},
        {"lr": 0.5, "batch": 8, "tag": "x"},
    ]
    fan_out = wf.by_name["train"]
    assert fan_out.fan_out and fan_out.children == tuple(f"train-{k}" for k in range(5))
    assert fan_out.command.argv() == []  # it runs nothing of its own
    sim = Simulator(wf, by_step({f"train-{k}": Outcome(outputs={"k": k}) for k in range(5)}))
    state = sim.run()
    assert state.phase.value == "Succeeded"
    assert state.steps["train"].message == fan_out_message(5)
    env = step_environment(sim.compiled, state, "train-4", 1, run_name="r")
    assert (env["KEEP"], env["SZAL_MATRIX_LR"], env["SZAL_MATRIX_BATCH"]) == ("1", "0.5", "8")
    assert env["SZAL_MATRIX_TAG"] == "x"
    context = json.loads(env["SZAL_CONTEXT"])
    assert context["matrix"] == {"lr": 0.5, "batch": 8, "tag": "x"}
    report = json.loads(
        step_environment(sim.compiled, state, "report", 1, run_name="r")["SZAL_CONTEXT"]
    )
    assert report["steps"]["train"]["outputs"] == [{"k": k} for k in range(5)]
    assert "matrix" not in report


@pytest.mark.parametrize(
    ("expression", "params", "items"),
    [
        ("params.xs", {"xs": '["a", "b"]'}, ["a", "b"]),
        ("params.xs", {"xs": '[1, {"k": 2}]'}, [1, {"k": 2}]),
        ("[1, 2, 3]", {"xs": "[]"}, [1, 2, 3]),
    ],
)
def test_foreach_items(expression: str, params: dict[str, Any], items: list[Any]) -> None:
    spec = {"params": [{"name": "xs"}], "steps": [step("t", forEach=expression)]}
    outcome = admit(spec, params)
    assert isinstance(outcome, Admitted), outcome
    wf = outcome.workflow
    assert [wf.by_name[f"t-{k}"].matrix for k in range(len(items))] == [
        {"item": item} for item in items
    ]
    env = dict(wf.by_name["t-0"].command.env)
    expected = items[0] if isinstance(items[0], str) else json.dumps(items[0])
    assert env["SZAL_MATRIX_ITEM"] == expected


# -- planning --------------------------------------------------------------------


def test_dependents_wait_for_every_instance_and_read_their_outputs_in_when() -> None:
    spec = {
        "mode": "Dag",
        "steps": [
            step("train", matrix={"params": {"x": [1, 2, 3]}}),
            step("best", dependsOn=["train"], when="steps.train.outputs[2].score > 0.5"),
        ],
    }
    durations = {"train-0": 1.0, "train-1": 5.0, "train-2": 2.0}
    sim = Simulator(
        resolve(spec),
        lambda ref: Outcome(duration=durations.get(ref.step, 1.0), outputs={"score": 0.9}),
    )
    state = sim.run()
    assert sim.launched_steps() == ["train-0", "train-1", "train-2", "best"]
    best = next(at for at, launch in sim.launches if launch.ref.step == "best")
    assert best == sim.launches[0][0] + 5.0
    assert state.progress == "5/5"


def test_a_failed_instance_fails_the_unit_and_the_run() -> None:
    spec = {
        "mode": "Dag",
        "steps": [
            step("train", matrix={"params": {"x": [1, 2, 3]}}),
            step("report", dependsOn=["train"]),
            step("any", dependsOn=["train"], trigger="Any"),
            step("other"),
        ],
    }
    sim = Simulator(resolve(spec), by_step({"train-1": Outcome("Failed")}))
    state = sim.run()
    phases = {name: rec.phase.value for name, rec in state.steps.items()}
    assert phases == {
        "train": "Succeeded",
        "train-0": "Succeeded",
        "train-1": "Failed",
        "train-2": "Succeeded",
        "report": "Skipped",
        "any": "Skipped",
        "other": "Succeeded",
    }
    assert state.steps["report"].message == "dependency failed"
    assert state.phase.value == "Failed"


def test_fail_fast_skips_the_instances_not_started() -> None:
    spec = {
        "failFast": True,
        "maxParallel": 1,
        "steps": [step("t", matrix={"params": {"x": [1, 2, 3]}}), step("after")],
    }
    sim = Simulator(resolve(spec), by_step({"t-0": Outcome("Failed")}))
    state = sim.run()
    assert sim.launched_steps() == ["t-0"]
    assert [state.steps[f"t-{k}"].phase.value for k in range(3)] == [
        "Failed",
        "Skipped",
        "Skipped",
    ]
    assert state.steps["t-1"].message == "skipped by failFast: step 't-0' failed"
    # The unit is not done when t-0 fails, so failFast's sweep reaches `after` first.
    assert state.steps["after"].message == "skipped by failFast: step 't-0' failed"


@pytest.mark.parametrize(("workflow_limit", "matrix_limit", "expected"), [(None, 2, 2), (1, 3, 1)])
def test_both_max_parallels_cap_running_instances(
    workflow_limit: int | None, matrix_limit: int, expected: int
) -> None:
    spec: dict[str, Any] = {
        "mode": "Parallel",
        "steps": [
            step("t", matrix={"params": {"x": list(range(6))}, "maxParallel": matrix_limit}),
            step("free"),
        ],
    }
    if workflow_limit is not None:
        spec["maxParallel"] = workflow_limit
    peak = 0

    def watch(sim: Simulator, plan: Any) -> None:
        nonlocal peak
        running = [n for n, r in sim.state.steps.items() if n.startswith("t-") and r.attempts]
        running = [n for n in running if sim.state.steps[n].phase.value == "Running"]
        peak = max(peak, len(running))

    sim = Simulator(resolve(spec))
    state = sim.run(on_plan=watch)
    assert peak == expected
    assert state.phase.value == "Succeeded"
    if workflow_limit is None:
        # The matrix's own cap does not hold back other steps.
        assert sim.launches[0][0] == next(at for at, a in sim.launches if a.ref.step == "free")


def test_a_restart_from_a_status_saved_mid_expansion_launches_nothing_twice() -> None:
    spec = {
        "mode": "Dag",
        "steps": [
            step("t", matrix={"params": {"x": list(range(8))}, "maxParallel": 3}),
            step("after", dependsOn=["t"]),
        ],
    }
    wf = resolve(spec)
    kept = Simulator(wf)
    kept.run()
    for stale in (False, True):
        for call in range(1, 8):
            sim = Simulator(wf)
            state = sim.run(restart_at={call}, stale=stale)
            assert state.phase.value == "Succeeded"
            assert sim.launched_steps() == kept.launched_steps()
            got, want = state.to_status()["steps"], kept.state.to_status()["steps"]
            if stale:
                # Adopted from a status one call old, a step's startedAt is when
                # the new session saw it running (as for any step, not only instances).
                for record in (*got.values(), *want.values()):
                    record.pop("startedAt", None)
            assert got == want
