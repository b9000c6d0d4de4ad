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

import json
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
from szal.spec import API_VERSION, ParamValue, Workflow, WorkflowSpec


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
        data = Path(path).read_bytes() if path != "-" else _stdin()
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path}: not a UTF-8 text file (byte 0x{data[exc.start]:02x} at offset"
            f" {exc.start}); expected Workflow YAML"
        ) from None
    try:
        documents = [d for d in yaml.load_all(text, Loader=_StrictLoader) if d is not None]
    except yaml.MarkedYAMLError as exc:
        raise InputError(f"{path}: {_yaml_problem(exc)}") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: invalid YAML: {exc}") from None
    except RecursionError:
        raise InputError(f"{path}: invalid YAML: nested too deeply") from None
    if not documents:
        raise InputError(f"{path}: no YAML documents (expected a Workflow or WorkflowRun)")
    for i, doc in enumerate(documents):
        if not isinstance(doc, dict):
            raise InputError(
                f"{path}: document {i + 1}: expected a mapping with apiVersion, kind,"
                f" metadata and spec (a Workflow or WorkflowRun), got {_describe(doc)}"
            )
    return documents


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping.

    PyYAML keeps the last value silently; ``kubectl apply`` refuses the file.
    Keys brought in by a ``<<`` merge may be overridden, as YAML intends.
    """

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # unhashable: the base class reports it
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key {key!r}",
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep=deep)  # type: ignore[arg-type]


def _yaml_problem(exc: yaml.MarkedYAMLError) -> str:
    """``line 8, column 3: invalid YAML: expected ',' or ']', but got '-' (while ...)``."""

    def at(mark: Any) -> str:
        return f"line {mark.line + 1}, column {mark.column + 1}"

    mark = exc.problem_mark or exc.context_mark
    where = f"{at(mark)}: " if mark is not None else ""
    text = f"{where}invalid YAML: {exc.problem or exc.context}"
    if exc.problem and exc.context:
        context = exc.context
        if exc.context_mark is not None and exc.context_mark is not mark:
            context += f" at {at(exc.context_mark)}"
        text += f" ({context})"
    return text


def _describe(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"a string {shown!r}"
    return f"{type(value).__name__} {value!r}"


def _stdin() -> bytes:
    import sys

    return sys.stdin.buffer.read()


def _upgraded(doc: dict[str, Any], path: str, what: str) -> dict[str, Any]:
    try:
        return upgrade(doc)
    except MigrationError as exc:
        raise InputError(f"{path}: {what}: spec.version: {exc}") from None


_KINDS = ("Workflow", "WorkflowRun")
_ARGO_HINT = (
    " (this is an Argo Workflows manifest; Szál has its own format: kind Workflow with"
    " spec.steps, each step with a name, an image and a command or script; see examples/)"
)


def _name(doc: Mapping[str, Any], index: int) -> str:
    metadata = doc.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    return str(name) if name else f"document {index + 1}"


def _kind(doc: Mapping[str, Any], path: str, index: int) -> str:
    """The document's kind, once its apiVersion and kind are ours; else InputError."""
    kind = doc.get("kind")
    api_version = doc.get("apiVersion")
    what = f"{kind} {_name(doc, index)}" if kind in _KINDS else f"document {index + 1}"
    problems: list[str] = []
    if kind not in _KINDS:
        expected = "expected Workflow or WorkflowRun"
        if kind is None:
            problems.append(f"kind: missing ({expected})")
        else:
            near = [k for k in _KINDS if isinstance(kind, str) and k.lower() == kind.lower()]
            hint = f" (kinds are case-sensitive: did you mean {near[0]}?)" if near else ""
            problems.append(f"kind: {expected}, got {kind!r}{hint}")
    if api_version != API_VERSION:
        got = "missing" if api_version is None else f"got {api_version!r}"
        hint = _ARGO_HINT if str(api_version).startswith("argoproj.io/") else ""
        problems.append(f"apiVersion: expected {API_VERSION!r}, {got}{hint}")
    if problems:
        raise InputError("\n".join(f"{path}: {what}: {problem}" for problem in problems))
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
    workflows: dict[str, Workflow | None] = {}
    runs: list[tuple[str, Any]] = []
    for i, doc in enumerate(documents):
        what = f"document {i + 1}"
        try:
            kind = _kind(doc, path, i)
            name = _name(doc, i)
            what = f"{kind} {name}"
            if kind == "Workflow":
                if name in workflows:
                    problems.append(_duplicate_workflow(path, name))
                workflows[name] = None
                workflows[name] = parse_workflow(_upgraded(doc, path, what), path)
            else:
                run = parse_workflow_run(doc, path)
                runs.append((what, run))
        except InputError as exc:
            problems.append(str(exc))
        except WorkflowInvalid as exc:
            problems.append(str(_invalid(exc, path, what)))
    for what, run in runs:
        ref = run.spec.workflow_ref
        if ref is None:
            continue
        if ref.name not in workflows:
            problems.append(
                f"{path}: {what}: spec.workflowRef.name: no Workflow {ref.name!r} in this file"
            )
            continue
        workflow = workflows[ref.name]
        if workflow is not None:
            _, issues = validate_run_params(workflow.spec, run.spec.params)
            if issues:
                problems.append(str(_issues(issues, path, what)))
    return problems


