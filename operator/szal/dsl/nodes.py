"""The typed AST of a condition, and its evaluation by a tree walk.

:mod:`szal.dsl.parsing` builds these nodes from the lark parse; the engine
only ever sees them through :class:`szal.dsl.Condition`. They are frozen
dataclasses so a compiled condition can be cached and shared between threads
and runs.

Decisions, mostly for speed (the planner evaluates conditions on every pass):

* A name followed by constant segments (``steps.test.outputs.coverage``,
  ``steps['unit-test'].phase``, ``items[0]``) is one :class:`Variable` node
  with a tuple of keys, walked in a single loop, instead of a chain of
  member nodes. Only a computed index (``x[params.key]``) yields an
  :class:`Access` node.
* ``&&`` and ``||`` chains are n-ary (:class:`And`, :class:`Or`) and short
  circuit; they always produce a bool.
* A list literal whose items are all literals is folded into one
  :class:`Literal` holding a tuple; lists evaluate to tuples in general, so a
  cached condition never hands out a value a caller could mutate.
* :class:`Compare` resolves its operator to a function once, at build time.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .semantics import (
    equal,
    greater,
    greater_equal,
    less,
    less_equal,
    lookup,
    member_of,
    truthy,
)

Root = typing.Literal["params", "steps", "run", "matrix"]
Operator = typing.Literal["==", "!=", "<", "<=", ">", ">=", "in", "not in", "contains"]
Position = tuple[int, int]
"""1-based (line, column) of a token in the condition's source."""


@dataclass(frozen=True, slots=True)
class Reference:
    """Something a condition reads from its context, for validation and planning.

    ``steps.test.outputs.coverage`` is ``Reference("steps", "test", "outputs")``;
    ``params.env`` is ``Reference("params", "env", None)``; ``run.name`` is
    ``Reference("run", "name", None)``.
    """

    root: Root
    name: str
    field: str | None


class Expr:
    """A node of the AST. Subclasses are frozen dataclasses."""

    __slots__ = ()

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        """The node's value in ``context``; never raises for any context."""
        raise NotImplementedError

    def children(self) -> tuple[Expr, ...]:
        """Direct sub-expressions, left to right."""
        return ()


@dataclass(frozen=True, slots=True)
class Literal(Expr):
    """A constant: string, number, bool, null, or a tuple of constants."""

    value: Any
    position: Position | None = field(default=None, compare=False, repr=False)

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        return self.value


@dataclass(frozen=True, slots=True)
class ListExpr(Expr):
    """A list literal with at least one computed item; evaluates to a tuple."""

    items: tuple[Expr, ...]

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        return tuple(item.evaluate(context) for item in self.items)

    def children(self) -> tuple[Expr, ...]:
        return self.items


@dataclass(frozen=True, slots=True)
class Variable(Expr):
    """A name from the context and the constant keys read below it.

    ``positions`` holds where the name and each key start in the source, so
    validation can point at the offending segment.
    """

    root: str
    keys: tuple[str | int, ...]
    positions: tuple[Position, ...] = field(compare=False, repr=False)

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        value = context.get(self.root)
        for key in self.keys:
            # The common case (a JSON object and a name) without a call.
            if type(value) is dict and type(key) is str:
                value = value.get(key)
            else:
                value = lookup(value, key)
        return value


@dataclass(frozen=True, slots=True)
class Access(Expr):
    """``target[key]`` where either side is not a constant chain."""

    target: Expr
    key: Expr

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        return lookup(self.target.evaluate(context), self.key.evaluate(context))

    def children(self) -> tuple[Expr, ...]:
        return (self.target, self.key)


@dataclass(frozen=True, slots=True)
class Not(Expr):
    """``!operand`` / ``not operand``: the negated truthiness of the operand."""

    operand: Expr

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        return not truthy(self.operand.evaluate(context))

    def children(self) -> tuple[Expr, ...]:
        return (self.operand,)


@dataclass(frozen=True, slots=True)
class And(Expr):
    """``a && b && ...``: true when every operand is truthy; stops at the first that is not."""

    operands: tuple[Expr, ...]

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        for operand in self.operands:
            value = operand.evaluate(context)
            if value is not True and not truthy(value):
                return False
        return True

    def children(self) -> tuple[Expr, ...]:
        return self.operands


@dataclass(frozen=True, slots=True)
class Or(Expr):
    """``a || b || ...``: true when some operand is truthy; stops at the first that is."""

    operands: tuple[Expr, ...]

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        for operand in self.operands:
            value = operand.evaluate(context)
            if value is True or (value is not False and truthy(value)):
                return True
        return False

    def children(self) -> tuple[Expr, ...]:
        return self.operands


def _not_equal(left: Any, right: Any) -> bool:
    return not equal(left, right)


def _not_member_of(item: Any, container: Any) -> bool:
    return not member_of(item, container)


def _contains(container: Any, item: Any) -> bool:
    return member_of(item, container)


_TESTS: Mapping[Operator, Callable[[Any, Any], bool]] = {
    "==": equal,
    "!=": _not_equal,
    "<": less,
    "<=": less_equal,
    ">": greater,
    ">=": greater_equal,
    "in": member_of,
    "not in": _not_member_of,
    "contains": _contains,
}


@dataclass(frozen=True, slots=True)
class Compare(Expr):
    """``left <operator> right``; always a bool, never an error (see semantics)."""

    operator: Operator
    left: Expr
    right: Expr
    _test: Callable[[Any, Any], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_test", _TESTS[self.operator])

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        return self._test(self.left.evaluate(context), self.right.evaluate(context))

    def children(self) -> tuple[Expr, ...]:
        return (self.left, self.right)
