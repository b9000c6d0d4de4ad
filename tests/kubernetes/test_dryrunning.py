"""Which Pods the admission webhook dry-runs (``szal.runners.kubernetes.dryrunning``).

Covers: one Pod per distinct shape (steps differing only in name share
one), rollbacks included, at most MAX_SHAPES, no ownerReference, and that a
refusal names the step. Not covered: the API server's answer (the e2e
test e2e/test_containers.py applies a Workflow whose mount names no volume).
"""

from __future__ import annotations

import asyncio
from typing import Any

from szal.runners.kubernetes.dryrunning import MAX_SHAPES, pod_problems, step_pods
from szal.spec import WorkflowSpec


def _spec(steps: list[dict[str, Any]]) -> WorkflowSpec:
    return WorkflowSpec.model_validate({"template": {"image": "busybox"}, "steps": steps})


def test_one_pod_per_shape_bounded() -> None:
    same = [{"name": f"s{i}", "command": ["true"]} for i in range(20)]
    assert [name for name, _ in step_pods(_spec(same), "ns")] == ["s0"]
    different = [{"name": f"s{i}", "command": ["echo", str(i)]} for i in range(20)]
    pods = step_pods(_spec(different), "ns")
    assert len(pods) == MAX_SHAPES
    assert all("ownerReferences" not in pod["metadata"] for _, pod in pods)
    assert {pod["metadata"]["namespace"] for _, pod in pods} == {"ns"}


def test_rollbacks_are_dry_run_too_and_refusals_name_the_step() -> None:
    spec = _spec(
        [
            {
                "name": "deploy",
                "command": ["true"],
                "rollback": {
                    "command": ["undo"],
                    "volumeMounts": [{"name": "x", "mountPath": "/x"}],
                },
            }
        ]
    )
    seen: list[dict[str, Any]] = []

    async def dry_run(namespace: str, pod: dict[str, Any]) -> str | None:
        seen.append(pod)
        mounts = pod["spec"]["containers"][0].get("volumeMounts", [])
        return 'spec.containers[0].volumeMounts[0].name: Not found: "x"' if mounts else None

    problems = asyncio.run(pod_problems(spec, "ns", dry_run))
    assert len(seen) == 2
    assert problems == [
        "step 'deploy': the API server refuses its Pod: "
        'spec.containers[0].volumeMounts[0].name: Not found: "x"'
    ]