def _duplicate_workflow(path: str, name: str) -> str:
    return f"{path}: Workflow {name}: metadata.name: another Workflow {name!r} is in this file"


def load_file(
    path: str,
    cli_params: Mapping[str, str] | None = None,
    *,
    gpus_available: int | None = None,
    gpus_found: str = "",
) -> LoadedRun:
    """Load what ``szal run FILE`` runs, fully validated, or raise InputError.

    ``gpus_found`` says where ``gpus_available`` came from, for the message
    when a step asks for more.
    """
    documents = read_documents(path)
    workflows: dict[str, tuple[Workflow, dict[str, Any]]] = {}
    run_docs: list[tuple[int, dict[str, Any]]] = []
    for i, doc in enumerate(documents):
        kind = _kind(doc, path, i)
        name = _name(doc, i)
        if kind == "Workflow":
            if name in workflows:
                raise InputError(_duplicate_workflow(path, name))
            upgraded = _upgraded(doc, path, f"Workflow {name}")
            try:
                workflows[name] = (parse_workflow(upgraded, path), upgraded)
            except WorkflowInvalid as exc:
                raise _invalid(exc, path, f"Workflow {name}") from None
        else:
            run_docs.append((i, doc))
    if len(run_docs) > 1:
        names = ", ".join(_name(doc, i) for i, doc in run_docs)
        raise InputError(
            f"{path}: holds {len(run_docs)} WorkflowRuns ({names}); szal run runs one per file"
        )

    run_name: str | None = None
    namespace = "default"
    given: dict[str, Any] = {}
    if run_docs:
        index, doc = run_docs[0]
        what = f"WorkflowRun {_name(doc, index)}"
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
            f"{path}: holds {len(workflows)} Workflows ({', '.join(workflows)}) and no"
            " WorkflowRun; add a WorkflowRun with a workflowRef to say which one runs"
        )
    what = f"Workflow {workflow_name}"

    if gpus_available is not None:
        gpu_issues = [
            issue
            for issue in validate_workflow(spec, gpus_available=gpus_available)
            if issue.field == "resources.gpu.count"
        ]
        if gpu_issues:
            if gpus_found:
                gpu_issues = [
                    SpecIssue(i.path, i.step, i.field, f"{i.message} ({gpus_found})")
                    for i in gpu_issues
                ]
            raise _issues(gpu_issues, path, what)

    for key, value in (cli_params or {}).items():
        given[key] = convert_param(spec, key, value, path)
    params, issues = validate_run_params(spec, given)
    if issues:
        raise _issues(issues, path, what)
    return LoadedRun(path, workflow_name, spec, run_name, namespace, params, definition)


def convert_param(spec: WorkflowSpec, name: str, value: str, path: str) -> ParamValue:
    declared = next((p for p in spec.params if p.name == name), None)
    default = None if declared is None else declared.default
    if isinstance(default, bool):
        expected = "true or false"
        converted: ParamValue | None = {"true": True, "false": False}.get(value.lower())
    elif isinstance(default, int):
        expected = "an integer"
        converted = _number(int, value)
    elif isinstance(default, float):
        expected = "a number"
        converted = _number(float, value)
    else:
        return value
    if converted is None:
        raise InputError(
            f"{path}: -p {name}={value}: params.{name}: expected {expected}"
            f" (like its default, {json.dumps(default)}), got {value!r}"
        )
    return converted


def _number(kind: type[int] | type[float], value: str) -> int | float | None:
    try:
        return kind(value)
    except ValueError:
        return None


def parse_param_options(options: Sequence[str]) -> dict[str, str]:
    """``["a=1", "b=x=y"]`` -> ``{"a": "1", "b": "x=y"}``; a missing ``=`` is invalid."""
    params: dict[str, str] = {}
    for option in options:
        name, sep, value = option.partition("=")
        if not sep or not name:
            raise InputError(f"-p {option}: expected name=value")
        params[name] = value
    return params
