"""What conditions compute: truthiness, comparisons, membership, lookups.

Covers DESIGN §4 "`when` details": bare values, `==` across types (bool is
not a number, int and float compare numerically), ordering across types and
with null, `in` / `not in` / `contains` on lists, strings and mappings,
missing keys, missing steps, out-of-range and negative indexes, and
evaluation against the context shape the engine builds.

Not covered here: parsing and precedence (test_dsl_parsing), errors
(test_dsl_errors), random expressions (test_dsl_properties).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from szal.dsl import compile_condition, truthy

CONTEXT: Mapping[str, Any] = {
    "params": {"env": "prod", "count": 3, "ratio": 0.5, "flag": True, "empty": ""},
    "steps": {
        "build": {"phase": "Succeeded", "exitCode": 0, "attempts": 1, "outputs": {}},
        "unit-test": {
            "phase": "Failed",
            "exitCode": 2,
            "attempts": 3,
            "outputs": {
                "coverage": 0.83,
                "items": [{"name": "a"}, {"name": "b"}],
                "tags": ["fast", "gpu"],
                "labels": {"team": "ml"},
                "nothing": None,
            },
        },
    },
    "run": {"name": "ci-42", "namespace": "default"},
}


def value(source: str, context: Mapping[str, Any] = CONTEXT) -> Any:
    condition = compile_condition(source)
    assert condition is not None
    return condition.value(context)


def holds(source: str, context: Mapping[str, Any] = CONTEXT) -> bool:
    condition = compile_condition(source)
    assert condition is not None
    return condition.evaluate(context)


class TestTruthiness:
    @pytest.mark.parametrize("falsy", [None, False, 0, 0.0, -0.0, "", [], (), {}])
    def test_falsy_values(self, falsy: Any) -> None:
        assert truthy(falsy) is False

    @pytest.mark.parametrize(
        "truthy_value", [True, 1, -1, 0.1, "0", "false", " ", [0], [None], {"a": None}, object()]
    )
    def test_truthy_values(self, truthy_value: Any) -> None:
        assert truthy(truthy_value) is True

    @pytest.mark.parametrize(
        ("source", "expected"),
        [
            ("null", False),
            ("false", False),
            ("0", False),
            ("0.0", False),
            ("''", False),
            ("[]", False),
            ("true", True),
            ("'x'", True),
            ("[0]", True),
            ("-1", True),
            ("params.env", True),
            ("params.empty", False),
            ("steps.build.outputs", False),
            ("steps['unit-test'].outputs", True),
            ("steps.build.exitCode", False),
        ],
    )
    def test_bare_values(self, source: str, expected: bool) -> None:
        assert holds(source) is expected

    def test_evaluate_is_a_bool_and_value_is_raw(self) -> None:
        assert holds("params.count") is True
        assert value("params.count") == 3
        assert value("[1, 'a']") == (1, "a")


class TestEquality:
    @pytest.mark.parametrize(
        ("source", "expected"),
        [
            ("1 == 1.0", True),
            ("1.0 == 1", True),
            ("-2 == -2.0", True),
            ("true == 1", False),
            ("1 == true", False),
            ("false == 0", False),
            ("0 == false", False),
            ("true == true", True),
            ("null == null", True),
            ("null == false", False),
            ("null == 0", False),
            ("null == ''", False),
            ("'1' == 1", False),
            ("'a' == 'a'", True),
            ("'a' == 'A'", False),
            ("[1, 2] == [1.0, 2]", True),
            ("[true] == [1]", False),
            ("[1, 2] == [2, 1]", False),
            ("[] == []", True),
            ("[] == null", False),
            ("[[1]] == [[1.0]]", True),
        ],
    )
    def test_equal(self, source: str, expected: bool) -> None:
        assert value(source) is expected

    @pytest.mark.parametrize(
        ("source", "expected"),
        [("true != 1", True), ("1 != 1.0", False), ("null != 0", True), ("'a' != 'b'", True)],
    )
    def test_not_equal_is_the_negation(self, source: str, expected: bool) -> None:
        assert value(source) is expected

    def test_mappings_from_context_compare_by_content(self) -> None:
        context = {
            "params": {"x": {"a": 1, "b": [1]}, "y": {"b": [1.0], "a": 1.0}, "z": {"a": True}}
        }
        assert value("params.x == params.y", context) is True
        assert value("params.x == params.z", context) is False


class TestOrdering:
    @pytest.mark.parametrize(
        ("source", "expected"),
        [
            ("1 < 2", True),
            ("2 < 1", False),
            ("1 < 1.5", True),
            ("1.0 <= 1", True),
            ("2 >= 2.0", True),
            ("3 > 2.5", True),
            ("-1 < 0", True),
            ("'a' < 'b'", True),
            ("'B' < 'a'", True),
            ("'abc' < 'abd'", True),
            ("'10' < '9'", True),
            ("'b' >= 'a'", True),
        ],
    )
    def test_same_kind(self, source: str, expected: bool) -> None:
        assert value(source) is expected

    @pytest.mark.parametrize("operator", ["<", "<=", ">", ">="])
    @pytest.mark.parametrize(
        ("left", "right"),
        [
            ("1", "'1'"),
            ("'1'", "1"),
            ("null", "0"),
            ("0", "null"),
            ("null", "null"),
            ("true", "false"),
            ("true", "1"),
            ("0", "false"),
            ("[1]", "[2]"),
            ("[1]", "1"),
            ("steps.nope.exitCode", "0"),
        ],
    )
    def test_across_types_is_false(self, operator: str, left: str, right: str) -> None:
        assert value(f"{left} {operator} {right}") is False

    def test_coverage_threshold(self) -> None:
        assert holds("steps['unit-test'].outputs.coverage >= 0.8")
        assert not holds("steps['unit-test'].outputs.coverage > 0.9")
        # A step that never wrote the output does not pass the gate.
        assert not holds("steps.build.outputs.coverage >= 0.8")
        assert not holds("steps.build.outputs.coverage < 0.8")


class TestMembership:
    @pytest.mark.parametrize(
        ("source", "expected"),
        [
            ("1 in [1, 2]", True),
            ("1.0 in [1, 2]", True),
            ("true in [1, 2]", False),
            ("3 in [1, 2]", False),
            ("null in [null]", True),
            ("[1] in [[1], 2]", True),
            ("'a' in 'cat'", True),
            ("'' in 'cat'", True),
            ("'x' in 'cat'", False),
            ("1 in '1'", False),
            ("'fast' in steps['unit-test'].outputs.tags", True),
            ("'team' in steps['unit-test'].outputs.labels", True),
            ("'ml' in steps['unit-test'].outputs.labels", False),
            ("'a' in null", False),
            ("'a' in 1", False),
            ("1 in true", False),
        ],
    )
    def test_in(self, source: str, expected: bool) -> None:
        assert value(source) is expected

    @pytest.mark.parametrize(
        ("source", "expected"),
        [
            ("[1, 2] contains 1", True),
            ("[1, 2] contains 3", False),
            ("'cat' contains 'at'", True),
            ("steps['unit-test'].outputs.tags contains 'gpu'", True),
            ("steps['unit-test'].outputs.labels contains 'team'", True),
            ("null contains null", False),
            ("1 contains 1", False),
        ],
    )
    def test_contains(self, source: str, expected: bool) -> None:
        assert value(source) is expected

    @pytest.mark.parametrize(
        ("source", "expected"),
        [
            ("3 not in [1, 2]", True),
            ("1 not in [1, 2]", False),
            ("'x' not in 'cat'", True),
            # Exactly the negation of `in`, also for types `in` rejects.
            ("1 not in 'abc'", True),
            ("'a' not in null", True),
        ],
    )
    def test_not_in(self, source: str, expected: bool) -> None:
        assert value(source) is expected

    def test_prefix_not_before_in_applies_to_the_operand(self) -> None:
        # `not x in y` is `(not x) in y`: here `false in [false]`.
        assert value("not params.flag in [false]") is True
        assert value("not (params.flag in [false])") is True
        assert value("not params.flag in [true]") is False


class TestLookups:
    @pytest.mark.parametrize(
        ("source", "expected"),
        [
            ("params.env", "prod"),
            ("params['env']", "prod"),
            ("params.missing", None),
            ("params.env.deeper", None),
            ("steps.build.phase", "Succeeded"),
            ("steps['unit-test'].phase", "Failed"),
            ("steps.unit-test.exitCode", 2),
            ("steps.unit-test.attempts", 3),
            ("steps.unknown.phase", None),
            ("steps.unknown.outputs.x.y", None),
            ("steps.build.outputs.missing", None),
            ("steps.unit-test.outputs.nothing", None),
            ("steps.unit-test.outputs.items[0].name", "a"),
            ("steps.unit-test.outputs.items[1]['name']", "b"),
            ("steps.unit-test.outputs.items[2]", None),
            ("steps.unit-test.outputs.items[2].name", None),
            ("steps.unit-test.outputs.items[-1].name", "b"),
            ("steps.unit-test.outputs.items[-3]", None),
            ("steps.unit-test.outputs.items.name", None),
            ("steps.unit-test.outputs.labels[0]", None),
            ("steps.unit-test.outputs.tags[true]", None),
            ("steps.unit-test.outputs.tags[0.0]", None),
            ("steps.unit-test.outputs.tags[params.count]", None),
            ("steps.unit-test.outputs.tags[steps.build.exitCode]", "fast"),
            ("steps.unit-test.outputs.labels[steps.unit-test.outputs.labels.team]", None),
            ("run.name", "ci-42"),
            ("run.namespace", "default"),
            ("'abc'[0]", None),
            ("[10, 20][1]", 20),
            ("[params.env, 1][0]", "prod"),
        ],
    )
    def test_lookup(self, source: str, expected: Any) -> None:
        assert value(source) == expected

    def test_empty_context_reads_null(self) -> None:
        assert value("params.env", {}) is None
        assert holds("steps.build.phase == null", {}) is True
        assert holds("steps.build.exitCode == 0", {"steps": None}) is False

    def test_context_of_odd_shapes_never_raises(self) -> None:
        odd: Mapping[str, Any] = {"params": [1, 2], "steps": "x", "run": 3}
        assert value("params.env", odd) is None
        assert value("steps.a.phase", odd) is None
        assert value("run.name", odd) is None

    def test_non_string_keys_follow_dsl_equality(self) -> None:
        context = {"params": {"m": {1: "one", "2": "two"}}}
        assert value("params.m[1]", context) == "one"
        assert value("params.m[2]", context) is None
        assert value("params.m[true]", context) is None
        assert value("1.0 in params.m", context) is True
        assert value("true in params.m", context) is False


class TestLogic:
    @pytest.mark.parametrize(
        ("source", "expected"),
        [
            ("true && true", True),
            ("true && false", False),
            ("false || true", True),
            ("false or null", False),
            ("1 and 'x'", True),
            ("1 and ''", False),
            ("!null", True),
            ("!'x'", False),
            ("not []", True),
            ("!true == false", True),
            ("!params.env == 'prod'", False),
            ("!(params.env == 'prod')", False),
            ("!(params.env == 'dev')", True),
        ],
    )
    def test_logic(self, source: str, expected: bool) -> None:
        assert value(source) is expected

    def test_short_circuit_results_are_bools(self) -> None:
        assert value("params.env && params.count") is True
        assert value("params.empty || params.missing") is False

    def test_the_typical_gate(self) -> None:
        source = (
            "params.env == 'prod' && steps['unit-test'].outputs.coverage >= 0.8 "
            "&& steps.build.exitCode == 0"
        )
        assert holds(source)
        assert not holds(source, {**CONTEXT, "params": {"env": "dev"}})
