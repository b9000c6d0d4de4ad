"""In-cluster webhook mode with self-managed certificates, on the test cluster.

The API server of the test cluster cannot reach a Service (no kube-proxy),
so the ValidatingWebhookConfiguration created here uses a ``url``
clientConfig, ``https://127.0.0.1:<port>/validate-workflow`` (the path the
operator serves), limited to the test's namespace by a namespaceSelector
so nothing else in the cluster is affected, and with no ``caBundle``. The
operator runs with ``--webhook-service``/``--webhook-secret``/
``--webhook-configuration`` (and ``--webhook-extra-san 127.0.0.1`` for the
url), under a ServiceAccount bound to the Roles of ``manifests/base/rbac``
(renamed per test; the ClusterRole's resourceNames pointed at this test's
configuration), without the development mode's ``webhook_role.yaml``: the
webhook-certificate rules are proven sufficient (and each is needed: the
Secret's create/update and the configuration's get/patch are all used).

Checked: the operator creates the ``kubernetes.io/tls`` Secret (ca.crt,
tls.crt, tls.key) for the Service names, patches its CA into the
configuration, and a cyclic Workflow is then refused through the webhook
with the validator's message; a second operator reuses the same Secret
(unchanged resourceVersion) and serves the same certificate; a serving
certificate that expires within 30 days is rotated by the same CA (the
caBundle stays) and the new one is served; a CA that expires within 30
days is rotated, the bundle keeps the old CA, and the configuration's
caBundle follows - admission keeps working throughout.

Not covered: a real Service and cert-manager (the chart's tests).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.conftest import REPO, Kubectl, poll_until
from e2e.operator_support import OperatorProcess, ensure_crds, free_port, token_kubeconfig
from szal.runners.kubernetes import tls

pytestmark = pytest.mark.e2e

SERVICE = "szal-webhook"
SECRET = "szal-webhook-tls"

CYCLIC = {
    "apiVersion": "szal.dev/v1alpha1",
    "kind": "Workflow",
    "metadata": {"name": "cyclic"},
    "spec": {
        "mode": "Dag",
        "steps": [
            {"name": "a", "script": "true", "dependsOn": ["b"]},
            {"name": "b", "script": "true", "dependsOn": ["a"]},
        ],
    },
}


def _service_account_kubeconfig(
    kubectl: Kubectl, namespace: str, suffix: str, configuration: str, target: Path
) -> tuple[Path, list[tuple[str, str]]]:
    """manifests/base/rbac for a ServiceAccount in ``namespace``; its kubeconfig."""
    created: list[tuple[str, str]] = []
    docs = []
    for doc in yaml.safe_load_all(kubectl("kustomize", str(REPO / "manifests/base/rbac")).stdout):
        kind = doc["kind"]
        meta = doc["metadata"]
        if meta["name"] == "szal-operator-webhooks":
            continue  # development mode's kopf-managed configurations: not in this mode
        if kind in ("ServiceAccount", "Role", "RoleBinding"):
            meta["namespace"] = namespace
        else:
            meta["name"] += f"-{suffix}"
            created.append((kind.lower(), meta["name"]))
        if kind == "ClusterRoleBinding":
            doc["roleRef"]["name"] += f"-{suffix}"
        for subject in doc.get("subjects") or []:
            subject["namespace"] = namespace
        for rule in doc.get("rules") or []:
            if "validatingwebhookconfigurations" in rule["resources"] and "resourceNames" in rule:
                rule["resourceNames"] = [configuration]
        docs.append(doc)
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    return token_kubeconfig(kubectl, "szal-operator", namespace, target), created


def _configuration(name: str, namespace: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "validate-workflow.szal.dev",
                "clientConfig": {"url": f"https://127.0.0.1:{port}/validate-workflow"},
                "rules": [
                    {
                        "apiGroups": ["szal.dev"],
                        "apiVersions": ["v1alpha1"],
                        "resources": ["workflows"],
                        "operations": ["CREATE", "UPDATE"],
                    }
                ],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "timeoutSeconds": 5,
            }
        ],
    }


def _secret(kubectl: Kubectl, namespace: str) -> dict[str, Any] | None:
    return kubectl.get("secret", SECRET, namespace)


def _data(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def _ca_bundle(kubectl: Kubectl, name: str) -> str:
    config = kubectl.json("get", "validatingwebhookconfiguration", name)
    encoded = config["webhooks"][0]["clientConfig"].get("caBundle") or ""
    return base64.b64decode(encoded).decode()


def _served_certificate(port: int) -> str | None:
    """The certificate the webhook server presents (None while it is not listening)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
            ctx.wrap_socket(sock) as wrapped,
        ):
            der = wrapped.getpeercert(binary_form=True)
    except OSError:
        return None
    return ssl.DER_cert_to_PEM_cert(der) if der else None


def _same_cert(a: str | None, b: str) -> bool:
    return a is not None and tls.load_certificates(a)[0] == tls.load_certificates(b)[0]


def _refused(kubectl: Kubectl, namespace: str) -> bool:
    proc = kubectl(
        "apply", "-n", namespace, "--dry-run=server", "-f", "-",
        input=json.dumps(CYCLIC), check=False,
    )  # fmt: skip
    return proc.returncode != 0 and "denied the request" in proc.stderr


