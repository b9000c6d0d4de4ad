"""Pytest wiring for the e2e tests: a real Kubernetes cluster for the session.

Every e2e test gets its cluster through the session fixture ``kubeconfig``:

* ``SZAL_E2E_KUBECONFIG`` (or else ``KUBECONFIG``) names a cluster to use as
  it is - the one ``make test`` started with ``e2e/cluster/up.sh``, or a kind
  cluster. It is never stopped by the tests.
* Otherwise the fixture starts the local cluster with ``e2e/cluster/up.sh``
  (building the pinned binaries first if the cache is cold) and stops it with
  ``e2e/cluster/down.sh`` when the last test session using it ends. A cluster
  that was already running when no test session used it (started by hand) is
  left running.

Either way the fixture waits, polling on a deadline, until every node is Ready
and the ``default`` ServiceAccount exists. A cluster that cannot be built or
started fails the tests with the reason; nothing is skipped.

The helpers here are used by the tests and importable from them
(``from e2e.conftest import poll_until``): ``Kubectl`` runs the real kubectl
binary against the cluster, ``poll_until`` waits for a condition on a
deadline. Nothing is mocked.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

REPO = Path(__file__).resolve().parent.parent
CLUSTER_SCRIPTS = REPO / "e2e" / "cluster"
E2E_DIR = Path(__file__).resolve().parent

READY_TIMEOUT = 120.0
"""Seconds to wait for nodes Ready and the default ServiceAccount."""

T = TypeVar("T")


class ClusterError(RuntimeError):
    """The e2e cluster could not be built, started or reached."""


class KubectlError(RuntimeError):
    """kubectl exited non-zero where success was expected."""

    def __init__(self, args: list[str], proc: subprocess.CompletedProcess[str]) -> None:
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        shown = " ".join(args)
        super().__init__(f"`{shown}` exited {proc.returncode}: {proc.stderr.strip()}")


def poll_until(
    check: Callable[[], T | bool | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
) -> T:
    """Call ``check`` until it returns something truthy, and return that.

    Fails the test with ``what`` and the last value seen when ``timeout``
    seconds pass first. Exceptions from ``check`` propagate at once: a wait
    must say what it is waiting for, not swallow errors.
    """
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if last:
            return cast(T, last)
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


@dataclass(frozen=True)
class Kubectl:
    """The real kubectl, bound to the test cluster's kubeconfig.

    Calling it runs ``kubectl --kubeconfig <path> <args...>`` and returns the
    CompletedProcess; a non-zero exit raises KubectlError carrying stderr
    unless ``check=False``.
    """

    binary: Path
    kubeconfig: Path

    def __call__(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.binary), "--kubeconfig", str(self.kubeconfig), *args]
        proc = subprocess.run(
            cmd, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise KubectlError(cmd, proc)
        return proc

    def json(self, *args: str) -> Any:
        """``kubectl <args> -o json``, parsed."""
        return json.loads(self(*args, "-o", "json").stdout)

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """One object as a dict, or None when the API server says NotFound."""
        ns = ["--namespace", namespace] if namespace else []
        proc = self("get", kind, name, *ns, "-o", "json", check=False)
        if proc.returncode == 0:
            obj: dict[str, Any] = json.loads(proc.stdout)
            return obj
        if "NotFound" in proc.stderr:
            return None
        raise KubectlError([str(self.binary), "get", kind, name, *ns], proc)

    def apply(self, manifest: dict[str, Any] | str, namespace: str | None = None) -> None:
        """``kubectl apply`` a manifest given as a dict or as YAML/JSON text."""
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        ns = ["--namespace", namespace] if namespace else []
        self("apply", *ns, "-f", "-", input=text)


# --- starting and finding the cluster ------------------------------------


def _named_kubeconfig() -> Path | None:
    value = os.environ.get("SZAL_E2E_KUBECONFIG") or os.environ.get("KUBECONFIG")
    if not value:
        return None
    if os.pathsep in value:
        raise ClusterError(
            f"KUBECONFIG lists several files ({value!r}); "
            "name the test cluster's one in SZAL_E2E_KUBECONFIG"
        )
    path = Path(value).expanduser()
    if not path.is_file():
        raise ClusterError(
            f"kubeconfig {path} (from SZAL_E2E_KUBECONFIG/KUBECONFIG) does not exist"
        )
    return path


def _run_script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLUSTER_SCRIPTS / name), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )


def _script_failure(name: str, proc: subprocess.CompletedProcess[str]) -> ClusterError:
    tail = "\n".join(proc.stderr.strip().splitlines()[-60:])
    return ClusterError(f"e2e/cluster/{name} exited {proc.returncode}:\n{tail}")


def _build() -> Path:
    """The bin dir of the pinned binaries, building them when the cache is cold."""
    proc = _run_script("build.sh")
    if proc.returncode != 0:
        raise _script_failure("build.sh", proc)
    lines = proc.stdout.strip().splitlines()
    bin_dir = Path(lines[-1]) if lines else Path()
    if not (bin_dir / "kubectl").is_file():
        raise ClusterError(f"build.sh printed {proc.stdout.strip()!r}, which holds no kubectl")
    return bin_dir


_prebuilt: Path | ClusterError | None = None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_DIR in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.e2e)


def pytest_collection_finish(session: pytest.Session) -> None:
    # A cold build takes many minutes: do it here, before any test starts,
    # so it does not count against the per-test timeout. A failure is kept
    # and raised by the fixture, failing the e2e tests with the reason.
    global _prebuilt
    wants_cluster = any(item.get_closest_marker("e2e") for item in session.items)
    if not wants_cluster or session.config.option.collectonly:
        return
    try:
        if _named_kubeconfig() is None:
            _prebuilt = _build()
    except ClusterError as error:
        _prebuilt = error


def _bin_dir() -> Path:
    global _prebuilt
    if isinstance(_prebuilt, ClusterError):
        raise _prebuilt
    if _prebuilt is None:
        _prebuilt = _build()
    return _prebuilt


def _wait_ready(kubectl: Kubectl) -> None:
    def nodes_ready() -> list[str] | None:
        proc = kubectl("get", "nodes", "-o", "json", check=False)
        if proc.returncode != 0:
            return None
        nodes = json.loads(proc.stdout)["items"]
        ready = [
            node["metadata"]["name"]
            for node in nodes
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in node.get("status", {}).get("conditions", [])
            )
        ]
        return ready if nodes and len(ready) == len(nodes) else None

    def default_service_account() -> bool:
        return (
            kubectl("get", "serviceaccount", "default", "-n", "default", check=False).returncode
            == 0
        )

    poll_until(nodes_ready, timeout=READY_TIMEOUT, what="every node to be Ready", interval=0.5)
    poll_until(
        default_service_account,
        timeout=READY_TIMEOUT,
        what="the default ServiceAccount in namespace default",
        interval=0.5,
    )


def _kubectl_binary(bin_dir: Path | None) -> Path:
    explicit = os.environ.get("SZAL_KUBECTL")
    if explicit:
        return Path(explicit)
    if bin_dir is not None:
        return bin_dir / "kubectl"
    found = shutil.which("kubectl")
    return Path(found) if found else _bin_dir() / "kubectl"


@pytest.fixture(scope="session")
def _cluster() -> Iterator[Kubectl]:
    """A ready cluster, as kubectl bound to its kubeconfig."""
    try:
        named = _named_kubeconfig()
        bin_dir = None if named is not None else _bin_dir()
        binary = _kubectl_binary(bin_dir)
    except ClusterError as error:
        pytest.fail(f"no e2e cluster: {error}", pytrace=False)
    if named is not None:
        kubectl = Kubectl(binary=binary, kubeconfig=named)
        _wait_ready(kubectl)
        yield kubectl
        return
    # Several test sessions on one machine may share the cluster: each holds a
    # shared lock on <dir>.users while it runs, and a cluster that a session
    # started is stopped by the last session to leave (the one that gets the
    # lock exclusively). A cluster started by hand or by make is never stopped.
    cluster_dir = Path(os.environ.get("SZAL_CLUSTER_DIR", "/tmp/szal-cluster"))
    cluster_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{cluster_dir}.users", "a") as users:
        fcntl.flock(users, fcntl.LOCK_SH)
        proc = _run_script("up.sh")
        if proc.returncode != 0:
            _run_script("down.sh", "--keep")  # stop what did start; keep the logs
            pytest.fail(
                f"cannot start the e2e cluster: {_script_failure('up.sh', proc)}\n"
                f"(logs kept in {cluster_dir}/logs)",
                pytrace=False,
            )
        mark = cluster_dir / ".started-by-pytest"
        if "already up" not in proc.stderr:
            mark.touch()
        kubectl = Kubectl(binary=binary, kubeconfig=Path(proc.stdout.strip().splitlines()[-1]))
        try:
            _wait_ready(kubectl)
            yield kubectl
        finally:
            fcntl.flock(users, fcntl.LOCK_UN)
            try:
                fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
                last = True
            except BlockingIOError:
                last = False
            if last and mark.exists():
                down = _run_script("down.sh")
                if down.returncode != 0:
                    raise _script_failure("down.sh", down)


@pytest.fixture(scope="session")
def kubeconfig(_cluster: Kubectl) -> Path:
    """Path of the kubeconfig (admin credentials) of a ready cluster."""
    return _cluster.kubeconfig


@pytest.fixture(scope="session")
def kubectl(_cluster: Kubectl) -> Kubectl:
    """The real kubectl bound to the ready test cluster (see Kubectl)."""
    return _cluster


@pytest.fixture
def namespace(kubeconfig: Path, kubectl: Kubectl) -> Iterator[str]:
    """A fresh namespace ``t-<random>``, deleted (without waiting) afterwards.

    Waits for the namespace's default ServiceAccount: until it exists the
    ServiceAccount admission plugin rejects every pod created there.
    """
    with fresh_namespace(kubectl) as name:
        yield name


@contextlib.contextmanager
def fresh_namespace(kubectl: Kubectl) -> Iterator[str]:
    """Create ``t-<random>``, wait for its default ServiceAccount, yield its
    name, delete it (without waiting) on the way out (see ``namespace``)."""
    name = f"t-{secrets.token_hex(4)}"
    kubectl("create", "namespace", name)
    try:
        poll_until(
            lambda: (
                kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0
            ),
            timeout=30,
            what=f"the default ServiceAccount in namespace {name}",
        )
        yield name
    finally:
        kubectl("delete", "namespace", name, "--wait=false", check=False)


# --- the real node ------------------------------------------------------------


@dataclass(frozen=True)
class RealNode:
    """Where real-node tests put their step pods, and with which image.

    On the cluster ``make test`` starts, that is node ``szal-real-0``
    (e2e/cluster/node-up.sh): its label as nodeSelector, a toleration of its
    taint, the busybox image built there from Debian's package and
    ``imagePullPolicy: Never``. Against another cluster (kind, say), set
    ``SZAL_E2E_STEP_IMAGE`` (an image with a POSIX shell that the cluster can
    run, e.g. ``busybox:1.36`` after ``kind load``), and optionally
    ``SZAL_E2E_PULL_POLICY`` (default IfNotPresent) and
    ``SZAL_E2E_NODE_SELECTOR`` (``key=value``; default: none).
    """

    image: str
    pull_policy: str
    node_selector: dict[str, str]
    tolerations: list[dict[str, str]]
    local_node: bool
    """True on node-up.sh's node: its processes are visible in this host's /proc."""

    def template(self) -> dict[str, Any]:
        """A Workflow ``template`` that sends every step (and rollback) here."""
        pod: dict[str, Any] = {"nodeSelector": dict(self.node_selector)}
        if self.tolerations:
            pod["tolerations"] = [dict(t) for t in self.tolerations]
        return {"image": self.image, "imagePullPolicy": self.pull_policy, "pod": pod}


REAL_NODE_LABEL = "szal.dev/real-node"


@pytest.fixture(scope="session")
def real_node(kubectl: Kubectl) -> RealNode:
    """The real node (see RealNode); fails, never skips, when there is none."""
    image = os.environ.get("SZAL_E2E_STEP_IMAGE")
    if image:
        selector: dict[str, str] = {}
        if raw := os.environ.get("SZAL_E2E_NODE_SELECTOR"):
            key, _, value = raw.partition("=")
            selector[key] = value
        return RealNode(
            image=image,
            pull_policy=os.environ.get("SZAL_E2E_PULL_POLICY", "IfNotPresent"),
            node_selector=selector,
            tolerations=[],
            local_node=False,
        )
    nodes = kubectl.json("get", "nodes", "-l", f"{REAL_NODE_LABEL}=true")["items"]
    ready = [
        n
        for n in nodes
        if any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in n["status"].get("conditions", [])
        )
    ]
    if not ready:
        pytest.fail(
            f"no Ready node labelled {REAL_NODE_LABEL}=true: start one with"
            " e2e/cluster/node-up.sh (make test does), or set SZAL_E2E_STEP_IMAGE to run"
            " the real-node tests on another cluster's nodes"
        )
    return RealNode(
        image=os.environ.get("SZAL_NODE_STEP_IMAGE", "localhost/szal/busybox:1.35"),
        pull_policy="Never",
        node_selector={REAL_NODE_LABEL: "true"},
        tolerations=[{"key": REAL_NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}],
        local_node=True,
    )
