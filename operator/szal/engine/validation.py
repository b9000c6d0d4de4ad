"""Whole-workflow validation: every problem, each naming its step and field.

Called by ``szal validate``, by the admission webhook, and before any run
(``resolve_workflow`` calls :func:`validate_workflow` itself). The pydantic
models in :mod:`szal.spec` check *shape*; this module turns their errors into
:class:`SpecIssue` values that name the step by its name (not its list index)
and the field by its wire (camelCase) name, and adds the checks that need the
whole tree: names, dependencies, cycles, ``when`` references, GPU capacity.

Decisions (DESIGN.md is silent on these; written down here and in docs):

* All problems are collected, never just the first (one pass, no early exit).
* Nested ``steps`` are allowed only when the workflow's ``mode`` is
  Hierarchical. Inside a Hierarchical tree, each step's ``mode`` (default
  Sequential) says how its children run, and may be any mode.
* ``dependsOn`` may name only sibling steps (the same group), and only when
  that group runs in Dag mode: the workflow mode at top level, the parent's
  ``mode`` for children. The Hierarchical top level runs as Sequential, so
  ``dependsOn`` is refused there too.
* Cycles are reported once each, rotated to start at the step defined first,
  following ``dependsOn`` edges: ``a -> b -> a`` means a depends on b, which
  depends on a.
* A ``when`` may name only steps certain to have finished before its step
  becomes ready (DESIGN.md section 4). In Dag groups that is the transitive
  ``dependsOn`` upstream, for trigger Any too (there, a referenced
  dependency other than the first to succeed may still be running, and reads
  as it is at that moment).
* A leaf step needs a ``command`` or a ``script`` after the template merge; a
  step with children may have neither (it then only orders its children).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from szal.dsl import ConditionError, compile_condition
from szal.spec import (
    DURATION_PATTERN,
    DurationError,
    ParamValue,
    Retries,
    Step,
    Workflow,
    WorkflowRun,
    WorkflowSpec,
    parse_duration,
)

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
STEP_FIELDS = ("phase", "exitCode", "attempts", "outputs")
RUN_FIELDS = ("name", "namespace")


@dataclass(frozen=True, slots=True)
class SpecIssue:
    """One problem in a definition.

    ``path`` locates it in the document (``spec.steps[build].dependsOn``),
    ``step`` names the step (None for workflow-level fields), ``field`` is
    the wire name of the field inside the step (or the workflow), ``message``
    says what is wrong.
    """

    path: str
    step: str | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.field}: " if self.field else ""
        if self.step is not None:
            return f"step {self.step!r}: {where}{self.message}"
        return f"{where}{self.message}"


class WorkflowInvalid(ValueError):
    """A definition with one or more :class:`SpecIssue`; ``str()`` lists them all."""

    def __init__(self, issues: Sequence[SpecIssue], source: str | None = None) -> None:
        self.issues = list(issues)
        self.source = source
        super().__init__(self.__str__())

    def __str__(self) -> str:
        prefix = f"{self.source}: " if self.source else ""
        return "\n".join(f"{prefix}{issue}" for issue in self.issues)


# ---------------------------------------------------------------------------
# Shape errors from pydantic, named by step and wire field
# ---------------------------------------------------------------------------


# Fields holding a duration: a number there (`timeout: 10`) gets the duration message.
_DURATION_FIELDS = frozenset({"timeout", "delay", "maxDelay"})


def _step_label(raw: Any, index: int) -> str:
    if isinstance(raw, Mapping):
        name = raw.get("name")
        if isinstance(name, str) and name:
            return name
    return f"#{index}"


def _issue_from_error(data: Any, error: Mapping[str, Any]) -> tuple[SpecIssue, str | None]:
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
            message += f", got {_shown(error['input'])}"
    return SpecIssue(".".join(path_parts), step, field, message), tag


# Argo Workflows' top-level spec fields: an Argo user's first try gets a hint.
_ARGO_FIELDS = frozenset({"templates", "entrypoint", "arguments", "workflowTemplateRef"})
_ARGO_HINT = (
    " (an Argo Workflows field: Szál has no templates; list the steps under"
    " spec.steps, each with a name, an image and a command or script; see examples/)"
)


def _shown(value: Any) -> str:
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


def issues_from_validation_error(data: Any, exc: ValidationError) -> list[SpecIssue]:
    """Turn a pydantic ValidationError on ``data`` into SpecIssues (one per location)."""
    issues: list[SpecIssue] = []
    tagged: dict[tuple[str, str | None, str], list[str]] = {}
    for error in exc.errors():
        issue, tag = _issue_from_error(data, error)
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


# Keys that cannot simply be dropped to look past a shape error: dropping them
# would change what the rest of the workflow means (and report made-up
# problems), so the whole-workflow checks are not run then.
_UNPRUNABLE = frozenset(
    {
        "apiVersion",
        "kind",
        "metadata",
        "spec",
        "workflow",
        "mode",
        "params",
        "name",
        "dependsOn",
        "steps",
        "template",
    }
)
# Dropped keys that other checks look at get a harmless stand-in instead.
_STAND_INS: Mapping[str, Any] = {"command": ["true"], "args": [], "script": "true"}


def _pruned(data: Any, exc: ValidationError) -> Any | None:
    """A copy of ``data`` without the values the models refused, or None.

    Lets validation report the whole-workflow problems (unknown dependencies,
    cycles, duplicate names, ``when`` references) together with the shape
    errors instead of only the first kind. None when a refused value cannot
    be dropped without changing the meaning of the rest.
    """
    doc = copy.deepcopy(data)
    for error in exc.errors():
        node: Any = doc
        parent: Any = None
        key: Any = None
        for part in error.get("loc", ()):
            in_mapping = isinstance(node, Mapping) and isinstance(part, str) and part in node
            in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
            if not (in_mapping or in_list):
                break
            parent, key, node = node, part, node[part]
        if not isinstance(parent, dict) or not isinstance(key, str) or key in _UNPRUNABLE:
            return None
        if key in _STAND_INS:
            parent[key] = copy.deepcopy(_STAND_INS[key])
        else:
            parent.pop(key, None)
    return doc


def _issues_past_shape(
    data: Any, exc: ValidationError, check: Callable[[Any], list[SpecIssue]]
) -> list[SpecIssue]:
    """Shape issues of ``exc`` plus ``check``'s issues on the pruned document."""
    found = issues_from_validation_error(data, exc)
    doc = _pruned(data, exc)
    if doc is None:
        return found
    try:
        more = check(doc)
    except ValidationError:
        return found
    seen = {(issue.path, issue.field) for issue in found}
    return found + [issue for issue in more if (issue.path, issue.field) not in seen]


