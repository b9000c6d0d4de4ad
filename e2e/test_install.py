"""Installing Szál: the Helm chart and the kustomize overlays on the test cluster.

Covers: ``helm lint`` of the chart with every ``ci/*-values.yaml``; the
values schema refusing bad values; the chart and the kustomize overlays
granting the same RBAC rules (cluster-wide and namespaced) and starting the
operator with the same arguments; ``helm template`` of every ci scenario and
``kubectl kustomize`` of every overlay (and the postgres component) applied
with ``--server-side --dry-run=server``; the templated CRDs accepted by the
API server (dry run) and carrying ``helm.sh/resource-policy: keep``; a real
``helm install`` into a fresh namespace, ``helm upgrade`` with changed
values and ``helm uninstall`` (objects gone, runs kept).

Deliberately not covered: a live operator Pod (kwok only marks it Running;
the real node runs the image), and a real install of the CRDs with the
chart: the CRDs are cluster-scoped and shared with concurrent tests, so the
installs use ``crds.install=false`` and the templated CRDs are only dry-run.
cert-manager's and prometheus-operator's CRDs are not on the test cluster
(nor available offline): their objects are checked client-side by
:func:`e2e.install_support.check_foreign`, everything else by the API server.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.conftest import Kubectl
from e2e.install_support import (
    CHART,
    OVERLAYS,
    check_foreign,
    docs,
    grants,
    helm,
    render_chart,
    split_foreign,
)
from e2e.operator_support import ensure_crds, run, workflow

pytestmark = pytest.mark.e2e

CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
SZAL_SYSTEM = ("szal-system", "szal-operator")
"""The kustomize install's ServiceAccount; the chart renders the same with fullnameOverride."""


def _dry_run(kubectl: Kubectl, objects: list[dict[str, Any]]) -> None:
    known, foreign = split_foreign(objects)
    for obj in foreign:
        check_foreign(obj)
    proc = kubectl(
        "apply", "--server-side", "--dry-run=server", "--force-conflicts",
        "--field-manager=szal-e2e", "-f", "-",
        input=yaml.safe_dump_all(known), check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    applied = [line for line in proc.stdout.splitlines() if "(server dry run)" in line]
    assert len(applied) == len(known), proc.stdout


def _kustomize(kubectl: Kubectl, path: Path) -> list[dict[str, Any]]:
    return docs(kubectl("kustomize", str(path)).stdout)


def _kustomize_into(
    kubectl: Kubectl, tmp_path: Path, namespace: str, base: Path, *components: Path
) -> list[dict[str, Any]]:
    """An overlay (plus components) rebuilt into ``namespace`` through a kustomization in tmp."""
    rel = lambda p: os.path.relpath(p, tmp_path)  # noqa: E731 - kustomize wants relative paths
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": namespace,
                "resources": [rel(base)],
                "components": [rel(c) for c in components],
            }
        )
    )
    return _kustomize(kubectl, tmp_path)


