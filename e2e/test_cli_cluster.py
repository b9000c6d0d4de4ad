"""The cluster CLI (``szal submit|list|get|logs|cancel|suspend|resume|delete``,
completion, ``kubectl szal``) against the test cluster, with kubectl beside it.

Covers: ``kubectl plugin list`` finds ``kubectl-szal`` and ``kubectl szal``
runs it; submit of a file (inline workflow) with ``--watch`` to Succeeded,
and ``--from workflow/NAME -p`` with a generated name; ``list`` (``-A``,
``-l``, ``-o name|json``) and ``get`` (tree, ``-o wide|json|yaml``) agreeing
with ``kubectl get``; suspend, resume, cancel and delete seen by kubectl
and by the operator; clear errors and exit codes (missing run or Workflow
1, invalid file or param 2, no permission 1, a context that does not
exist 2); ``logs`` of real containers on the real node (one step, all
steps, ``-f``); completion of run and step names from the cluster through
``szal __complete``, the bash script in a real bash, and ``kubectl
__complete szal ...``.

Not covered here: the CRDs missing (the shared cluster keeps them: see
tests/local/test_cluster_cli_errors.py, against a local server), zsh (not
installed on these machines; the script only calls ``szal __complete``,
covered here).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.conftest import Kubectl, RealNode, poll_until
from e2e.operator_support import (
    OperatorProcess,
    ensure_crds,
    pods_of,
    sim,
    token_kubeconfig,
    wait_phase,
    workflow,
)

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
SZAL = BIN / "szal"


class Szal:
    """``szal ...`` as a user runs it: KUBECONFIG in the environment."""

    def __init__(self, kubeconfig: Path, namespace: str) -> None:
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        self.namespace = namespace

    def __call__(
        self, *args: str, namespace: bool = True, timeout: float = 120, program: Path = SZAL
    ) -> subprocess.CompletedProcess[str]:
        ns = ["-n", self.namespace] if namespace else []
        return subprocess.run(
            [str(program), *args, *ns],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture
def operator(kubeconfig: Path, kubectl: Kubectl, namespace: str) -> Iterator[OperatorProcess]:
    ensure_crds(kubectl)
    with OperatorProcess(kubeconfig, [namespace]) as process:
        yield process


@pytest.fixture
def szal(kubeconfig: Path, namespace: str) -> Szal:
    return Szal(kubeconfig, namespace)


def _file(tmp_path: Path, name: str, spec: dict[str, Any]) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(workflow(name, spec)))
    return path


QUICK = {
    "params": [{"name": "env", "default": "staging"}, {"name": "n", "default": 1}],
    "template": {"image": "busybox:1.36", "pod": sim("200ms")},
    "mode": "Dag",
    "steps": [
        {"name": "build", "command": ["true"]},
        {"name": "test", "command": ["true"], "dependsOn": ["build"]},
    ],
}


def test_kubectl_finds_the_plugin(kubectl: Kubectl, kubeconfig: Path, namespace: str) -> None:
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "KUBECONFIG": str(kubeconfig),
    }
    listed = subprocess.run(
        [str(kubectl.binary), "plugin", "list"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert str(BIN / "kubectl-szal") in listed.stdout, listed.stdout + listed.stderr
    ensure_crds(kubectl)
    proc = subprocess.run(
        [str(kubectl.binary), "szal", "list", "-n", namespace],
        env=env, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"No runs in namespace {namespace}" in proc.stderr


def test_submit_file_watch_list_get(
    operator: OperatorProcess, szal: Szal, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    path = _file(tmp_path, "quick", QUICK)
    proc = szal("submit", str(path), "-p", "env=prod", "--name", "q1", "--watch")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "workflowrun.szal.dev/q1 created" in proc.stderr
    assert "build  Running -> Succeeded" in proc.stdout or "-> Succeeded" in proc.stdout
    assert "run q1" in proc.stdout and proc.stdout.rstrip().endswith("-> Succeeded")
    obj = kubectl.get("workflowrun", "q1", namespace)
    assert obj is not None and obj["status"]["phase"] == "Succeeded"
    assert obj["spec"]["params"] == {"env": "prod", "n": 1}
    assert obj["spec"]["workflow"]["steps"][0]["name"] == "build"

    listed = szal("list")
    assert listed.returncode == 0
    header, row = listed.stdout.splitlines()[:2]
    assert header.split() == ["NAME", "WORKFLOW", "PHASE", "PROGRESS", "DURATION", "AGE"]
    assert row.split()[:4] == ["q1", "q1", "Succeeded", "2/2"]
    kubectl_row = kubectl("get", "workflowruns", "-n", namespace, "--no-headers").stdout.split()
    assert kubectl_row[:4] == row.split()[:4]
    everywhere = szal("list", "-A", namespace=False)
    assert any(line.split()[:2] == [namespace, "q1"] for line in everywhere.stdout.splitlines())
    assert szal("list", "-o", "name").stdout.strip() == "workflowrun.szal.dev/q1"
    assert szal("list", "-l", "nothing=here").stderr.startswith("No runs")

    tree = szal("get", "q1")
    assert tree.returncode == 0
    assert "run q1  Succeeded  2/2" in tree.stdout
    assert "✓ build  Succeeded" in tree.stdout and "✓ test  Succeeded" in tree.stdout
    wide = szal("get", "q1", "-o", "wide")
    pod = [p for p in pods_of(kubectl, namespace, "q1") if "build" in p["metadata"]["name"]]
    pod = pod[0]["metadata"]["name"]
    assert f"pod {pod}" in wide.stdout and "exit 0" in wide.stdout
    as_json = json.loads(szal("get", "q1", "-o", "json").stdout)
    assert (
        as_json["status"] == obj["status"] and as_json["metadata"]["uid"] == obj["metadata"]["uid"]
    )
    as_yaml = yaml.safe_load(szal("get", "q1", "-o", "yaml").stdout)
    assert as_yaml["status"]["phase"] == "Succeeded"
    # Finished: --watch returns at once with the run's verdict.
    assert szal("get", "q1", "--watch").returncode == 0


def test_submit_from_a_cluster_workflow(
    operator: OperatorProcess, szal: Szal, kubectl: Kubectl, namespace: str
) -> None:
    kubectl.apply(workflow("shared", QUICK), namespace)
    proc = szal("submit", "--from", "workflow/shared", "-p", "n=3", "-p", "env=dev")
    assert proc.returncode == 0, proc.stderr
    name = proc.stdout.strip().removeprefix("workflowrun.szal.dev/").removesuffix(" created")
    assert name.startswith("shared-") and len(name) > len("shared-")
    obj = kubectl.get("workflowrun", name, namespace)
    assert obj is not None
    assert obj["spec"]["workflowRef"] == {"name": "shared"}
    assert obj["spec"]["params"] == {"n": 3, "env": "dev"}
    assert wait_phase(kubectl, namespace, name)["phase"] == "Succeeded"
    again = szal("submit", "--from", "workflow/shared", "--watch")
    assert again.returncode == 0, again.stderr
    assert again.stdout.rstrip().endswith("-> Succeeded")


def test_suspend_resume_cancel_delete(
    operator: OperatorProcess, szal: Szal, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    slow = {
        "template": {"image": "busybox:1.36", "pod": sim("60s")},
        "steps": [{"name": "long", "command": ["true"]}, {"name": "after", "command": ["true"]}],
    }
    assert szal("submit", str(_file(tmp_path, "slow", slow)), "--name", "s1").returncode == 0
    wait_phase(kubectl, namespace, "s1", ["Running"])
    proc = szal("suspend", "s1")
    assert (proc.returncode, proc.stdout.strip()) == (0, "workflowrun.szal.dev/s1 suspended")
    assert kubectl.get("workflowrun", "s1", namespace)["spec"]["suspend"] is True  # type: ignore[index]
    assert "(suspended)" in szal("list").stdout or "Paused" in szal("list").stdout
    assert szal("resume", "s1").returncode == 0
    assert kubectl.get("workflowrun", "s1", namespace)["spec"]["suspend"] is False  # type: ignore[index]
    assert szal("cancel", "s1").returncode == 0
    assert wait_phase(kubectl, namespace, "s1")["phase"] == "Cancelled"
    again = szal("cancel", "s1")
    assert again.returncode == 1 and "already ended (Cancelled)" in again.stderr
    assert szal("get", "s1", "--watch").returncode == 1  # ended, not Succeeded
    deleted = szal("delete", "s1")
    assert deleted.stdout.strip() == "workflowrun.szal.dev/s1 deleted"
    poll_until(
        lambda: kubectl.get("workflowrun", "s1", namespace) is None, timeout=30, what="s1 gone"
    )


def test_clear_errors_and_exit_codes(
    kubectl: Kubectl, szal: Szal, namespace: str, tmp_path: Path, kubeconfig: Path
) -> None:
    ensure_crds(kubectl)
    missing = szal("get", "nope")
    assert (missing.returncode, missing.stderr.strip()) == (
        1,
        f"szal: no run 'nope' in namespace {namespace}",
    )
    for verb in ("cancel", "suspend", "resume", "delete", "logs"):
        proc = szal(verb, "nope")
        assert proc.returncode == 1 and "no run 'nope'" in proc.stderr, (verb, proc.stderr)
    no_wf = szal("submit", "--from", "workflow/ghost")
    assert no_wf.returncode == 1 and f"no Workflow 'ghost' in namespace {namespace}" in no_wf.stderr
    assert szal("submit", "--from", "ghost").returncode == 2
    both = szal("submit", "x.yaml", "--from", "workflow/a")
    assert both.returncode == 2 and "one of them" in both.stderr
    bad = _file(
        tmp_path,
        "bad",
        {"mode": "Dag", "steps": [{"name": "a", "image": "x", "dependsOn": ["zz"]}]},
    )
    invalid = szal("submit", str(bad))
    assert invalid.returncode == 2 and str(bad) in invalid.stderr and "zz" in invalid.stderr
    param = szal("submit", str(_file(tmp_path, "quick", QUICK)), "-p", "n=many")
    assert param.returncode == 2 and "params.n: expected an integer" in param.stderr
    unknown = szal("submit", str(_file(tmp_path, "quick", QUICK)), "-p", "colour=red")
    assert unknown.returncode == 2 and "colour" in unknown.stderr
    context = szal("list", "--context", "elsewhere")
    assert context.returncode == 2 and "no context 'elsewhere'" in context.stderr
    # No permission: a ServiceAccount with no RBAC at all, kubectl refused the same way.
    kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    config = token_kubeconfig(kubectl, "nobody", namespace, tmp_path / "nobody.kubeconfig")
    refused = Szal(config, namespace)("list")
    assert refused.returncode == 1
    assert refused.stderr.startswith("szal: permission denied:") and "forbidden" in refused.stderr
    assert (
        "cannot list"
        in Kubectl(kubectl.binary, config)(
            "get", "workflowruns", "-n", namespace, check=False
        ).stderr
    )


def test_completion_from_the_cluster(
    operator: OperatorProcess, szal: Szal, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    assert (
        szal("submit", str(_file(tmp_path, "quick", QUICK)), "--name", "c1", "--watch").returncode
        == 0
    )
    ns = ["-n", namespace]

    def words(*typed: str) -> list[str]:
        proc = szal("__complete", *typed, namespace=False)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.split()

    assert {"submit", "get", "logs", "cancel", "run", "history"} <= set(words(""))
    assert words("ge") == ["get"]
    assert words("get", *ns, "") == ["c1"]
    assert words("logs", *ns, "c1", "") == ["build", "test"]
    assert words("logs", *ns, "c1", "b") == ["build"]
    assert words("get", "-o", "") == ["wide", "json", "yaml"]
    assert namespace in words("list", "-n", "t-")
    assert "--all-namespaces" in words("list", "--a")
    kubectl.apply(workflow("shared", QUICK), namespace)
    assert words("submit", *ns, "--from", "") == ["workflow/shared"]
    # The bash script, in a real bash.
    script = tmp_path / "szal.bash"
    script.write_text(szal("completion", "bash", namespace=False).stdout)
    bash = subprocess.run(
        ["bash", "-c", f'source {script}; COMP_WORDS=(szal logs -n {namespace} c1 "");'
         ' COMP_CWORD=5; _szal; printf "%s\\n" "${COMPREPLY[@]}"'],
        env={**szal.env, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert bash.stdout.split() == ["build", "test"], bash.stderr
    # kubectl's own completion of the plugin (kubectl_complete-szal).
    env = {**szal.env, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    kube = subprocess.run(
        [str(kubectl.binary), "__complete", "szal", "get", "-n", namespace, ""],
        env=env, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert "c1" in kube.stdout.split(), kube.stdout + kube.stderr


@pytest.mark.real_node
def test_logs_of_real_containers(
    kubeconfig: Path, kubectl: Kubectl, namespace: str, real_node: RealNode, tmp_path: Path
) -> None:
    ensure_crds(kubectl)
    spec = {
        "template": real_node.template(),
        "steps": [
            {"name": "hello", "script": "echo hello from one; echo second line"},
            {"name": "slow", "script": "for i in 1 2 3; do echo tick $i; sleep 1; done"},
        ],
    }
    szal = Szal(kubeconfig, namespace)
    with OperatorProcess(kubeconfig, [namespace]):
        submitted = szal("submit", str(_file(tmp_path, "talk", spec)), "--name", "t1")
        assert submitted.returncode == 0, submitted.stderr
        wait_phase(kubectl, namespace, "t1", ["Running", "Succeeded"], timeout=120)
        follow = szal("logs", "t1", "-f", timeout=180)  # from the first pod to the run's end
        assert follow.returncode == 0, follow.stderr
        final = wait_phase(kubectl, namespace, "t1", timeout=120)
        assert final["phase"] == "Succeeded", final
        one = szal("logs", "t1", "hello")
        pod = next(
            p["metadata"]["name"]
            for p in pods_of(kubectl, namespace, "t1")
            if p["metadata"]["labels"]["szal.dev/step"] == "hello"
        )
        beside = kubectl("logs", pod, "-n", namespace).stdout
        assert (one.stdout, beside) == ("hello from one\nsecond line\n",) * 2, one.stderr
        every = szal("logs", "t1")
        assert every.stdout.splitlines() == [
            "[hello] hello from one",
            "[hello] second line",
            "[slow]  tick 1",
            "[slow]  tick 2",
            "[slow]  tick 3",
        ]
        assert {"[hello] hello from one", "[slow]  tick 3"} <= set(follow.stdout.splitlines())
        assert szal("logs", "t1", "nope").stderr.strip() == (
            "szal: run 't1' has no step 'nope' (steps: hello, slow)"
        )