def parse_workflow(data: Any, source: str | None = None) -> Workflow:
    """Load a Workflow document, raising :class:`WorkflowInvalid` on any problem.

    Both shape errors and whole-workflow checks are reported, all at once.
    """
    if not isinstance(data, Mapping):
        raise WorkflowInvalid(
            [SpecIssue("", None, "", "a Workflow document must be a mapping")], source
        )
    try:
        workflow = Workflow.model_validate(data)
    except ValidationError as exc:
        issues = _issues_past_shape(
            data, exc, lambda doc: validate_workflow(Workflow.model_validate(doc).spec)
        )
        raise WorkflowInvalid(issues, source) from None
    issues = validate_workflow(workflow.spec)
    if issues:
        raise WorkflowInvalid(issues, source)
    return workflow


def parse_workflow_run(data: Any, source: str | None = None) -> WorkflowRun:
    """Load a WorkflowRun document; an inline ``spec.workflow`` is validated too."""
    if not isinstance(data, Mapping):
        raise WorkflowInvalid(
            [SpecIssue("", None, "", "a WorkflowRun document must be a mapping")], source
        )
    try:
        run = WorkflowRun.model_validate(data)
    except ValidationError as exc:
        shape_issues = _issues_past_shape(data, exc, _inline_workflow_issues)
        raise WorkflowInvalid(shape_issues, source) from None
    issues: list[SpecIssue] = []
    if run.spec.workflow is None and run.spec.workflow_ref is None:
        issues.append(SpecIssue("spec", None, "workflowRef", "give either workflowRef or workflow"))
    elif run.spec.workflow is not None and run.spec.workflow_ref is not None:
        issues.append(
            SpecIssue("spec", None, "workflowRef", "give either workflowRef or workflow, not both")
        )
    if run.spec.workflow is not None:
        issues.extend(
            _prefixed(issue, "spec.workflow") for issue in validate_workflow(run.spec.workflow)
        )
        _, param_issues = validate_run_params(run.spec.workflow, run.spec.params)
        issues.extend(param_issues)
    if issues:
        raise WorkflowInvalid(issues, source)
    return run


