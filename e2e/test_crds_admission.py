"""The CRDs and the admission webhooks on a real API server, through the real kubectl.

Covers: ``crds/`` applies and both CRDs become Established with their
names, short names and category; the API server's schema refuses a bad
enum, a bad duration and the CEL rules; steps nested below the schema's
expanded depth are kept; ``kubectl get workflowruns`` (and ``-o wide``)
and ``kubectl get workflows`` show the printer columns from a status
written through ``--subresource=status``; ``kubectl apply`` of a cyclic
Workflow, a run of a missing Workflow and a run with wrong params is
refused with the validator's message; a misspelt field (below the schema's
expanded depth, where only the webhook sees it) and a cycle elsewhere are
refused together.

The webhooks are served by a kopf operator started here, in a thread, with
only the admission registry (:func:`register_admission`), on 127.0.0.1 with
a self-signed certificate (:mod:`szal.runners.kubernetes.tls`), managing
its own uniquely named webhook configurations. It runs as a ServiceAccount
bound to the ClusterRoles of ``manifests/base/rbac``, so the webhook part of
that RBAC is exercised too.

Also: Kubernetes' own schemas for a step's container and pod fields
(typos, a bad quantity, ``activeDeadlineSeconds`` refused by the API
server) and the webhook's server-side dry-run of step Pods (a mount naming
no volume). On kwok, a Pod naming a missing Secret is created fine (no
kubelet resolves it), so that failure is not tested here.

Not covered: the reconciler (the operator's own e2e tests).
"""

from __future__ import annotations

import asyncio
import copy
import json
import secrets
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml

from e2e.conftest import Kubectl, poll_until
from szal.runners.kubernetes.admission import (
    configure_admission,
    fetcher_from_client,
    register_admission,
)
from szal.runners.kubernetes.client import ApiClient, Credentials, credentials_from_kubeconfig
from szal.runners.kubernetes.dryrunning import dry_run_from_client
from szal.runners.kubernetes.tls import ensure_self_signed

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parent.parent
CRDS = REPO / "crds"
RBAC = REPO / "manifests" / "base" / "rbac"
API = "szal.dev/v1alpha1"


def _workflow(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "Workflow", "metadata": {"name": name}, "spec": spec}


def _run(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "WorkflowRun", "metadata": {"name": name}, "spec": spec}


def _apply(kubectl: Kubectl, namespace: str, manifest: dict[str, Any], *extra: str) -> Any:
    return kubectl(
        "apply", "-n", namespace, *extra, "-f", "-", input=json.dumps(manifest), check=False
    )


CYCLIC = _workflow(
    "cyclic",
    {
        "mode": "Dag",
        "steps": [
            {"name": "a", "script": "true", "dependsOn": ["b"]},
            {"name": "b", "script": "true", "dependsOn": ["a"]},
        ],
    },
)


