"""Whole-workflow checks: what the shape of each field alone does not show.

:func:`validate_workflow` looks at the parsed :class:`~szal.spec.WorkflowSpec`
as a tree: names (valid, unique in the whole workflow), dependencies (known,
siblings, Dag mode only), cycles, nesting, ``trigger``, ``when`` syntax and
references, durations and retry bounds, something to run, GPU capacity.
It is called once per definition by :func:`szal.engine.admitting.admit`
(and by :func:`szal.engine.validation.parse_workflow`); a new rule about the
workflow as a whole goes here, a new rule about one field's shape goes in the
pydantic models (:mod:`szal.spec.models`).

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
* Finally steps (``spec.finally``) are one more group, after every main
  step: Parallel, or Dag when the workflow's mode is Dag, and flat (no
  nested ``steps``). ``dependsOn`` links finally steps only among
  themselves; across the two (either way) is an error on ``dependsOn``.
  Names are unique across both. A finally step's ``when`` may name any main
  step (all have finished) and ``run.phase`` / ``run.failedSteps`` (the
  main outcome), which main steps may not.
* When shape errors made part of the workflow unknowable (a refused
  ``dependsOn`` or ``mode``, a step without a usable name), :class:`Known`
  says so and the checks that would rely on it are left out, so that no
  made-up problem is reported next to the real ones.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from szal.dsl import ConditionError, compile_condition
from szal.engine.issues import EVERYTHING, Known, SpecIssue
from szal.engine.matrices import default_issues, matrix_issues, matrix_keys
from szal.engine.params import declaration_problems
from szal.engine.shapes import duration_problem
from szal.spec import Retries, Step, StepTemplate, WorkflowSpec, parse_duration
from szal.spec.models import CommandSpec

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
STEP_FIELDS = ("phase", "exitCode", "attempts", "outputs")
RUN_FIELDS = ("name", "namespace")
FINALLY_RUN_FIELDS = (*RUN_FIELDS, "phase", "failedSteps")


@dataclass(slots=True)
class _Node:
    step: Step
    path: str
    parent: _Node | None
    group: list[_Node]  # the sibling list this node belongs to
    group_mode: str
    position: int
    children: list[_Node]
    final: bool = False  # a finally step


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
    main = len(nodes)
    visit(spec.finally_, None, "Dag" if spec.mode == "Dag" else "Parallel", "spec.finally")
    for node in nodes[main:]:
        node.final = True
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
    if node.final and not target.final:
        return True  # every main step has ended before the finally steps start
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


def validate_workflow(
    spec: WorkflowSpec, *, gpus_available: int | None = None, known: Known = EVERYTHING
) -> list[SpecIssue]:
    """Every problem in ``spec`` that its shape alone does not show.

    ``gpus_available`` is the local machine's GPU count (local runs); when
    given, a step asking for more is an issue on ``resources.gpu.count``, and
    so is every container field a local process cannot honour (``valueFrom``,
    ``envFrom``, ``volumeMounts``: see :func:`_check_local_container`).
    ``known`` leaves out the checks that would rely on what shape errors hid
    (see :class:`Known`; the shape checks pass it, everyone else keeps the default).
    """
    issues: list[SpecIssue] = []
    nodes = _walk(spec)
    param_names = _check_workflow_fields(issues, spec)
    by_name = _check_names(issues, nodes)
    group_names: dict[int, set[str]] = {}
    template = spec.template
    for node in nodes:
        _check_wiring(issues, spec, node, by_name, group_names, known)
        _check_policies(issues, node)
        _check_running(issues, node, template)
        issues.extend(matrix_issues(node.step, node.path, param_names))
        if gpus_available is not None:
            _check_gpus(issues, node, template, gpus_available)
            _check_local_container(issues, node.path, node.step.name, "", node.step)
            _check_local_container(
                issues, node.path, node.step.name, "rollback.", node.step.rollback
            )
        when = node.step.when
        if when is not None and when.strip():
            issues.extend(_check_when(node, by_name, param_names, known))
    if gpus_available is not None:
        _check_local_container(issues, "spec", None, "template.", template)
    _check_cycles(issues, nodes)
    issues.extend(default_issues(spec))
    return issues


def _check_workflow_fields(issues: list[SpecIssue], spec: WorkflowSpec) -> set[str]:
    """The workflow's own fields and its template; returns the declared param names."""
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
        for field, message in declaration_problems(param):
            issues.append(
                SpecIssue(f"spec.params[{i}].{field}", None, f"params[{i}].{field}", message)
            )
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
    return param_names


def _check_names(issues: list[SpecIssue], nodes: list[_Node]) -> dict[str, _Node]:
    """Valid and unique step names; returns each name's first step."""
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
    return by_name


