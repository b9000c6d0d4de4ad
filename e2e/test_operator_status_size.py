"""A 5,000-step run's WorkflowRun object, as stored by the API server, stays under 1 MiB.

The planner drives a 5,000-step Parallel workflow to its end in virtual
time; its status goes to the API server the way the operator writes it:
one merge patch per plan through the status subresource (the pinned spec
with the first; the operator's own patch builder, which nulls keys a
record no longer has), and like the operator it keeps no ``podName`` for
succeeded steps. The object read back - metadata and managedFields
included - must be under 1 MiB (etcd refuses objects over 1.5 MiB).

This test does not create 5,000 pods: the size of the object does not
depend on them, and the benchmark covers throughput.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from e2e.conftest import Kubectl
from e2e.operator_support import ensure_crds, run
from szal.engine.actions import Observation
from szal.engine.planner import Planner, new_run_state
from szal.engine.workflow import resolve_workflow
from szal.runners.kubernetes.client import ApiClient, group_path, load_credentials
from szal.runners.kubernetes.pinning import encode_pinned
from szal.runners.kubernetes.reconciler import status_merge_patch
from szal.spec import API_VERSION, WorkflowSpec

pytestmark = pytest.mark.e2e

STEPS = 5000


async def _drive(kubeconfig: Path, namespace: str) -> int:
    spec = WorkflowSpec.model_validate(
        {
            "mode": "Parallel",
            "maxParallel": 250,
            "template": {"image": "registry.example.com/team/step-runner:1.4.2"},
            "steps": [
                {"name": f"shard-{i:05d}", "command": ["run-shard", str(i)]} for i in range(STEPS)
            ],
        }
    )
    workflow = resolve_workflow(spec, name="big", params={})
    state = new_run_state(workflow)
    planner = Planner(workflow)
    async with ApiClient(load_credentials(kubeconfig)) as client:
        path = group_path(API_VERSION, namespace, "workflowruns", "big")
        status_path = group_path(
            API_VERSION, namespace, "workflowruns", "big", subresource="status"
        )
        now = 1_800_000_000.0
        plan = planner.plan(state, [], now)
        first = state.to_status()
        first["pinnedSpec"] = encode_pinned("big", spec, {})
        await client.merge_patch(status_path, {"status": first}, resource="status")
        done = 0
        while not state.phase.is_terminal:
            now += 1.5
            obs = [
                Observation(a.ref, "Succeeded", now, 0, {"rows": 1000 + done + k}, None)
                for k, a in enumerate(plan.actions)
            ]
            done += len(obs)
            plan = planner.plan(state, obs, now)
            patch = status_merge_patch(state, plan.changed_steps)
            await client.merge_patch(status_path, {"status": patch}, resource="status")
        stored = await client.get(path)
    assert stored["status"]["phase"] == "Succeeded" and done == STEPS
    stored_status = dict(stored["status"])
    del stored_status["pinnedSpec"]
    assert stored_status == state.to_status()  # nothing stale left behind by merge patches
    return len(json.dumps(stored, separators=(",", ":")))


def test_5000_step_run_object_is_under_one_mebibyte(
    kubeconfig: Path, kubectl: Kubectl, namespace: str
) -> None:
    ensure_crds(kubectl)
    kubectl.apply(run("big", "big"), namespace)  # no operator: only the object matters
    size = asyncio.run(_drive(kubeconfig, namespace))
    print(f"5,000-step WorkflowRun object: {size} bytes")
    assert size < 1024 * 1024, size
