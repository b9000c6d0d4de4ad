"""The one way in (``szal.engine.admitting``) and what validation reports past shape errors.

Covers: admit's results (a resolved run with defaults filled, or every issue:
shape and whole-workflow problems together, params against the declared ones,
non-scalar param values, a migration failure); the sources it takes (a
document, a bare spec, a parsed spec, an admitted definition); that one
admission runs the whole-workflow checks exactly once; an unknown field
naming the closest known field in every kind of object; a shape error in one
step not hiding a cycle, a duplicate or an unknown dependency elsewhere,
without made-up problems.

Not covered here: the callers' wording and exit codes (tests/local,
tests/kubernetes) and the checks themselves (test_validation.py).
"""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from tests.engine.test_validation import doc, step

from szal.engine.admitting import Admitted, Definition, Refused, admit, admit_definition
from szal.engine.validation import WorkflowInvalid, parse_workflow, parse_workflow_run
from szal.spec import WorkflowSpec


def refused(outcome: Admitted | Refused | Definition) -> list[str]:
    assert isinstance(outcome, Refused), outcome
    return [str(issue) for issue in outcome.issues]


CYCLE = [step("c", dependsOn=["d"]), step("d", dependsOn=["c"])]
CYCLE_TEXT = "step 'c': dependsOn: dependency cycle: c -> d -> c"


# -- results -----------------------------------------------------------------------


def test_a_valid_run_is_resolved_with_defaults(validations: mock.MagicMock) -> None:
    spec = {
        "params": [{"name": "env", "default": "dev"}, {"name": "n", "type": "integer"}],
        "steps": [step("a")],
    }
    admitted = admit(doc(spec), {"n": 3})
    assert isinstance(admitted, Admitted)
    assert admitted.params == {"env": "dev", "n": 3}
    assert admitted.workflow.name == "wf"
    assert admitted.workflow.params == {"env": "dev", "n": 3}
    assert [s.name for s in admitted.workflow.steps] == ["a"]
    assert admitted.definition.written == spec
    assert validations.call_count == 1


def test_every_issue_comes_back_at_once(validations: mock.MagicMock) -> None:
    spec = {"mode": "Dag", "params": [{"name": "env"}], "steps": [step("a", timeout="x"), *CYCLE]}
    found = refused(admit(doc(spec), {"colour": "red"}))
    assert found[0].startswith("step 'a': timeout: invalid duration 'x'")
    assert CYCLE_TEXT in found
    # Shape errors: the declared params are not trusted, so they are not checked.
    assert not any("colour" in line for line in found)
    assert validations.call_count == 1


def test_params_are_checked_next_to_whole_workflow_problems() -> None:
    spec = {"mode": "Dag", "params": [{"name": "env"}], "steps": CYCLE}
    found = refused(admit(doc(spec), {"colour": "red"}))
    assert found == [
        CYCLE_TEXT,
        "params.colour: unknown param 'colour' (the workflow declares: env)",
        "params.env: missing required param 'env'",
    ]


@pytest.mark.parametrize(
    ("value", "shown"), [({"a": 1}, 'object {"a": 1}'), ([1], "array [1]"), (None, "null")]
)
def test_an_untyped_param_without_default_is_a_string(value: Any, shown: str) -> None:
    spec = {"params": [{"name": "env"}], "steps": [step("a")]}
    assert refused(admit(doc(spec), {"env": value})) == [
        f"params.env: param 'env' expects a string (type string), got {shown}"
    ]


def test_params_must_be_a_mapping() -> None:
    found = refused(admit(doc({"steps": [step("a")]}), ["env"]))  # type: ignore[arg-type]
    assert found == ["params: must be a mapping of names to values, got a list"]


def test_a_format_newer_than_the_code_is_one_issue() -> None:
    document = doc({"steps": [step("a", timeout="x")]})
    document["apiVersion"] = "szal.dev/v9"
    found = refused(admit(document))
    assert len(found) == 1
    assert found[0].startswith("apiVersion: ") and "szal.dev/v9" in found[0]


