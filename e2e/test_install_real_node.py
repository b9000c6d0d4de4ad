"""The install story end to end: the chart's operator as a real Pod, from the built image.

``helm install`` of charts/szal into a fresh namespace, with the image that
``make image`` built (imported into the real node's containerd by
node-up.sh). The operator then runs as a container on the real node with the
chart's ServiceAccount (in-cluster credentials: no kubeconfig anywhere), as
uid 65532 on a read-only root filesystem, wins its Lease, manages its webhook
certificate and serves admission through the chart's Service; a Workflow and
a WorkflowRun applied with kubectl complete through it, their steps running
as real containers too.

Not covered: two replicas on the real node (leader failover is tested with
local processes in test_operator_leader.py), cert-manager (not installable
offline).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from e2e.conftest import Kubectl, RealNode, poll_until
from e2e.install_support import helm
from e2e.operator_support import ensure_crds, workflow

pytestmark = [pytest.mark.e2e, pytest.mark.real_node]

CHART = "charts/szal"
OPERATOR_IMAGE = os.environ.get("SZAL_E2E_OPERATOR_IMAGE", "localhost/szal/szal:0.1.0")


@pytest.fixture
def release(kubectl: Kubectl, namespace: str, real_node: RealNode) -> Iterator[str]:
    """The chart installed into ``namespace``, watching only it; uninstalled after."""
    ensure_crds(kubectl)
    name = f"szal-{secrets.token_hex(3)}"
    repository, _, tag = OPERATOR_IMAGE.rpartition(":")
    values = [
        "--set", "crds.install=false",
        "--set", f"watchNamespaces={{{namespace}}}",
        "--set", f"image.repository={repository}",
        "--set", f"image.tag={tag}",
        "--set", f"image.pullPolicy={real_node.pull_policy}",
        "--set", "webhook.failurePolicy=Fail",
    ]  # fmt: skip
    values += ["--set-json", f"nodeSelector={json.dumps(real_node.node_selector)}"]
    values += ["--set-json", f"tolerations={json.dumps(real_node.tolerations)}"]
    helm(kubectl, "install", name, CHART, "--namespace", namespace, *values, "--wait",
         "--timeout", "120s", timeout=180)  # fmt: skip
    try:
        yield name
    finally:
        helm(kubectl, "uninstall", name, "--namespace", namespace, "--wait", check=False)


def _operator_pod(kubectl: Kubectl, namespace: str, release: str) -> dict[str, Any]:
    pods = kubectl.json("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/name=szal")
    running = [p for p in pods["items"] if p["status"].get("phase") == "Running"]
    assert len(running) == 1, [p["metadata"]["name"] for p in pods["items"]]
    pod: dict[str, Any] = running[0]
    return pod


def test_chart_operator_runs_as_a_real_pod_and_completes_a_run(
    kubectl: Kubectl, namespace: str, real_node: RealNode, release: str
) -> None:
    pod = _operator_pod(kubectl, namespace, release)
    if real_node.local_node:
        assert pod["spec"]["nodeName"] == "szal-real-0"
    (container,) = pod["status"]["containerStatuses"]
    assert container["ready"] is True
    assert container["imageID"], container
    security = pod["spec"]["containers"][0]["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    name = pod["metadata"]["name"]
    # Really uid 65532, really a read-only root, really in-cluster credentials.
    probe = kubectl(
        "exec", "-n", namespace, name, "--", "python3", "-c",
        "import os, pathlib; print(os.getuid(), os.access('/', os.W_OK),"
        " pathlib.Path('/var/run/secrets/kubernetes.io/serviceaccount/token').is_file(),"
        " 'KUBECONFIG' in os.environ)",
    ).stdout.split()  # fmt: skip
    assert probe == ["65532", "False", "True", "False"]
    log = kubectl("logs", "-n", namespace, name).stdout
    assert "in-cluster service account" in log, log
    assert "now leads" in log, log

    # Admission through the chart's Service and the operator-managed certificate.
    cyclic = workflow(
        "cyclic",
        {
            "mode": "Dag",
            "steps": [
                {"name": "a", "script": "true", "dependsOn": ["b"]},
                {"name": "b", "script": "true", "dependsOn": ["a"]},
            ],
        },
    )
    refused = kubectl("apply", "-n", namespace, "-f", "-", input=_json(cyclic), check=False)
    assert refused.returncode != 0
    assert "a -> b -> a" in refused.stderr or "b -> a -> b" in refused.stderr, refused.stderr

    spec = {
        "mode": "Sequential",
        "template": real_node.template(),
        "steps": [
            {"name": "greet", "script": 'echo "{\\"who\\": \\"cluster\\"}" > "$SZAL_OUTPUTS"'},
            {"name": "answer", "script": "echo hello",
             "when": "steps.greet.outputs.who == 'cluster'"},
        ],
    }  # fmt: skip
    kubectl.apply(workflow("greet", spec), namespace)
    kubectl.apply(
        {
            "apiVersion": "szal.dev/v1alpha1",
            "kind": "WorkflowRun",
            "metadata": {"name": "greet-1"},
            "spec": {"workflowRef": {"name": "greet"}},
        },
        namespace,
    )
    kubectl(
        "wait", "-n", namespace, "--for=condition=Succeeded", "workflowrun/greet-1",
        "--timeout=90s", timeout=100,
    )  # fmt: skip
    status = kubectl.json("get", "workflowrun", "greet-1", "-n", namespace)["status"]
    assert status["steps"]["greet"]["outputs"] == {"who": "cluster"}
    assert status["steps"]["answer"]["phase"] == "Succeeded"
    assert status["progress"] == "2/2"
    printed = kubectl("get", "workflowruns", "-n", namespace).stdout
    assert "greet-1" in printed and "Succeeded" in printed

    # The leader's Lease is held by the operator Pod.
    lease = poll_until(
        lambda: kubectl.get("lease", release, namespace),
        timeout=10,
        what="the operator's Lease",
    )
    assert lease["spec"]["holderIdentity"] == name


def _json(obj: Any) -> str:
    return json.dumps(obj)
