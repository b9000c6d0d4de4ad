"""Parsing of every construct of the conditions DSL into the AST.

Covers: literals (strings and escapes, numbers, booleans, null, lists),
names with dashes, member access and indexing, every operator and keyword
spelling, precedence and associativity, and blank sources.

Not covered here: what the operators compute (test_dsl_semantics), error
messages (test_dsl_errors), references and the cache
(test_dsl_references_cache), random expressions (test_dsl_properties).
"""

from __future__ import annotations

from typing import Any

import pytest

from szal.dsl import Condition, parse_condition
from szal.dsl.nodes import Access, And, Compare, Expr, ListExpr, Literal, Not, Or, Variable


def ast(source: str) -> Expr:
    condition = parse_condition(source)
    assert condition is not None
    return condition.expression


def literal(source: str) -> Any:
    node = ast(source)
    assert isinstance(node, Literal)
    return node.value


def var(root: str, *keys: str | int) -> Variable:
    return Variable(root, keys, ())


P = var("params", "a")
Q = var("params", "b")
R = var("params", "c")


class TestBlank:
    @pytest.mark.parametrize("source", ["", " ", "\n\t  \n"])
    def test_blank_means_no_condition(self, source: str) -> None:
        assert parse_condition(source) is None

    def test_condition_keeps_its_source(self) -> None:
        condition = parse_condition(" params.a ")
        assert isinstance(condition, Condition)
        assert condition.source == " params.a "


class TestLiterals:
    @pytest.mark.parametrize(
        ("source", "expected"),
        [
            ("0", 0),
            ("42", 42),
            ("-7", -7),
            ("007", 7),
            ("1.5", 1.5),
            ("-0.25", -0.25),
            ("1e3", 1000.0),
            ("2.5E-1", 0.25),
            ("-1e3", -1000.0),
            ("true", True),
            ("false", False),
            ("null", None),
        ],
    )
    def test_scalars(self, source: str, expected: Any) -> None:
        value = literal(source)
        assert value == expected
        assert type(value) is type(expected)

    @pytest.mark.parametrize(
        ("source", "expected"),
        [
            ("'abc'", "abc"),
            ('"abc"', "abc"),
            ("''", ""),
            ('"it\'s"', "it's"),
            ("'say \"hi\"'", 'say "hi"'),
            (r"'a\nb'", "a\nb"),
            (r"'a\tb'", "a\tb"),
            (r"'a\rb'", "a\rb"),
            (r"'a\\b'", "a\\b"),
            (r"'it\'s'", "it's"),
            (r"'\b\f\/'", "\b\f/"),
            (r'"\"q\""', '"q"'),
            (r"'caf\u00e9'", "café"),
            (r"'\u00E9'", "é"),
            (r"'\ud83d\ude00'", "\U0001f600"),
            ("'&& || ! == not in'", "&& || ! == not in"),
        ],
    )
    def test_strings_and_escapes(self, source: str, expected: str) -> None:
        assert literal(source) == expected

    def test_constant_lists_fold_to_tuples(self) -> None:
        assert literal("[]") == ()
        assert literal("[1, 'a', null, [true]]") == (1, "a", None, (True,))
        assert literal("[1, 2,]") == (1, 2)

    def test_lists_with_names_stay_lists(self) -> None:
        assert ast("[params.a, 1]") == ListExpr((P, Literal(1)))


