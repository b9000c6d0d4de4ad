"""Read a workflow file the way ``kubectl apply -f`` would, for local commands.

``szal run`` and ``szal validate`` call :func:`load_file`. A file may hold
several YAML documents. What runs:

- a ``WorkflowRun`` (at most one per file) with an inline ``workflow`` or a
  ``workflowRef`` naming a ``Workflow`` in the same file; or
- the file's only ``Workflow`` (a run is then made up for it).

Decisions:

- What runs is admitted by :func:`szal.engine.admitting.admit`, the one way
  in that the operator and the admission webhook use too: format migration,
  parsing, the whole-workflow checks (once), params, resolution.
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

from szal.engine.admitting import Admitted, Definition, Refused, admit, admit_definition
from szal.engine.issues import SpecIssue, printable
from szal.engine.params import EXPECTED, declared_type, from_text
from szal.engine.validation import run_shape, validate_run_params
from szal.spec import API_VERSION, ParamValue, WorkflowRun, WorkflowSpec


class InputError(Exception):
    """Invalid input: the message names the file, and the step and field when known."""


@dataclass(frozen=True, slots=True)
class LoadedRun:
    """What ``szal run`` needs: the admitted run, its names and its definition as written."""

    source: str
    workflow_name: str
    admitted: Admitted
    run_name: str | None
    namespace: str
    definition: dict[str, Any]

    @property
    def params(self) -> dict[str, ParamValue]:
        return self.admitted.params


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


_KINDS = ("Workflow", "WorkflowRun")
_ARGO_HINT = (
    " (this is an Argo Workflows manifest; Szál has its own format: kind Workflow with"
    " spec.steps, each step with a name, an image and a command or script; see examples/)"
)


def _name(doc: Mapping[str, Any], index: int) -> str:
    metadata = doc.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    return printable(str(name)) if name else f"document {index + 1}"


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


def _issues(issues: Sequence[SpecIssue], path: str, what: str) -> InputError:
    return InputError("\n".join(f"{path}: {what}: {issue}" for issue in issues))


def _refused(refused: Refused, path: str, what: str, gpus_found: str = "") -> InputError:
    """The refusal's issues, each naming the file; a GPU one says where the count came from."""
    issues = [
        SpecIssue(i.path, i.step, i.field, f"{i.message} ({gpus_found})")
        if gpus_found and i.field == "resources.gpu.count"
        else i
        for i in refused.issues
    ]
    return _issues(issues, path, what)


def _run_document(
    doc: dict[str, Any], path: str, what: str
) -> tuple[WorkflowRun | None, dict[str, Any] | None, list[str]]:
    """A WorkflowRun's shape: the run, its inline workflow as written, the problems."""
    run, inline, issues = run_shape(doc)
    problems = [str(_issues(issues, path, what))] if issues else []
    return run, inline, problems


