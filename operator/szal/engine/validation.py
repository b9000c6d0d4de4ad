"""Parsing a definition: Workflow and WorkflowRun documents, run params, the spec hash.

:func:`parse_workflow` and :func:`parse_workflow_run` are the document-level
entry points kept for callers that want a parsed model or an exception
(``szal validate``, tests, the conformance suite); a run start goes through
:func:`szal.engine.admitting.admit`, which uses the same pieces once each.
The pieces live in smaller modules, re-exported here:

* :mod:`szal.engine.issues`: :class:`SpecIssue` and :class:`WorkflowInvalid`;
* :mod:`szal.engine.shapes`: pydantic's errors named by step and wire field
  (an unknown field names the closest known one), and the whole-workflow
  checks run past them;
* :mod:`szal.engine.checks`: the whole-workflow checks
  (:func:`validate_workflow`).

Both shape errors and whole-workflow problems are reported, all at once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from szal.engine.checks import DNS1123_LABEL, RUN_FIELDS, STEP_FIELDS, validate_workflow
from szal.engine.issues import (
    EVERYTHING,
    Known,
    SpecIssue,
    WorkflowInvalid,
    prefixed,
    raise_for_issues,
)
from szal.engine.params import value_problem
from szal.engine.shapes import (
    closest_field,
    duration_problem,
    issues_from_validation_error,
    issues_past_shape,
)
from szal.spec import ParamValue, Workflow, WorkflowRun, WorkflowSpec

__all__ = [
    "DNS1123_LABEL",
    "EVERYTHING",
    "RUN_FIELDS",
    "STEP_FIELDS",
    "Known",
    "SpecIssue",
    "WorkflowInvalid",
    "closest_field",
    "duration_problem",
    "issues_from_validation_error",
    "parse_workflow",
    "parse_workflow_run",
    "raise_for_issues",
    "run_shape",
    "spec_hash",
    "validate_run_params",
    "validate_workflow",
]


def _not_a_mapping(kind: str, source: str | None) -> WorkflowInvalid:
    return WorkflowInvalid(
        [SpecIssue("", None, "", f"a {kind} document must be a mapping")], source
    )


def _checked(spec: WorkflowSpec, known: Known) -> list[SpecIssue]:
    return validate_workflow(spec, known=known)


def parse_workflow(data: Any, source: str | None = None) -> Workflow:
    """Load a Workflow document, raising :class:`WorkflowInvalid` on any problem.

    Both shape errors and whole-workflow checks are reported, all at once.
    """
    if not isinstance(data, Mapping):
        raise _not_a_mapping("Workflow", source)
    try:
        workflow = Workflow.model_validate(data)
    except ValidationError as exc:
        raise WorkflowInvalid(issues_past_shape(data, exc, ("spec",), _checked), source) from None
    raise_for_issues(validate_workflow(workflow.spec), source)
    return workflow


def run_shape(data: Any) -> tuple[WorkflowRun | None, Any, list[SpecIssue]]:
    """A WorkflowRun document without its inline workflow: the run, that workflow, issues.

    The run is None when its shape is refused; the inline ``workflow`` is
    returned as written (None without one), for
    :func:`szal.engine.admitting.admit` to migrate, parse and check once.
    That exactly one of ``workflowRef`` and ``workflow`` is given is checked here.
    """
    if not isinstance(data, Mapping):
        return None, None, [SpecIssue("", None, "", "a WorkflowRun document must be a mapping")]
    shell = dict(data)
    spec = data.get("spec")
    inline: Any = None
    if isinstance(spec, Mapping) and isinstance(spec.get("workflow"), Mapping):
        inline = spec["workflow"]  # anything else there: the run's shape refuses it
        shell["spec"] = {key: value for key, value in spec.items() if key != "workflow"}
    try:
        run = WorkflowRun.model_validate(shell)
    except ValidationError as exc:
        return None, inline, issues_from_validation_error(shell, exc, WorkflowRun)
    return run, inline, _reference_issues(run, run.spec.workflow is not None or inline is not None)


def _reference_issues(run: WorkflowRun, inline: bool) -> list[SpecIssue]:
    if not inline and run.spec.workflow_ref is None:
        return [SpecIssue("spec", None, "workflowRef", "give either workflowRef or workflow")]
    if inline and run.spec.workflow_ref is not None:
        message = "give either workflowRef or workflow, not both"
        return [SpecIssue("spec", None, "workflowRef", message)]
    return []


def parse_workflow_run(data: Any, source: str | None = None) -> WorkflowRun:
    """Load a WorkflowRun document; an inline ``spec.workflow`` is validated too."""
    if not isinstance(data, Mapping):
        raise _not_a_mapping("WorkflowRun", source)
    try:
        run = WorkflowRun.model_validate(data)
    except ValidationError as exc:
        issues = issues_past_shape(data, exc, ("spec", "workflow"), _inline_checked, WorkflowRun)
        raise WorkflowInvalid(issues, source) from None
    issues = _reference_issues(run, run.spec.workflow is not None)
    if run.spec.workflow is not None:
        issues.extend(_inline_checked(run.spec.workflow, EVERYTHING))
        _, param_issues = validate_run_params(run.spec.workflow, run.spec.params)
        issues.extend(param_issues)
    raise_for_issues(issues, source)
    return run


def _inline_checked(spec: WorkflowSpec, known: Known) -> list[SpecIssue]:
    return [prefixed(issue, "spec.workflow") for issue in validate_workflow(spec, known=known)]


def validate_run_params(
    spec: WorkflowSpec, given: Mapping[str, Any]
) -> tuple[dict[str, ParamValue], list[SpecIssue]]:
    """Resolve a run's params against the declared ones: defaults, unknown, missing,
    and each given value against its param's type and enum (:mod:`szal.engine.params`)."""
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
            problem = value_problem(param, given[name])
            if problem is not None:
                issues.append(SpecIssue(f"spec.params.{name}", None, f"params.{name}", problem))
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
