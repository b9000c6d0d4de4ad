"""Read a workflow file the way ``kubectl apply -f`` would, for local commands.

``szal run`` and ``szal validate`` call :func:`load_file`. A file may hold
several YAML documents. What runs:

- a ``WorkflowRun`` (at most one per file) with an inline ``workflow`` or a
  ``workflowRef`` naming a ``Workflow`` in the same file; or
- the file's only ``Workflow`` (a run is then made up for it).

Decisions:

- Stored definitions are upgraded to the current definition version
  (:mod:`szal.engine.migrations`) before the models see them, as everywhere
  a Workflow is read.
- ``-p name=value`` values are strings, converted to the type of the
  param's default when it has one (int, float, bool), so ``-p retries=3``
  compares as a number in ``when`` just like ``params: {retries: 3}`` in a
  WorkflowRun. A value that does not convert is invalid input.
- Every problem is an :class:`InputError` whose message names the file,
  and, through the engine's :class:`~szal.engine.validation.SpecIssue`, the
  step and field; the CLI prints it and exits 2.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from szal.engine.migrations import MigrationError, upgrade
from szal.engine.validation import (
    SpecIssue,
    WorkflowInvalid,
    parse_workflow,
    parse_workflow_run,
    validate_run_params,
    validate_workflow,
)
from szal.spec import ParamValue, Workflow, WorkflowSpec


class InputError(Exception):
    """Invalid input: the message names the file, and the step and field when known."""


@dataclass(frozen=True, slots=True)
class LoadedRun:
    """What ``szal run`` needs: the spec, its name, the run's name and params."""

    source: str
    workflow_name: str
    spec: WorkflowSpec
    run_name: str | None
    namespace: str
    params: dict[str, ParamValue]
    definition: dict[str, Any]


def read_documents(path: str) -> list[dict[str, Any]]:
    """The non-empty YAML documents of ``path`` (``-`` reads stdin)."""
    try:
        text = Path(path).read_text(encoding="utf-8") if path != "-" else _stdin()
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: invalid YAML: {exc}") from None
    if not documents:
        raise InputError(f"{path}: no YAML documents")
    for i, doc in enumerate(documents):
        if not isinstance(doc, dict):
            raise InputError(f"{path}: document {i + 1} is not a mapping")
    return documents


def _stdin() -> str:
    import sys

    return sys.stdin.read()


def _upgraded(doc: dict[str, Any], path: str, what: str) -> dict[str, Any]:
    try:
        return upgrade(doc)
    except MigrationError as exc:
        raise InputError(f"{path}: {what}: spec.version: {exc}") from None


def _kind(doc: Mapping[str, Any], path: str, index: int) -> str:
    kind = doc.get("kind")
    if kind not in ("Workflow", "WorkflowRun"):
        raise InputError(
            f"{path}: document {index + 1}: kind: expected Workflow or WorkflowRun, got {kind!r}"
        )
    return str(kind)


def _invalid(exc: WorkflowInvalid, path: str, what: str) -> InputError:
    return InputError("\n".join(f"{path}: {what}: {issue}" for issue in exc.issues))


def _issues(issues: Sequence[SpecIssue], path: str, what: str) -> InputError:
    return InputError("\n".join(f"{path}: {what}: {issue}" for issue in issues))


def validate_file(path: str) -> list[str]:
    """Every problem in every document of ``path`` (empty when valid)."""
    try:
        documents = read_documents(path)
    except InputError as exc:
        return [str(exc)]
    problems: list[str] = []
    workflows: set[str] = set()
    runs: list[tuple[str, Any]] = []
    for i, doc in enumerate(documents):
        try:
            kind = _kind(doc, path, i)
            name = (doc.get("metadata") or {}).get("name") or f"document {i + 1}"
            what = f"{kind} {name}"
            if kind == "Workflow":
                workflows.add(str(name))
                parse_workflow(_upgraded(doc, path, what), path)
            else:
                run = parse_workflow_run(doc, path)
                runs.append((what, run))
        except InputError as exc:
            problems.append(str(exc))
        except WorkflowInvalid as exc:
            problems.append(str(_invalid(exc, path, what)))
    for what, run in runs:
        ref = run.spec.workflow_ref
        if ref is not None and ref.name not in workflows:
            problems.append(
                f"{path}: {what}: spec.workflowRef.name: no Workflow {ref.name!r} in this file"
            )
    return problems


