"""Property tests: random conditions over random contexts.

Covers: any well-formed expression (built from the whole grammar, with
names into a random JSON-like context) compiles and evaluates without
raising, to a bool via evaluate(); the two spellings of each logical
operator agree; `&&`/`||`/`!` match Python's logic over truthy(); `!=` and
`not in` are the negations of `==` and `in`; `contains` is `in` reversed;
`==` is symmetric; strict orders are asymmetric and `<` mirrors `>`;
literals round-trip through the parser.

Not covered here: specific expected values (test_dsl_semantics) and error
messages (test_dsl_errors). Example counts are kept modest: the suite runs
on a shared, busy machine.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from szal.dsl import Condition, compile_condition, parse_condition, truthy

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

PARAM_NAMES = ["a", "b", "env", "unit-test", "x1"]
STEP_NAMES = ["build", "unit-test", "deploy"]
STEP_FIELDS = ["phase", "outputs", "exitCode", "attempts"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=5),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(["", "a", "b", "prod", "Succeeded", "x-y"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["a", "b", "items", "0"]), inner, max_size=3),
    ),
    max_leaves=6,
)
# Whatever a caller may hand in, including shapes the engine never builds.
step_records = st.one_of(
    st.fixed_dictionaries(
        {
            "phase": st.sampled_from(["Succeeded", "Failed", "Skipped"]),
            "exitCode": st.one_of(st.none(), st.integers(-1, 3)),
            "attempts": st.integers(0, 3),
            "outputs": st.dictionaries(st.sampled_from(["a", "b", "items"]), json_values),
        }
    ),
    json_values,
)
contexts = st.fixed_dictionaries(
    {
        "params": st.dictionaries(st.sampled_from(PARAM_NAMES), json_values),
        "steps": st.dictionaries(st.sampled_from(STEP_NAMES), step_records),
        "run": st.fixed_dictionaries(
            {"name": st.sampled_from(["r1", ""]), "namespace": st.just("default")}
        ),
    },
    optional={"extra": json_values},
)


def render_literal(value: Any) -> str:
    """Source text for a JSON-like value (mappings have no literal syntax)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        return text if ("." in text or "e" in text) else text + ".0"
    if isinstance(value, str):
        # JSON escapes (\", \\, \n, \uXXXX) are a subset of the DSL's.
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(render_literal(item) for item in value) + "]"
    raise TypeError(value)


literal_values = st.recursive(
    scalars | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=6,
)


@st.composite
def names(draw: st.DrawFn) -> str:
    root = draw(st.sampled_from(["params", "steps", "run"]))
    if root == "run":
        return "run." + draw(st.sampled_from(["name", "namespace"]))
    if root == "params":
        head = "params." + draw(st.sampled_from(PARAM_NAMES))
    else:
        step = draw(st.sampled_from(STEP_NAMES))
        field = draw(st.sampled_from(STEP_FIELDS))
        head = draw(st.sampled_from([f"steps.{step}.{field}", f"steps['{step}'].{field}"]))
    tail = draw(
        st.lists(st.sampled_from([".a", ".b", ".items", "[0]", "[-1]", "[1]", "['a']"]), max_size=2)
    )
    return head + "".join(tail)


# Expressions are rendered with every logical operator spelled as a
# placeholder, so one tree can be printed with symbols and with words.
OPERATOR_SLOTS = {"AND": ("&&", "and"), "OR": ("||", "or"), "NOT": ("!", "not ")}


def spell(template: str, words: bool) -> str:
    for slot, (symbol, word) in OPERATOR_SLOTS.items():
        template = template.replace("\x00" + slot + "\x00", f" {word} " if words else symbol)
    return template


def slot(name: str) -> str:
    return "\x00" + name + "\x00"


operands = st.one_of(names(), literal_values.map(render_literal))


def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    comparison = st.tuples(
        inner,
        st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "in", "not in", "contains"]),
        inner,
    ).map(lambda parts: f"({parts[0]}) {parts[1]} ({parts[2]})")
    return st.one_of(
        st.tuples(inner, inner).map(lambda p: f"({p[0]}){slot('AND')}({p[1]})"),
        st.tuples(inner, inner).map(lambda p: f"({p[0]}){slot('OR')}({p[1]})"),
        inner.map(lambda e: f"{slot('NOT')}({e})"),
        comparison,
        st.lists(inner, max_size=3).map(lambda items: "[" + ", ".join(items) + "]"),
        st.tuples(inner, inner).map(lambda p: f"({p[0]})[{p[1]}]"),
    )


expressions = st.recursive(operands, extend, max_leaves=8)


def compiled(source: str) -> Condition:
    condition = parse_condition(source)
    assert condition is not None
    return condition


def normalize(value: Any) -> Any:
    """Lists come back as tuples; compare them as lists."""
    if isinstance(value, tuple | list):
        return [normalize(item) for item in value]
    return value


@SETTINGS
@given(template=expressions, context=contexts)
def test_evaluation_never_raises_and_spellings_agree(
    template: str, context: Mapping[str, Any]
) -> None:
    with_symbols = compiled(spell(template, words=False))
    with_words = compiled(spell(template, words=True))
    result = with_symbols.evaluate(context)
    assert type(result) is bool
    assert with_words.evaluate(context) is result
    assert normalize(with_words.value(context)) == normalize(with_symbols.value(context))
    assert result is truthy(with_symbols.value(context))


@SETTINGS
@given(template=expressions, context=contexts)
def test_bang_and_not_are_negation(template: str, context: Mapping[str, Any]) -> None:
    source = spell(template, words=False)
    expected = not compiled(source).evaluate(context)
    assert compiled(f"!({source})").value(context) is expected
    assert compiled(f"not ({source})").value(context) is expected


@SETTINGS
@given(left=json_values, right=json_values)
def test_logic_matches_python(left: Any, right: Any) -> None:
    context = {"params": {"a": left, "b": right}}
    for operator in ("&&", "and"):
        got = compiled(f"params.a {operator} params.b").value(context)
        assert got is (truthy(left) and truthy(right))
    for operator in ("||", "or"):
        got = compiled(f"params.a {operator} params.b").value(context)
        assert got is (truthy(left) or truthy(right))
    assert compiled("!params.a").value(context) is (not truthy(left))


@SETTINGS
@given(left=json_values, right=json_values)
def test_comparison_laws(left: Any, right: Any) -> None:
    context = {"params": {"a": left, "b": right}}

    def check(source: str) -> Any:
        return compiled(source).value(context)

    equal = check("params.a == params.b")
    assert check("params.b == params.a") is equal
    assert check("params.a != params.b") is (not equal)
    member = check("params.a in params.b")
    assert check("params.a not in params.b") is (not member)
    assert check("params.b contains params.a") is member
    less = check("params.a < params.b")
    assert check("params.b > params.a") is less
    assert check("params.a <= params.b") is check("params.b >= params.a")
    if less:
        assert not check("params.b < params.a")
        assert check("params.a <= params.b")
        assert not equal
    if check("params.a <= params.b") and check("params.b <= params.a"):
        # Ordered both ways means equal numbers or equal strings.
        assert equal
    assert check("params.a == params.a") is (not _has_nan(left))


def _has_nan(value: Any) -> bool:
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, list):
        return any(_has_nan(item) for item in value)
    if isinstance(value, dict):
        return any(_has_nan(item) for item in value.values())
    return False


@SETTINGS
@given(value=literal_values)
def test_literals_round_trip(value: Any) -> None:
    condition = compile_condition(render_literal(value))
    assert condition is not None
    assert normalize(condition.value({})) == value
    assert condition.references == frozenset()