@pytest.fixture(scope="module")
def crds(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", str(CRDS))

    def established() -> bool:
        # Not `kubectl wait`: it errors out while a new CRD has no conditions yet.
        for name in ("workflows.szal.dev", "workflowruns.szal.dev"):
            crd = kubectl.json("get", "crd", name)
            conditions = crd.get("status", {}).get("conditions") or []
            if not any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                return False
        return True

    poll_until(established, timeout=60, what="both CRDs to be Established")


# --- CRDs and the schema ----------------------------------------------------


def test_crds_are_established_with_their_names(crds: None, kubectl: Kubectl) -> None:
    for name in ("workflows.szal.dev", "workflowruns.szal.dev"):
        crd = kubectl.json("get", "crd", name)
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions["Established"] == "True"
        assert conditions["NamesAccepted"] == "True"
    resources = kubectl("api-resources", "--api-group=szal.dev", "-o", "wide").stdout
    assert "szwf " in resources and "szwfr " in resources
    assert "szal" in resources  # the category column


def test_schema_refuses_a_bad_enum_and_a_bad_duration(
    crds: None, kubectl: Kubectl, namespace: str
) -> None:
    bad = _workflow(
        "bad",
        {
            "mode": "Dagg",
            "timeout": "10",
            "steps": [{"name": "a", "script": "true", "retries": {"delay": "1d"}}],
        },
    )
    proc = _apply(kubectl, namespace, bad)
    assert proc.returncode != 0
    assert 'spec.mode: Unsupported value: "Dagg"' in proc.stderr
    assert "spec.timeout" in proc.stderr and "should match" in proc.stderr
    assert "spec.steps[0].retries.delay" in proc.stderr
    assert kubectl.get("workflows.szal.dev", "bad", namespace) is None


def test_cel_rules_are_enforced(crds: None, kubectl: Kubectl, namespace: str) -> None:
    both = _run("both", {"workflowRef": {"name": "x"}, "workflow": {"steps": [{"name": "a"}]}})
    proc = _apply(kubectl, namespace, both)
    assert proc.returncode != 0
    assert "exactly one of workflowRef" in proc.stderr
    neither = _run("neither", {"params": {"a": "b"}})
    assert "exactly one of workflowRef" in _apply(kubectl, namespace, neither).stderr
    step = _workflow("twice", {"steps": [{"name": "a", "command": ["x"], "script": "y"}]})
    proc = _apply(kubectl, namespace, step)
    assert proc.returncode != 0
    assert "not both" in proc.stderr


def test_steps_below_the_expanded_depth_are_kept(
    crds: None, kubectl: Kubectl, namespace: str
) -> None:
    leaf: dict[str, Any] = {"name": "l6", "script": "true", "timeout": "5s"}
    for level in range(5, 0, -1):
        leaf = {"name": f"l{level}", "script": "true", "steps": [leaf]}
    deep = _workflow("deep", {"mode": "Hierarchical", "steps": [leaf]})
    proc = _apply(kubectl, namespace, deep)
    assert proc.returncode == 0, proc.stderr
    stored = kubectl.json("get", "workflows.szal.dev", "deep", "-n", namespace)
    node = stored["spec"]["steps"][0]
    for _ in range(5):
        node = node["steps"][0]
    assert node == {"name": "l6", "script": "true", "timeout": "5s"}
    assert stored["spec"]["mode"] == "Hierarchical" and stored["spec"]["version"] == 1


# --- printer columns --------------------------------------------------------


def _table(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()]


def test_workflow_run_columns(crds: None, kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply(
        _workflow("ci", {"mode": "Dag", "steps": [{"name": "build", "script": "true"}]}),
        namespace,
    )
    kubectl.apply(_run("ci-1", {"workflowRef": {"name": "ci"}}), namespace)
    status = {
        "phase": "Succeeded",
        "progress": "7/7",
        "duration": "1m12.4s",
        "message": "all-steps-succeeded",
        "workflow": {"name": "ci", "version": 1, "specHash": "0123456789abcdef"},
        "conditions": [{"type": "Succeeded", "status": "True", "reason": "Succeeded"}],
        "steps": {"build": {"phase": "Succeeded", "attempts": 1, "exitCode": 0}},
    }
    kubectl(
        "patch",
        "workflowruns.szal.dev",
        "ci-1",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )
    header, row = _table(kubectl("get", "workflowruns", "-n", namespace).stdout)
    assert header == ["NAME", "WORKFLOW", "PHASE", "PROGRESS", "DURATION", "AGE"]
    assert row[:5] == ["ci-1", "ci", "Succeeded", "7/7", "1m12.4s"]
    header, row = _table(kubectl("get", "szwfr", "-n", namespace, "-o", "wide").stdout)
    assert header == ["NAME", "WORKFLOW", "PHASE", "PROGRESS", "DURATION", "AGE", "MESSAGE"]
    assert row[-1] == "all-steps-succeeded"
    kubectl(
        "wait",
        "--for=condition=Succeeded",
        "workflowruns.szal.dev/ci-1",
        "-n",
        namespace,
        "--timeout=10s",
    )
    stored = kubectl.json("get", "workflowruns.szal.dev", "ci-1", "-n", namespace)
    assert stored["status"]["steps"]["build"]["exitCode"] == 0
    assert stored["spec"] == {
        "workflowRef": {"name": "ci"},
        "suspend": False,
        "cancel": False,
        "skipFinally": False,
    }


def test_workflow_columns(crds: None, kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply(
        _workflow(
            "pipeline",
            {
                "mode": "Hierarchical",
                "version": 3,
                "steps": [
                    {"name": "a", "script": "true", "steps": [{"name": "b", "script": "true"}]},
                    {"name": "c", "script": "true"},
                ],
            },
        ),
        namespace,
    )
    kubectl(
        "patch",
        "workflows.szal.dev",
        "pipeline",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"stepCount": 3, "observedGeneration": 1}}),
    )
    header, row = _table(kubectl("get", "szwf", "-n", namespace).stdout)
    assert header == ["NAME", "MODE", "STEPS", "VERSION", "AGE"]
    assert row[:4] == ["pipeline", "Hierarchical", "3", "3"]