def load_file(
    path: str,
    cli_params: Mapping[str, str] | None = None,
    *,
    gpus_available: int | None = None,
) -> LoadedRun:
    """Load what ``szal run FILE`` runs, fully validated, or raise InputError."""
    documents = read_documents(path)
    workflows: dict[str, tuple[Workflow, dict[str, Any]]] = {}
    run_docs: list[dict[str, Any]] = []
    for i, doc in enumerate(documents):
        kind = _kind(doc, path, i)
        name = (doc.get("metadata") or {}).get("name") or f"document {i + 1}"
        if kind == "Workflow":
            upgraded = _upgraded(doc, path, f"Workflow {name}")
            try:
                workflows[str(name)] = (parse_workflow(upgraded, path), upgraded)
            except WorkflowInvalid as exc:
                raise _invalid(exc, path, f"Workflow {name}") from None
        else:
            run_docs.append(doc)
    if len(run_docs) > 1:
        raise InputError(f"{path}: holds {len(run_docs)} WorkflowRuns; szal run runs one")

    run_name: str | None = None
    namespace = "default"
    given: dict[str, Any] = {}
    if run_docs:
        doc = run_docs[0]
        what = f"WorkflowRun {(doc.get('metadata') or {}).get('name') or ''}".strip()
        try:
            run = parse_workflow_run(doc, path)
        except WorkflowInvalid as exc:
            raise _invalid(exc, path, what) from None
        run_name = run.metadata.name
        namespace = run.metadata.namespace or namespace
        given = dict(run.spec.params)
        if run.spec.workflow is not None:
            spec = run.spec.workflow
            workflow_name = run_name or "inline"
            definition = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
        else:
            assert run.spec.workflow_ref is not None
            ref = run.spec.workflow_ref.name
            if ref not in workflows:
                known = ", ".join(sorted(workflows)) or "none"
                raise InputError(
                    f"{path}: {what}: spec.workflowRef.name: no Workflow {ref!r} in this file"
                    f" (found: {known})"
                )
            workflow, definition = workflows[ref]
            spec = workflow.spec
            workflow_name = ref
            definition = definition.get("spec", definition)
    elif len(workflows) == 1:
        workflow_name, (workflow, definition) = next(iter(workflows.items()))
        spec = workflow.spec
        namespace = workflow.metadata.namespace or namespace
        definition = definition.get("spec", definition)
    else:
        raise InputError(
            f"{path}: holds {len(workflows)} Workflows and no WorkflowRun;"
            " add a WorkflowRun with a workflowRef to say which one runs"
        )
    what = f"Workflow {workflow_name}"

    if gpus_available is not None:
        gpu_issues = [
            issue
            for issue in validate_workflow(spec, gpus_available=gpus_available)
            if issue.field == "resources.gpu.count"
        ]
        if gpu_issues:
            raise _issues(gpu_issues, path, what)

    for key, value in (cli_params or {}).items():
        given[key] = _convert_param(spec, key, value, path)
    params, issues = validate_run_params(spec, given)
    if issues:
        raise _issues(issues, path, what)
    return LoadedRun(path, workflow_name, spec, run_name, namespace, params, definition)


def _convert_param(spec: WorkflowSpec, name: str, value: str, path: str) -> ParamValue:
    declared = next((p for p in spec.params if p.name == name), None)
    default = None if declared is None else declared.default
    try:
        if isinstance(default, bool):
            lowered = value.lower()
            if lowered not in ("true", "false"):
                raise ValueError("expected true or false")
            return lowered == "true"
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except ValueError as exc:
        kind = type(default).__name__
        raise InputError(
            f"{path}: -p {name}={value}: params.{name}: not a valid {kind} ({exc})"
        ) from None
    return value


def parse_param_options(options: Sequence[str]) -> dict[str, str]:
    """``["a=1", "b=x=y"]`` -> ``{"a": "1", "b": "x=y"}``; a missing ``=`` is invalid."""
    params: dict[str, str] = {}
    for option in options:
        name, sep, value = option.partition("=")
        if not sep or not name:
            raise InputError(f"-p {option}: expected name=value")
        params[name] = value
    return params