def _inline_workflow_issues(doc: Any) -> list[SpecIssue]:
    workflow = WorkflowRun.model_validate(doc).spec.workflow
    if workflow is None:
        return []
    return [_prefixed(issue, "spec.workflow") for issue in validate_workflow(workflow)]


def _prefixed(issue: SpecIssue, prefix: str) -> SpecIssue:
    path = issue.path[len("spec") :] if issue.path.startswith("spec") else "." + issue.path
    return SpecIssue(prefix + path, issue.step, issue.field, issue.message)


# ---------------------------------------------------------------------------
# Whole-workflow checks
# ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Node:
    step: Step
    path: str
    parent: _Node | None
    group: list[_Node]  # the sibling list this node belongs to
    group_mode: str
    position: int
    children: list[_Node]


def _walk(spec: WorkflowSpec) -> list[_Node]:
    """All steps in definition order (parents before children)."""
    nodes: list[_Node] = []

    def visit(steps: list[Step], parent: _Node | None, mode: str, prefix: str) -> list[_Node]:
        group: list[_Node] = []
        for position, step in enumerate(steps):
            node = _Node(step, f"{prefix}[{step.name}]", parent, group, mode, position, [])
            group.append(node)
            nodes.append(node)
            if step.steps:
                node.children = visit(
                    step.steps, node, step.mode or "Sequential", f"{node.path}.steps"
                )
        return group

    visit(spec.steps, None, spec.mode, "spec.steps")
    return nodes


def _issue(node: _Node, field: str, message: str) -> SpecIssue:
    return SpecIssue(f"{node.path}.{field}", node.step.name, field, message)


def _check_duration(
    issues: list[SpecIssue], path: str, step: str | None, field: str, value: str | None
) -> float | None:
    if value is None:
        return None
    problem = duration_problem(value)
    if problem is not None:
        issues.append(SpecIssue(f"{path}.{field}", step, field, problem))
        return None
    return parse_duration(value)


def _check_retries(
    issues: list[SpecIssue], path: str, step: str | None, retries: Retries | None
) -> None:
    if retries is None:
        return
    delay = _check_duration(issues, path, step, "retries.delay", retries.delay)
    max_delay = _check_duration(issues, path, step, "retries.maxDelay", retries.max_delay)
    if delay is not None and max_delay is not None and max_delay < delay:
        issues.append(
            SpecIssue(
                f"{path}.retries.maxDelay",
                step,
                "retries.maxDelay",
                f"maxDelay {retries.max_delay} is shorter than delay {retries.delay}",
            )
        )


def _check_command(
    issues: list[SpecIssue], path: str, step: str | None, field: str, command: list[str] | None
) -> None:
    """An empty ``command`` (or program name) would run nothing, or fail at exec."""
    if command is None:
        return
    if not command:
        message = "empty: give the program and its arguments (e.g. [make, build]) or a script"
        issues.append(SpecIssue(f"{path}.{field}", step, field, message))
    elif not command[0].strip():
        message = "the program name is empty"
        issues.append(SpecIssue(f"{path}.{field}[0]", step, f"{field}[0]", message))


