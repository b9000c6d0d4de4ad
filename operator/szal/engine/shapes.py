"""Shape errors: pydantic's findings, named by step and wire field, and what they hide.

The pydantic models in :mod:`szal.spec` check the shape of each field. This
module turns their errors into :class:`~szal.engine.issues.SpecIssue`
values that name the step by its name (not its list index) and the field by
its wire (camelCase) name; an unknown field names the closest known one of
the same object (``comand: unknown field; did you mean 'command'?``).

:func:`issues_past_shape` then looks past the shape errors: it drops (or
stands in for) the refused values and runs the whole-workflow checks
(:mod:`szal.engine.checks`) on what is left, so a bad field in one step does
not hide a cycle, a duplicate name or an unknown dependency elsewhere.
Decisions:

* A refused value is dropped, or replaced by a harmless stand-in where other
  checks look at it (``command``, ``args``, ``script``). A step whose name is
  refused is left out, and the lookups by name are not checked then; a
  refused ``dependsOn`` or ``mode`` leaves the ordering checks out
  (:class:`~szal.engine.issues.Known`). Only a refusal of what the whole
  workflow rests on (its ``mode``, the ``steps`` list, the ``template`` or
  ``params`` as a whole, a param's name) stops the whole-workflow checks.
* A whole-workflow issue on a field that already has a shape issue (or on
  the field an unknown one was probably meant to be) is not repeated.
"""

from __future__ import annotations

import copy
import difflib
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from szal.engine.issues import Known, SpecIssue
from szal.spec import (
    DURATION_PATTERN,
    DurationError,
    Workflow,
    WorkflowRun,
    WorkflowSpec,
    parse_duration,
)

# Fields holding a duration: a number there (`timeout: 10`) gets the duration message.
_DURATION_FIELDS = frozenset({"timeout", "delay", "maxDelay"})


def _step_label(raw: Any, index: int) -> str:
    if isinstance(raw, Mapping):
        name = raw.get("name")
        if isinstance(name, str) and name:
            return name
    return f"#{index}"


def _issue_from_error(
    data: Any, error: Mapping[str, Any], root: type[BaseModel]
) -> tuple[SpecIssue, str | None]:
    """Map one pydantic error to a SpecIssue; also return a union tag it carried."""
    loc = error.get("loc", ())
    node: Any = data
    path_parts: list[str] = []
    field_parts: list[str] = []
    step: str | None = None
    tag: str | None = None
    navigable = True
    previous_key: Any = None
    for part in loc:
        if not navigable:
            tag = str(part)
            break
        if isinstance(part, int):
            if isinstance(node, list) and 0 <= part < len(node):
                item = node[part]
                if previous_key == "steps":
                    step = _step_label(item, part)
                    path_parts[-1] = f"{path_parts[-1]}[{step}]"
                    field_parts = []
                else:
                    path_parts[-1] = f"{path_parts[-1]}[{part}]"
                    field_parts.append(f"[{part}]")
                node = item
            else:
                navigable = False
                tag = str(part)
                break
        else:
            if isinstance(node, Mapping):
                path_parts.append(str(part))
                field_parts.append(str(part))
                if part in node:
                    node = node[part]
                else:
                    navigable = False  # a missing or unknown key ends the path
            else:
                tag = str(part)
                break
        previous_key = part
    field = ".".join(field_parts).replace(".[", "[")
    if step is None:
        for prefix in ("spec.workflow.", "spec."):
            if field.startswith(prefix):
                field = field[len(prefix) :]
                break
    message = str(error.get("msg", "invalid value"))
    kind = error.get("type")
    ctx = error.get("ctx") or {}
    duration_pattern = ctx.get("pattern") == DURATION_PATTERN
    if (kind == "string_pattern_mismatch" and duration_pattern) or (
        kind == "string_type" and loc and loc[-1] in _DURATION_FIELDS
    ):
        message = duration_problem(error.get("input")) or message
    elif kind == "missing":
        message = "required field is missing"
    elif kind == "extra_forbidden":
        message = "unknown field"
        if step is None and field in _ARGO_FIELDS:
            message += _ARGO_HINT
        else:
            near = closest_field(root, loc)
            if near is not None:
                message += f"; did you mean {near!r}?"
    elif kind == "value_error":
        # A model's own check (e.g. a quantity): its message names the value.
        message = message.removeprefix("Value error, ")
    else:
        if kind in ("dict_type", "model_type", "model_attributes_type"):
            message = "Input should be a mapping"
        elif kind in ("int_parsing", "int_from_float", "float_parsing", "bool_parsing"):
            message = message.split(",")[0]  # pydantic's detail; the value says it
        elif kind == "too_short":
            message = f"needs at least {ctx.get('min_length', 1)} item(s), got none"
            if field == "steps":
                message = "at least one step is required, got none"
        if tag is None and "input" in error and kind != "too_short":
            message += f", got {shown_value(error['input'])}"
    return SpecIssue(".".join(path_parts), step, field, message), tag


