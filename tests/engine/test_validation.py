"""Validation: shape errors named by step and wire field, whole-workflow checks.

Covers parse_workflow / parse_workflow_run (pydantic locations mapped to step
names and camelCase fields), every check of validate_workflow (names,
duplicates, dependencies, cycles with their path, mode rules, trigger Any,
``when`` syntax and references, GPU capacity, commands, backoff bounds),
collecting all errors at once, validate_run_params and spec_hash.
Deliberately not: the DSL's own grammar (tests/dsl) or CLI exit codes.
"""

from __future__ import annotations

from typing import Any

import pytest

from szal.engine import (
    SpecIssue,
    WorkflowInvalid,
    parse_workflow,
    parse_workflow_run,
    spec_hash,
    validate_run_params,
    validate_workflow,
)
from szal.spec import WorkflowSpec


def doc(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "szal.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "wf"},
        "spec": spec,
    }


def issues(spec: dict[str, Any], **kwargs: Any) -> list[SpecIssue]:
    return validate_workflow(WorkflowSpec.model_validate(spec), **kwargs)


def texts(spec: dict[str, Any], **kwargs: Any) -> list[str]:
    return [str(i) for i in issues(spec, **kwargs)]


def step(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "command": ["true"], **fields}


# -- SpecIssue and WorkflowInvalid -------------------------------------------


def test_issue_str_names_step_and_field() -> None:
    issue = SpecIssue("spec.steps[build].dependsOn", "build", "dependsOn", "unknown step 'tset'")
    assert str(issue) == "step 'build': dependsOn: unknown step 'tset'"
    assert str(SpecIssue("spec.timeout", None, "timeout", "bad")) == "timeout: bad"


def test_workflow_invalid_lists_every_issue_with_source() -> None:
    a = SpecIssue("p", "a", "f", "one")
    b = SpecIssue("q", None, "g", "two")
    err = WorkflowInvalid([a, b], source="wf.yaml")
    assert isinstance(err, ValueError)
    assert str(err) == "wf.yaml: step 'a': f: one\nwf.yaml: g: two"
    assert err.issues == [a, b]
    assert str(WorkflowInvalid([a])) == "step 'a': f: one"


# -- shape errors ------------------------------------------------------------


def test_valid_document_parses() -> None:
    workflow = parse_workflow(doc({"steps": [step("a")]}))
    assert workflow.spec.version == 1
    assert workflow.spec.steps[0].name == "a"


def test_shape_errors_name_the_step_by_name_and_wire_field() -> None:
    data = doc(
        {
            "mode": "Hierarchical",
            "steps": [
                step("build", timeout="10", dependson=["a"]),
                step("deploy", steps=[{"name": "inner", "retries": {"maxDelay": "1d"}}]),
            ],
        }
    )
    with pytest.raises(WorkflowInvalid) as info:
        parse_workflow(data, source="wf.yaml")
    found = {(i.path, i.step, i.field) for i in info.value.issues}
    assert ("spec.steps[build].timeout", "build", "timeout") in found
    assert ("spec.steps[build].dependson", "build", "dependson") in found
    assert (
        "spec.steps[deploy].steps[inner].retries.maxDelay",
        "inner",
        "retries.maxDelay",
    ) in found
    text = str(info.value)
    assert "wf.yaml: step 'build': timeout: invalid duration '10'" in text
    assert all(line.startswith("wf.yaml: ") for line in text.splitlines())


def test_bad_durations_are_reported_with_go_units_hint() -> None:
    with pytest.raises(WorkflowInvalid) as info:
        parse_workflow(doc({"timeout": "2d", "steps": [step("a", timeout="-1s")]}))
    messages = {(i.step, i.field): i.message for i in info.value.issues}
    assert "invalid duration '2d'" in messages[(None, "timeout")]
    assert "invalid duration '-1s'" in messages[("a", "timeout")]


