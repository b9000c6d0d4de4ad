"""The pinned spec: which workflow a run executes, fixed at its start.

At a run's start the reconciler calls :func:`pin_run`: it resolves
``workflowRef`` (or the inline ``workflow``), admits it with the run's params
through the engine's one way in (:func:`szal.engine.admitting.admit`:
migration, validation once, params, resolution), and returns the resolved workflow together with
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
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from szal.engine.admitting import Refused, admit
from szal.engine.workflow import ResolvedWorkflow, resolve_workflow
from szal.runners.kubernetes.client import ApiClient, NotFound, group_path
from szal.runners.kubernetes.events import RunRef
from szal.runners.kubernetes.runtime import WORKFLOWS
from szal.spec import API_VERSION, WorkflowSpec


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
    source = run_spec.get("workflow")
    refusal = "invalid inline workflow: "
    if source is not None:
        name = ref.name
    else:
        name = str((run_spec.get("workflowRef") or {}).get("name") or "")
        if not name:
            raise RunRefused("InvalidWorkflow", "give either workflowRef or workflow")
        try:
            source = await client.get(group_path(API_VERSION, ref.namespace, WORKFLOWS, name))
        except NotFound:
            raise RunRefused(
                "WorkflowNotFound",
                f"Workflow {name!r} not found in namespace {ref.namespace}",
            ) from None
        refusal = f"Workflow {name}: "
    # The one way in: migration, parse, validation once, params, resolution.
    admitted = admit(source, run_spec.get("params") or {}, name=name)
    if isinstance(admitted, Refused):
        message = refusal + "; ".join(str(issue) for issue in admitted.issues)
        raise RunRefused("InvalidWorkflow", message)
    spec = admitted.spec
    return Pin(admitted.workflow, definition_of(spec), encode_pinned(name, spec, admitted.params))


def recover_pinned(text: object) -> tuple[ResolvedWorkflow | None, dict[str, Any]]:
    """A finished run's workflow and definition from its pin, to archive it again.

    (None, {}) when there is no pin; raises when the pin is damaged.
    """
    if not isinstance(text, str) or not text:
        return None, {}
    name, spec, params = decode_pinned(text)
    return resolve_workflow(spec, name=name, params=params), definition_of(spec)