# --- offline checks (helm and kubectl only) -----------------------------------


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=lambda p: p.name if p else "none")
def test_helm_lint(kubectl: Kubectl, values: Path | None) -> None:
    extra = ["--values", str(values)] if values else []
    out = helm(kubectl, "lint", "--strict", str(CHART), *extra).stdout
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["--set", "webhook.failurePolicy=Sometimes"], "failurePolicy"),
        (["--set", "replicas=2", "--set", "leaderElection.enabled=false"], "leaderElection"),
        (["--set", "watchNamespaces[0]=Not_A_Namespace"], "watchNamespaces"),
        (["--set", "unknownValue=1"], "unknownValue"),
    ],
)
def test_bad_values_are_refused_with_their_name(
    kubectl: Kubectl, values: list[str], message: str
) -> None:
    proc = helm(kubectl, "template", "x", str(CHART), *values, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr


@pytest.mark.parametrize(
    ("overlay", "values"),
    [
        ("cluster-install", []),
        ("namespace-install", ["--set", "watchNamespaces={szal-system}"]),
    ],
)
def test_chart_and_kustomize_grant_the_same_rbac(
    kubectl: Kubectl, overlay: str, values: list[str]
) -> None:
    chart = render_chart(
        kubectl, "szal", "szal-system", "--set", "fullnameOverride=szal-operator", *values
    )
    kustomized = _kustomize(kubectl, OVERLAYS / overlay)
    from_chart, from_kustomize = grants(chart, SZAL_SYSTEM), grants(kustomized, SZAL_SYSTEM)
    assert from_chart, "the chart grants the operator nothing"
    assert sorted(from_chart - from_kustomize) == [], "only the chart grants these"
    assert sorted(from_kustomize - from_chart) == [], "only kustomize grants these"
    scopes = {grant[0] for grant in from_chart}
    assert scopes == ({"cluster", "szal-system"}), scopes
    if overlay == "namespace-install":
        cluster_wide = {g for g in from_chart if g[0] == "cluster"}
        assert {g[1] for g in cluster_wide} == {"admissionregistration.k8s.io"}, cluster_wide


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def test_chart_and_kustomize_start_the_operator_alike(kubectl: Kubectl) -> None:
    chart = _container(
        render_chart(kubectl, "szal", "szal-system", "--set", "fullnameOverride=szal-operator")
    )
    kustomized = _container(_kustomize(kubectl, OVERLAYS / "cluster-install"))
    assert chart["args"] == kustomized["args"]
    assert chart["image"] == kustomized["image"] == "localhost/szal/szal:0.1.0"
    for key in ("securityContext", "volumeMounts", "ports"):
        assert chart[key] == kustomized[key], key
    security = chart["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert security["capabilities"] == {"drop": ["ALL"]}
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in chart["env"]}
    assert env == {"POD_NAMESPACE": "metadata.namespace", "POD_NAME": "metadata.name"}


def test_templated_crds_are_kept_by_default(kubectl: Kubectl) -> None:
    crds = [
        o
        for o in render_chart(kubectl, "szal", "szal-system")
        if o["kind"] == "CustomResourceDefinition"
    ]
    assert sorted(c["metadata"]["name"] for c in crds) == [
        "workflowruns.szal.dev",
        "workflows.szal.dev",
        "workflowschedules.szal.dev",
    ]
    for crd in crds:
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    unkept = render_chart(kubectl, "szal", "szal-system", "--set", "crds.keep=false")
    assert all(
        "annotations" not in o["metadata"]
        for o in unkept
        if o["kind"] == "CustomResourceDefinition"
    )
    none = render_chart(kubectl, "szal", "szal-system", "--set", "crds.install=false")
    assert not [o for o in none if o["kind"] == "CustomResourceDefinition"]


# --- the API server: dry runs ---------------------------------------------------


def test_templated_crds_pass_a_server_side_dry_run(kubectl: Kubectl) -> None:
    ensure_crds(kubectl)
    crds = [
        o
        for o in render_chart(kubectl, "szal", "szal-system")
        if o["kind"] == "CustomResourceDefinition"
    ]
    _dry_run(kubectl, crds)


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_every_ci_scenario_passes_a_server_side_dry_run(
    kubectl: Kubectl, namespace: str, values: Path
) -> None:
    # The namespaced scenario names team-a/team-b, which the shared cluster
    # does not have: its Roles go to the test namespace instead.
    extra = ["--set", f"watchNamespaces={{{namespace}}}"] if "namespaced" in values.name else []
    release = f"ci-{secrets.token_hex(3)}"
    objects = render_chart(
        kubectl, release, namespace, "--values", str(values), "--set", "crds.install=false", *extra
    )
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "ServiceAccount", "Service"} <= kinds
    if "cert-manager" in values.name:
        assert {"Certificate", "Issuer", "ServiceMonitor"} <= kinds
    _dry_run(kubectl, objects)


@pytest.mark.parametrize(
    "overlay", ["cluster-install", "namespace-install", "cluster-install+postgres"]
)
def test_every_overlay_passes_a_server_side_dry_run(
    kubectl: Kubectl, namespace: str, tmp_path: Path, overlay: str
) -> None:
    ensure_crds(kubectl)
    name, _, component = overlay.partition("+")
    components = [OVERLAYS.parent / "components" / component] if component else []
    objects = _kustomize_into(kubectl, tmp_path, namespace, OVERLAYS / name, *components)
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    env = [e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]]
    assert ("SZAL_HISTORY_DSN" in env) == bool(component)
    assert deployment["metadata"]["namespace"] == namespace
    _dry_run(kubectl, objects)


def test_the_base_still_builds(kubectl: Kubectl) -> None:
    objects = _kustomize(kubectl, OVERLAYS.parent / "base")
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] == "Deployment"} == {
        "szal-system"
    }
    assert not [o for o in objects if o["metadata"]["name"] == "szal-operator-webhooks"]


# --- a real install, upgrade and uninstall --------------------------------------


