"""Conditions that must not compile, and how ConditionError reports them.

Covers: syntax errors with their line and column (unexpected tokens and
characters, unexpected end, unterminated strings, bad escapes, chained
comparisons, keywords glued to names), unknown roots, missing or dynamic
names, unknown step and run fields, and the parts and text of the error.

Not covered here: valid syntax (test_dsl_parsing); evaluation, which never
raises (test_dsl_semantics, test_dsl_properties).
"""

from __future__ import annotations

import pickle

import pytest

from szal.dsl import ConditionError, compile_condition, parse_condition


def error(source: str) -> ConditionError:
    with pytest.raises(ConditionError) as caught:
        parse_condition(source)
    return caught.value


class TestSyntax:
    @pytest.mark.parametrize(
        ("source", "line", "column", "message"),
        [
            ("a && && b", 1, 6, "unexpected token '&&' at line 1, column 6: expected a value"),
            ("params.a ==", 1, 12, "unexpected end of condition at line 1, column 12"),
            ("(params.a", 1, 10, "unexpected end of condition at line 1, column 10"),
            ("params.a)", 1, 9, "unexpected token ')' at line 1, column 9"),
            ("params.a params.b", 1, 10, "unexpected token 'params' at line 1, column 10"),
            ("params.a not params.b", 1, 14, "expected 'in'"),
            ("params.a = 1", 1, 10, "unexpected character '=' at line 1, column 10"),
            ("params.a & params.b", 1, 10, "did you mean '&&'?"),
            ("params.a | params.b", 1, 10, "did you mean '||'?"),
            ("-params.a", 1, 1, "unexpected character '-' at line 1, column 1"),
            ("params.a ornot params.b", 1, 10, "unexpected token 'ornot'"),
            ("params.a == 'x", 1, 13, "unterminated string at line 1, column 13"),
            ("params.a == 'x\n'", 1, 13, "unterminated string"),
            ("1 < 2 < 3", 1, 7, "unexpected token '<' at line 1, column 7"),
            ("[1, 2", 1, 6, "expected an operator, ']' or ','"),
            ("params.a[", 1, 10, "unexpected end of condition"),
            ("params.", 1, 8, "expected a name"),
            ("params.a ==\n  && params.b", 2, 3, "unexpected token '&&' at line 2, column 3"),
            ("params.a\n\n   == )", 3, 7, "unexpected token ')' at line 3, column 7"),
            ("params.a == 'x' &&\n", 1, 19, "unexpected end of condition at line 1, column 19"),
            ("()", 1, 2, "unexpected token ')'"),
            ("1.", 1, 3, "unexpected end of condition at line 1, column 3: expected a name"),
        ],
    )
    def test_position_and_message(self, source: str, line: int, column: int, message: str) -> None:
        err = error(source)
        assert (err.line, err.column) == (line, column)
        assert message in err.message
        assert err.source == source

    @pytest.mark.parametrize(
        ("source", "column", "message"),
        [
            (r"'a\qb'", 3, r"invalid escape '\q' at line 1, column 3"),
            (r"params.a == 'ab\x41'", 16, r"invalid escape '\x'"),
            (r"'\u12'", 2, "four hex digits"),
            (r"'\uZZZZ'", 2, "four hex digits"),
        ],
    )
    def test_bad_escapes(self, source: str, column: int, message: str) -> None:
        err = error(source)
        assert (err.line, err.column) == (1, column)
        assert message in err.message


class TestNames:
    @pytest.mark.parametrize(
        ("source", "column", "message"),
        [
            (
                "foo.bar",
                1,
                "unknown name 'foo' at line 1, column 1: expected params, steps, run or matrix",
            ),
            ("params.a && env == 'x'", 13, "unknown name 'env'"),
            ("Params.a", 1, "unknown name 'Params'"),
            ("steps", 1, "'steps' needs a step name"),
            ("params", 1, "'params' needs a param name"),
            ("run", 1, "'run' needs a field name"),
            ("steps[0].phase", 7, "'steps' needs a step name"),
            ("steps[params.s].phase", 1, "'steps' needs a step name"),
            ("params[params.p]", 1, "'params' needs a param name"),
            ("steps.build", 7, "'steps.build' needs a field"),
            ("steps.build.status", 13, "unknown step field 'status' in 'steps.build'"),
            ("steps['build']['exitcode']", 16, "unknown step field 'exitcode'"),
            ("steps.build[0]", 13, "unknown step field 0"),
            (
                "run.uid",
                5,
                "unknown field 'run.uid' at line 1, column 5: "
                "expected name, namespace, phase or failedSteps",
            ),
            ("1 in [steps.a.phase, foo]", 22, "unknown name 'foo'"),
            ("steps.a.outputs[nope]", 17, "unknown name 'nope'"),
        ],
    )
    def test_rejected_at_compile_time(self, source: str, column: int, message: str) -> None:
        err = error(source)
        assert (err.line, err.column) == (1, column)
        assert message in err.message

    def test_leftmost_bad_name_is_reported(self) -> None:
        assert "'one'" in error("one == two").message
        assert "'one'" in error("(one || two) && three").message


class TestErrorObject:
    def test_is_a_value_error(self) -> None:
        assert isinstance(error("a &&"), ValueError)

    def test_str_is_complete(self) -> None:
        err = error("params.a && && params.b")
        text = str(err)
        assert "params.a && && params.b" in text
        assert "line 1, column 13" in text
        assert "'&&'" in text

    def test_survives_pickling(self) -> None:
        err = error("params.a ==")
        copy = pickle.loads(pickle.dumps(err))
        assert (copy.source, copy.message, copy.line, copy.column) == (
            err.source,
            err.message,
            err.line,
            err.column,
        )
        assert str(copy) == str(err)

    def test_cached_compile_raises_too(self) -> None:
        for _ in range(2):
            with pytest.raises(ConditionError):
                compile_condition("params.a ==")