# --- admission --------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class AdmissionOperator:
    """A kopf operator with only Szál's admission handlers, in its own thread and loop."""

    def __init__(self, credentials: Credentials, *, managed: str, cert_dir: Path) -> None:
        self.credentials = credentials
        self.managed = managed
        self.cert_dir = cert_dir
        self.port = _free_port()
        self.stop_flag = threading.Event()
        self.ready_flag = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name="admission-operator", daemon=True)

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._operate())
        except BaseException as error:  # reported by stop()
            self.error = error
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _operate(self) -> None:
        creds = self.credentials
        ca_file = self.cert_dir / "cluster-ca.crt"
        ca_file.write_text(creds.ca_data or "")
        registry = kopf.OperatorRegistry()

        @kopf.on.login(registry=registry)
        def login(**_: Any) -> kopf.ConnectionInfo:
            return kopf.ConnectionInfo(
                server=creds.server, ca_path=str(ca_file), token=creds.token, scheme="Bearer"
            )

        cert = ensure_self_signed(self.cert_dir, hosts=["127.0.0.1"])
        settings = kopf.OperatorSettings()
        settings.scanning.disabled = True
        settings.posting.enabled = False
        settings.process.ultimate_exiting_timeout = None
        configure_admission(
            settings,
            certfile=str(cert.certfile),
            pkeyfile=str(cert.pkeyfile),
            port=self.port,
            managed=self.managed,
        )
        async with ApiClient(creds) as client:
            register_admission(
                registry,
                fetch_workflow=fetcher_from_client(client),
                dry_run=dry_run_from_client(client),
            )
            await kopf.operator(
                registry=registry,
                settings=settings,
                clusterwide=True,
                standalone=True,
                stop_flag=self.stop_flag,
                ready_flag=self.ready_flag,
            )

    def start(self) -> None:
        self.thread.start()
        poll_until(
            lambda: self.ready_flag.is_set() or not self.thread.is_alive(),
            timeout=30,
            what="the admission operator to start",
        )
        if not self.thread.is_alive():
            raise RuntimeError(f"the admission operator exited: {self.error!r}")

    def stop(self) -> None:
        self.stop_flag.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the admission operator did not stop"


def _service_account_credentials(
    kubectl: Kubectl, kubeconfig: Path, namespace: str, suffix: str
) -> tuple[Credentials, list[tuple[str, str]]]:
    """A ServiceAccount bound to manifests/base/rbac's ClusterRoles (renamed), and its token."""
    built = kubectl("kustomize", str(RBAC)).stdout
    created: list[tuple[str, str]] = []
    docs = []
    for doc in yaml.safe_load_all(built):
        kind = doc["kind"]
        if kind in ("ServiceAccount", "Role", "RoleBinding"):
            doc["metadata"]["namespace"] = namespace
            for subject in doc.get("subjects") or []:
                subject["namespace"] = namespace
        else:
            doc["metadata"]["name"] += f"-{suffix}"
            created.append((kind.lower(), doc["metadata"]["name"]))
        if kind == "ClusterRoleBinding":
            doc["roleRef"]["name"] += f"-{suffix}"
            for subject in doc["subjects"]:
                subject["namespace"] = namespace
        docs.append(doc)
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    token = kubectl(
        "create", "token", "szal-operator", "-n", namespace, "--duration=1h"
    ).stdout.strip()
    admin = credentials_from_kubeconfig(kubeconfig)
    creds = Credentials(server=admin.server, ca_data=admin.ca_data, token=token)
    return creds, created


@pytest.fixture
def admission(
    crds: None, kubectl: Kubectl, kubeconfig: Path, namespace: str
) -> Iterator[AdmissionOperator]:
    suffix = secrets.token_hex(4)
    managed = f"e2e-{suffix}.szal.dev"
    creds, cluster_objects = _service_account_credentials(kubectl, kubeconfig, namespace, suffix)
    with tempfile.TemporaryDirectory(prefix="szal-webhook-") as tmp:
        operator = AdmissionOperator(creds, managed=managed, cert_dir=Path(tmp))
        try:
            operator.start()

            def refused() -> bool:
                proc = _apply(kubectl, namespace, CYCLIC, "--dry-run=server")
                return proc.returncode != 0 and "denied the request" in proc.stderr

            poll_until(refused, timeout=60, what="the webhook to refuse a cyclic Workflow")
            yield operator
        finally:
            operator.stop()
            # A webhook left behind with failurePolicy Fail would block every
            # Workflow write in the cluster: always remove ours.
            for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
                kubectl("delete", kind, managed, "--ignore-not-found")
            for kind, name in cluster_objects:
                kubectl("delete", kind, name, "--ignore-not-found")
    assert operator.error is None, operator.error


