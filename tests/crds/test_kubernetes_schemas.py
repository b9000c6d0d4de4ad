"""Kubernetes' schemas spliced into the CRDs (``kubernetes-schemas.yaml``).

Covers: the checked-in file is what ``scripts/kubernetes_schemas.py``
produces from the pinned Kubernetes module when that module is in the Go
module cache (the test control plane's build downloads it), and in any case
that it parses, names the pinned version and is structural; that the CRDs
carry these schemas where a step, the template and the rollback have the
fields, without ``x-kubernetes-preserve-unknown-fields``; the CEL refusal of
``activeDeadlineSeconds``; and the CRD sizes (compact JSON under the 256 KiB
that client-side ``kubectl apply`` can keep in its annotation).
Not covered: the API server applying them (e2e/test_containers.py).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from szal.spec.crd import all_crds, workflow_crd
from szal.spec.kubernetes_schemas import document, kubernetes_version

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "kubernetes_schemas.py"
PRESERVE = "x-kubernetes-preserve-unknown-fields"


def _script() -> Any:
    spec = importlib.util.spec_from_file_location("kubernetes_schemas_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _nodes(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.get("properties", {}).items():
            found.extend(_nodes(value, f"{path}.{key}"))
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                found.extend(_nodes(node[key], f"{path}[]"))
    return found


def test_the_file_is_the_pinned_versions_schemas() -> None:
    script = _script()
    version = script.pinned_version()
    assert kubernetes_version() == version
    cached = Path(
        subprocess.run(
            ["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    spec = cached / f"k8s.io/kubernetes@{version}" / script.SPEC_PATH
    if spec.is_file():
        result = subprocess.run(
            [sys.executable, str(SCRIPT), "--check", "--spec", str(spec)],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    assert set(document()["definitions"]) == set(script.DEFINITIONS)


def test_the_schemas_are_structural() -> None:
    doc = document()
    for name, schema in {**doc["definitions"], **doc["fields"]}.items():
        for path, node in _nodes(schema):
            for banned in ("$ref", "allOf", "anyOf", "oneOf", "default", PRESERVE):
                assert banned not in node, f"{name}{path}: {banned}"
            assert "type" in node or node.get("x-kubernetes-int-or-string"), f"{name}{path}"


def _prop(schema: dict[str, Any], *path: str) -> dict[str, Any]:
    node = schema
    for key in path:
        node = node["items"] if key == "[]" else node["properties"][key]
    return node


@pytest.mark.parametrize(
    "where",
    [
        ("steps", "[]"),
        ("template",),
        ("steps", "[]", "steps", "[]"),
    ],
)
def test_the_crd_carries_kubernetes_schemas(where: tuple[str, ...]) -> None:
    spec = workflow_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    owner = _prop(spec, *where)
    volume = _prop(owner, "pod", "volumes", "[]")
    assert "persistentVolumeClaim" in volume["properties"]
    assert "hostPath" in volume["properties"]
    mount = _prop(owner, "volumeMounts", "[]")
    assert mount["required"] == ["name", "mountPath"]
    env = _prop(owner, "env", "[]", "valueFrom")
    assert set(env["properties"]) >= {"secretKeyRef", "configMapKeyRef", "fieldRef"}
    requests = _prop(owner, "resources", "requests")
    assert requests["additionalProperties"]["x-kubernetes-int-or-string"] is True
    assert "pattern" in requests["additionalProperties"]
    sidecar = _prop(owner, "pod", "initContainers", "[]")
    assert "restartPolicy" in sidecar["properties"]
    # Free-form before this change (and kept so): affinity, securityContext,
    # tolerations and the short-form quantities (str | int | float).
    free_form = (".affinity", ".securityContext", ".tolerations[]", ".cpu", ".memory")
    for path, node in _nodes(owner):
        if ".pod" in path or "env" in path or "volumeMounts" in path or "resources" in path:
            assert PRESERVE not in node or path.endswith(free_form), path
    pod = _prop(owner, "pod")
    rules = [r["rule"] for r in pod.get("x-kubernetes-validations", [])]
    assert "!has(self.activeDeadlineSeconds)" in rules


def test_crd_sizes() -> None:
    sizes = {c["metadata"]["name"]: len(json.dumps(c, separators=(",", ":"))) for c in all_crds()}
    print(sizes)
    for name, size in sizes.items():
        assert size < 256 * 1024, f"{name}: {size} bytes"
