"""The pinned spec: which workflow a run executes, fixed at its start.

At a run's start the reconciler calls :func:`pin_run`: it resolves
``workflowRef`` (or the inline ``workflow``), validates the spec and the
params, and returns the resolved workflow together with
``status.pinnedSpec``: the spec and resolved params as compressed JSON
(:func:`encode_pinned`: zlib, base64; a 5,000-step spec compresses to a
few tens of KiB). The reconciler writes it, with ``status.workflow``
(name, version, specHash), in the run's first status patch. A restarted
operator rebuilds the run from ``pinnedSpec`` (:func:`decode_pinned`),
never from the Workflow as it is now, so editing or deleting a Workflow
changes no run in flight. It lives in status (not an annotation): status
is written anyway in the run's first patch (no extra write), status is the
operator's alone (users cannot edit it by accident), and annotations are
capped at 256 KiB.

A run that cannot be pinned is refused with :class:`RunRefused`, one
error for both moments it can happen (:class:`Refusal`): at the start (its
workflow is missing or invalid; the run fails before any step) or after
it (a started run whose spec cannot be recovered; it fails where it is).
Both are permanent: the reconciler never retries them.
"""

from __future__ import annotations

import base64
import json
import logging
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from szal.engine.migrations import upgrade
from szal.engine.validation import (
    SpecIssue,
    WorkflowInvalid,
    parse_workflow,
    spec_hash,
    validate_run_params,
    validate_workflow,
)
from szal.engine.workflow import ResolvedWorkflow, resolve_workflow
from szal.runners.kubernetes.client import ApiClient, NotFound, group_path
from szal.runners.kubernetes.events import RunRef
from szal.runners.kubernetes.runtime import WORKFLOWS
from szal.spec import API_VERSION, WorkflowSpec

logger = logging.getLogger(__name__)


def encode_pinned(workflow_name: str, spec: WorkflowSpec, params: Mapping[str, Any]) -> str:
    """``status.pinnedSpec``: the spec and params a run executes, compressed."""
    doc = {
        "workflow": workflow_name,
        "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True),
        "params": dict(params),
    }
    raw = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    return base64.b64encode(zlib.compress(raw, 9)).decode()


def decode_pinned(text: str) -> tuple[str, WorkflowSpec, dict[str, Any]]:
    """The (workflow name, spec, params) :func:`encode_pinned` wrote."""
    doc = json.loads(zlib.decompress(base64.b64decode(text)))
    return doc["workflow"], WorkflowSpec.model_validate(doc["spec"]), dict(doc["params"])


def definition_of(spec: WorkflowSpec) -> dict[str, Any]:
    """The spec as the history stores keep it (JSON, aliases, no nulls)."""
    return spec.model_dump(mode="json", by_alias=True, exclude_none=True)


class Refusal(Enum):
    """When a run was refused."""

    AT_START = "start"
    """Before any step: the run fails at once (its workflow is missing or invalid)."""
    AFTER_START = "late"
    """A started run whose spec cannot be recovered: it fails where it is."""


class RunRefused(Exception):
    """The run cannot go on (a permanent error); ``reason`` is its condition's reason."""

    def __init__(self, reason: str, message: str, *, when: Refusal = Refusal.AT_START) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.when = when


@dataclass(frozen=True, slots=True)
class Pin:
    """A run's workflow as :func:`pin_run` found it."""

    workflow: ResolvedWorkflow
    definition: dict[str, Any]
    """The spec for history (:func:`definition_of`)."""
    text: str | None
    """``status.pinnedSpec`` to write: only at the run's start (None: already pinned)."""

    @property
    def first(self) -> bool:
        """Is this the run's start (nothing was pinned yet)?"""
        return self.text is not None


async def pin_run(client: ApiClient, ref: RunRef, body: Mapping[str, Any]) -> Pin:
    """The run's workflow: from ``status.pinnedSpec``, else resolved now and pinned.

    Raises :class:`RunRefused` (at start) when the workflow is missing or invalid.
    """
    status = body.get("status") or {}
    pinned = status.get("pinnedSpec")
    if isinstance(pinned, str) and pinned:
        name, spec, params = decode_pinned(pinned)
        workflow = resolve_workflow(spec, name=name, params=params)
        return Pin(workflow, definition_of(spec), None)
    run_spec = body.get("spec") or {}
    if run_spec.get("workflow") is not None:
        name = ref.name
        try:
            spec = WorkflowSpec.model_validate(upgrade({"spec": run_spec["workflow"]})["spec"])
        except Exception as error:  # pydantic or migration errors
            raise RunRefused("InvalidWorkflow", f"invalid inline workflow: {error}") from None
    else:
        name = str((run_spec.get("workflowRef") or {}).get("name") or "")
        if not name:
            raise RunRefused("InvalidWorkflow", "give either workflowRef or workflow")
        try:
            doc = await client.get(group_path(API_VERSION, ref.namespace, WORKFLOWS, name))
        except NotFound:
            raise RunRefused(
                "WorkflowNotFound",
                f"Workflow {name!r} not found in namespace {ref.namespace}",
            ) from None
        try:
            spec = parse_workflow(upgrade(doc), source=f"Workflow {name}").spec
        except (WorkflowInvalid, ValueError) as error:
            raise RunRefused("InvalidWorkflow", str(error)) from None
    issues: list[SpecIssue] = list(validate_workflow(spec))
    params, param_issues = validate_run_params(spec, run_spec.get("params") or {})
    issues.extend(param_issues)
    if issues:
        raise RunRefused("InvalidWorkflow", "; ".join(str(i) for i in issues))
    try:
        workflow = resolve_workflow(spec, name=name, params=params)
    except WorkflowInvalid as error:
        raise RunRefused("InvalidWorkflow", str(error)) from None
    if workflow.spec_hash != spec_hash(spec):  # pragma: no cover - engine contract
        logger.warning("resolved spec hash differs from spec_hash(spec)")
    return Pin(workflow, definition_of(spec), encode_pinned(name, spec, params))


def recover_pinned(text: object) -> tuple[ResolvedWorkflow | None, dict[str, Any]]:
    """A finished run's workflow and definition from its pin, to archive it again.

    (None, {}) when there is no pin; raises when the pin is damaged.
    """
    if not isinstance(text, str) or not text:
        return None, {}
    name, spec, params = decode_pinned(text)
    return resolve_workflow(spec, name=name, params=params), definition_of(spec)
