"""The operator works under exactly the RBAC that manifests/base/rbac grants.

The ServiceAccount, ClusterRole and binding of ``manifests/base`` are
applied; the operator runs with a token of that ServiceAccount (no admin
certificate) and must do everything a run needs: watch runs, workflows and
pods, create pods and Jobs, patch pods (a timed-out pod stopped in place), write run and workflow
status, post Events, and delete a finished run at its TTL - with
``--leader-elect``, so it must also create and renew its Lease (in
szal-system, where ``leader_election_role.yaml``'s Role is bound; the
Lease's name is unique per test): without the lease rule it never leads
and the run never starts.

Not covered: the admission webhooks' permissions (the admission tests and
``e2e/test_webhook_certs.py``).
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from e2e.conftest import REPO, Kubectl, poll_until
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


def _service_account_kubeconfig(kubectl: Kubectl, target: Path) -> Path:
    kubectl("create", "namespace", "szal-system", check=False)
    kubectl("apply", "-k", str(REPO / "manifests" / "base" / "rbac"), "-n", "szal-system")
    return token_kubeconfig(kubectl, "szal-operator", "szal-system", target)


def test_operator_runs_with_the_manifests_rbac_only(
    kubeconfig: Path, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    ensure_crds(kubectl)
    sa_config = _service_account_kubeconfig(kubectl, tmp_path / "sa.kubeconfig")
    spec = {
        "template": {"image": "busybox:1.36", "pod": sim("200ms")},
        "steps": [
            {"name": "pod", "command": ["true"]},
            {"name": "job", "command": ["true"], "launcher": "Job"},
            {
                "name": "slow",
                "command": ["true"],
                "timeout": "1s",
                "pod": sim("60s"),
                "retries": {"limit": 0},
            },
        ],
        "mode": "Parallel",
    }
    kubectl.apply(workflow("rbac", spec), namespace)
    lease = f"szal-e2e-rbac-{secrets.token_hex(4)}"
    election = ("--leader-elect", "--leader-election-namespace", "szal-system")
    try:
        with OperatorProcess(
            sa_config, [namespace], *election, "--leader-election-lease-name", lease
        ) as operator:
            poll_until(
                lambda: operator.readyz() == "leader",
                timeout=20,
                what="the operator to hold its Lease (leases get/create/update in szal-system)",
            )
            _complete_runs(kubectl, namespace)
    finally:
        kubectl("delete", "lease", lease, "-n", "szal-system", "--ignore-not-found")


def _complete_runs(kubectl: Kubectl, namespace: str) -> None:
    """The run of the RBAC test completes, with its Events, stepCount and TTL deletion."""
    kubectl.apply(run("rbac", "rbac", ttlSecondsAfterFinished=4), namespace)
    status = wait_phase(kubectl, namespace, "rbac", timeout=60)
    assert step_phases(status) == {
        "pod": ("Succeeded", 1),
        "job": ("Succeeded", 1),
        "slow": ("TimedOut", 1),
    }
    # pods/patch: the timed-out pod is stopped in place (kept), not deleted.
    slow = kubectl.get("pod", status["steps"]["slow"]["podName"], namespace)
    assert slow is not None and slow["spec"].get("activeDeadlineSeconds") == 1, slow
    events = kubectl.json(
        "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=rbac"
    )["items"]
    assert any(e["reason"] == "StepTimedOut" for e in events)
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
