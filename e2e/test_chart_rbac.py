"""The operator works under exactly the RBAC the Helm chart grants, in namespaced mode.

The chart is installed (``crds.install=false``, ``watchNamespaces`` = the
test namespace, no webhook) into a fresh namespace; ``szal operator`` then
runs as a local process with a kubeconfig carrying a token of the chart's
ServiceAccount (``kubectl create token``), serving that namespace, and must
complete a run: Pods and a Job created, a timeout (pod deletion), status
and Events written, the Workflow's stepCount, the TTL deletion.

Not covered: leader election and webhook certificates under the chart's
Roles (the chart grants the same rules as manifests/base/rbac, which
``e2e/test_operator_rbac.py`` and ``e2e/test_webhook_certs.py`` exercise;
``e2e/test_install.py`` fails if the two differ).
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from e2e.conftest import Kubectl
from e2e.install_support import CHART, helm
from e2e.operator_support import (
    OperatorProcess,
    ensure_crds,
    run,
    sim,
    step_phases,
    token_kubeconfig,
    wait_for,
    wait_phase,
    workflow,
)

pytestmark = pytest.mark.e2e


def test_operator_completes_a_run_with_the_charts_service_account(
    kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    ensure_crds(kubectl)
    release = f"rbac-{secrets.token_hex(3)}"
    full = f"{release}-szal"
    helm(
        kubectl, "install", release, str(CHART), "--namespace", namespace,
        "--set", "crds.install=false", "--set", "webhook.enabled=false",
        "--set", f"watchNamespaces={{{namespace}}}", "--set", "replicas=0",
    )  # fmt: skip
    try:
        sa_config = token_kubeconfig(
            kubectl, full, namespace, tmp_path / "sa.kubeconfig", context_namespace=True
        )
        spec = {
            "template": {"image": "busybox:1.36", "pod": sim("200ms")},
            "steps": [
                {"name": "pod", "command": ["true"]},
                {"name": "job", "command": ["true"], "launcher": "Job"},
                {"name": "slow", "command": ["true"], "timeout": "1s", "pod": sim("60s"),
                 "retries": {"limit": 0}},
            ],
            "mode": "Parallel",
        }  # fmt: skip
        kubectl.apply(workflow("rbac", spec), namespace)
        with OperatorProcess(sa_config, [namespace]):
            kubectl.apply(run("rbac", "rbac", ttlSecondsAfterFinished=1), namespace)
            status = wait_phase(kubectl, namespace, "rbac", timeout=60)
            assert step_phases(status) == {
                "pod": ("Succeeded", 1),
                "job": ("Succeeded", 1),
                "slow": ("TimedOut", 1),
            }
            wait_for(
                lambda: (
                    (kubectl.get("workflows.szal.dev", "rbac", namespace) or {})
                    .get("status", {})
                    .get("stepCount")
                    == 3
                ),
                "the Workflow's stepCount",
            )
            wait_for(
                lambda: kubectl.get("workflowrun", "rbac", namespace) is None,
                "the TTL deletion",
                timeout=30,
            )
    finally:
        helm(kubectl, "uninstall", release, "-n", namespace, "--wait", check=False)