def _find_cycles(members: list[_Node]) -> list[list[str]]:
    """Each distinct cycle among sibling Dag steps, in a deterministic order."""
    order = {node.step.name: i for i, node in enumerate(members)}
    deps_of = [[order[d] for d in node.step.depends_on if d in order] for node in members]
    white, gray, black = 0, 1, 2
    color = [white] * len(members)
    cycles: list[list[str]] = []
    seen: set[tuple[int, ...]] = set()
    for root in range(len(members)):
        if color[root] != white:
            continue
        color[root] = gray
        stack: list[tuple[int, int]] = [(root, 0)]
        path: list[int] = [root]
        while stack:
            node, i = stack[-1]
            deps = deps_of[node]
            if i < len(deps):
                stack[-1] = (node, i + 1)
                dep = deps[i]
                if color[dep] == white:
                    color[dep] = gray
                    stack.append((dep, 0))
                    path.append(dep)
                elif color[dep] == gray:
                    cycle = path[path.index(dep) :]
                    start = cycle.index(min(cycle))
                    key = tuple(cycle[start:] + cycle[:start])
                    if key not in seen:
                        seen.add(key)
                        cycles.append([members[k].step.name for k in (*key, key[0])])
            else:
                color[node] = black
                stack.pop()
                path.pop()
    return cycles


def _certainly_before(target: _Node, node: _Node) -> bool:
    """Whether ``target`` has certainly finished when ``node`` becomes ready."""
    if target is node:
        return False
    ancestors: list[_Node] = []
    cursor: _Node | None = node.parent
    while cursor is not None:
        if cursor is target:
            return True  # an ancestor Succeeded before its children started
        ancestors.append(cursor)
        cursor = cursor.parent
    # Climb from target to the sibling of node or of one of node's ancestors.
    chain_node = [node, *ancestors]
    groups = {id(n.group): n for n in chain_node}
    member: _Node | None = target
    while member is not None and id(member.group) not in groups:
        member = member.parent
    if member is None:
        return False
    anchor = groups[id(member.group)]
    if member is anchor:
        return False  # target is inside node's subtree (or node itself)
    mode = anchor.group_mode
    if mode in ("Sequential", "Hierarchical"):
        return member.position < anchor.position
    if mode == "Dag":
        names = {n.step.name: n for n in anchor.group}
        todo = list(anchor.step.depends_on)
        visited: set[str] = set()
        while todo:
            dep = todo.pop()
            if dep == member.step.name:
                return True
            if dep in visited or dep not in names:
                continue
            visited.add(dep)
            todo.extend(names[dep].step.depends_on)
        return False
    return False  # Parallel: nothing is certain