# Argo Workflows' top-level spec fields: an Argo user's first try gets a hint.
_ARGO_FIELDS = frozenset({"templates", "entrypoint", "arguments", "workflowTemplateRef"})
_ARGO_HINT = (
    " (an Argo Workflows field: Szál has no templates; list the steps under"
    " spec.steps, each with a name, an image and a command or script; see examples/)"
)


def shown_value(value: Any) -> str:
    """A short rendering of a refused input value for a message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    if isinstance(value, Mapping):
        return "a mapping"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def duration_problem(value: Any) -> str | None:
    """What is wrong with a duration value, or None when it parses.

    A bare number gets a hint to add a unit; a negative one is named as such.
    """
    try:
        parse_duration(value)
    except DurationError as exc:
        lead = f"invalid duration {value!r}"
        text = value.strip() if isinstance(value, str) else value
        if isinstance(text, int | float) and not isinstance(text, bool):
            return f"{lead}: a number needs a unit (ms, s, m, h), e.g. '{text}s'"
        if isinstance(text, str) and re.fullmatch(r"[0-9]+(\.[0-9]+)?", text):
            return f"{lead}: a number needs a unit (ms, s, m, h), e.g. '{text}s'"
        if isinstance(text, str) and text.startswith("-"):
            return f"{lead}: must not be negative"
        return str(exc)
    return None


def _union_message(messages: list[str]) -> str:
    """``Input should be a valid string`` x4 -> one sentence listing the kinds."""
    unique = list(dict.fromkeys(messages))
    lead = "Input should be a valid "
    if all(m.startswith(lead) for m in unique):
        kinds = [m[len(lead) :] for m in unique]
        listed = ", ".join(kinds[:-1]) + " or " + kinds[-1] if len(kinds) > 1 else kinds[0]
        return lead + listed
    return "; or ".join(unique)


def issues_from_validation_error(
    data: Any, exc: ValidationError, root: type[BaseModel] | None = None
) -> list[SpecIssue]:
    """Turn a pydantic ValidationError on ``data`` into SpecIssues (one per location).

    ``root`` is the model ``data`` was validated as (default: told by its
    ``kind``, else a bare :class:`~szal.spec.WorkflowSpec`); it names the
    fields an unknown one is compared with.
    """
    model = root or _root_of(data)
    issues: list[SpecIssue] = []
    tagged: dict[tuple[str, str | None, str], list[str]] = {}
    for error in exc.errors():
        issue, tag = _issue_from_error(data, error, model)
        if tag is None:
            issues.append(issue)
            continue
        key = (issue.path, issue.step, issue.field)
        if key not in tagged:
            tagged[key] = []
            issues.append(SpecIssue(issue.path, issue.step, issue.field, ""))
        tagged[key].append(issue.message)
    out: list[SpecIssue] = []
    seen: set[SpecIssue] = set()
    for issue in issues:
        key = (issue.path, issue.step, issue.field)
        if not issue.message and key in tagged:
            issue = SpecIssue(issue.path, issue.step, issue.field, _union_message(tagged[key]))
        if issue not in seen:
            seen.add(issue)
            out.append(issue)
    return out


# ---------------------------------------------------------------------------
# The closest known field
# ---------------------------------------------------------------------------


def _root_of(data: Any) -> type[BaseModel]:
    kind = data.get("kind") if isinstance(data, Mapping) else None
    if kind == "WorkflowRun":
        return WorkflowRun
    if kind == "Workflow":
        return Workflow
    return WorkflowSpec


def _unwrapped(annotation: Any) -> Any:
    """``X`` from ``Annotated[X, ...]`` and ``X | None``; None for a union of several."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin is Union or origin is types.UnionType:
            options = [a for a in get_args(annotation) if a is not type(None)]
            if len(options) != 1:
                return None
            annotation = options[0]
        else:
            return annotation


def _inner(annotation: Any, part: str | int) -> Any:
    """The type found at ``part`` inside a value of type ``annotation``, or None."""
    annotation = _unwrapped(annotation)
    origin = get_origin(annotation)
    if isinstance(part, int):
        return get_args(annotation)[0] if origin is list else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, info in annotation.model_fields.items():
            if part in (name, info.alias):
                return info.annotation
        return None
    return get_args(annotation)[1] if origin is dict else None


def closest_field(root: type[BaseModel], loc: tuple[Any, ...] | list[Any]) -> str | None:
    """The known field closest to the unknown one at ``loc`` (its last part), or None."""
    if not loc or not isinstance(loc[-1], str):
        return None
    current: Any = root
    for part in loc[:-1]:
        current = _inner(current, part)
        if current is None:
            return None
    current = _unwrapped(current)
    if not (isinstance(current, type) and issubclass(current, BaseModel)):
        return None
    known = {
        (info.alias or name).lower(): info.alias or name
        for name, info in current.model_fields.items()
    }
    near = difflib.get_close_matches(loc[-1].lower(), list(known), n=1, cutoff=0.6)
    return known[near[0]] if near else None


