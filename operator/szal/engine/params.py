"""Typed params: a param's declared type and enum, and whether a value fits them.

Called by :mod:`szal.engine.checks` (a declared ``default`` and ``enum``
must fit the param's type), by :func:`szal.engine.validation.validate_run_params`
(every run's params, for ``szal run``, the admission webhook and the
operator's run start alike) and by the CLI to convert ``-p name=value``
text to the declared type.

Decisions:

* The types are JSON's, named as in Tekton and Argo: ``string``,
  ``integer``, ``number``, ``boolean``, ``array``, ``object``. A param
  without ``type`` has its default's type (Tekton infers ``array`` and
  ``object`` the same way), and ``string`` when it has no default.
* ``bool`` is not a number (as in the condition DSL): ``true`` is not an
  ``integer``. An ``integer`` is a whole number written without a point
  (``3``, not ``3.0``); a ``number`` is any number, ``3`` included.
* ``enum`` lists the allowed values; a value is in it when it equals one
  of them with the same JSON type (``1`` is not ``"1"`` and not ``true``).
* Nothing is coerced: a run whose param ``replicas`` is ``"3"`` where an
  ``integer`` is declared is refused with what was expected and what was
  given. Only the CLI converts its ``-p`` text, because it has no other way
  to say ``3``.
"""

from __future__ import annotations

import json
from typing import Any, Final

from szal.spec import Param, ParamType, ParamValue

#: What a message says a type expects.
EXPECTED: Final[dict[str, str]] = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean (true or false)",
    "array": "an array",
    "object": "an object (a mapping)",
}


def type_of(value: Any) -> ParamType | None:
    """The JSON type of ``value`` as a param type (None: not a JSON value)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return None


def declared_type(param: Param) -> ParamType:
    """``param.type``, else its default's type, else ``string``."""
    if param.type is not None:
        return param.type
    inferred = type_of(param.default) if param.default is not None else None
    return inferred or "string"


def fits(kind: ParamType, value: Any) -> bool:
    """Is ``value`` of type ``kind``? (An integer is a number too.)"""
    actual = type_of(value)
    return actual == kind or (kind == "number" and actual == "integer")


def shown(value: Any) -> str:
    """A value as a message shows it: JSON, cut to 80 characters."""
    try:
        text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _in_enum(value: Any, allowed: list[ParamValue]) -> bool:
    return any(type_of(value) == type_of(item) and value == item for item in allowed)


def value_problem(param: Param, value: Any) -> str | None:
    """Why ``value`` cannot be ``param``'s value (None: it can)."""
    kind = declared_type(param)
    if not fits(kind, value):
        actual = type_of(value) or ("null" if value is None else type(value).__name__)
        given = actual if value is None else f"{actual} {shown(value)}"
        return f"param {param.name!r} expects {EXPECTED[kind]} (type {kind}), got {given}"
    if param.enum is not None and not _in_enum(value, param.enum):
        allowed = ", ".join(shown(item) for item in param.enum)
        return f"param {param.name!r} must be one of {allowed}, got {shown(value)}"
    return None


def declaration_problems(param: Param) -> list[tuple[str, str]]:
    """(field, message) for a ``default`` or ``enum`` entry that does not fit the type."""
    kind = declared_type(param)
    problems: list[tuple[str, str]] = []
    for i, item in enumerate(param.enum or []):
        if not fits(kind, item):
            problems.append(
                (f"enum[{i}]", f"{shown(item)} is not {EXPECTED[kind]} (the param's type {kind})")
            )
    if param.default is not None:
        problem = value_problem(param, param.default)
        if problem is not None:
            problems.append(("default", "the default does not fit: " + problem))
    return problems


def from_text(param: Param, text: str) -> ParamValue | None:
    """``-p name=text`` as the declared type (None: the text is not of that type)."""
    kind = declared_type(param)
    if kind == "string":
        return text
    if kind == "boolean":
        return {"true": True, "false": False}.get(text.lower())
    try:
        value: Any = json.loads(text)
    except ValueError:
        return None
    return value if fits(kind, value) else None