def test_union_errors_collapse_into_one_issue() -> None:
    with pytest.raises(WorkflowInvalid) as info:
        parse_workflow(doc({"params": [{"name": "p", "default": 1j}], "steps": [step("a")]}))
    (issue,) = info.value.issues
    assert issue.field == "params[0].default"
    assert issue.step is None


def test_kind_and_api_version_are_checked() -> None:
    data = doc({"steps": [step("a")]})
    data["kind"] = "Pipeline"
    data["apiVersion"] = "v1"
    with pytest.raises(WorkflowInvalid) as info:
        parse_workflow(data)
    assert {i.field for i in info.value.issues} == {"kind", "apiVersion"}


def test_non_mapping_document_is_an_issue() -> None:
    with pytest.raises(WorkflowInvalid):
        parse_workflow(["not", "a", "mapping"])  # type: ignore[arg-type]


def test_parse_workflow_also_runs_whole_workflow_checks() -> None:
    with pytest.raises(WorkflowInvalid) as info:
        parse_workflow(doc({"mode": "Dag", "steps": [step("a", dependsOn=["b"])]}))
    assert str(info.value) == "step 'a': dependsOn: unknown step 'b'"


def test_workflow_run_with_inline_workflow_is_validated() -> None:
    run = {
        "apiVersion": "szal.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": "r"},
        "spec": {
            "workflow": {"mode": "Dag", "steps": [step("a", dependsOn=["zz"])]},
            "params": {"nope": 1},
        },
    }
    with pytest.raises(WorkflowInvalid) as info:
        parse_workflow_run(run, source="run.yaml")
    paths = {i.path for i in info.value.issues}
    assert "spec.workflow.steps[a].dependsOn" in paths
    assert "spec.params.nope" in paths


def test_workflow_run_shape_error_inside_inline_steps() -> None:
    run = {
        "apiVersion": "szal.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": "r"},
        "spec": {"workflow": {"steps": [step("a", timeout="x")]}},
    }
    with pytest.raises(WorkflowInvalid) as info:
        parse_workflow_run(run)
    (issue,) = info.value.issues
    assert (issue.path, issue.step, issue.field) == (
        "spec.workflow.steps[a].timeout",
        "a",
        "timeout",
    )


def test_workflow_run_needs_a_workflow() -> None:
    run = {
        "apiVersion": "szal.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": "r"},
        "spec": {},
    }
    with pytest.raises(WorkflowInvalid):
        parse_workflow_run(run)
    run["spec"] = {"workflowRef": {"name": "ci"}}
    assert parse_workflow_run(run).spec.workflow_ref is not None


# -- names -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Build", "build_1", "-a", "a-", "a.b"])
def test_invalid_names(name: str) -> None:
    (issue,) = issues({"steps": [step(name)]})
    assert (issue.step, issue.field) == (name, "name")
    assert "DNS-1123" in issue.message


def test_duplicate_names_anywhere_in_the_tree() -> None:
    spec = {
        "mode": "Hierarchical",
        "steps": [step("a", steps=[step("b")]), step("b")],
    }
    (issue,) = issues(spec)
    assert issue.step == "b" and issue.field == "name"
    assert "duplicate name 'b'" in issue.message


# -- dependencies, cycles, modes ---------------------------------------------


def test_unknown_dependency() -> None:
    assert texts({"mode": "Dag", "steps": [step("build"), step("test", dependsOn=["tset"])]}) == [
        "step 'test': dependsOn: unknown step 'tset'"
    ]


def test_cycle_message_names_the_cycle_path() -> None:
    spec = {
        "mode": "Dag",
        "steps": [
            step("build", dependsOn=["test"]),
            step("test", dependsOn=["build"]),
        ],
    }
    assert texts(spec) == ["step 'build': dependsOn: dependency cycle: build -> test -> build"]


