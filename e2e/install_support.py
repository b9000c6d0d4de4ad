"""Helpers for the install tests: the pinned helm binary, rendering, RBAC grants.

:func:`helm` runs the helm binary that sits beside the test cluster's
kubectl (the pinned cache bin dir, ``e2e/cluster/build.sh``), or
``$SZAL_HELM``; a missing binary fails with the path it looked at.
:func:`render_chart` is ``helm template``; :func:`grants` reduces rendered
manifests to the set of permissions a ServiceAccount ends up with, so two
renderings can be compared rule by rule whatever the objects are named.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.conftest import REPO, Kubectl, _bin_dir

CHART = REPO / "charts" / "szal"
OVERLAYS = REPO / "manifests" / "overlays"
CERT_MANAGER_KINDS = ("Certificate", "Issuer", "ServiceMonitor")
"""Kinds whose CRDs (cert-manager, prometheus-operator) the test cluster does not have."""

Grant = tuple[str, str, str, str, str]
"""(scope, apiGroup, resource, verb, resourceName or '*'); scope is 'cluster' or a namespace."""


def helm_binary(kubectl: Kubectl) -> Path:
    explicit = os.environ.get("SZAL_HELM")
    path = Path(explicit) if explicit else kubectl.binary.parent / "helm"
    if not explicit and not path.is_file():
        path = _bin_dir() / "helm"  # kubectl came from PATH: use the pinned cache's helm
    if not path.is_file():
        pytest.fail(
            f"no helm binary at {path}: run e2e/cluster/build.sh (it builds helm into the"
            " same bin dir as kubectl) or set SZAL_HELM",
            pytrace=False,
        )
    return path


def helm(
    kubectl: Kubectl, *args: str, check: bool = True, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """``helm --kubeconfig <test cluster> <args>``; a failure fails the test with stderr."""
    cmd = [str(helm_binary(kubectl)), "--kubeconfig", str(kubectl.kubeconfig), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        pytest.fail(f"`{' '.join(cmd)}` exited {proc.returncode}:\n{proc.stderr}", pytrace=False)
    return proc


def render_chart(
    kubectl: Kubectl, release: str, namespace: str, *values: str
) -> list[dict[str, Any]]:
    """``helm template`` of the chart, as a list of objects (empty documents dropped)."""
    text = helm(kubectl, "template", release, str(CHART), "--namespace", namespace, *values).stdout
    return docs(text)


def docs(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def grants(objects: Iterable[dict[str, Any]], account: tuple[str, str]) -> set[Grant]:
    """Everything the ServiceAccount ``(namespace, name)`` may do, rule by rule."""
    objects = list(objects)
    roles: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for obj in objects:
        if obj["kind"] in ("ClusterRole", "Role"):
            ns = obj["metadata"].get("namespace", "") if obj["kind"] == "Role" else ""
            roles[(obj["kind"], ns, obj["metadata"]["name"])] = obj.get("rules") or []
    out: set[Grant] = set()
    for obj in objects:
        if obj["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        bound = any(
            s["kind"] == "ServiceAccount" and (s.get("namespace"), s["name"]) == account
            for s in obj.get("subjects") or []
        )
        if not bound:
            continue
        ref = obj["roleRef"]
        ns = obj["metadata"].get("namespace", "")
        role_ns = ns if ref["kind"] == "Role" else ""
        rules = roles.get((ref["kind"], role_ns, ref["name"]))
        assert rules is not None, f"{obj['kind']} {obj['metadata']['name']} names a missing role"
        scope = "cluster" if obj["kind"] == "ClusterRoleBinding" else ns
        for rule in rules:
            for group in rule.get("apiGroups") or [""]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        for name in rule.get("resourceNames") or ["*"]:
                            out.add((scope, group, resource, verb, name))
    return out


def split_foreign(
    objects: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(objects the test cluster knows, cert-manager/prometheus-operator objects)."""
    known = [o for o in objects if o["kind"] not in CERT_MANAGER_KINDS]
    foreign = [o for o in objects if o["kind"] in CERT_MANAGER_KINDS]
    return known, foreign


def check_foreign(obj: dict[str, Any]) -> None:
    """A client-side check of a cert-manager or ServiceMonitor object's fields.

    Their CRDs are not on the test cluster (and cannot be fetched offline), so
    this checks by hand what the API server's schema would: apiVersion, and
    the required fields of cert-manager.io/v1 Certificate and Issuer and
    monitoring.coreos.com/v1 ServiceMonitor that the chart sets.
    """
    kind, spec = obj["kind"], obj.get("spec") or {}
    where = f"{kind} {obj['metadata'].get('name')}"
    assert obj["metadata"].get("namespace"), where
    if kind == "Certificate":
        assert obj["apiVersion"] == "cert-manager.io/v1", where
        assert isinstance(spec.get("secretName"), str) and spec["secretName"], where
        assert spec.get("dnsNames") and all(isinstance(n, str) for n in spec["dnsNames"]), where
        assert spec["issuerRef"]["name"] and spec["issuerRef"].get("kind") in (
            "Issuer",
            "ClusterIssuer",
        ), where
        for key in ("duration", "renewBefore"):
            assert str(spec.get(key, "1h")).endswith(("h", "m", "s")), where
        assert set(spec) <= {"secretName", "dnsNames", "issuerRef", "duration", "renewBefore"}
    elif kind == "Issuer":
        assert obj["apiVersion"] == "cert-manager.io/v1", where
        assert spec == {"selfSigned": {}}, where
    else:
        assert obj["apiVersion"] == "monitoring.coreos.com/v1", where
        assert spec["selector"]["matchLabels"], where
        for endpoint in spec["endpoints"]:
            assert set(endpoint) <= {"port", "path", "interval"}, where
            assert isinstance(endpoint["port"], str), where