# ---------------------------------------------------------------------------
# Looking past shape errors
# ---------------------------------------------------------------------------

# Values other checks look at: a refused one gets a harmless stand-in, not a gap.
_STAND_INS: Mapping[str, Any] = {"command": ["true"], "args": [], "script": "true"}
# A misspelt one of these: "no command or script" would only repeat the hint.
_RUNNING = frozenset({"command", "args", "script"})
# Top-level spec keys the whole workflow rests on: refused, nothing else is checked.
_FOUNDATIONS = frozenset({"mode", "steps"})


@dataclass(slots=True)
class _Pruning:
    """A copy of the spec without its refused values, and what that left unknown."""

    spec: dict[str, Any]
    order: bool = True
    names: bool = True
    left_out: dict[tuple[int, int], tuple[list[Any], int]] = field(default_factory=dict)

    def prune(self, rel: tuple[Any, ...]) -> bool:
        """Drop the value refused at ``rel`` (inside the spec); False when that cannot be."""
        if not rel:
            return False
        depth = 0
        while depth + 1 < len(rel) and rel[depth] == "steps" and isinstance(rel[depth + 1], int):
            depth += 2
        key = rel[depth] if depth < len(rel) else None
        if depth == 0:
            if key in _FOUNDATIONS:
                return False
            if key == "template" and len(rel) == 1:
                return False
            if key == "params" and (len(rel) < 3 or rel[2] == "name"):
                return False  # the params list, one of its items, a param's name
        elif key is None or key == "name":
            self.names = self.order = False  # the step itself is left out
            steps = _node_at(self.spec, rel[: depth - 1])
            if isinstance(steps, list):
                self.left_out[(id(steps), rel[depth - 1])] = (steps, rel[depth - 1])
            return True
        elif key == "steps":
            self.names = False
        elif key in ("dependsOn", "mode"):
            self.order = False
        start = 2 if depth == 0 and key == "params" else depth
        parent, last = _deepest_key(_node_at(self.spec, rel[:start]), rel[start:])
        if parent is not None and last is not None:
            if last in _STAND_INS:
                parent[last] = copy.deepcopy(_STAND_INS[last])
            else:
                parent.pop(last, None)
        return True

    def pruned(self) -> dict[str, Any]:
        """The spec, with the left-out steps gone."""
        for steps, index in sorted(self.left_out.values(), key=lambda s: -s[1]):
            del steps[index]
        return self.spec


def _node_at(root: Any, path: tuple[Any, ...]) -> Any:
    node = root
    for part in path:
        if isinstance(node, Mapping) and isinstance(part, str):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            return None
    return node


def _deepest_key(root: Any, rel: tuple[Any, ...]) -> tuple[dict[str, Any] | None, str | None]:
    """The deepest mapping on the way to ``rel`` through mappings only, and its key there.

    A value inside a list (``env[0].name``) drops the whole list: dropping
    only the item's key would leave an item the models refuse again.
    """
    node: Any = root
    found: tuple[dict[str, Any] | None, str | None] = (None, None)
    for part in rel:
        if not (isinstance(node, dict) and isinstance(part, str) and part in node):
            break
        found = (node, part)
        node = node[part]
    return found


def issues_past_shape(
    data: Any,
    exc: ValidationError,
    at: tuple[str, ...],
    check: Callable[[WorkflowSpec, Known], list[SpecIssue]],
    root: type[BaseModel] | None = None,
) -> list[SpecIssue]:
    """The shape issues of ``exc``, then ``check``'s on the spec at ``at`` without them.

    ``at`` locates the workflow spec in ``data`` (``("spec",)`` in a Workflow,
    ``("spec", "workflow")`` in a WorkflowRun, ``()`` for a bare spec);
    refusals outside it do not stop the whole-workflow checks.
    """
    model = root or _root_of(data)
    found = issues_from_validation_error(data, exc, model)
    spec = _node_at(data, at)
    if not isinstance(spec, dict):
        return found
    pruning = _Pruning(copy.deepcopy(spec))
    repeated = {(issue.step, issue.field) for issue in found}
    for error in exc.errors():
        loc = tuple(error.get("loc", ()))
        if loc[: len(at)] != at:
            continue
        if not pruning.prune(loc[len(at) :]):
            return found
        issue, _ = _issue_from_error(data, error, model)
        near = closest_field(model, loc) if error.get("type") == "extra_forbidden" else None
        if near is not None:
            head, dot, _ = issue.field.rpartition(".")
            meant = ("command", "script") if near in _RUNNING else (near,)
            repeated.update((issue.step, f"{head}{dot}{field}") for field in meant)
        if issue.field == "steps" and issue.step is not None:
            repeated.add((issue.step, "command"))  # its children were refused, not missing
    try:
        parsed = WorkflowSpec.model_validate(pruning.pruned())
    except ValidationError:
        return found
    more = check(parsed, Known(order=pruning.order, names=pruning.names))
    return found + [issue for issue in more if (issue.step, issue.field) not in repeated]
