"""One Workflow, run locally (``szal run --json``) and on the cluster: same outcome.

The workflow's commands do locally what its ``szal.dev/sim-*`` annotations
make kwok do on the cluster (write outputs, fail the first attempt, exit
non-zero), so the same file means the same thing in both places. Compared:
the run phase and every step's phase and attempt count, and the outputs a
condition read.

Not compared: timestamps, messages that name pods or processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.conftest import Kubectl
from e2e.operator_support import (
    OperatorProcess,
    ensure_crds,
    run,
    run_locally,
    sim,
    step_phases,
    wait_phase,
    workflow,
)

pytestmark = pytest.mark.e2e


SPEC: dict[str, Any] = {
    "mode": "Dag",
    "template": {"image": "busybox:1.36", "pod": sim("200ms")},
    "steps": [
        {
            "name": "prep",
            "script": 'echo \'{"go": true, "n": 2}\' > "$SZAL_OUTPUTS"',
            "pod": sim("200ms", message={"go": True, "n": 2}),
        },
        {
            "name": "flaky",
            "dependsOn": ["prep"],
            "script": 'test "$SZAL_ATTEMPT" -ge 2',
            "retries": {"limit": 2, "delay": "100ms"},
            "pod": sim("200ms", **{"szal.dev/sim-exit-code-attempt-1": "1"}),
        },
        {
            "name": "gated",
            "dependsOn": ["prep"],
            "script": "true",
            "when": "steps.prep.outputs.go == true && steps.prep.outputs.n >= 2",
        },
        {
            "name": "not-today",
            "dependsOn": ["prep"],
            "script": "true",
            "when": "steps.prep.outputs.go == false",
        },
        {
            "name": "broken",
            "dependsOn": ["flaky"],
            "script": "exit 4",
            "pod": sim("200ms", exit_code=4),
        },
        {"name": "after-broken", "dependsOn": ["broken"], "script": "true"},
        {"name": "independent", "dependsOn": ["gated", "not-today"], "script": "true"},
    ],
}


def test_local_and_cluster_runs_agree(
    kubeconfig: Path, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    manifest = workflow("parity", SPEC)
    path = tmp_path / "parity.yaml"
    path.write_text(yaml.safe_dump(manifest))
    code, local_status, stderr = run_locally(path, tmp_path / "history.db")
    assert code == 1, stderr  # the run Failed, as designed

    ensure_crds(kubectl)
    with OperatorProcess(kubeconfig, [namespace]):
        kubectl.apply(manifest, namespace)
        kubectl.apply(run("parity", "parity"), namespace)
        cluster_status = wait_phase(kubectl, namespace, "parity", timeout=90)

    assert cluster_status["phase"] == local_status["phase"] == "Failed"
    assert step_phases(cluster_status) == step_phases(local_status)
    assert step_phases(cluster_status) == {
        "prep": ("Succeeded", 1),
        "flaky": ("Succeeded", 2),
        "gated": ("Succeeded", 1),
        "not-today": ("Skipped", 0),
        "broken": ("Failed", 1),
        "after-broken": ("Skipped", 0),
        "independent": ("Succeeded", 1),
    }
    for status in (local_status, cluster_status):
        assert status["steps"]["prep"]["outputs"] == {"go": True, "n": 2}
        assert status["steps"]["broken"]["exitCode"] == 4
        assert status["steps"]["after-broken"]["message"] == "dependency failed"