def test_container_fields_are_checked_by_kubernetes_schemas(
    crds: None, kubectl: Kubectl, namespace: str
) -> None:
    """Typos and bad quantities in Kubernetes' fields fail at the API server, naming them."""
    step = {
        "name": "a",
        "script": "true",
        "volumeMounts": [{"name": "data", "mountPth": "/data"}],
        "resources": {"limits": {"memory": "1Gx"}},
        "env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "s", "kee": "t"}}}],
        "pod": {"activeDeadlineSeconds": 5, "volumes": [{"name": "data", "emptyDirr": {}}]},
    }
    proc = _apply(kubectl, namespace, _workflow("typos", {"steps": [step]}))
    assert proc.returncode != 0
    err = proc.stderr
    assert 'unknown field "spec.steps[0].volumeMounts[0].mountPth"' in err
    assert 'unknown field "spec.steps[0].env[0].valueFrom.secretKeyRef.kee"' in err
    assert 'unknown field "spec.steps[0].pod.volumes[0].emptyDirr"' in err
    assert kubectl.get("workflows.szal.dev", "typos", namespace) is None
    quantity = {"name": "a", "script": "true", "resources": {"limits": {"memory": "1Gx"}}}
    proc = _apply(kubectl, namespace, _workflow("quantity", {"steps": [quantity]}))
    assert proc.returncode != 0
    assert "spec.steps[0].resources.limits.memory" in proc.stderr
    deadline = {"name": "a", "script": "true", "pod": {"activeDeadlineSeconds": 5}}
    proc = _apply(kubectl, namespace, _workflow("deadline", {"steps": [deadline]}))
    assert proc.returncode != 0
    assert "Szál enforces timeouts itself" in proc.stderr
    example = yaml.safe_load((REPO / "examples" / "training-dataset.yaml").read_text())
    assert _apply(kubectl, namespace, example).returncode == 0


