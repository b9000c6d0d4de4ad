"""Real kubeconfigs against the test cluster: exec plugins, several files, contexts.

Covers: a kubeconfig whose user is an exec credential plugin (a shell
script printing an ExecCredential with a real ServiceAccount token, bound to
a Secret so that deleting the Secret revokes it at once); our client renews
after the API server's 401 and the plugin runs once per token, with kubectl
using the same kubeconfig beside it; ``KUBECONFIG`` of two files (cluster
and contexts in one, the user in the other) and a context switch changing
the default namespace; ``szal operator`` started with the exec kubeconfig
completes a run, survives a token revocation mid-life and completes a
second one, with the plugin's invocations counted per operator lifetime.

Not covered: auth-provider entries (gcp, oidc) need an identity provider
(the loader is the library's; tests/kubernetes/test_credentials.py covers
proxy-url and tls-server-name on local servers).
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.kubernetes.kubeconfigs import exec_user, kubeconfig_text, single

from e2e.conftest import Kubectl, poll_until
from e2e.operator_support import (
    OperatorProcess,
    ensure_crds,
    run,
    sim,
    wait_phase,
    workflow,
)
from szal.runners.kubernetes.client import ApiClient, Unauthorized, core_path
from szal.runners.kubernetes.credentials import load_credentials

pytestmark = pytest.mark.e2e

PLUGIN = """#!/bin/sh
echo run >> "$COUNT_FILE"
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",'
printf '"status":{"token":"%s"}}' "$(cat "$TOKEN_FILE")"
"""


def _cluster_entry(kubectl: Kubectl) -> dict[str, Any]:
    config = yaml.safe_load(kubectl.kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]
    ca = (
        cluster.get("certificate-authority-data")
        or base64.b64encode(Path(cluster["certificate-authority"]).read_bytes()).decode()
    )
    return {"server": cluster["server"], "certificate-authority-data": ca}


class ExecIdentity:
    """A ServiceAccount with admin rights in one namespace, reached through an exec plugin.

    Each :meth:`rotate` issues a new token bound to a new Secret and deletes
    the previous Secret, which revokes the previous token.
    """

    def __init__(self, kubectl: Kubectl, namespace: str, root: Path) -> None:
        self.kubectl = kubectl
        self.namespace = namespace
        self.account = "szal-exec"
        self.script = root / "plugin.sh"
        self.script.write_text(PLUGIN)
        self.script.chmod(self.script.stat().st_mode | stat.S_IEXEC)
        self.token_file = root / "token"
        self.count_file = root / "count"
        self.secret: str | None = None
        kubectl("create", "serviceaccount", self.account, "-n", namespace)
        kubectl(
            "create", "rolebinding", "szal-exec", "-n", namespace,
            "--clusterrole=cluster-admin", f"--serviceaccount={namespace}:{self.account}",
        )  # fmt: skip
        self.rotate()

    @property
    def runs(self) -> int:
        return len(self.count_file.read_text().split()) if self.count_file.exists() else 0

    def rotate(self) -> None:
        old, self.secret = self.secret, f"bind-{secrets.token_hex(3)}"
        old_token = self.token_file.read_text() if old is not None else ""
        self.kubectl("create", "secret", "generic", self.secret, "-n", self.namespace)
        token = self.kubectl(
            "create", "token", self.account, "-n", self.namespace, "--duration=1h",
            "--bound-object-kind=Secret", f"--bound-object-name={self.secret}",
        ).stdout.strip()  # fmt: skip
        self.token_file.write_text(token)
        if old is not None:
            self.kubectl("delete", "secret", old, "-n", self.namespace)
            self.wait_revoked(old_token)

    def wait_revoked(self, token: str) -> None:
        """Until the API server refuses ``token`` (it caches good tokens for a few seconds)."""
        probe = self.token_file.with_name("probe.kubeconfig")
        probe.write_text(single(_cluster_entry(self.kubectl), {"token": token}))
        check = Kubectl(self.kubectl.binary, probe)
        poll_until(
            lambda: "Unauthorized" in check("get", "--raw", "/api", check=False).stderr,
            timeout=30,
            what="the revoked token to be refused",
            interval=0.5,
        )

    def user(self) -> dict[str, Any]:
        return exec_user(
            self.script, {"COUNT_FILE": self.count_file, "TOKEN_FILE": self.token_file}
        )

    def kubeconfig(self, target: Path) -> Path:
        target.write_text(single(_cluster_entry(self.kubectl), self.user(), self.namespace))
        return target


@pytest.fixture
def identity(kubectl: Kubectl, namespace: str, tmp_path: Path) -> ExecIdentity:
    return ExecIdentity(kubectl, namespace, tmp_path)


def test_exec_plugin_client_renews_after_revocation(
    identity: ExecIdentity, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    config = identity.kubeconfig(tmp_path / "exec.kubeconfig")

    async def scenario() -> None:
        creds = await load_credentials(config)
        assert creds.default_namespace == namespace and identity.runs == 1
        async with ApiClient(creds) as client:
            assert await client.list(core_path(namespace, "configmaps")) is not None
            assert identity.runs == 1
            identity.rotate()  # the token the client holds is revoked
            await client.list(core_path(namespace, "configmaps"))
            assert identity.runs == 2
            assert client.credentials.token == identity.token_file.read_text()

    asyncio.run(scenario())
    # kubectl beside it: the same kubeconfig, its own run of the plugin.
    beside = Kubectl(kubectl.binary, config)
    assert beside("get", "configmaps").returncode == 0
    assert identity.runs == 3


def test_exec_plugin_revoked_token_without_renewal_is_refused(
    identity: ExecIdentity, tmp_path: Path, namespace: str
) -> None:
    """The control for the test above: the old token really is refused (401)."""
    config = identity.kubeconfig(tmp_path / "exec.kubeconfig")

    async def scenario() -> None:
        creds = await load_credentials(config)
        identity.rotate()
        from dataclasses import replace

        async with ApiClient(replace(creds, refresher=None)) as client:
            with pytest.raises(Unauthorized):
                await client.list(core_path(namespace, "configmaps"))

    asyncio.run(scenario())


def test_two_files_and_a_context_switch(kubectl: Kubectl, namespace: str, tmp_path: Path) -> None:
    token = kubectl("create", "token", "default", "-n", namespace, "--duration=1h").stdout.strip()
    kubectl(
        "create", "rolebinding", "default-view", "-n", namespace,
        "--clusterrole=view", f"--serviceaccount={namespace}:default",
    )  # fmt: skip
    kubectl("create", "configmap", "marker", "-n", namespace, "--from-literal=a=b")
    clusters = tmp_path / "clusters.yaml"
    contexts = {
        name: {"cluster": "c", "user": "sa", "namespace": ns}
        for name, ns in (("here", namespace), ("elsewhere", "kube-public"))
    }
    clusters.write_text(kubeconfig_text({"c": _cluster_entry(kubectl)}, {}, contexts, "here"))
    users = tmp_path / "users.yaml"
    users.write_text(kubeconfig_text({}, {"sa": {"token": token}}, {}))
    joined = os.pathsep.join([str(clusters), str(users)])

    async def scenario() -> None:
        here = await load_credentials(joined)
        assert here.default_namespace == namespace
        async with ApiClient(here) as client:
            names = [
                c["metadata"]["name"] for c in await client.list(core_path(namespace, "configmaps"))
            ]
            assert "marker" in names
        elsewhere = await load_credentials(joined, "elsewhere")
        assert elsewhere.default_namespace == "kube-public" and elsewhere.token == token

    asyncio.run(scenario())
    # kubectl reads the same merged pair the same way.
    proc = subprocess.run(
        [str(kubectl.binary), "get", "configmap", "marker", "-o", "name"],
        env={**os.environ, "KUBECONFIG": joined},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert proc.stdout.strip() == "configmap/marker"


def test_operator_with_an_exec_kubeconfig_completes_runs(
    identity: ExecIdentity, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    ensure_crds(kubectl)
    config = identity.kubeconfig(tmp_path / "exec.kubeconfig")
    spec = {
        "template": {"image": "busybox:1.36", "pod": sim("200ms")},
        "steps": [{"name": "a", "command": ["true"]}],
    }
    kubectl.apply(workflow("exec", spec), namespace)
    before = identity.runs
    with OperatorProcess(config, [namespace]):
        kubectl.apply(run("exec-1", "exec"), namespace)
        assert wait_phase(kubectl, namespace, "exec-1")["phase"] == "Succeeded"
        first_lifetime = identity.runs - before
        identity.rotate()  # revoke what the operator holds
        kubectl.apply(run("exec-2", "exec"), namespace)
        assert wait_phase(kubectl, namespace, "exec-2")["phase"] == "Succeeded"
        after_rotation = identity.runs - before
    print(
        f"exec plugin runs: {first_lifetime} until the first run,"
        f" {after_rotation} after one revocation"
    )
    assert first_lifetime == 1
    assert after_rotation == 2
