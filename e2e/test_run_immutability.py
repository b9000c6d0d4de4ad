"""A run's spec is immutable but for its controls, and the webhook never blocks the controls.

Covers, on a real API server through the real kubectl:

* the CRD's CEL transition rules (no webhook): a patch of ``params`` or
  ``workflowRef`` of an existing WorkflowRun is refused with the message of
  :func:`szal.spec.immutability.immutable_message`; ``suspend``, ``cancel``,
  ``ttlSecondsAfterFinished`` and labels still change;
* the ``matchConditions`` of the kustomize base's ValidatingWebhookConfiguration
  (:mod:`szal.runners.kubernetes.matching`), registered with failurePolicy Fail
  and a server that does not exist: suspending, cancelling and labelling a
  run, and labelling a Workflow, still succeed; a spec change of a Workflow
  and a new run are refused (the webhook cannot be called).

Not covered: the operator acting on the run (no operator runs here), kopf's
managed configuration of development mode (it has no matchConditions).
"""

from __future__ import annotations

import copy
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.conftest import Kubectl, poll_until

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parent.parent
CRDS = REPO / "crds"
WEBHOOK = REPO / "manifests/base/webhook/validating_webhook_configuration.yaml"
API = "szal.dev/v1alpha1"
RUNS = "workflowruns.szal.dev"
WORKFLOWS = "workflows.szal.dev"


@pytest.fixture(scope="module")
def crds(kubectl: Kubectl) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))

    def established() -> bool:
        for name in ("workflows.szal.dev", "workflowruns.szal.dev"):
            conditions = kubectl.json("get", "crd", name).get("status", {}).get("conditions") or []
            if not any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                return False
        return True

    poll_until(established, timeout=60, what="the CRDs to be Established")


def _create(kubectl: Kubectl, namespace: str, manifest: dict[str, Any]) -> Any:
    return kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(manifest), check=False)


def _patch(kubectl: Kubectl, namespace: str, kind: str, name: str, patch: dict[str, Any]) -> Any:
    return kubectl(
        "patch", kind, name, "-n", namespace, "--type=merge", "-p", json.dumps(patch), check=False
    )


def _objects(kubectl: Kubectl, namespace: str) -> None:
    workflow = {
        "apiVersion": API,
        "kind": "Workflow",
        "metadata": {"name": "ci"},
        "spec": {"params": [{"name": "env"}], "steps": [{"name": "a", "script": "true"}]},
    }
    run = {
        "apiVersion": API,
        "kind": "WorkflowRun",
        "metadata": {"name": "ci-1"},
        "spec": {"workflowRef": {"name": "ci"}, "params": {"env": "dev"}},
    }
    for manifest in (workflow, run):
        proc = _create(kubectl, namespace, manifest)
        assert proc.returncode == 0, proc.stderr


def test_what_a_run_runs_cannot_change_but_its_controls_can(
    crds: None, kubectl: Kubectl, namespace: str
) -> None:
    _objects(kubectl, namespace)
    for patch, field in (
        ({"spec": {"params": {"env": "prod"}}}, "params"),
        ({"spec": {"workflowRef": {"name": "other"}}}, "workflowRef"),
    ):
        proc = _patch(kubectl, namespace, RUNS, "ci-1", patch)
        assert proc.returncode != 0
        assert f"spec.{field} is immutable" in proc.stderr, proc.stderr
        assert "except suspend, cancel, skipFinally, ttlSecondsAfterFinished" in proc.stderr
    for patch in (
        {"spec": {"suspend": True}},
        {"spec": {"ttlSecondsAfterFinished": 60}},
        {"metadata": {"labels": {"team": "a"}}},
        {"spec": {"cancel": True}},
    ):
        proc = _patch(kubectl, namespace, RUNS, "ci-1", patch)
        assert proc.returncode == 0, proc.stderr
    run = kubectl.json("get", RUNS, "ci-1", "-n", namespace)
    assert run["spec"]["params"] == {"env": "dev"} and run["spec"]["cancel"] is True


@pytest.fixture
def unreachable_webhook(crds: None, kubectl: Kubectl, namespace: str) -> Iterator[str]:
    """The kustomize base's webhook configuration, pointed at no server, for ``namespace`` only."""
    config = yaml.safe_load(WEBHOOK.read_text())
    name = f"e2e-unreachable-{secrets.token_hex(4)}"
    config = copy.deepcopy(config)
    config["metadata"]["name"] = name
    for webhook in config["webhooks"]:
        webhook["name"] = webhook["name"].replace(".szal.dev", f".{name}.szal.dev")
        webhook["clientConfig"]["service"].update(name="nowhere", namespace=namespace)
        webhook["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
        assert webhook["failurePolicy"] == "Fail" and webhook["matchConditions"]
    kubectl("create", "-f", "-", input=json.dumps(config))
    try:
        yield name
    finally:
        kubectl("delete", "validatingwebhookconfiguration", name, "--ignore-not-found")


def test_controls_and_labels_pass_a_dead_webhook_while_spec_changes_do_not(
    crds: None, kubectl: Kubectl, namespace: str, request: pytest.FixtureRequest
) -> None:
    _objects(kubectl, namespace)
    request.getfixturevalue("unreachable_webhook")
    changed = {"spec": {"steps": [{"name": "a", "script": "echo changed"}]}}

    def refused() -> str | None:
        proc = _patch(kubectl, namespace, WORKFLOWS, "ci", changed)
        return proc.stderr if proc.returncode != 0 else None

    stderr = poll_until(refused, timeout=30, what="the dead webhook to refuse a Workflow change")
    assert "failed calling webhook" in str(stderr), stderr
    for kind, name, patch in (
        (RUNS, "ci-1", {"spec": {"suspend": True}}),
        (RUNS, "ci-1", {"spec": {"suspend": False}}),
        (RUNS, "ci-1", {"metadata": {"labels": {"team": "a"}}}),
        (RUNS, "ci-1", {"spec": {"cancel": True}}),
        (WORKFLOWS, "ci", {"metadata": {"labels": {"team": "a"}}}),
    ):
        proc = _patch(kubectl, namespace, kind, name, patch)
        assert proc.returncode == 0, (kind, patch, proc.stderr)
    run = {
        "apiVersion": API,
        "kind": "WorkflowRun",
        "metadata": {"name": "ci-2"},
        "spec": {"workflowRef": {"name": "ci"}},
    }
    proc = _create(kubectl, namespace, run)
    assert proc.returncode != 0 and "failed calling webhook" in proc.stderr
