"""The conditions DSL of `when`: parse once, evaluate fast, never eval.

A step's ``when`` is compiled to an immutable :class:`Condition` (see
:mod:`szal.dsl.parsing` for the grammar decisions and
:mod:`szal.dsl.semantics` for what values mean) and evaluated by the engine
against the run's context. This package imports nothing from the rest of
Szál, so the spec layer and the engine can both use it.
"""

from .conditions import Condition
from .errors import ConditionError
from .nodes import Reference
from .parsing import compile_condition, parse_condition
from .semantics import truthy

__all__ = [
    "Condition",
    "ConditionError",
    "Reference",
    "compile_condition",
    "parse_condition",
    "truthy",
]
