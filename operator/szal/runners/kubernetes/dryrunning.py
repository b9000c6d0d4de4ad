"""Server-side dry-run of a Workflow's step Pods, for the admission webhook.

The CRD schema checks each container and pod field alone; only the API
server's Pod validation sees that a ``volumeMounts`` entry names no volume
of ``pod.volumes``, that two volumes share a name, or that a quantity is out
of range. :func:`pod_problems` builds each step's Pod as the operator would
(:func:`szal.runners.kubernetes.pods.build_pod`) and POSTs it with
``dryRun=All``: nothing is stored, nothing runs.

Decisions:

* **Bounded**: at most :data:`MAX_SHAPES` distinct Pod shapes per Workflow
  (steps whose Pods differ only in name and labels are one shape), so a
  5,000-step Workflow costs a handful of requests, not 5,000.
* **Only a 422 (Invalid) refuses.** Any other failure (forbidden, timeout,
  API server busy) admits the Workflow: a webhook outage must not become an
  outage of Workflow creation, and the step's Pod creation reports the
  problem at run time (its message lands in the step's status).
* The dry-run Pod has no ownerReference (there is no run yet) and the
  placeholder run name ``dry-run``; Szál's env values are placeholders too.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Final

from szal.engine.actions import AttemptRef
from szal.engine.workflow import ResolvedStep, resolve_workflow
from szal.runners.kubernetes.client import ApiClient, ApiError, core_path
from szal.runners.kubernetes.pods import RunMeta, build_pod
from szal.spec import WorkflowSpec

MAX_SHAPES: Final = 8
"""Distinct Pod shapes dry-run per Workflow at most."""

DRY_RUN_META: Final[RunMeta] = {"name": "dry-run", "namespace": "", "uid": "dry-run"}

PodDryRun = Callable[[str, dict[str, Any]], Awaitable[str | None]]
"""``dry_run(namespace, pod)``: the API server's refusal message, or None if accepted."""


def _shape(pod: dict[str, Any]) -> str:
    return json.dumps(pod["spec"], sort_keys=True)


def step_pods(spec: WorkflowSpec, namespace: str) -> list[tuple[str, dict[str, Any]]]:
    """(step name, Pod) for each distinct Pod shape, in definition order, at most MAX_SHAPES."""
    workflow = resolve_workflow(spec, name="dry-run", params={}, validate=False)
    run: RunMeta = {**DRY_RUN_META, "namespace": namespace}
    seen: set[str] = set()
    out: list[tuple[str, dict[str, Any]]] = []

    def add(step: ResolvedStep, rollback: bool) -> None:
        command = step.rollback if rollback and step.rollback else step.command
        pod = build_pod(run, step, command, AttemptRef(step.name, 1, rollback), {}, "busybox")
        pod["metadata"].pop("ownerReferences", None)
        shape = _shape(pod)
        if shape not in seen and len(out) < MAX_SHAPES:
            seen.add(shape)
            out.append((step.name, pod))

    for step in workflow.steps:
        if step.command.argv() or step.command.image:
            add(step, rollback=False)
        if step.rollback is not None:
            add(step, rollback=True)
    return out


async def pod_problems(spec: WorkflowSpec, namespace: str, dry_run: PodDryRun) -> list[str]:
    """One problem per refused Pod shape, naming the step."""
    problems: list[str] = []
    for step, pod in step_pods(spec, namespace):
        refusal = await dry_run(namespace, pod)
        if refusal is not None:
            problems.append(f"step {step!r}: the API server refuses its Pod: {refusal}")
    return problems


def dry_run_from_client(client: ApiClient) -> PodDryRun:
    """A :data:`PodDryRun` that POSTs with ``dryRun=All`` through the operator's client."""

    async def dry_run(namespace: str, pod: dict[str, Any]) -> str | None:
        try:
            await client.request(
                "POST",
                core_path(namespace, "pods"),
                body=pod,
                params={"dryRun": "All"},
            )
        except ApiError as error:
            return error.message if error.status == 422 else None
        except Exception:  # an outage admits (module docstring)
            return None
        return None

    return dry_run


__all__ = ["MAX_SHAPES", "PodDryRun", "dry_run_from_client", "pod_problems", "step_pods"]
