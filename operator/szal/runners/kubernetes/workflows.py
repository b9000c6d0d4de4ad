"""Keeping a Workflow's status current: ``status.stepCount`` and ``observedGeneration``.

The STEPS column of ``kubectl get workflows.szal.dev`` reads
``status.stepCount``. The operator's Workflow event handler (leader only)
calls :func:`update_workflow_status` for each Workflow it sees; a Workflow
whose ``observedGeneration`` already matches is left alone, so the handler
writes once per edit, not once per event.
"""

from __future__ import annotations

import logging
from typing import Any

from szal.runners.kubernetes.client import ApiClient, ApiError, group_path
from szal.spec import API_VERSION, Step
from szal.spec.crd import count_steps

logger = logging.getLogger(__name__)


def status_patch(body: dict[str, Any]) -> dict[str, Any] | None:
    """The status merge patch ``body`` needs, or None (current already, or not countable)."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    if status.get("observedGeneration") == meta.get("generation"):
        return None
    try:
        steps = [Step.model_validate(s) for s in (body.get("spec") or {}).get("steps") or []]
    except ValueError:
        return None  # admission refuses these; nothing to count
    return {
        "status": {"stepCount": count_steps(steps), "observedGeneration": meta.get("generation")}
    }


async def update_workflow_status(client: ApiClient, body: dict[str, Any]) -> None:
    """Write :func:`status_patch` of ``body`` to its status subresource; log a refusal."""
    patch = status_patch(body)
    if patch is None:
        return
    meta = body.get("metadata") or {}
    name = str(meta.get("name"))
    path = group_path(
        API_VERSION, str(meta.get("namespace")), "workflows", name, subresource="status"
    )
    try:
        await client.merge_patch(path, patch, resource="workflows/status")
    except ApiError as error:
        logger.warning("cannot update status of Workflow %s: %s", name, error)