@pytest.mark.parametrize("version", [1, 5, 7, 2026])
def test_any_author_version_is_admitted_and_pinned(version: int) -> None:
    outcome = admit(doc({"version": version, "steps": [step("a")]}))
    assert isinstance(outcome, Admitted), outcome
    assert outcome.workflow.version == version


def test_a_document_must_be_a_mapping() -> None:
    assert refused(admit(["a"])) == ["a Workflow document must be a mapping"]  # type: ignore[arg-type]


# -- sources -----------------------------------------------------------------------


def test_a_bare_spec_is_located_like_a_document(validations: mock.MagicMock) -> None:
    outcome = admit({"mode": "Dag", "steps": [step("a", comand=["x"]), *CYCLE]}, name="r1")
    assert isinstance(outcome, Refused)
    assert [(i.path, str(i)) for i in outcome.issues] == [
        ("spec.steps[a].comand", "step 'a': comand: unknown field; did you mean 'command'?"),
        ("spec.steps[c].dependsOn", CYCLE_TEXT),
    ]
    admitted = admit({"steps": [step("a")]}, name="r1")
    assert isinstance(admitted, Admitted) and admitted.workflow.name == "r1"
    assert admitted.definition.metadata is None
    assert validations.call_count == 2


def test_a_parsed_spec_and_an_admitted_definition(validations: mock.MagicMock) -> None:
    spec = WorkflowSpec.model_validate({"steps": [step("a")]})
    assert isinstance(admit(spec, name="p"), Admitted)
    assert validations.call_count == 1
    definition = admit_definition(doc({"params": [{"name": "n"}], "steps": [step("a")]}))
    assert isinstance(definition, Definition)
    assert validations.call_count == 2
    admitted = admit(definition, {"n": "1"})
    assert isinstance(admitted, Admitted) and admitted.params == {"n": "1"}
    assert refused(admit(definition, {})) == ["params.n: missing required param 'n'"]
    assert validations.call_count == 2  # an admitted definition is not checked again


def test_gpu_capacity_is_checked_when_given() -> None:
    spec = {"steps": [step("train", resources={"gpu": {"count": 2}})]}
    assert isinstance(admit(doc(spec)), Admitted)
    assert refused(admit(doc(spec), gpus_available=1)) == [
        "step 'train': resources.gpu.count: requests 2 GPU(s) but this machine has 1"
    ]


# -- the closest known field -------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"steps": [{"name": "a", "comand": ["x"]}]},
            "step 'a': comand: unknown field; did you mean 'command'?",
        ),
        (
            {"mode": "Dag", "steps": [step("a"), step("b", dependson=["a"])]},
            "step 'b': dependson: unknown field; did you mean 'dependsOn'?",
        ),
        (
            {"steps": [step("a", rollback={"scrpt": "x"})]},
            "step 'a': rollback.scrpt: unknown field; did you mean 'script'?",
        ),
        (
            {"steps": [step("a", retries={"limt": 2})]},
            "step 'a': retries.limt: unknown field; did you mean 'limit'?",
        ),
        ({"templat": {}, "steps": [step("a")]}, "templat: unknown field; did you mean 'template'?"),
        (
            {"template": {"imag": "x"}, "steps": [step("a")]},
            "template.imag: unknown field; did you mean 'image'?",
        ),
        (
            {"maxparallel": 2, "steps": [step("a")]},
            "maxparallel: unknown field; did you mean 'maxParallel'?",
        ),
        ({"zzz": 1, "steps": [step("a")]}, "zzz: unknown field"),
    ],
)
def test_an_unknown_field_names_the_closest_known_one(spec: dict[str, Any], expected: str) -> None:
    assert refused(admit(doc(spec))) == [expected]


