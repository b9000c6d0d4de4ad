"""What values mean in a condition: truthiness, equality, order, membership.

The rules are DESIGN §4 ("`when` details"); this module is the single place
they are written down, so the AST in :mod:`szal.dsl.nodes` only wires them
together. Values are JSON-like (None, bool, int, float, str, lists, mappings);
tuples count as lists because list literals are stored as tuples.

Decisions:

* Nothing here raises on any input: a wrong type is an answer (false or
  null), never an error, because the planner evaluates conditions while it
  decides what to run and must not crash on a step's odd output.
* ``bool`` is not a number: ``true == 1`` is false and ``true < 2`` is false.
  ``int`` and ``float`` compare numerically (``1 == 1.0``).
* Only numbers with numbers and strings with strings are ordered. Anything
  else (null, bools, lists, mixed types) makes ``<``, ``<=``, ``>``, ``>=``
  all false.
* Equality of lists and mappings applies these rules element by element, so
  ``[1] == [1.0]`` is true and ``[true] == [1]`` is false.
* A lookup that finds nothing (missing key, missing step, index out of range,
  indexing a string or a number) reads as null. Negative indexes count from
  the end, as in Python and JSONPath.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_NUMBERS = (int, float)
# Exact types whose built-in == already is our ==; checked by identity to stay fast.
_PLAIN = frozenset({str, int, float, bool, type(None)})


def truthy(value: Any) -> bool:
    """Whether a bare value counts as true in a condition.

    False for null, false, 0, 0.0, '', [] and {}; true for everything else.
    """
    if value is None or value is False:
        return False
    if value is True:
        return True
    if isinstance(value, _NUMBERS):
        return value != 0
    if isinstance(value, (str, list, tuple, Mapping)):
        return len(value) > 0
    return True


def _is_number(value: Any) -> bool:
    return isinstance(value, _NUMBERS) and not isinstance(value, bool)


def _is_list(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def equal(left: Any, right: Any) -> bool:
    """``left == right`` under the DSL's rules: values of different types are unequal."""
    left_type = type(left)
    if left_type is type(right) and left_type in _PLAIN:
        return bool(left == right)
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and bool(left) is bool(right)
    if _is_number(left) or _is_number(right):
        return _is_number(left) and _is_number(right) and bool(left == right)
    if isinstance(left, str) or isinstance(right, str):
        return isinstance(left, str) and isinstance(right, str) and str.__eq__(left, right)
    if left is None or right is None:
        return False
    if _is_list(left):
        return (
            _is_list(right)
            and len(left) == len(right)
            and all(equal(a, b) for a, b in zip(left, right, strict=True))
        )
    if isinstance(left, Mapping):
        if not isinstance(right, Mapping) or len(left) != len(right):
            return False
        return all(key in right and equal(value, right[key]) for key, value in left.items())
    if left_type is type(right):
        # Unknown types only come from a caller's context; never let their
        # __eq__ raise out of a condition.
        try:
            return bool(left == right)
        except Exception:
            return False
    return False


def _orderable(left: Any, right: Any) -> bool:
    if isinstance(left, str):
        return isinstance(right, str)
    return _is_number(left) and _is_number(right)


def less(left: Any, right: Any) -> bool:
    """``left < right``; false whenever the two are not both numbers or both strings."""
    return _orderable(left, right) and bool(left < right)


def less_equal(left: Any, right: Any) -> bool:
    """``left <= right``; false whenever the two are not both numbers or both strings."""
    return _orderable(left, right) and bool(left <= right)


def greater(left: Any, right: Any) -> bool:
    """``left > right``; false whenever the two are not both numbers or both strings."""
    return _orderable(left, right) and bool(left > right)


def greater_equal(left: Any, right: Any) -> bool:
    """``left >= right``; false whenever the two are not both numbers or both strings."""
    return _orderable(left, right) and bool(left >= right)


def member_of(item: Any, container: Any) -> bool:
    """``item in container``: element of a list, substring of a string, key of a mapping.

    Any other combination of types is false.
    """
    if isinstance(container, str):
        return isinstance(item, str) and item in container
    if _is_list(container):
        return any(equal(item, element) for element in container)
    if isinstance(container, Mapping):
        if type(item) is str:
            return item in container
        return any(equal(item, key) for key in container)
    return False


def lookup(value: Any, key: Any) -> Any:
    """``value[key]`` (and ``value.key``), or None when there is nothing there."""
    if isinstance(value, Mapping):
        if type(key) is str:
            return value.get(key)
        # Keys of other types only match keys equal under the DSL's rules, so
        # `x[1]` never finds a `True` key.
        for candidate, found in value.items():
            if equal(key, candidate):
                return found
        return None
    if (
        _is_list(value)
        and isinstance(key, int)
        and not isinstance(key, bool)
        and -len(value) <= key < len(value)
    ):
        return value[key]
    return None