def _check_wiring(
    issues: list[SpecIssue],
    spec: WorkflowSpec,
    node: _Node,
    by_name: Mapping[str, _Node],
    group_names: dict[int, set[str]],
    known: Known,
) -> None:
    """Nesting, ``dependsOn`` and ``trigger`` of one step."""
    step = node.step
    if node.final and (step.matrix is not None or step.for_each is not None):
        field = "matrix" if step.matrix is not None else "forEach"
        issues.append(_issue(node, field, "a finally step cannot fan out (matrix, forEach)"))
    if step.steps is not None and node.final:
        issues.append(_issue(node, "steps", "a finally step cannot have nested steps"))
    elif step.steps is not None and spec.mode != "Hierarchical":
        issues.append(
            _issue(
                node,
                "steps",
                "nested steps are allowed only in Hierarchical mode "
                f"(the workflow's mode is {spec.mode})",
            )
        )
    if step.depends_on:
        if node.group_mode != "Dag" and known.order:
            where = "workflow" if node.parent is None else f"parent {node.parent.step.name!r}"
            runs = f"the {where} runs {node.group_mode}"
            if node.final:
                runs = f"finally steps run {node.group_mode} when the workflow runs {spec.mode}"
            issues.append(
                _issue(node, "dependsOn", f"dependsOn is allowed only in Dag mode ({runs})")
            )
        siblings = group_names.get(id(node.group))
        if siblings is None:
            siblings = group_names[id(node.group)] = {n.step.name for n in node.group}
        for dep in step.depends_on:
            if dep not in by_name:
                if known.names:
                    issues.append(_issue(node, "dependsOn", f"unknown step {dep!r}"))
            elif node.final and not by_name[dep].final:
                issues.append(
                    _issue(
                        node,
                        "dependsOn",
                        f"step {dep!r} is a main step: a finally step may depend only on "
                        "finally steps (it runs after every main step anyway)",
                    )
                )
            elif by_name[dep].final and not node.final:
                issues.append(
                    _issue(
                        node,
                        "dependsOn",
                        f"step {dep!r} is a finally step: a main step cannot depend on it",
                    )
                )
            elif dep not in siblings:
                issues.append(
                    _issue(
                        node,
                        "dependsOn",
                        f"step {dep!r} is not a sibling: dependsOn names steps of the same group",
                    )
                )
    if step.trigger == "Any" and not step.depends_on and known.order:
        issues.append(_issue(node, "trigger", "trigger Any needs dependsOn"))


def _check_policies(issues: list[SpecIssue], node: _Node) -> None:
    """Durations, retries and the compensation of one step."""
    step, name = node.step, node.step.name
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


def _check_running(issues: list[SpecIssue], node: _Node, template: StepTemplate | None) -> None:
    """Something to run, said once: a command or a script, with args only for a command."""
    step, name = node.step, node.step.name
    _check_command(issues, node.path, name, "command", step.command)
    if step.rollback is not None:
        _check_command(issues, node.path, name, "rollback.command", step.rollback.command)
    if step.command is not None and step.script is not None:
        issues.append(_issue(node, "script", "set command or script, not both"))
    if step.script is not None and step.args is not None:
        issues.append(_issue(node, "args", "args cannot be used with script"))
    runs = (
        step.command is not None
        or step.script is not None
        or (template is not None and (template.command is not None or template.script is not None))
    )
    if not runs and not step.steps:
        issues.append(
            _issue(node, "command", "no command or script (set one on the step or in the template)")
        )


def _check_gpus(
    issues: list[SpecIssue], node: _Node, template: StepTemplate | None, available: int
) -> None:
    resources = node.step.resources or (template.resources if template else None)
    gpu = resources.gpu if resources else None
    if gpu is not None and gpu.count > available:
        issues.append(
            _issue(
                node,
                "resources.gpu.count",
                f"requests {gpu.count} GPU(s) but this machine has {available}",
            )
        )


_NO_CLUSTER: Final = "a local run has no Secrets, ConfigMaps, Pod or volumes"


def _check_local_container(
    issues: list[SpecIssue], path: str, step: str | None, prefix: str, spec: CommandSpec | None
) -> None:
    """Refuse, naming the field, what a local process cannot honour (never ignore it).

    ``prefix`` starts the field name (``rollback.``, ``template.``).
    """
    if spec is None:
        return

    def refuse(field: str, message: str) -> None:
        issues.append(SpecIssue(f"{path}.{prefix}{field}", step, prefix + field, message))

    for i, var in enumerate(spec.env or ()):
        if var.value_from is not None:
            refuse(
                f"env[{i}].valueFrom",
                f"{var.name}: valueFrom needs a cluster ({_NO_CLUSTER}); for a local run"
                " give a plain value (env value, or a param)",
            )
    if spec.env_from:
        refuse(
            "envFrom",
            f"envFrom needs a cluster ({_NO_CLUSTER}); for a local run list the variables"
            " under env",
        )
    if spec.volume_mounts:
        refuse(
            "volumeMounts",
            f"volumeMounts need a cluster ({_NO_CLUSTER}); a local step reads the local"
            " filesystem: use workingDir or paths in the command",
        )


def _check_cycles(issues: list[SpecIssue], nodes: list[_Node]) -> None:
    """Every dependency cycle, per Dag group."""
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


def _check_when(
    node: _Node, by_name: Mapping[str, _Node], params: set[str], known: Known
) -> list[SpecIssue]:
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
                if known.names:
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
            elif known.order and not _certainly_before(target, node):
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
        elif ref.root == "run" and ref.name not in (
            FINALLY_RUN_FIELDS if node.final else RUN_FIELDS
        ):
            only = " (only finally steps read it)" if ref.name in FINALLY_RUN_FIELDS else ""
            issues.append(_issue(node, "when", f"unknown run field {ref.name!r}{only}"))
        elif ref.root == "matrix":
            keys = matrix_keys(node.step)
            if keys is None:
                message = f"'matrix.{ref.name}' in a step without matrix or forEach"
                issues.append(_issue(node, "when", message))
            elif ref.name not in keys:
                names = ", ".join(sorted(keys))
                message = f"unknown matrix param {ref.name!r} (the matrix has: {names})"
                issues.append(_issue(node, "when", message))
    return issues
