"""Smoke tests: the e2e cluster is a real Kubernetes, not a mock.

Covers what the operator relies on: the API server validating a custom
resource against its structural schema, the real Job controller finishing a
Job from a simulated pod's outcome (exit code and termination message
included), the real scheduler honouring extended GPU resources and taints,
and the garbage collector following ownerReferences.

Deliberately not covered: the operator itself, RBAC of the operator, and
timing (benchmarks measure that).

The pods run a real busybox command doing what the kwok simulation does with
the szal.dev/sim-* annotations, so the same tests pass on a cluster whose
nodes run containers (kind with the fake GPU nodes added).
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest

from e2e.conftest import Kubectl, KubectlError, poll_until

pytestmark = pytest.mark.e2e

GPU_PRODUCT = "NVIDIA-H100-80GB-HBM3"
TIMEOUT = 60.0


def simulated_pod_spec(
    *, seconds: float = 0, exit_code: int = 0, message: str = ""
) -> tuple[dict[str, str], dict[str, Any]]:
    """Annotations and a pod spec for a step that runs, then exits.

    kwok reads the annotations; a real kubelet runs the command, which does
    the same: sleep, write the termination message, exit with the code.
    """
    annotations = {
        "szal.dev/sim-duration": f"{seconds:g}s",
        "szal.dev/sim-exit-code": str(exit_code),
        "szal.dev/sim-message": message,
    }
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 1,
        "containers": [
            {
                "name": "step",
                "image": "busybox:1.36",
                "command": [
                    "sh",
                    "-c",
                    'sleep "$SECONDS_"; printf %s "$MESSAGE" > /dev/termination-log; exit "$CODE"',
                ],
                "env": [
                    {"name": "SECONDS_", "value": f"{seconds:g}"},
                    {"name": "MESSAGE", "value": message},
                    {"name": "CODE", "value": str(exit_code)},
                ],
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
            }
        ],
    }
    return annotations, spec


def job_manifest(name: str, **simulation: Any) -> dict[str, Any]:
    annotations, spec = simulated_pod_spec(**simulation)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {"metadata": {"annotations": annotations}, "spec": spec},
        },
    }


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    for cond in (obj or {}).get("status", {}).get("conditions", []):
        if cond["type"] == kind:
            found: dict[str, Any] = cond
            return found
    return None


def job_pods(kubectl: Kubectl, namespace: str, job: str) -> list[dict[str, Any]]:
    pods: list[dict[str, Any]] = kubectl.json(
        "get", "pods", "-n", namespace, "-l", f"batch.kubernetes.io/job-name={job}"
    )["items"]
    return pods


# --- the API server -----------------------------------------------------------


def test_crd_structural_schema_rejects_invalid_object(kubectl: Kubectl, namespace: str) -> None:
    group = f"smoke-{secrets.token_hex(3)}.szal.dev"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["replicas"],
                                    "properties": {
                                        "replicas": {"type": "integer", "minimum": 1},
                                        "mode": {"type": "string", "enum": ["fast", "safe"]},
                                    },
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    kubectl.apply(crd)
    try:
        kubectl("wait", "--for=condition=Established", f"crd/widgets.{group}", "--timeout=60s")

        def widget(name: str, spec: dict[str, Any]) -> dict[str, Any]:
            return {
                "apiVersion": f"{group}/v1",
                "kind": "Widget",
                "metadata": {"name": name},
                "spec": spec,
            }

        kubectl.apply(widget("good", {"replicas": 2, "mode": "safe"}), namespace)
        assert kubectl.get(f"widgets.{group}", "good", namespace) is not None

        with pytest.raises(KubectlError) as rejected:
            kubectl.apply(widget("bad", {"replicas": 0, "mode": "reckless"}), namespace)
        error = rejected.value.stderr
        assert "is invalid" in error, error
        assert "spec.replicas" in error, error
        assert "spec.mode" in error, error
        assert kubectl.get(f"widgets.{group}", "bad", namespace) is None
    finally:
        kubectl("delete", "crd", f"widgets.{group}", "--wait=false", check=False)


# --- the Job controller and the pod simulation --------------------------------


def test_job_with_succeeding_pod_completes(kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply(job_manifest("ok", seconds=1, message='{"answer": 42}'), namespace)

    job = poll_until(
        lambda: (j := kubectl.get("job", "ok", namespace)) and condition(j, "Complete") and j,
        timeout=TIMEOUT,
        what="Job ok to be Complete",
    )
    assert job["status"]["succeeded"] == 1
    assert condition(job, "Failed") is None
    [pod] = job_pods(kubectl, namespace, "ok")
    assert pod["status"]["phase"] == "Succeeded"
    [status] = pod["status"]["containerStatuses"]
    terminated = status["state"]["terminated"]
    assert terminated["exitCode"] == 0
    assert terminated["reason"] == "Completed"
    assert json.loads(terminated["message"]) == {"answer": 42}


def test_job_with_failing_pod_fails_with_exit_code_and_message(
    kubectl: Kubectl, namespace: str
) -> None:
    kubectl.apply(job_manifest("boom", exit_code=3, message="disk full"), namespace)

    job = poll_until(
        lambda: (j := kubectl.get("job", "boom", namespace)) and condition(j, "Failed") and j,
        timeout=TIMEOUT,
        what="Job boom to be Failed",
    )
    assert condition(job, "Failed")["reason"] == "BackoffLimitExceeded"  # type: ignore[index]
    [pod] = job_pods(kubectl, namespace, "boom")
    assert pod["status"]["phase"] == "Failed"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 3
    assert terminated["reason"] == "Error"
    assert terminated["message"] == "disk full"


# --- the scheduler --------------------------------------------------------------


def gpu_pod(name: str, gpus: int) -> dict[str, Any]:
    annotations, spec = simulated_pod_spec(message="trained")
    spec["containers"][0]["resources"]["limits"] = {"nvidia.com/gpu": str(gpus)}
    spec["nodeSelector"] = {"nvidia.com/gpu.product": GPU_PRODUCT}
    spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations},
        "spec": spec,
    }


def test_gpu_pod_lands_on_gpu_node_and_runs(kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply(gpu_pod("two-gpus", 2), namespace)

    pod = poll_until(
        lambda: (
            (p := kubectl.get("pod", "two-gpus", namespace))
            and p["status"].get("phase") == "Succeeded"
            and p
        ),
        timeout=TIMEOUT,
        what="pod two-gpus to run to completion",
    )
    node = kubectl.get("node", pod["spec"]["nodeName"])
    assert node is not None
    assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == GPU_PRODUCT
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == "8"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"] == "trained"


def test_pod_asking_for_more_gpus_than_any_node_has_is_unschedulable(
    kubectl: Kubectl, namespace: str
) -> None:
    kubectl.apply(gpu_pod("sixteen-gpus", 16), namespace)

    scheduled = poll_until(
        lambda: condition(kubectl.get("pod", "sixteen-gpus", namespace), "PodScheduled"),
        timeout=TIMEOUT,
        what="the scheduler to judge pod sixteen-gpus",
    )
    assert scheduled["status"] == "False"
    assert scheduled["reason"] == "Unschedulable"
    assert "nvidia.com/gpu" in scheduled["message"]
    pod = kubectl.get("pod", "sixteen-gpus", namespace)
    assert pod is not None
    assert pod["status"]["phase"] == "Pending"
    assert not pod["spec"].get("nodeName")


# --- the garbage collector -------------------------------------------------------


def test_deleting_owner_garbage_collects_owned_pod(kubectl: Kubectl, namespace: str) -> None:
    kubectl("create", "configmap", "owner", "-n", namespace)
    owner = kubectl.get("configmap", "owner", namespace)
    assert owner is not None
    annotations, spec = simulated_pod_spec(seconds=3600)  # still running when collected
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "owned",
                "annotations": annotations,
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "name": "owner",
                        "uid": owner["metadata"]["uid"],
                    }
                ],
            },
            "spec": spec,
        },
        namespace,
    )
    poll_until(
        lambda: (
            (p := kubectl.get("pod", "owned", namespace)) and p["status"].get("phase") == "Running"
        ),
        timeout=TIMEOUT,
        what="pod owned to be Running",
    )

    kubectl("delete", "configmap", "owner", "-n", namespace, "--wait=false")

    poll_until(
        lambda: kubectl.get("pod", "owned", namespace) is None,
        timeout=TIMEOUT,
        what="the garbage collector to delete pod owned",
    )