def validate_workflow(spec: WorkflowSpec, *, gpus_available: int | None = None) -> list[SpecIssue]:
    """Every problem in ``spec`` that its shape alone does not show.

    ``gpus_available`` is the local machine's GPU count (local runs); when
    given, a step asking for more is an issue on ``resources.gpu.count``.
    """
    issues: list[SpecIssue] = []
    nodes = _walk(spec)
    hierarchical = spec.mode == "Hierarchical"

    # Workflow-level fields.
    _check_duration(issues, "spec", None, "timeout", spec.timeout)
    param_names: set[str] = set()
    for i, param in enumerate(spec.params):
        if param.name in param_names:
            issues.append(
                SpecIssue(
                    f"spec.params[{i}].name",
                    None,
                    f"params[{i}].name",
                    f"duplicate param {param.name!r}",
                )
            )
        param_names.add(param.name)
    template = spec.template
    if template is not None:
        _check_duration(issues, "spec.template", None, "template.timeout", template.timeout)
        _check_retries(issues, "spec.template", None, template.retries)
        _check_command(issues, "spec.template", None, "template.command", template.command)
        if template.script is not None and template.command is not None:
            issues.append(
                SpecIssue(
                    "spec.template.script",
                    None,
                    "template.script",
                    "set command or script, not both",
                )
            )

    by_name: dict[str, _Node] = {}
    for node in nodes:
        step = node.step
        if not DNS1123_LABEL.match(step.name):
            issues.append(
                _issue(
                    node,
                    "name",
                    f"invalid name {step.name!r}: use a DNS-1123 label "
                    "(lowercase letters, digits and '-', starting and ending "
                    "with a letter or digit, at most 63 characters)",
                )
            )
        if step.name in by_name:
            issues.append(
                _issue(
                    node,
                    "name",
                    f"duplicate name {step.name!r}: step names must be unique in the "
                    f"whole workflow (first at {by_name[step.name].path})",
                )
            )
        else:
            by_name[step.name] = node

    group_names: dict[int, set[str]] = {}
    for node in nodes:
        step = node.step
        name = step.name
        # Nesting.
        if step.steps is not None and not hierarchical:
            issues.append(
                _issue(
                    node,
                    "steps",
                    "nested steps are allowed only in Hierarchical mode "
                    f"(the workflow's mode is {spec.mode})",
                )
            )
        # Dependencies.
        if step.depends_on:
            if node.group_mode != "Dag":
                where = "workflow" if node.parent is None else f"parent {node.parent.step.name!r}"
                issues.append(
                    _issue(
                        node,
                        "dependsOn",
                        f"dependsOn is allowed only in Dag mode (the {where} runs "
                        f"{node.group_mode})",
                    )
                )
            siblings = group_names.get(id(node.group))
            if siblings is None:
                siblings = group_names[id(node.group)] = {n.step.name for n in node.group}
            for dep in step.depends_on:
                if dep not in by_name:
                    issues.append(_issue(node, "dependsOn", f"unknown step {dep!r}"))
                elif dep not in siblings:
                    issues.append(
                        _issue(
                            node,
                            "dependsOn",
                            f"step {dep!r} is not a sibling: dependsOn names steps "
                            "of the same group",
                        )
                    )
        if step.trigger == "Any" and not step.depends_on:
            issues.append(_issue(node, "trigger", "trigger Any needs dependsOn"))
        # Durations and retries.
        _check_duration(issues, node.path, name, "timeout", step.timeout)
        _check_retries(issues, node.path, name, step.retries)
        if step.rollback is not None:
            _check_duration(issues, node.path, name, "rollback.timeout", step.rollback.timeout)
            if step.rollback.command is None and step.rollback.script is None:
                issues.append(
                    _issue(node, "rollback.command", "a rollback needs a command or a script")
                )
            if step.rollback.command is not None and step.rollback.script is not None:
                issues.append(_issue(node, "rollback.script", "set command or script, not both"))
        # Something to run.
        _check_command(issues, node.path, name, "command", step.command)
        if step.rollback is not None:
            _check_command(issues, node.path, name, "rollback.command", step.rollback.command)
        if step.command is not None and step.script is not None:
            issues.append(_issue(node, "script", "set command or script, not both"))
        if step.script is not None and step.args is not None:
            issues.append(_issue(node, "args", "args cannot be used with script"))
        has_children = bool(step.steps)
        runs = (
            step.command is not None
            or step.script is not None
            or (
                template is not None
                and (template.command is not None or template.script is not None)
            )
        )
        if not runs and not has_children:
            issues.append(
                _issue(
                    node, "command", "no command or script (set one on the step or in the template)"
                )
            )
        # GPUs.
        if gpus_available is not None:
            resources = step.resources or (template.resources if template else None)
            gpu = resources.gpu if resources else None
            if gpu is not None and gpu.count > gpus_available:
                issues.append(
                    _issue(
                        node,
                        "resources.gpu.count",
                        f"requests {gpu.count} GPU(s) but this machine has {gpus_available}",
                    )
                )
        # Conditions.
        if step.when is not None and step.when.strip():
            issues.extend(_check_when(node, by_name, param_names))

    # Cycles, per Dag group.
    groups: list[list[_Node]] = []
    seen_groups: set[int] = set()
    for node in nodes:
        if node.group_mode == "Dag" and id(node.group) not in seen_groups:
            seen_groups.add(id(node.group))
            groups.append(node.group)
    for members in groups:
        local = {n.step.name: n for n in members}
        for cycle in _find_cycles(members):
            issues.append(
                _issue(local[cycle[0]], "dependsOn", "dependency cycle: " + " -> ".join(cycle))
            )
    return issues


