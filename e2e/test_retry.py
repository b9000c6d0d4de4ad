"""``szal retry RUN`` on the cluster: a new run keeps RUN's Succeeded steps, runs the rest.

Covers: a run whose middle step failed (its pod deleted while it ran) retried
with ``szal retry --watch``: the new run Succeeded, the reused step has RUN's
outputs exactly, ``reusedFrom: RUN`` and no pod of its own, the failed step
and the step after it ran (one pod each), the new run carries RUN's pinned
spec inline and the ``szal.dev/retry-of`` annotation; a Succeeded run is
refused (exit 1). The seeding rules are tested in tests/engine/test_retrying.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from e2e.conftest import Kubectl
from e2e.operator_support import (
    OperatorProcess,
    ensure_crds,
    pods_of,
    sim,
    wait_for,
    wait_phase,
    workflow,
)

pytestmark = pytest.mark.e2e

SZAL = Path(sys.executable).parent / "szal"


@pytest.fixture
def operator(kubeconfig: Path, kubectl: Kubectl, namespace: str) -> Iterator[OperatorProcess]:
    ensure_crds(kubectl)
    with OperatorProcess(kubeconfig, [namespace]) as process:
        yield process


def szal(kubeconfig: Path, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SZAL), *args, "-n", namespace],
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_retry_keeps_succeeded_steps_and_runs_the_rest(
    operator: OperatorProcess, kubectl: Kubectl, kubeconfig: Path, namespace: str, tmp_path: Path
) -> None:
    spec = {
        "mode": "Dag",
        "template": {"image": "busybox:1.36", "command": ["true"]},
        "steps": [
            {"name": "a", "pod": sim("200ms", message={"artifact": "s3://b/1", "n": 7})},
            {"name": "b", "dependsOn": ["a"], "pod": sim("4s")},
            {"name": "c", "dependsOn": ["b"], "pod": sim("200ms")},
        ],
    }
    path = tmp_path / "wf.yaml"
    path.write_text(yaml.safe_dump(workflow("flaky", spec)))
    assert szal(kubeconfig, namespace, "submit", str(path), "--name", "r1").returncode == 0

    def b_running() -> str | None:
        for pod in pods_of(kubectl, namespace, "r1"):
            labels = pod["metadata"].get("labels") or {}
            if (
                labels.get("szal.dev/step") == "b"
                and pod.get("status", {}).get("phase") == "Running"
            ):
                return str(pod["metadata"]["name"])
        return None

    kubectl("delete", "pod", wait_for(b_running, "b's pod to run"), "-n", namespace, "--wait=false")
    first = wait_phase(kubectl, namespace, "r1", timeout=30)
    assert first["phase"] == "Failed", first
    assert first["steps"]["b"]["phase"] == "Failed"
    assert first["steps"]["c"]["phase"] == "Skipped"

    proc = szal(kubeconfig, namespace, "retry", "r1", "--name", "r2", "--watch")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "workflowrun.szal.dev/r2 created (retry of r1)" in proc.stderr
    second = kubectl.get("workflowrun", "r2", namespace)
    assert second is not None
    status = second["status"]
    assert status["phase"] == "Succeeded"
    a_then, a_now = first["steps"]["a"], status["steps"]["a"]
    assert a_now["outputs"] == a_then["outputs"] == {"artifact": "s3://b/1", "n": 7}
    assert a_now["reusedFrom"] == "r1"
    assert a_now["finishedAt"] == a_then["finishedAt"]
    assert [status["steps"][s]["phase"] for s in ("b", "c")] == ["Succeeded", "Succeeded"]
    assert "reusedFrom" not in status["steps"]["b"]
    assert status["workflow"]["specHash"] == first["workflow"]["specHash"]
    assert second["metadata"]["annotations"]["szal.dev/retry-of"] == "r1"
    steps = sorted(
        p["metadata"]["labels"]["szal.dev/step"] for p in pods_of(kubectl, namespace, "r2")
    )
    assert steps == ["b", "c"]

    again = szal(kubeconfig, namespace, "retry", "r2")
    assert again.returncode == 1
    assert "run 'r2' Succeeded: there is nothing to retry" in again.stderr
    missing = szal(kubeconfig, namespace, "retry", "nope")
    assert missing.returncode == 1 and f"no run 'nope' in namespace {namespace}" in missing.stderr
