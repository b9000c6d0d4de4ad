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

import base64
import secrets
from pathlib import Path

import pytest
import yaml

from e2e.conftest import Kubectl
from e2e.install_support import CHART, helm
from e2e.operator_support import (
    OperatorProcess,
    ensure_crds,
    run,
    sim,
    step_phases,
    wait_for,
    wait_phase,
    workflow,
)
from szal.runners.kubernetes.client import credentials_from_kubeconfig

pytestmark = pytest.mark.e2e


def _token_kubeconfig(kubectl: Kubectl, account: str, namespace: str, target: Path) -> Path:
    token = kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout.strip()
    admin = credentials_from_kubeconfig(kubectl.kubeconfig)
    ca = base64.b64encode((admin.ca_data or "").encode()).decode()
    target.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {"server": admin.server, "certificate-authority-data": ca},
                    }
                ],
                "users": [{"name": account, "user": {"token": token}}],
                "contexts": [
                    {
                        "name": "sa",
                        "context": {"cluster": "c", "user": account, "namespace": namespace},
                    }
                ],
                "current-context": "sa",
            }
        )
    )
    return target


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
        sa_config = _token_kubeconfig(kubectl, full, namespace, tmp_path / "sa.kubeconfig")
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
                    (kubectl.get("workflow", "rbac", namespace) or {})
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
