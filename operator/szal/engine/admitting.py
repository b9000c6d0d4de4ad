"""One way in: a workflow definition and a run's params to a resolved run, or all its issues.

:func:`admit` is the entry point of every run start: ``szal run``
(:mod:`szal.cli.loading`), the admission webhook
(:mod:`szal.runners.kubernetes.admission`) and the operator's run start
(:mod:`szal.runners.kubernetes.reconciler`). It does, in this order and each
once:

1. format migration (:mod:`szal.engine.migrations`) of a stored definition;
2. parsing into the pydantic models (shape, :mod:`szal.engine.shapes`);
3. the whole-workflow checks (:func:`szal.engine.checks.validate_workflow`),
   past any shape errors, so that both kinds are reported together;
4. the run's params: declared defaults, unknown and missing params, values
   that do not fit their param's declared ``type`` or ``enum``
   (:mod:`szal.engine.params`);
5. resolution (:func:`szal.engine.workflow.resolve_workflow`, told not to
   validate again).

It returns :class:`Admitted` or :class:`Refused` (carrying every issue found),
never raises for bad input. :func:`admit_definition` is steps 1-3 alone, for
a Workflow that is checked without a run (``szal validate``, the admission of
a Workflow object).

Decisions:

* The definition may be a Workflow document, a bare spec mapping (the inline
  ``workflow`` of a WorkflowRun) or an already parsed
  :class:`~szal.spec.WorkflowSpec` (a pinned spec): a mapping holding
  ``apiVersion``, ``kind``, ``metadata`` or ``spec`` is a document, any other
  a bare spec. A parsed spec is not migrated (it is in the current format).
  A :class:`Definition` from :func:`admit_definition` is not checked again:
  ``szal run`` admits the definition, converts ``-p`` values to the declared
  params' types, then admits the run.
* When the definition has whole-workflow problems, the params are still
  checked against it, so one refusal lists both; when its shape is wrong,
  the declared params are not known and the params are not checked.
* A migration failure (a format newer than this Szál, a missing hop)
  is one issue on ``apiVersion`` and stops there: nothing else can be read
  reliably from a definition in an unknown format.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from szal.engine.checks import validate_workflow
from szal.engine.issues import Known, SpecIssue, WorkflowInvalid
from szal.engine.matrices import expansion_issues
from szal.engine.migrations import MigrationError, upgrade
from szal.engine.shapes import issues_past_shape, shown_value
from szal.engine.validation import validate_run_params
from szal.engine.workflow import ResolvedWorkflow, resolve_workflow
from szal.spec import ObjectMeta, ParamValue, Workflow, WorkflowSpec

_DOCUMENT_KEYS = frozenset({"apiVersion", "kind", "metadata", "spec"})


@dataclass(frozen=True, slots=True)
class Definition:
    """A definition that passed steps 1-3: its spec, and what it was read from.

    ``metadata`` is the document's (None for a bare spec); ``written`` is the
    migrated spec mapping as written (None when a parsed spec was given).
    """

    spec: WorkflowSpec
    metadata: ObjectMeta | None
    written: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Admitted:
    """A run that may start: the resolved workflow and the params it runs with."""

    workflow: ResolvedWorkflow
    definition: Definition
    params: dict[str, ParamValue]

    @property
    def spec(self) -> WorkflowSpec:
        return self.definition.spec


@dataclass(frozen=True, slots=True)
class Refused:
    """Every issue that keeps a definition (or a run of it) out; never empty."""

    issues: tuple[SpecIssue, ...]

    def error(self, source: str | None = None) -> WorkflowInvalid:
        """The issues as the exception the parse functions raise."""
        return WorkflowInvalid(self.issues, source)

    def __str__(self) -> str:
        return str(self.error())


class _SpecHolder(BaseModel):
    """A bare spec under ``spec``, so its issues are located as in a document."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spec: WorkflowSpec


Source = Mapping[str, Any] | WorkflowSpec | Definition
"""A definition: a document or bare spec as written, a parsed spec, or one already admitted."""


def admit_definition(source: Source, *, gpus_available: int | None = None) -> Definition | Refused:
    """Migrate, parse and validate a definition (steps 1-3 of :func:`admit`)."""
    definition, issues = _definition(source, gpus_available)
    if issues or definition is None:
        return Refused(tuple(issues))
    return definition


def admit(
    source: Source,
    params: Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
    gpus_available: int | None = None,
) -> Admitted | Refused:
    """Admit a run of ``source`` with ``params``: the resolved run, or every issue.

    ``name`` names the workflow in the resolved run (default: the document's
    ``metadata.name``, else ``workflow``); ``gpus_available`` is the local
    machine's GPU count (``szal run``), checked against the steps' requests.
    """
    definition, issues = _definition(source, gpus_available)
    resolved: dict[str, ParamValue] = {}
    if definition is not None:
        resolved, param_issues = _params(definition.spec, params or {})
        issues.extend(param_issues)
    if definition is not None and not issues:
        issues.extend(expansion_issues(definition.spec, resolved))
    if issues or definition is None:
        return Refused(tuple(issues))
    workflow_name = name or (definition.metadata.name if definition.metadata else None)
    workflow = resolve_workflow(
        definition.spec, name=workflow_name or "workflow", params=resolved, validate=False
    )
    return Admitted(workflow, definition, resolved)


def _definition(
    source: Source, gpus_available: int | None
) -> tuple[Definition | None, list[SpecIssue]]:
    """The definition (None when its shape is wrong) and its issues."""
    if isinstance(source, Definition):
        return source, []  # admitted by admit_definition: checked once already
    if isinstance(source, WorkflowSpec):
        return Definition(source, None, None), validate_workflow(
            source, gpus_available=gpus_available
        )
    if not isinstance(source, Mapping):
        return None, [SpecIssue("", None, "", "a Workflow document must be a mapping")]
    document = bool(_DOCUMENT_KEYS.intersection(source))
    try:
        data = upgrade(dict(source)) if document else {"spec": upgrade(dict(source))}
    except MigrationError as error:
        return None, [SpecIssue("apiVersion", None, "apiVersion", str(error))]

    def check(spec: WorkflowSpec, known: Known) -> list[SpecIssue]:
        return validate_workflow(spec, gpus_available=gpus_available, known=known)

    model: type[Workflow] | type[_SpecHolder] = Workflow if document else _SpecHolder
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        return None, issues_past_shape(data, exc, ("spec",), check, model)
    written = data.get("spec")
    definition = Definition(
        parsed.spec,
        parsed.metadata if isinstance(parsed, Workflow) else None,
        dict(written) if isinstance(written, Mapping) else None,
    )
    return definition, validate_workflow(parsed.spec, gpus_available=gpus_available)


def _params(
    spec: WorkflowSpec, given: Mapping[str, Any]
) -> tuple[dict[str, ParamValue], list[SpecIssue]]:
    """The run's params against the declared ones: names, types and enums."""
    if not isinstance(given, Mapping):  # a raw body the schema did not check
        message = f"must be a mapping of names to values, got {shown_value(given)}"
        return {}, [SpecIssue("spec.params", None, "params", message)]
    return validate_run_params(spec, given)
