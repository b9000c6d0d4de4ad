"""A compiled `when` condition: what the engine holds and evaluates.

Built only by :func:`szal.dsl.compile_condition` / :func:`szal.dsl.parse_condition`.
It is immutable and holds no reference to lark, so one instance can be cached
and shared by every run of a Workflow.

The context it is evaluated against has the shape of DESIGN §4::

    {"params": {...},
     "steps": {"<name>": {"phase": str, "exitCode": int | None,
                          "attempts": int, "outputs": {...}}},
     "run": {"name": str, "namespace": str,
             "phase": str, "failedSteps": [str]}}   # the last two in finally steps

Anything missing from it reads as null; evaluation never raises.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .nodes import Expr, Reference
from .semantics import truthy


@dataclass(frozen=True, slots=True)
class Condition:
    """A parsed, validated condition.

    ``references`` lists every context entry the condition reads, so the spec
    layer can check that each named step and param exists and that a step
    is certain to have finished before the condition is evaluated.
    """

    source: str
    expression: Expr = field(repr=False)
    references: frozenset[Reference] = field(repr=False)

    def evaluate(self, context: Mapping[str, Any]) -> bool:
        """Whether the condition holds: the truthiness of its value."""
        value = self.expression.evaluate(context)
        return value is True or (value is not False and truthy(value))

    def value(self, context: Mapping[str, Any]) -> Any:
        """The raw value of the expression (list literals come back as tuples)."""
        return self.expression.evaluate(context)