@pytest.fixture
def setup(
    kubectl: Kubectl, kubeconfig: Path, namespace: str, tmp_path: Path
) -> Iterator[tuple[str, Path]]:
    ensure_crds(kubectl)
    suffix = secrets.token_hex(4)
    name = f"szal-e2e-certs-{suffix}"
    sa_config, created = _service_account_kubeconfig(
        kubectl, namespace, suffix, name, tmp_path / "sa.kubeconfig"
    )
    try:
        yield name, sa_config
    finally:
        kubectl("delete", "validatingwebhookconfiguration", name, "--ignore-not-found")
        for kind, obj in created:
            kubectl("delete", kind, obj, "--ignore-not-found")


def _operator(config: Path, namespace: str, configuration: str, port: int) -> OperatorProcess:
    return OperatorProcess(
        config,
        [namespace],
        "--webhook-service", SERVICE,
        "--webhook-namespace", namespace,
        "--webhook-secret", SECRET,
        "--webhook-configuration", configuration,
        "--webhook-port", str(port),
        "--webhook-extra-san", "127.0.0.1",
        "--webhook-cert-check-interval", "1",
        "--leader-elect", "--leader-election-namespace", namespace,
    )  # fmt: skip


def test_self_managed_certificates_secret_ca_bundle_and_rotation(
    setup: tuple[str, Path], kubectl: Kubectl, namespace: str
) -> None:
    name, sa_config = setup
    port = free_port()
    kubectl.apply(_configuration(name, namespace, port))
    with _operator(sa_config, namespace, name, port):
        secret = poll_until(lambda: _secret(kubectl, namespace), timeout=20, what="the Secret")
        assert secret["type"] == "kubernetes.io/tls"
        data = _data(secret)
        assert {"ca.crt", "tls.crt", "tls.key"} <= set(data)
        serving = tls.load_certificates(data["tls.crt"])[0]
        assert set(tls.subject_alt_names(serving)) == {
            SERVICE,
            f"{SERVICE}.{namespace}",
            f"{SERVICE}.{namespace}.svc",
            f"{SERVICE}.{namespace}.svc.cluster.local",
            "127.0.0.1",
        }
        poll_until(
            lambda: _ca_bundle(kubectl, name) == data["ca.crt"], timeout=20, what="the caBundle"
        )
        poll_until(
            lambda: _refused(kubectl, namespace), timeout=30, what="the cyclic Workflow refused"
        )
        proc = kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(CYCLIC), check=False)
        assert 'admission webhook "validate-workflow.szal.dev" denied' in proc.stderr
        assert "a -> b -> a" in proc.stderr

        # A second replica adopts the same Secret and serves the same certificate.
        port2 = free_port()
        version = secret["metadata"]["resourceVersion"]
        with _operator(sa_config, namespace, name, port2):
            poll_until(
                lambda: _same_cert(_served_certificate(port2), data["tls.crt"]),
                timeout=20,
                what="the second operator serving the same certificate",
            )
            assert _secret(kubectl, namespace)["metadata"]["resourceVersion"] == version  # type: ignore[index]

        # A serving certificate 10 days from expiry: renewed by the same CA, served.
        now = dt.datetime.now(dt.UTC)
        ca = tls.KeyPair(data["ca.crt"], data["ca.key"])
        hosts = tls.subject_alt_names(serving)
        short = tls.make_serving(ca, hosts, now, days=10)
        _put_secret(kubectl, namespace, {**data, "tls.crt": short.cert, "tls.key": short.key})
        renewed = poll_until(
            lambda: (
                (d := _data(_secret(kubectl, namespace) or {"data": {}})).get("tls.crt")
                not in (short.cert, data["tls.crt"])
                and d
            ),
            timeout=20,
            what="the serving certificate renewed",
        )
        assert renewed["ca.crt"] == data["ca.crt"]
        assert _ca_bundle(kubectl, name) == data["ca.crt"]
        poll_until(
            lambda: _same_cert(_served_certificate(port), renewed["tls.crt"]),
            timeout=30,
            what="the renewed certificate served",
        )
        assert _refused(kubectl, namespace)

        # A CA 10 days from expiry: a new CA, the old one kept; the caBundle follows.
        old_ca = tls.make_ca(now, days=10)
        old_serving = tls.make_serving(old_ca, hosts, now)
        _put_secret(
            kubectl,
            namespace,
            {
                "ca.crt": old_ca.cert,
                "ca.key": old_ca.key,
                "tls.crt": old_serving.cert,
                "tls.key": old_serving.key,
            },
        )
        rotated = poll_until(
            lambda: (
                (d := _data(_secret(kubectl, namespace) or {"data": {}})).get("ca.crt")
                not in (old_ca.cert, data["ca.crt"])
                and d
            ),
            timeout=20,
            what="the CA rotated",
        )
        bundle = tls.load_certificates(rotated["ca.crt"])
        assert len(bundle) == 2 and bundle[1] == tls.load_certificates(old_ca.cert)[0]
        poll_until(
            lambda: _ca_bundle(kubectl, name) == rotated["ca.crt"],
            timeout=20,
            what="the caBundle after the CA rotation",
        )
        poll_until(
            lambda: _same_cert(_served_certificate(port), rotated["tls.crt"]),
            timeout=30,
            what="the certificate of the new CA served",
        )
        assert _refused(kubectl, namespace)


def _put_secret(kubectl: Kubectl, namespace: str, data: dict[str, str]) -> None:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    kubectl(
        "patch", "secret", SECRET, "-n", namespace, "--type=merge",
        "-p", json.dumps({"data": encoded}),
    )  # fmt: skip