class TestNames:
    def test_member_chain_is_one_variable(self) -> None:
        assert ast("steps.test.outputs.coverage") == var("steps", "test", "outputs", "coverage")

    def test_dash_names(self) -> None:
        assert ast("steps.unit-test.phase") == var("steps", "unit-test", "phase")
        assert ast("params.a-1") == var("params", "a-1")
        assert ast("steps.build-2-x.exitCode") == var("steps", "build-2-x", "exitCode")

    def test_dash_name_next_to_negative_number(self) -> None:
        assert ast("params.a-1==-1") == Compare("==", var("params", "a-1"), Literal(-1))
        assert ast("params.n>-2") == Compare(">", var("params", "n"), Literal(-2))

    def test_segment_after_dot_may_start_with_digit(self) -> None:
        assert ast("steps.1st-build.phase") == var("steps", "1st-build", "phase")

    def test_keywords_are_keys_after_a_dot(self) -> None:
        assert ast("params.in") == var("params", "in")
        assert ast("steps.s.outputs.not.true") == var("steps", "s", "outputs", "not", "true")

    def test_names_that_start_with_keywords(self) -> None:
        assert ast("params.a || params.order") == Or((P, var("params", "order")))
        assert ast("params.nothing") == var("params", "nothing")

    def test_constant_indexes_join_the_variable(self) -> None:
        assert ast("steps['unit-test'].phase") == var("steps", "unit-test", "phase")
        assert ast('steps["unit-test"]["phase"]') == var("steps", "unit-test", "phase")
        assert ast("steps.s.outputs.items[0]") == var("steps", "s", "outputs", "items", 0)
        assert ast("steps.s.outputs.items[-1].name") == var(
            "steps", "s", "outputs", "items", -1, "name"
        )

    def test_computed_index_is_an_access(self) -> None:
        assert ast("steps.s.outputs[params.key]") == Access(
            var("steps", "s", "outputs"), var("params", "key")
        )
        assert ast("steps.s.outputs[params.key].x") == Access(
            Access(var("steps", "s", "outputs"), var("params", "key")), Literal("x")
        )

    def test_postfix_on_literals_and_parentheses(self) -> None:
        assert ast("[1, 2][0]") == Access(Literal((1, 2)), Literal(0))
        assert ast("(params.a).b") == var("params", "a", "b")

    def test_whitespace_and_newlines_are_ignored(self) -> None:
        assert ast("params.a\n  &&\tparams.b") == And((P, Q))
        assert ast("steps . s . phase") == var("steps", "s", "phase")


class TestOperators:
    @pytest.mark.parametrize("operator", ["==", "!=", "<", "<=", ">", ">=", "in", "contains"])
    def test_comparisons(self, operator: str) -> None:
        assert ast(f"params.a {operator} params.b") == Compare(operator, P, Q)  # type: ignore[arg-type]

    def test_not_in(self) -> None:
        assert ast("params.a not in params.b") == Compare("not in", P, Q)
        assert ast("params.a not  in params.b") == Compare("not in", P, Q)

    @pytest.mark.parametrize("spelling", ["&&", "and"])
    def test_and(self, spelling: str) -> None:
        assert ast(f"params.a {spelling} params.b") == And((P, Q))

    @pytest.mark.parametrize("spelling", ["||", "or"])
    def test_or(self, spelling: str) -> None:
        assert ast(f"params.a {spelling} params.b") == Or((P, Q))

    @pytest.mark.parametrize("spelling", ["!", "not "])
    def test_not(self, spelling: str) -> None:
        assert ast(f"{spelling}params.a") == Not(P)

    def test_operators_need_no_spaces(self) -> None:
        assert ast("params.a==params.b&&!params.c") == And((Compare("==", P, Q), Not(R)))
        assert ast("params.a in[1]") == Compare("in", P, Literal((1,)))

    def test_spellings_mix(self) -> None:
        assert ast("params.a and params.b || not params.c") == Or((And((P, Q)), Not(R)))


class TestPrecedence:
    def test_and_binds_tighter_than_or(self) -> None:
        assert ast("params.a || params.b && params.c") == Or((P, And((Q, R))))
        assert ast("params.a && params.b || params.c") == Or((And((P, Q)), R))

    def test_chains_are_flat(self) -> None:
        assert ast("params.a && params.b && params.c") == And((P, Q, R))
        assert ast("params.a or params.b or params.c") == Or((P, Q, R))

    def test_comparison_binds_tighter_than_and(self) -> None:
        assert ast("params.a == 1 && params.b != 2") == And(
            (Compare("==", P, Literal(1)), Compare("!=", Q, Literal(2)))
        )

    def test_bang_binds_tighter_than_comparison(self) -> None:
        assert ast("!params.a == 'x'") == Compare("==", Not(P), Literal("x"))
        assert ast("not params.a == 'x'") == Compare("==", Not(P), Literal("x"))

    def test_prefix_not_before_in_negates_the_operand(self) -> None:
        # Documented choice: `not x in y` is `(not x) in y`, like `!x == 'a'`.
        assert ast("not params.a in params.b") == Compare("in", Not(P), Q)
        assert ast("not (params.a in params.b)") == Not(Compare("in", P, Q))
        assert ast("not params.a not in params.b") == Compare("not in", Not(P), Q)

    def test_postfix_binds_tighter_than_not(self) -> None:
        assert ast("!steps.s.outputs.ok") == Not(var("steps", "s", "outputs", "ok"))

    def test_parentheses_override(self) -> None:
        assert ast("(params.a || params.b) && params.c") == And((Or((P, Q)), R))
        assert ast("!(params.a == 'x')") == Not(Compare("==", P, Literal("x")))

    def test_double_negation(self) -> None:
        assert ast("!!params.a") == Not(Not(P))
        assert ast("not not params.a") == Not(Not(P))
