"""What a condition says it reads, and the compile cache.

Covers: the Reference set extracted from names in every position (operands,
list items, computed indexes, both index spellings), that data below
``outputs`` or a param is not part of a reference, and that
compile_condition returns the same object for the same text, is bounded,
and agrees with the uncached parse_condition.

Not covered here: rejection of bad names (test_dsl_errors).
"""

from __future__ import annotations

import pytest

from szal.dsl import Condition, Reference, compile_condition, parse_condition
from szal.dsl.parsing import CACHE_SIZE


def references(source: str) -> frozenset[Reference]:
    condition = parse_condition(source)
    assert condition is not None
    return condition.references


class TestReferences:
    @pytest.mark.parametrize(
        ("source", "expected"),
        [
            ("steps.test.outputs.coverage", Reference("steps", "test", "outputs")),
            ("params.env", Reference("params", "env", None)),
            ("steps['unit-test'].phase", Reference("steps", "unit-test", "phase")),
            ("steps.unit-test.phase", Reference("steps", "unit-test", "phase")),
            ("run.name", Reference("run", "name", None)),
            ("run['namespace']", Reference("run", "namespace", None)),
            ("params['a-b'].x[0]", Reference("params", "a-b", None)),
            ("steps.s.exitCode", Reference("steps", "s", "exitCode")),
            ("steps.s.attempts", Reference("steps", "s", "attempts")),
        ],
    )
    def test_single(self, source: str, expected: Reference) -> None:
        assert references(source) == {expected}

    def test_everywhere_in_the_expression(self) -> None:
        source = (
            "params.env == 'prod' && !(steps.a.phase in [steps.b.phase, 'x'])"
            " || steps.c.outputs[params.key] contains run.name"
        )
        assert references(source) == {
            Reference("params", "env", None),
            Reference("steps", "a", "phase"),
            Reference("steps", "b", "phase"),
            Reference("steps", "c", "outputs"),
            Reference("params", "key", None),
            Reference("run", "name", None),
        }

    def test_duplicates_collapse(self) -> None:
        assert references("params.a == 1 || params.a == 2 || params['a'].x") == {
            Reference("params", "a", None)
        }

    def test_literals_only(self) -> None:
        assert references("1 in [1, 2]") == frozenset()

    def test_references_are_hashable_and_frozen(self) -> None:
        reference = Reference("params", "env", None)
        with pytest.raises(AttributeError):
            reference.name = "other"  # type: ignore[misc]
        assert hash(reference) == hash(Reference("params", "env", None))


class TestCache:
    def test_same_text_same_object(self) -> None:
        first = compile_condition("params.cache_probe == 1")
        assert isinstance(first, Condition)
        assert compile_condition("params.cache_probe == 1") is first

    def test_uncached_parse_builds_an_equal_condition(self) -> None:
        cached = compile_condition("params.cache_probe2 && steps.s.phase == 'Succeeded'")
        fresh = parse_condition("params.cache_probe2 && steps.s.phase == 'Succeeded'")
        assert fresh is not cached
        assert fresh == cached

    def test_blank_is_none_through_the_cache(self) -> None:
        assert compile_condition("") is None
        assert compile_condition("   ") is None

    def test_bounded(self) -> None:
        assert compile_condition.cache_info().maxsize == CACHE_SIZE == 1024
        for index in range(CACHE_SIZE + 50):
            compile_condition(f"params.bound_{index}")
        info = compile_condition.cache_info()
        assert info.currsize <= CACHE_SIZE
        # The oldest entries were evicted, the newest kept.
        newest = compile_condition(f"params.bound_{CACHE_SIZE + 49}")
        assert compile_condition(f"params.bound_{CACHE_SIZE + 49}") is newest

    def test_condition_is_immutable(self) -> None:
        condition = compile_condition("params.frozen_probe")
        assert condition is not None
        with pytest.raises(AttributeError):
            condition.source = "x"  # type: ignore[misc]