def test_the_hint_in_a_run_and_for_argo_fields() -> None:
    run = {
        "apiVersion": "szal.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": "r"},
        "spec": {"workflowRf": {"name": "x"}, "workflow": {"steps": [step("a", imge="x")]}},
    }
    with pytest.raises(WorkflowInvalid) as info:
        parse_workflow_run(run)
    assert [str(i) for i in info.value.issues] == [
        "step 'a': imge: unknown field; did you mean 'image'?",
        "workflowRf: unknown field; did you mean 'workflowRef'?",
    ]
    (argo,) = refused(admit(doc({"templates": [], "steps": [step("a")]})))
    assert "an Argo Workflows field" in argo and "did you mean" not in argo


# -- shape errors hide nothing else ------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "shape"),
    [
        (step("b", comand=["x"]), "step 'b': comand: unknown field; did you mean 'command'?"),
        (step("b", timeout=5), "step 'b': timeout: invalid duration 5"),
        (step("b", dependsOn="a"), "step 'b': dependsOn: Input should be a valid list"),
        ({"command": ["x"]}, "step '#1': name: required field is missing"),
        (step("b", mode="Daggy"), "step 'b': mode: Input should be 'Sequential'"),
        (step("b", env=[{"name": "1x"}]), "step 'b': env[0].name: String should match"),
        (step("b", command=[1]), "step 'b': command[0]: Input should be a valid string"),
        (
            step("b", rollback={"script": "x", "timeout": "x"}),
            "step 'b': rollback.timeout: invalid duration",
        ),
        (step("b", resources={"gpu": {"count": 0}}), "step 'b': resources.gpu.count: Input should"),
    ],
)
def test_a_shape_error_in_one_step_hides_no_cycle_elsewhere(
    bad: dict[str, Any], shape: str, validations: mock.MagicMock
) -> None:
    found = refused(admit(doc({"mode": "Dag", "steps": [step("a"), bad, *CYCLE]})))
    assert len(found) == 2, found
    assert found[0].startswith(shape)
    assert found[1] == CYCLE_TEXT
    assert validations.call_count == 1


def test_duplicates_and_unknown_dependencies_are_reported_past_shape_errors() -> None:
    spec = {
        "mode": "Dag",
        "timeout": "forever",
        "steps": [step("a"), step("a", retries={"delay": 1}), step("c", dependsOn=["zz"])],
    }
    with pytest.raises(WorkflowInvalid) as info:
        parse_workflow(doc(spec))
    assert [(i.step, i.field) for i in info.value.issues] == [
        (None, "timeout"),
        ("a", "retries.delay"),
        ("a", "name"),
        ("c", "dependsOn"),
    ]


def test_outside_the_spec_a_shape_error_hides_nothing() -> None:
    data = doc({"mode": "Dag", "steps": CYCLE})
    data["apiVersion"] = "v1"
    found = refused(admit(data))
    assert found == ["apiVersion: Input should be 'szal.dev/v1alpha1', got 'v1'", CYCLE_TEXT]


def test_no_made_up_problem_past_a_refused_field() -> None:
    # A refused dependsOn: b's order is unknown, so neither its trigger Any nor
    # c's `when` on a (upstream only through b) is reported.
    spec = {
        "mode": "Dag",
        "steps": [
            step("a"),
            step("b", dependsOn="a", trigger="Any"),
            step("c", dependsOn=["b"], when="steps.a.phase == 'Succeeded'"),
        ],
    }
    assert len(refused(admit(doc(spec)))) == 1
    # A step without a usable name: who depends on it is not "unknown".
    spec = {"mode": "Dag", "steps": [{"name": 7, "command": ["x"]}, step("b", dependsOn=["x"])]}
    assert len(refused(admit(doc(spec)))) == 1
    # Refused children: the parent's missing command is not reported.
    spec = {"mode": "Hierarchical", "steps": [{"name": "p", "steps": "x"}]}
    assert refused(admit(doc(spec))) == ["step 'p': steps: Input should be a valid list, got 'x'"]


def test_what_the_whole_workflow_rests_on_stops_the_other_checks() -> None:
    assert len(refused(admit(doc({"mode": "Daggy", "steps": CYCLE})))) == 1
    params = {"mode": "Dag", "params": [{"default": 1}], "steps": CYCLE}
    assert len(refused(admit(doc(params)))) == 1