def validate_file(path: str) -> list[str]:
    """Every problem in every document of ``path`` (empty when valid)."""
    try:
        documents = read_documents(path)
    except InputError as exc:
        return [str(exc)]
    problems: list[str] = []
    workflows: dict[str, WorkflowSpec | None] = {}
    runs: list[tuple[str, WorkflowRun]] = []
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
                definition = admit_definition(doc)
                if isinstance(definition, Refused):
                    raise _refused(definition, path, what)
                workflows[name] = definition.spec
                continue
            run, inline, found = _run_document(doc, path, what)
            problems.extend(found)
            if inline is not None:
                outcome = admit(inline, run.spec.params) if run else admit_definition(inline)
                if isinstance(outcome, Refused):
                    problems.append(str(_refused(outcome, path, what)))
            elif run is not None and not found:
                runs.append((what, run))
        except InputError as exc:
            problems.append(str(exc))
    for what, run in runs:
        ref = run.spec.workflow_ref
        if ref is None:
            continue
        if ref.name not in workflows:
            problems.append(
                f"{path}: {what}: spec.workflowRef.name: no Workflow {ref.name!r} in this file"
            )
            continue
        spec = workflows[ref.name]
        if spec is not None:
            _, issues = validate_run_params(spec, run.spec.params)
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
    """Load what ``szal run FILE`` runs, admitted (validated once), or raise InputError.

    ``gpus_found`` says where ``gpus_available`` came from, for the message
    when a step asks for more. Workflows in the file other than the one that
    runs are checked too (each once): a broken one is refused as before.
    """
    documents = read_documents(path)
    workflows: dict[str, dict[str, Any]] = {}
    run_docs: list[tuple[int, dict[str, Any]]] = []
    for i, doc in enumerate(documents):
        kind = _kind(doc, path, i)
        name = _name(doc, i)
        if kind == "Workflow":
            if name in workflows:
                raise InputError(_duplicate_workflow(path, name))
            workflows[name] = doc
        else:
            run_docs.append((i, doc))
    if len(run_docs) > 1:
        names = ", ".join(_name(doc, i) for i, doc in run_docs)
        raise InputError(
            f"{path}: holds {len(run_docs)} WorkflowRuns ({names}); szal run runs one per file"
        )

    run: WorkflowRun | None = None
    inline: dict[str, Any] | None = None
    problems: list[str] = []
    what = ""
    if run_docs:
        index, doc = run_docs[0]
        what = f"WorkflowRun {_name(doc, index)}"
        run, inline, problems = _run_document(doc, path, what)
    chosen = _chosen(path, what, run, inline, list(workflows), bool(run_docs))
    definition: Definition | Refused | None = None
    for name, doc in workflows.items():  # in file order, each checked once
        if name == chosen:
            definition = admit_definition(doc, gpus_available=gpus_available)
            outcome = definition
        else:
            outcome = admit_definition(doc)
        if isinstance(outcome, Refused):
            raise _refused(outcome, path, f"Workflow {name}", gpus_found)
    if inline is not None:
        definition = admit_definition(inline, gpus_available=gpus_available)
        if isinstance(definition, Refused):
            problems.append(str(_refused(definition, path, what, gpus_found)))
    if problems:
        raise InputError("\n".join(problems))
    assert isinstance(definition, Definition)

    run_name = run.metadata.name if run else None
    namespace = (run.metadata.namespace if run else None) or "default"
    given: dict[str, Any] = dict(run.spec.params) if run else {}
    if chosen is None:
        workflow_name = run_name or "inline"
        written = definition.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    else:
        workflow_name = chosen
        what = f"Workflow {chosen}"
        written = definition.written or {}
        if run is None and definition.metadata is not None:
            namespace = definition.metadata.namespace or namespace
    for key, value in (cli_params or {}).items():
        given[key] = convert_param(definition.spec, key, value, path)
    admitted = admit(definition, given, name=workflow_name)
    if isinstance(admitted, Refused):
        raise _refused(admitted, path, what)
    return LoadedRun(path, workflow_name, admitted, run_name, namespace, written)


def _chosen(
    path: str,
    what: str,
    run: WorkflowRun | None,
    inline: Mapping[str, Any] | None,
    workflows: list[str],
    has_run: bool,
) -> str | None:
    """The name of the Workflow that runs (None: the run's own), or InputError."""
    if run is not None and run.spec.workflow_ref is not None and inline is None:
        ref = run.spec.workflow_ref.name
        if ref not in workflows:
            known = ", ".join(sorted(workflows)) or "none"
            raise InputError(
                f"{path}: {what}: spec.workflowRef.name:"
                f" no Workflow {ref!r} in this file (found: {known})"
            )
        return ref
    if has_run:
        return None  # an inline workflow, or a run refused: its problems are reported
    if len(workflows) == 1:
        return workflows[0]
    raise InputError(
        f"{path}: holds {len(workflows)} Workflows ({', '.join(workflows)}) and no"
        " WorkflowRun; add a WorkflowRun with a workflowRef to say which one runs"
    )


def convert_param(spec: WorkflowSpec, name: str, value: str, path: str) -> ParamValue:
    """``-p name=value`` text as the param's declared type (:mod:`szal.engine.params`).

    An unknown name is kept as text: admission then reports it as unknown.
    """
    declared = next((p for p in spec.params if p.name == name), None)
    if declared is None:
        return value
    converted = from_text(declared, value)
    if converted is None:
        kind = declared_type(declared)
        how = "true or false" if kind == "boolean" else f"{EXPECTED[kind]}, as JSON"
        raise InputError(
            f"{path}: -p {name}={value}: params.{name}: expected {how} (type {kind}), got {value!r}"
        )
    return converted


def parse_param_options(options: Sequence[str]) -> dict[str, str]:
    """``["a=1", "b=x=y"]`` -> ``{"a": "1", "b": "x=y"}``; a missing ``=`` is invalid."""
    params: dict[str, str] = {}
    for option in options:
        name, sep, value = option.partition("=")
        if not sep or not name:
            raise InputError(f"-p {option}: expected name=value")
        params[name] = value
    return params
