"""Helpers for the operator's e2e tests and benchmark: the operator as a process.

:class:`OperatorProcess` runs ``szal operator`` as a subprocess - the real
command, with its own event loop, signals and kopf's watches - serving one
or more namespaces of the test cluster, with its metrics port on loopback.
It can be stopped gracefully (SIGTERM) or killed (SIGKILL, for the crash
tests) and started again. Its log goes to a file that failing tests print.

:func:`ensure_crds` installs the generated CRDs once per session;
:func:`workflow`/:func:`run` build manifests; :func:`wait_phase` polls a
run's status on a deadline (never a bare sleep).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from e2e.conftest import REPO, Kubectl, poll_until

SZAL = Path(sys.executable).parent / "szal"
TERMINAL = ("Succeeded", "Failed", "RolledBack", "Cancelled")

_crds_installed = False


def ensure_crds(kubectl: Kubectl) -> None:
    """Apply crds/*.yaml (idempotent) and wait until every CRD is Established."""
    global _crds_installed
    if _crds_installed:
        return
    kubectl("apply", "-f", str(REPO / "crds"))
    for name in ("workflows.szal.dev", "workflowruns.szal.dev", "workflowschedules.szal.dev"):
        # Not `kubectl wait`: right after a create the CRD has no status.conditions
        # yet, and kubectl wait then fails ("accessor error") instead of waiting.
        wait_for(lambda name=name: _established(kubectl, name), f"CRD {name} Established", 60)
    _crds_installed = True


def _established(kubectl: Kubectl, name: str) -> bool:
    crd = kubectl.get("crd", name) or {}
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class OperatorProcess:
    """``szal operator`` for some namespaces, as a subprocess."""

    def __init__(self, kubeconfig: Path, namespaces: Iterable[str], *extra_args: str) -> None:
        self.kubeconfig = kubeconfig
        self.namespaces = list(namespaces)
        self.extra_args = list(extra_args)
        self.metrics_port = free_port()
        fd, name = tempfile.mkstemp(prefix="szal-operator-", suffix=".log")
        os.close(fd)
        self.log_path = Path(name)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> OperatorProcess:
        args = [str(SZAL), "operator", "--kubeconfig", str(self.kubeconfig)]
        for ns in self.namespaces:
            args += ["--namespace", ns]
        args += ["--metrics-port", str(self.metrics_port), "--metrics-host", "127.0.0.1"]
        args += self.extra_args
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts + 1}: {' '.join(args)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        self.starts += 1
        try:
            poll_until(self._ready, timeout=30, what="the operator's /readyz", interval=0.05)
        except BaseException:
            self.kill()
            print(f"--- operator log ({self.log_path}) ---\n{self.log()}")
            raise
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"szal operator exited {self.proc.returncode}:\n{self.log()}")
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port}/readyz", timeout=1
            ) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def readyz(self) -> str:
        """The /readyz body (``leader`` or ``standby`` once ready)."""
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/readyz", timeout=2
        ) as answer:
            return str(answer.read().decode())

    @property
    def identity(self) -> str:
        """Its leader-election identity (``<hostname>_<pid>`` for a local process)."""
        assert self.proc is not None
        return f"{socket.gethostname()}_{self.proc.pid}"

    def metrics(self) -> dict[str, float]:
        """The operator's Prometheus metrics, as {'name{labels}': value}."""
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as answer:
            text = answer.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out

    def writes(self) -> dict[str, float]:
        """API writes so far, by 'verb resource'."""
        out: dict[str, float] = {}
        for key, value in self.metrics().items():
            if key.startswith("szal_api_writes_total{"):
                labels = dict(
                    part.split("=", 1)
                    for part in key[len("szal_api_writes_total{") : -1].split(",")
                )
                out[f"{labels['verb'].strip(chr(34))} {labels['resource'].strip(chr(34))}"] = value
        return out

    def peak_rss(self) -> int:
        """Peak resident memory of the process (VmHWM), bytes."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, like an OOM kill or a node failure."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()

    def log(self, tail: int = 80) -> str:
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-tail:])

    def __enter__(self) -> OperatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if exc[0] is not None:
            print(f"--- operator log ({self.log_path}) ---\n{self.log()}")
        else:
            # Passed: the log has served its purpose; don't litter the temp dir.
            self.log_path.unlink(missing_ok=True)


def run_locally(path: Path, db: Path) -> tuple[int, dict[str, Any], str]:
    """``szal run PATH --json --db DB``: exit code, the printed status, stderr."""
    proc = subprocess.run(
        [str(SZAL), "run", str(path), "--json", "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    status: dict[str, Any] = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return proc.returncode, status, proc.stderr


def token_kubeconfig(
    kubectl: Kubectl, account: str, namespace: str, target: Path, *, context_namespace: bool = False
) -> Path:
    """A kubeconfig at ``target`` whose user is a real token of ServiceAccount
    ``namespace/account`` (``kubectl create token``), for the admin's cluster.

    With ``context_namespace`` the context's namespace is ``namespace``.
    """
    token = kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout.strip()
    config = yaml.safe_load(kubectl.kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]
    ca = (
        cluster.get("certificate-authority-data")
        or base64.b64encode(Path(cluster["certificate-authority"]).read_bytes()).decode()
    )
    context: dict[str, str] = {"cluster": "c", "user": account}
    if context_namespace:
        context["namespace"] = namespace
    target.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {"server": cluster["server"], "certificate-authority-data": ca},
                    }
                ],
                "users": [{"name": account, "user": {"token": token}}],
                "contexts": [{"name": "sa", "context": context}],
                "current-context": "sa",
            }
        )
    )
    return target


# --- manifests ----------------------------------------------------------------


def sim(
    duration: str = "200ms", exit_code: int | None = None, message: Any = None, **extra: str
) -> dict[str, Any]:
    """``pod:`` options whose annotations drive kwok's simulated run of a step."""
    annotations = {"szal.dev/sim-duration": duration}
    if exit_code is not None:
        annotations["szal.dev/sim-exit-code"] = str(exit_code)
    if message is not None:
        annotations["szal.dev/sim-message"] = (
            message if isinstance(message, str) else json.dumps(message)
        )
    annotations.update(extra)
    return {"metadata": {"annotations": annotations}}


def workflow(name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "szal.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": dict(spec),
    }


def run(name: str, workflow_name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "szal.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": name},
        "spec": {"workflowRef": {"name": workflow_name}, **spec},
    }


def status_of(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    obj = kubectl.get("workflowrun", name, namespace)
    return dict((obj or {}).get("status") or {})


def wait_phase(
    kubectl: Kubectl,
    namespace: str,
    name: str,
    phases: Iterable[str] = TERMINAL,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Poll until the run's phase is one of ``phases``; return its status."""
    wanted = set(phases)

    def check() -> dict[str, Any] | None:
        status = status_of(kubectl, namespace, name)
        return status if status.get("phase") in wanted else None

    result: dict[str, Any] = poll_until(
        check, timeout=timeout, what=f"run {name} to reach {sorted(wanted)}", interval=0.2
    )
    return result


def step_phases(status: Mapping[str, Any]) -> dict[str, tuple[str, int]]:
    """{step: (phase, attempts)} of a run status."""
    return {
        name: (str(rec.get("phase")), int(rec.get("attempts", 0)))
        for name, rec in (status.get("steps") or {}).items()
    }


def pods_of(kubectl: Kubectl, namespace: str, run_name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl.json(
        "get", "pods", "-n", namespace, "-l", f"szal.dev/run={run_name}"
    )["items"]
    return items


def wait_for(check: Any, what: str, timeout: float = 30.0) -> Any:
    return poll_until(check, timeout=timeout, what=what, interval=0.1)


def now() -> float:
    return time.time()