def _cluster_objects(kubectl: Kubectl, release: str) -> list[str]:
    selector = f"app.kubernetes.io/instance={release}"
    out = kubectl(
        "get", "clusterroles,clusterrolebindings,validatingwebhookconfigurations",
        "-l", selector, "-o", "name",
    ).stdout  # fmt: skip
    return sorted(out.split())


def test_helm_install_upgrade_uninstall(kubectl: Kubectl, namespace: str) -> None:
    ensure_crds(kubectl)
    release = f"e2e-{secrets.token_hex(3)}"
    full = f"{release}-szal"
    # A WorkflowRun made before the install: helm must never delete runs.
    kubectl.apply(workflow("kept", {"steps": [{"name": "a", "script": "true"}]}), namespace)
    kubectl.apply(run("kept-1", "kept"), namespace)
    # The webhook Service's endpoints would be kwok's fake Pods: scope the
    # webhook to this namespace and let writes through, so no other test's
    # Workflow writes ever reach it.
    selector = json.dumps({"matchLabels": {"kubernetes.io/metadata.name": namespace}})
    common = [
        "--namespace", namespace, "--set", "crds.install=false",
        "--set", "webhook.failurePolicy=Ignore", "--set", "webhook.timeoutSeconds=2",
        "--set-json", f"webhook.namespaceSelector={selector}",
    ]  # fmt: skip
    try:
        helm(kubectl, "install", release, str(CHART), *common, "--wait=false")
        deployment = kubectl.json("get", "deployment", full, "-n", namespace)
        spec = deployment["spec"]["template"]["spec"]
        assert deployment["spec"]["replicas"] == 1
        assert spec["serviceAccountName"] == full
        assert spec["securityContext"]["runAsUser"] == 65532
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["volumes"] == [{"name": "tmp", "emptyDir": {}}]
        assert _cluster_objects(kubectl, release) == sorted(
            [
                f"clusterrole.rbac.authorization.k8s.io/{full}",
                f"clusterrole.rbac.authorization.k8s.io/{full}-webhook-ca-bundle",
                f"clusterrolebinding.rbac.authorization.k8s.io/{full}",
                f"clusterrolebinding.rbac.authorization.k8s.io/{full}-webhook-ca-bundle",
                f"validatingwebhookconfiguration.admissionregistration.k8s.io/{full}-webhook",
            ]
        )
        webhook = kubectl.json("get", "validatingwebhookconfiguration", f"{full}-webhook")
        paths = sorted(w["clientConfig"]["service"]["path"] for w in webhook["webhooks"])
        assert paths == [
            "/validate-workflow",
            "/validate-workflowrun",
            "/validate-workflowschedule",
        ]
        assert {w["failurePolicy"] for w in webhook["webhooks"]} == {"Ignore"}
        for kind in ("service", "role", "rolebinding", "serviceaccount"):
            assert kubectl(
                "get",
                kind,
                "-n",
                namespace,
                "-l",
                f"app.kubernetes.io/instance={release}",
                "-o",
                "name",
            ).stdout.strip(), kind
        notes = helm(kubectl, "get", "notes", release, "-n", namespace).stdout
        assert "kubectl wait" in notes and "rollout status" in notes

        helm(
            kubectl, "upgrade", release, str(CHART), *common, "--reuse-values",
            "--set", "replicas=2", "--set", "resources.requests.cpu=200m",
            "--set", "podDisruptionBudget.enabled=true",
        )  # fmt: skip
        deployment = kubectl.json("get", "deployment", full, "-n", namespace)
        assert deployment["spec"]["replicas"] == 2
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["resources"]["requests"]["cpu"] == "200m"
        assert "--leader-elect" in container["args"]
        pdb = kubectl.json("get", "poddisruptionbudget", full, "-n", namespace)
        assert pdb["spec"]["minAvailable"] == 1
        history = json.loads(
            helm(kubectl, "history", release, "-n", namespace, "-o", "json").stdout
        )
        assert [h["revision"] for h in history] == [1, 2]
        assert history[-1]["status"] == "deployed"
    finally:
        helm(kubectl, "uninstall", release, "-n", namespace, "--wait", check=False)
        leftover = _cluster_objects(kubectl, release)
        for name in leftover:  # never leave a webhook configuration behind
            kubectl("delete", name, "--ignore-not-found")
    assert leftover == [], "helm uninstall left cluster-scoped objects"
    assert kubectl.get("deployment", full, namespace) is None
    assert kubectl.get("workflowrun", "kept-1", namespace) is not None, "uninstall deleted a run"
    for crd in ("workflows.szal.dev", "workflowruns.szal.dev"):
        assert kubectl.get("crd", crd) is not None