def _check_when(node: _Node, by_name: Mapping[str, _Node], params: set[str]) -> list[SpecIssue]:
    assert node.step.when is not None
    try:
        condition = compile_condition(node.step.when)
    except ConditionError as exc:
        where = (
            f"line {exc.line}, column {exc.column}: "
            if exc.line is not None and f"line {exc.line}" not in exc.message
            else ""
        )
        return [_issue(node, "when", f"{where}{exc.message}")]
    if condition is None:
        return []
    issues: list[SpecIssue] = []
    for ref in sorted(condition.references, key=lambda r: (r.root, r.name, r.field or "")):
        if ref.root == "params":
            if ref.name not in params:
                issues.append(_issue(node, "when", f"unknown param {ref.name!r}"))
        elif ref.root == "steps":
            target = by_name.get(ref.name)
            if target is None:
                issues.append(_issue(node, "when", f"unknown step {ref.name!r}"))
            elif ref.field is not None and ref.field not in STEP_FIELDS:
                issues.append(
                    _issue(
                        node,
                        "when",
                        f"unknown field {ref.field!r} of step {ref.name!r} "
                        f"(use {', '.join(STEP_FIELDS)})",
                    )
                )
            elif not _certainly_before(target, node):
                issues.append(
                    _issue(
                        node,
                        "when",
                        f"step {ref.name!r} is not certain to have finished before "
                        f"{node.step.name!r} starts (name only upstream steps in Dag mode, "
                        "earlier steps in Sequential mode, earlier siblings and ancestors "
                        "in Hierarchical mode; none in Parallel mode)",
                    )
                )
        elif ref.root == "run" and ref.name not in RUN_FIELDS:
            issues.append(_issue(node, "when", f"unknown run field {ref.name!r}"))
    return issues


# ---------------------------------------------------------------------------
# Run parameters and the spec hash
# ---------------------------------------------------------------------------


def validate_run_params(
    spec: WorkflowSpec, given: Mapping[str, Any]
) -> tuple[dict[str, ParamValue], list[SpecIssue]]:
    """Resolve a run's params against the declared ones: defaults, unknown, missing."""
    issues: list[SpecIssue] = []
    declared = {p.name: p for p in spec.params}
    resolved: dict[str, ParamValue] = {}
    for name in given:
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            issues.append(
                SpecIssue(
                    f"spec.params.{name}",
                    None,
                    f"params.{name}",
                    f"unknown param {name!r} (the workflow declares: {known})",
                )
            )
    for name, param in declared.items():
        if name in given:
            resolved[name] = given[name]
        elif param.default is not None:
            resolved[name] = param.default
        else:
            issues.append(
                SpecIssue(
                    f"spec.params.{name}",
                    None,
                    f"params.{name}",
                    f"missing required param {name!r}",
                )
            )
    return resolved, issues


def spec_hash(spec: WorkflowSpec) -> str:
    """sha256 of the spec's canonical JSON (defaults included), first 16 hex digits."""
    canonical = json.dumps(
        spec.model_dump(mode="json", by_alias=True),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def raise_for_issues(issues: Iterable[SpecIssue], source: str | None = None) -> None:
    """Raise :class:`WorkflowInvalid` if there are any issues."""
    collected = list(issues)
    if collected:
        raise WorkflowInvalid(collected, source)