def test_cycles_are_deterministic_and_each_reported_once() -> None:
    spec = {
        "mode": "Dag",
        "steps": [
            step("x"),
            step("c", dependsOn=["a"]),
            step("a", dependsOn=["b"]),
            step("b", dependsOn=["c"]),
            step("self", dependsOn=["self"]),
        ],
    }
    first = texts(spec)
    assert first == texts(spec)
    assert first == [
        "step 'c': dependsOn: dependency cycle: c -> a -> b -> c",
        "step 'self': dependsOn: dependency cycle: self -> self",
    ]


@pytest.mark.parametrize("mode", ["Sequential", "Parallel", "Hierarchical"])
def test_depends_on_outside_dag_mode(mode: str) -> None:
    (issue,) = issues({"mode": mode, "steps": [step("a"), step("b", dependsOn=["a"])]})
    assert (issue.step, issue.field) == ("b", "dependsOn")
    assert "only in Dag mode" in issue.message


def test_depends_on_among_children_follows_the_parents_mode() -> None:
    ok = {
        "mode": "Hierarchical",
        "steps": [step("p", mode="Dag", steps=[step("a"), step("b", dependsOn=["a"])])],
    }
    assert issues(ok) == []
    bad = {
        "mode": "Hierarchical",
        "steps": [step("p", steps=[step("a"), step("b", dependsOn=["a"])])],
    }
    (issue,) = issues(bad)
    assert issue.step == "b" and "parent 'p' runs Sequential" in issue.message


def test_depends_on_must_name_a_sibling() -> None:
    spec = {
        "mode": "Hierarchical",
        "steps": [
            step("p", mode="Dag", steps=[step("a")]),
            step("q", mode="Dag", steps=[step("b", dependsOn=["a"])]),
        ],
    }
    (issue,) = issues(spec)
    assert issue.step == "b" and "not a sibling" in issue.message


def test_nested_steps_only_in_hierarchical_mode() -> None:
    (issue,) = issues({"mode": "Dag", "steps": [step("p", steps=[step("c")])]})
    assert (issue.step, issue.field) == ("p", "steps")
    assert "Hierarchical" in issue.message


def test_trigger_any_needs_depends_on() -> None:
    (issue,) = issues({"mode": "Dag", "steps": [step("a", trigger="Any")]})
    assert (issue.step, issue.field, issue.message) == (
        "a",
        "trigger",
        "trigger Any needs dependsOn",
    )


# -- when ----------------------------------------------------------------------


def test_when_parse_error_has_line_and_column() -> None:
    (issue,) = issues({"steps": [step("a", when="params.x ==")]})
    assert (issue.step, issue.field) == ("a", "when")
    assert "line 1" in issue.message and "column" in issue.message


def test_blank_when_is_no_condition() -> None:
    assert issues({"steps": [step("a", when="   ")]}) == []


def test_when_unknown_param_and_step() -> None:
    spec = {
        "params": [{"name": "env", "default": "dev"}],
        "steps": [step("a"), step("b", when="params.nope == 1 && steps.ghost.phase == 'x'")],
    }
    assert sorted(texts(spec)) == [
        "step 'b': when: unknown param 'nope'",
        "step 'b': when: unknown step 'ghost'",
    ]


def test_when_in_sequential_may_name_only_earlier_steps() -> None:
    spec = {
        "steps": [
            step("a"),
            step("b", when="steps.a.exitCode == 0"),
            step("c", when="steps.d.exitCode == 0"),
            step("d"),
        ]
    }
    (issue,) = issues(spec)
    assert issue.step == "c" and "'d' is not certain to have finished" in issue.message


def test_when_in_parallel_may_name_no_step() -> None:
    spec = {"mode": "Parallel", "steps": [step("a"), step("b", when="steps.a.phase == 'x'")]}
    (issue,) = issues(spec)
    assert issue.step == "b" and issue.field == "when"


def test_when_itself_is_not_before() -> None:
    (issue,) = issues({"steps": [step("a", when="steps.a.phase == 'x'")]})
    assert "not certain" in issue.message


