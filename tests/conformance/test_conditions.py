"""Conformance: ``when`` conditions as a run sees them.

Covers DESIGN.md section 4 "Conditions DSL" and "`when` details", each case
as a workflow whose step is run or Skipped (``condition not met``): blank
means no condition, truthiness of bare values, a missing output key or an
out-of-range index reads as null, ``1 == 1.0``, ``true == 1`` is false,
ordering across types is false, ``!x == 'a'`` is ``(!x) == 'a'``, names with
``-``, ``steps['unit-test'].phase``, ``outputs.items[0]``, ``in``, ``not in``,
``contains``, both operator spellings, quotes and escapes, negative numbers,
lists, ``params``, ``run.name``, and each step field (phase, outputs,
exitCode, attempts). Deliberately not: parser internals and error positions
(tests/dsl), the cache bound (tests/dsl).
"""

from __future__ import annotations

from typing import Any

import pytest
from tests.conformance.support import FAIL, Outcome, doc, run, step

OUTPUTS = {
    "coverage": 0.85,
    "count": 3,
    "one": 1,
    "flag": True,
    "zero": 0,
    "empty": "",
    "nothing": None,
    "list": [],
    "map": {},
    "items": ["first", "second"],
    "tags": ["gpu", "fast"],
    "text": "hello world",
    "name": "a",
    "quote": "it's",
}


def decide(when: str, *, params: dict[str, Any] | None = None, dash: bool = False) -> bool:
    """Whether the step guarded by ``when`` ran (it is Skipped otherwise)."""
    first = "unit-test" if dash else "build"
    document = doc(
        [
            step(first),
            step("flaky", retries={"limit": 1, "delay": "1ms"}),
            step("guarded", when=when),
        ],
        params=[
            {"name": "env", "default": "staging"},
            {"name": "replicas", "default": 2},
            {"name": "debug", "default": False},
            {"name": "my-param", "default": "x"},
        ],
    )
    status, _ = run(
        document,
        {first: Outcome(outputs=OUTPUTS), "flaky": [FAIL, Outcome(exit_code=0)]},
        params=params,
    )
    guarded = status["steps"]["guarded"]
    if guarded["phase"] == "Skipped":
        assert guarded["message"] == "condition not met"
        assert guarded["attempts"] == 0
        return False
    assert guarded["phase"] == "Succeeded"
    return True


TRUE = [
    "params.env == 'staging'",
    'params.env == "staging"',
    "params.env != 'prod'",
    "params.replicas == 2",
    "params.replicas == 2.0",
    "params['my-param'] == 'x'",
    "params.my-param == 'x'",
    "steps.build.phase == 'Succeeded'",
    "steps['build'].phase == 'Succeeded'",
    "steps.build.exitCode == 0",
    "steps.build.attempts == 1",
    "steps.flaky.attempts == 2",
    "steps.build.outputs.coverage >= 0.8",
    "steps.build.outputs.coverage > 0.8 && steps.build.exitCode == 0",
    "steps.build.outputs.coverage > 0.8 and steps.build.exitCode == 0",
    "false || steps.build.outputs.flag",
    "false or steps.build.outputs.flag",
    "!false",
    "not false",
    "!(params.env == 'prod')",
    "not (params.env == 'prod')",
    "steps.build.outputs.one == 1.0",
    "1 == 1.0",
    "steps.build.outputs.flag == true",
    "steps.build.outputs.missing == null",
    "steps.build.outputs.items[5] == null",
    "steps.build.outputs.items[0] == 'first'",
    "steps.build.outputs['items'][1] == 'second'",
    "steps.build.outputs.count > -1",
    "steps.build.outputs.count < 3.5",
    "-1.5 < 0",
    "params.env in ['prod', 'staging']",
    "'prod' not in ['dev', 'staging']",
    "steps.build.outputs.tags contains 'gpu'",
    "steps.build.outputs.text contains 'world'",
    "'ell' in steps.build.outputs.text",
    "'coverage' in steps.build.outputs",
    "steps.build.outputs.quote == 'it\\'s'",
    'steps.build.outputs.quote == "it\'s"',
    "'a\\tb' != 'a b'",
    "[1, 2] == [1.0, 2]",
    "steps.build.outputs.count",  # bare truthy values
    "steps.build.outputs.text",
    "steps.build.outputs.items",
    "steps.build.outputs",
    "run.name == 'wf'",
    "(params.env == 'prod' || params.env == 'staging') && !params.debug",
    "'b' > 'a'",
    "!steps.build.outputs.nothing == true",  # (!null) == true
]