def test_a_mount_naming_no_volume_is_refused_by_the_pod_dry_run(
    admission: AdmissionOperator, kubectl: Kubectl, namespace: str
) -> None:
    orphan = _workflow(
        "orphan-mount",
        {
            "template": {"image": "busybox"},
            "steps": [
                {
                    "name": "train",
                    "script": "true",
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
        },
    )
    proc = _apply(kubectl, namespace, orphan)
    assert proc.returncode != 0
    assert "step 'train': the API server refuses its Pod" in proc.stderr
    assert "volumeMounts[0].name" in proc.stderr and "Not found" in proc.stderr
    with_volume = copy.deepcopy(orphan)
    with_volume["spec"]["steps"][0]["pod"] = {"volumes": [{"name": "data", "emptyDir": {}}]}
    assert _apply(kubectl, namespace, with_volume).returncode == 0


def test_kubectl_apply_of_a_cyclic_workflow_prints_the_validator_message(
    admission: AdmissionOperator, kubectl: Kubectl, namespace: str
) -> None:
    proc = _apply(kubectl, namespace, CYCLIC)
    assert proc.returncode != 0
    assert f'admission webhook "validate-workflow.{admission.managed}" denied' in proc.stderr
    assert "Workflow 'cyclic' is invalid" in proc.stderr
    assert "a -> b -> a" in proc.stderr
    assert kubectl.get("workflows.szal.dev", "cyclic", namespace) is None


def test_valid_objects_are_admitted_and_updates_that_keep_spec_too(
    admission: AdmissionOperator, kubectl: Kubectl, namespace: str
) -> None:
    workflow = _workflow(
        "ok", {"params": [{"name": "env"}], "steps": [{"name": "a", "script": "true"}]}
    )
    assert _apply(kubectl, namespace, workflow).returncode == 0
    run = _run("ok-1", {"workflowRef": {"name": "ok"}, "params": {"env": "prod"}})
    proc = _apply(kubectl, namespace, run)
    assert proc.returncode == 0, proc.stderr
    # Deleting the Workflow must not block cancelling its run.
    kubectl("delete", "workflows.szal.dev", "ok", "-n", namespace)
    kubectl(
        "patch", "workflowruns.szal.dev", "ok-1", "-n", namespace, "--type=merge",
        "-p", '{"spec": {"cancel": true}}',
    )  # fmt: skip


def test_runs_of_missing_workflows_or_with_wrong_params_are_refused(
    admission: AdmissionOperator, kubectl: Kubectl, namespace: str
) -> None:
    proc = _apply(kubectl, namespace, _run("lost", {"workflowRef": {"name": "nowhere"}}))
    assert proc.returncode != 0
    assert f"Workflow 'nowhere' not found in namespace '{namespace}'" in proc.stderr

    workflow = _workflow(
        "deploy", {"params": [{"name": "env"}], "steps": [{"name": "a", "script": "true"}]}
    )
    assert _apply(kubectl, namespace, workflow).returncode == 0
    run = _run("deploy-1", {"workflowRef": {"name": "deploy"}, "params": {"colour": "red"}})
    proc = _apply(kubectl, namespace, run)
    assert proc.returncode != 0
    assert "unknown param 'colour'" in proc.stderr
    assert "missing required param 'env'" in proc.stderr


def test_inline_workflows_are_validated(
    admission: AdmissionOperator, kubectl: Kubectl, namespace: str
) -> None:
    proc = _apply(kubectl, namespace, _run("inline", {"workflow": CYCLIC["spec"]}))
    assert proc.returncode != 0
    assert "a -> b -> a" in proc.stderr


def test_a_misspelt_field_and_a_cycle_elsewhere_are_refused_together(
    admission: AdmissionOperator, kubectl: Kubectl, namespace: str
) -> None:
    # Below the schema's expanded depth the API server keeps unknown fields, so
    # the typo reaches the webhook; the cycle is in another branch of the tree.
    leaf: dict[str, Any] = {"name": "l6", "comand": ["true"]}
    for level in range(5, 0, -1):
        leaf = {"name": f"l{level}", "script": "true", "steps": [leaf]}
    cyclic = {"name": "p", "mode": "Dag", "steps": CYCLIC["spec"]["steps"]}
    spec = {"mode": "Hierarchical", "steps": [leaf, cyclic]}
    expected = [
        "- step 'l6': comand: unknown field; did you mean 'command'?",
        "- step 'a': dependsOn: dependency cycle: a -> b -> a",
    ]
    for manifest in (_workflow("typo", spec), _run("typo-1", {"workflow": spec})):
        proc = _apply(kubectl, namespace, manifest)
        assert proc.returncode != 0
        name = manifest["metadata"]["name"]
        assert f"{manifest['kind']} {name!r} is invalid (2 problems)" in proc.stderr, proc.stderr
        lines = [line.strip() for line in proc.stderr.splitlines()]
        assert all(line in lines for line in expected), proc.stderr


def _big_dag(name: str, steps: int, *, cyclic: bool) -> dict[str, Any]:
    """A Dag Workflow of about 600 bytes per step (a long script each)."""
    items: list[dict[str, Any]] = [
        {"name": f"s{i:04d}", "script": f"echo {i} " + "x" * 560, "dependsOn": [f"s{i - 1:04d}"]}
        for i in range(1, steps)
    ]
    first: dict[str, Any] = {"name": "s0000", "script": "true"}
    if cyclic:
        first["dependsOn"] = [f"s{steps - 1:04d}"]
    return _workflow(name, {"mode": "Dag", "steps": [first, *items]})


def test_bodies_over_a_mebibyte_are_reviewed(
    admission: AdmissionOperator, kubectl: Kubectl, namespace: str
) -> None:
    """aiohttp's default 1 MiB body limit answered 413 with no reason (issue 12)."""
    big = _big_dag("big", 2000, cyclic=False)
    assert len(json.dumps(big)) > 1_150_000
    create = ("create", "-n", namespace, "-f", "-")  # apply's annotation would double it
    proc = kubectl(*create, input=json.dumps(big), check=False)
    assert proc.returncode == 0, proc.stderr
    # An UPDATE's review holds the object twice (object and oldObject): > 2 MiB.
    proc = kubectl("label", "workflows.szal.dev", "big", "-n", namespace, "team=ml", check=False)
    assert proc.returncode == 0, proc.stderr
    # The webhook really read it: a cycle through 2,000 steps is refused by name.
    proc = kubectl(
        *create, input=json.dumps(_big_dag("big-cyclic", 2000, cyclic=True)), check=False
    )
    assert proc.returncode != 0
    assert "denied the request" in proc.stderr and "s0001 -> s0000" in proc.stderr, proc.stderr[
        -600:
    ]