def test_when_in_dag_may_name_transitive_upstream_only() -> None:
    spec = {
        "mode": "Dag",
        "steps": [
            step("a"),
            step("b", dependsOn=["a"]),
            step("side"),
            step("c", dependsOn=["b"], when="steps.a.exitCode == 0 && steps.b.phase == 'x'"),
            step("d", dependsOn=["b"], when="steps.side.phase == 'x'"),
        ],
    }
    (issue,) = issues(spec)
    assert issue.step == "d" and "'side'" in issue.message


def test_when_in_hierarchical_ancestors_and_earlier_siblings() -> None:
    spec = {
        "mode": "Hierarchical",
        "steps": [
            step("first", steps=[step("first-child")]),
            step(
                "p",
                mode="Parallel",
                steps=[
                    step(
                        "c1",
                        when="steps.p.phase == 'x' && steps.first.phase == 'x' "
                        "&& steps['first-child'].phase == 'x'",
                    ),
                    step("c2", when="steps.c1.phase == 'x'"),
                ],
            ),
            step("last", when="steps.c2.phase == 'x'"),
            step("early", when="steps.later.phase == 'x'"),
            step("later"),
        ],
    }
    found = {(i.step, i.message.split(" is ")[0]) for i in issues(spec)}
    assert found == {("c2", "step 'c1'"), ("early", "step 'later'")}


def test_when_unknown_step_field() -> None:
    (issue,) = issues({"steps": [step("a"), step("b", when="steps.a.colour == 'x'")]})
    assert "'colour'" in issue.message and issue.field == "when"


# -- resources, commands, retries ---------------------------------------------


def test_gpu_count_beyond_this_machine() -> None:
    spec = {"steps": [step("train", resources={"gpu": {"count": 4}})]}
    assert issues(spec) == []
    (issue,) = issues(spec, gpus_available=1)
    assert (issue.step, issue.field) == ("train", "resources.gpu.count")
    assert "4" in issue.message and "1" in issue.message
    assert issues(spec, gpus_available=4) == []


def test_gpu_from_template_counts() -> None:
    spec = {"template": {"resources": {"gpu": {"count": 2}}}, "steps": [step("a")]}
    (issue,) = issues(spec, gpus_available=0)
    assert issue.field == "resources.gpu.count"


def test_step_needs_something_to_run() -> None:
    (issue,) = issues({"steps": [{"name": "a"}]})
    assert (issue.step, issue.field) == ("a", "command")
    assert issues({"template": {"script": "echo"}, "steps": [{"name": "a"}]}) == []
    parent_only = {"mode": "Hierarchical", "steps": [{"name": "p", "steps": [step("c")]}]}
    assert issues(parent_only) == []


def test_command_and_script_together() -> None:
    (issue,) = issues({"steps": [step("a", script="echo")]})
    assert issue.field == "script"


def test_max_delay_shorter_than_delay() -> None:
    (issue,) = issues({"steps": [step("a", retries={"delay": "2s", "maxDelay": "1s"})]})
    assert (issue.step, issue.field) == ("a", "retries.maxDelay")


def test_rollback_needs_a_command() -> None:
    (issue,) = issues({"steps": [step("a", rollback={"image": "x"})]})
    assert (issue.step, issue.field) == ("a", "rollback.command")


def test_all_errors_are_collected() -> None:
    spec = {
        "mode": "Dag",
        "steps": [
            step("Bad"),
            step("a", dependsOn=["nope"], when="params.x"),
            step("b", dependsOn=["c"]),
            step("c", dependsOn=["b"]),
            step("d", trigger="Any"),
            {"name": "e"},
        ],
    }
    fields = sorted((i.step or "", i.field) for i in issues(spec))
    assert fields == [
        ("Bad", "name"),
        ("a", "dependsOn"),
        ("a", "when"),
        ("b", "dependsOn"),
        ("d", "trigger"),
        ("e", "command"),
    ]


def test_validation_of_a_long_chain_is_fast() -> None:
    n = 5000
    steps = [step("s0")] + [step(f"s{i}", dependsOn=[f"s{i - 1}"]) for i in range(1, n)]
    steps.append(step("join", dependsOn=[f"s{i}" for i in range(n)]))
    assert issues({"mode": "Dag", "steps": steps}) == []