FALSE = [
    "params.env == 'prod'",
    "true == 1",
    "steps.build.outputs.flag == 1",
    "0 == false",
    "'1' == 1",
    "null == false",
    "steps.build.outputs.missing",  # missing key reads as null: falsy
    "steps.build.outputs.nothing",
    "steps.build.outputs.zero",
    "steps.build.outputs.empty",
    "steps.build.outputs.list",
    "steps.build.outputs.map",
    "steps.build.outputs.missing.deeper",
    "steps.build.outputs.items[9]",
    "false",
    "null",
    "0",
    "''",
    "[]",
    "params.debug",
    "'10' > 9",  # ordering across types is false, never an error
    "'10' < 9",
    "steps.build.outputs.missing > 0",
    "steps.build.outputs.missing < 0",
    "true > false",
    "!params.env == 'staging'",  # (!'staging') == 'staging' -> false == 'staging'
    "not params.env == 'staging'",
    "params.env not in ['prod', 'staging']",
    "steps.build.outputs.tags contains 'cpu'",
    "steps.build.phase == 'Failed'",
    "1 < 1",
]


@pytest.mark.parametrize("when", TRUE)
def test_true_conditions_run_the_step(when: str) -> None:
    assert decide(when) is True


@pytest.mark.parametrize("when", FALSE)
def test_false_conditions_skip_the_step(when: str) -> None:
    assert decide(when) is False


def test_names_with_dashes() -> None:
    assert decide("steps.unit-test.phase == 'Succeeded'", dash=True)
    assert decide("steps['unit-test'].phase == 'Succeeded'", dash=True)
    assert decide("steps.unit-test.outputs.items[0] == 'first'", dash=True)


def test_run_params_override_defaults() -> None:
    assert decide("params.env == 'prod'", params={"env": "prod"})
    assert not decide("params.env == 'staging'", params={"env": "prod"})


@pytest.mark.parametrize("when", ["", "   ", "\n"])
def test_blank_when_is_no_condition(when: str) -> None:
    assert decide(when)


def test_condition_reads_a_failed_step_in_dag() -> None:
    document = doc(
        [
            step("a"),
            step("report", dependsOn=["a"], when="steps.a.phase == 'Skipped'"),
            step("b", when="false"),
            step("c", dependsOn=["b"], when="steps.b.phase == 'Skipped'"),
        ],
        mode="Dag",
    )
    status, _ = run(document)
    assert status["steps"]["report"]["phase"] == "Skipped"
    assert status["steps"]["c"]["phase"] == "Succeeded"


def test_condition_reads_exit_code_and_outputs_of_upstream() -> None:
    document = doc(
        [
            step("test"),
            step(
                "deploy",
                dependsOn=["test"],
                when="steps.test.exitCode == 0 && steps.test.outputs.coverage >= 0.8",
            ),
        ],
        mode="Dag",
    )
    status, _ = run(document, {"test": Outcome(outputs={"coverage": 0.9})})
    assert status["steps"]["deploy"]["phase"] == "Succeeded"
    status, _ = run(document, {"test": Outcome(outputs={"coverage": 0.5})})
    assert status["steps"]["deploy"]["phase"] == "Skipped"
