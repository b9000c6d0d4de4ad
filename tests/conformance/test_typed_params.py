"""Typed params: declared ``type`` and ``enum``, checked at every run start.

Covers: a declaration whose default or enum entries do not fit its type; a
run's values against type and enum through :func:`szal.engine.admitting.admit`
(the one check ``szal run``, the webhook and the operator's run start share),
with messages naming the param, what was expected and what was given; the
type inferred from a default; typed values compared in ``when``; non-string
values reaching a step's environment as JSON; ``szal run -p`` converting text
to the declared type.

Not covered: the operator marking such a run Failed (tests/kubernetes).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.conformance.support import doc, phases, run, step

from szal.cli.loading import InputError, convert_param
from szal.engine.admitting import Admitted, Refused, admit
from szal.engine.compiled import compile_workflow
from szal.engine.environment import step_environment
from szal.engine.state import RunState
from szal.engine.validation import parse_workflow
from szal.engine.workflow import resolve_workflow
from szal.spec import WorkflowSpec


def refusal(params: list[dict[str, Any]], given: dict[str, Any]) -> list[str]:
    outcome = admit(doc([step("a")], params=params), given)
    assert isinstance(outcome, Refused), outcome
    return [str(issue) for issue in outcome.issues]


@pytest.mark.parametrize(
    ("kind", "value", "given"),
    [
        ("integer", "3", 'string "3"'),
        ("integer", 1.5, "number 1.5"),
        ("integer", True, "boolean true"),
        ("number", "x", 'string "x"'),
        ("boolean", 1, "integer 1"),
        ("string", {"a": 1}, 'object {"a": 1}'),
        ("array", "a,b", 'string "a,b"'),
        ("object", [1], "array [1]"),
    ],
)
def test_a_wrong_type_is_refused_naming_both(kind: str, value: Any, given: str) -> None:
    found = refusal([{"name": "p", "type": kind}], {"p": value})
    assert len(found) == 1
    assert found[0].startswith("params.p: param 'p' expects ")
    assert found[0].endswith(f"(type {kind}), got {given}")


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("integer", 3),
        ("number", 3),
        ("number", 0.5),
        ("boolean", False),
        ("string", "x"),
        ("array", [1, "a"]),
        ("object", {"a": {"b": 1}}),
    ],
)
def test_a_value_of_the_declared_type_is_admitted(kind: str, value: Any) -> None:
    outcome = admit(doc([step("a")], params=[{"name": "p", "type": kind}]), {"p": value})
    assert isinstance(outcome, Admitted), outcome
    assert outcome.params == {"p": value}


def test_enum_limits_the_values() -> None:
    params = [{"name": "env", "enum": ["dev", "prod"], "default": "dev"}]
    assert refusal(params, {"env": "qa"}) == [
        'params.env: param \'env\' must be one of "dev", "prod", got "qa"'
    ]
    outcome = admit(doc([step("a")], params=params), {"env": "prod"})
    assert isinstance(outcome, Admitted)


def test_the_type_is_inferred_from_the_default() -> None:
    found = refusal([{"name": "n", "default": 2}], {"n": "two"})
    assert found == ["params.n: param 'n' expects an integer (type integer), got string \"two\""]


def test_a_default_or_enum_entry_that_does_not_fit_is_a_workflow_issue() -> None:
    document = doc(
        [step("a")],
        params=[
            {"name": "n", "type": "integer", "default": "3"},
            {"name": "e", "type": "string", "enum": ["a", 1]},
        ],
    )
    with pytest.raises(ValueError) as info:
        parse_workflow(document)
    text = str(info.value)
    assert "params[0].default: the default does not fit: param 'n' expects an integer" in text
    assert "params[1].enum[1]: 1 is not a string (the param's type string)" in text


def test_an_unknown_type_is_a_shape_error() -> None:
    with pytest.raises(ValueError, match=r"params\[0\]\.type"):
        parse_workflow(doc([step("a")], params=[{"name": "n", "type": "int"}]))


def test_typed_values_compare_in_when() -> None:
    document = doc(
        [
            step("big", when="params.replicas > 2 && params.debug"),
            step("small", when="params.replicas <= 2"),
            step("listed", when="'eu' in params.regions && params.limits.cpu == 2"),
        ],
        params=[
            {"name": "replicas", "type": "integer"},
            {"name": "debug", "type": "boolean", "default": False},
            {"name": "regions", "type": "array", "default": ["eu", "us"]},
            {"name": "limits", "type": "object", "default": {"cpu": 2}},
        ],
    )
    status, _ = run(document, params={"replicas": 3, "debug": True})
    assert phases(status) == {"big": "Succeeded", "small": "Skipped", "listed": "Succeeded"}


def test_non_string_values_reach_the_environment_as_json() -> None:
    spec = WorkflowSpec.model_validate(
        {
            "params": [
                {"name": "n", "type": "integer"},
                {"name": "tags", "type": "array"},
                {"name": "cfg", "type": "object"},
                {"name": "s"},
            ],
            "steps": [{"name": "a", "command": ["true"]}],
        }
    )
    values = {"n": 3, "tags": ["a", "b"], "cfg": {"k": True}, "s": "plain"}
    workflow = resolve_workflow(spec, name="wf", params=values)
    env = step_environment(compile_workflow(workflow), RunState(), "a", 1, run_name="r")
    assert env["SZAL_PARAM_N"] == "3"
    assert json.loads(env["SZAL_PARAM_TAGS"]) == ["a", "b"]
    assert json.loads(env["SZAL_PARAM_CFG"]) == {"k": True}
    assert env["SZAL_PARAM_S"] == "plain"


def test_cli_text_is_converted_to_the_declared_type() -> None:
    spec = WorkflowSpec.model_validate(
        {
            "params": [
                {"name": "tags", "type": "array"},
                {"name": "ratio", "type": "number"},
                {"name": "s"},
            ],
            "steps": [{"name": "a", "command": ["true"]}],
        }
    )
    assert convert_param(spec, "tags", '["a", 1]', "f.yaml") == ["a", 1]
    assert convert_param(spec, "ratio", "2", "f.yaml") == 2
    assert convert_param(spec, "s", "[1]", "f.yaml") == "[1]"
    with pytest.raises(InputError, match=r"params\.tags: expected an array, as JSON"):
        convert_param(spec, "tags", "a,b", "f.yaml")