# -- params and hashes -------------------------------------------------------------


def test_run_params_defaults_unknown_and_missing() -> None:
    spec = WorkflowSpec.model_validate(
        {
            "params": [{"name": "env", "default": "staging"}, {"name": "version"}],
            "steps": [step("a")],
        }
    )
    resolved, problems = validate_run_params(spec, {"version": "1.2", "colour": "red"})
    assert resolved == {"env": "staging", "version": "1.2"}
    assert [str(p) for p in problems] == [
        "params.colour: unknown param 'colour' (the workflow declares: env, version)"
    ]
    resolved, problems = validate_run_params(spec, {"env": "prod"})
    assert resolved == {"env": "prod"}
    assert [p.message for p in problems] == ["missing required param 'version'"]


def test_spec_hash_is_canonical_and_short() -> None:
    a = WorkflowSpec.model_validate({"steps": [step("a")]})
    b = WorkflowSpec.model_validate({"version": 1, "mode": "Sequential", "steps": [step("a")]})
    c = WorkflowSpec.model_validate({"steps": [step("b")]})
    assert spec_hash(a) == spec_hash(b)
    assert spec_hash(a) != spec_hash(c)
    assert len(spec_hash(a)) == 16
    int(spec_hash(a), 16)


# -- finally steps ------------------------------------------------------------------


def test_finally_dependencies_stay_among_finally_steps() -> None:
    spec = {
        "mode": "Dag",
        "steps": [step("a"), step("b", dependsOn=["f"])],
        "finally": [step("f"), step("g", dependsOn=["a"]), step("h", dependsOn=["f"])],
    }
    found = issues(spec)
    assert [(i.path, i.step, i.field) for i in found] == [
        ("spec.steps[b].dependsOn", "b", "dependsOn"),
        ("spec.finally[g].dependsOn", "g", "dependsOn"),
    ]
    assert "'f' is a finally step: a main step cannot depend on it" in found[0].message
    assert "'a' is a main step: a finally step may depend only on finally steps" in (
        found[1].message
    )


def test_finally_depends_on_needs_dag_mode() -> None:
    found = texts({"steps": [step("a")], "finally": [step("f"), step("g", dependsOn=["f"])]})
    assert found == [
        "step 'g': dependsOn: dependsOn is allowed only in Dag mode "
        "(finally steps run Parallel when the workflow runs Sequential)"
    ]


def test_finally_names_are_unique_across_main_and_finally() -> None:
    found = texts({"steps": [step("a")], "finally": [step("a")]})
    assert found == [
        "step 'a': name: duplicate name 'a': step names must be unique in the whole "
        "workflow (first at spec.steps[a])"
    ]


def test_finally_steps_do_not_nest() -> None:
    spec = {"mode": "Hierarchical", "steps": [step("a")], "finally": [step("f", steps=[step("x")])]}
    assert "step 'f': steps: a finally step cannot have nested steps" in texts(spec)


def test_finally_when_reads_the_run_outcome_and_main_steps() -> None:
    spec = {
        "mode": "Parallel",
        "steps": [step("a"), step("b", when="run.phase == 'Failed'")],
        "finally": [
            step("f", when="run.phase != 'Succeeded' && 'a' in run.failedSteps"),
            step("g", when="steps.a.outputs.x == 1 && steps.b.phase == 'Failed'"),
            step("h", when="steps.f.phase == 'Failed'"),
        ],
    }
    found = texts(spec)
    assert len(found) == 2
    assert found[0] == ("step 'b': when: unknown run field 'phase' (only finally steps read it)")
    assert found[1].startswith("step 'h': when: step 'f' is not certain to have finished")
    dag = {
        "mode": "Dag",
        "steps": [step("a")],
        "finally": [step("f"), step("h", dependsOn=["f"], when="steps.f.phase == 'Failed'")],
    }
    assert texts(dag) == []
