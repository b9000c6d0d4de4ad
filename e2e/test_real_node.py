"""Steps as real containers on a real kubelet node (the ``real_node`` fixture).

Everything the kwok-simulated tests take on trust is checked here against a
kubelet, containerd and runc: a shell command's exit code, outputs written to
``$SZAL_OUTPUTS`` (the termination-message file) arriving in status and in a
downstream step's ``SZAL_CONTEXT``, retries as new pods, a timeout that
really kills the process, rollback compensations run as real pods in reverse
completion order, ``kubectl logs`` of a step pod, outputs over 4 KiB failing
the step with a message, and local/cluster parity of the status shape.

Not covered here: the operator itself as a Pod (the install tests), GPUs
(no accelerator on these machines).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.conftest import Kubectl, RealNode, poll_until
from e2e.operator_support import (
    OperatorProcess,
    ensure_crds,
    pods_of,
    run,
    run_locally,
    wait_phase,
    workflow,
)

pytestmark = [pytest.mark.e2e, pytest.mark.real_node]


def _dag(node: RealNode) -> dict[str, Any]:
    return {
        "mode": "Dag",
        "template": node.template(),
        "steps": [
            {
                "name": "produce",
                "script": 'echo "producing"; echo \'{"rows": 42, "ok": true}\' > "$SZAL_OUTPUTS"',
            },
            {
                "name": "consume",
                "dependsOn": ["produce"],
                "when": "steps.produce.outputs.rows >= 40",
                # The downstream context, read by the step itself: rows from upstream.
                "script": (
                    'rows=$(echo "$SZAL_CONTEXT" | sed -n \'s/.*"rows": *\\([0-9]*\\).*/\\1/p\');'
                    ' echo "got $rows"; echo "{\\"seen\\": $rows}" > "$SZAL_OUTPUTS"'
                ),
            },
            {
                "name": "flaky",
                "dependsOn": ["produce"],
                "script": 'echo "attempt $SZAL_ATTEMPT"; test "$SZAL_ATTEMPT" -ge 2',
                "retries": {"limit": 2, "delay": "100ms"},
            },
            {"name": "exit3", "dependsOn": ["consume", "flaky"], "script": "exit 3"},
            {"name": "after", "dependsOn": ["exit3"], "script": "true"},
        ],
    }


def test_real_commands_outputs_retries_exit_codes_and_logs(
    kubeconfig: Path, kubectl: Kubectl, namespace: str, real_node: RealNode
) -> None:
    ensure_crds(kubectl)
    with OperatorProcess(kubeconfig, [namespace]):
        kubectl.apply(workflow("real", _dag(real_node)), namespace)
        kubectl.apply(run("real-1", "real"), namespace)
        status = wait_phase(kubectl, namespace, "real-1", timeout=120)

    steps = status["steps"]
    assert status["phase"] == "Failed", status
    assert steps["produce"]["phase"] == "Succeeded"
    assert steps["produce"]["outputs"] == {"rows": 42, "ok": True}
    assert steps["consume"]["outputs"] == {"seen": 42}  # read from SZAL_CONTEXT in the pod
    assert (steps["flaky"]["phase"], steps["flaky"]["attempts"]) == ("Succeeded", 2)
    assert (steps["exit3"]["phase"], steps["exit3"]["exitCode"]) == ("Failed", 3)
    assert (steps["after"]["phase"], steps["after"]["message"]) == ("Skipped", "dependency failed")

    pods = pods_of(kubectl, namespace, "real-1")
    by_step: dict[str, list[dict[str, Any]]] = {}
    for pod in pods:
        by_step.setdefault(pod["metadata"]["labels"]["szal.dev/step"], []).append(pod)
    assert len(by_step["flaky"]) == 2  # one pod per attempt
    for pod in pods:  # really ran on the real node, as containers
        if real_node.local_node:
            assert pod["spec"]["nodeName"] == "szal-real-0"
        (container,) = pod["status"]["containerStatuses"]
        assert container["containerID"].startswith(("containerd://", "docker://", "cri-o://"))
    assert (
        by_step["exit3"][0]["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"]
        == 3
    )
    # kubectl logs of a step pod shows what the command printed.
    assert kubectl("logs", "-n", namespace, _name(by_step["produce"][0])).stdout == "producing\n"
    assert kubectl("logs", "-n", namespace, _name(by_step["consume"][0])).stdout == "got 42\n"
    first_flaky = min(by_step["flaky"], key=lambda p: p["metadata"]["labels"]["szal.dev/attempt"])
    assert kubectl("logs", "-n", namespace, first_flaky["metadata"]["name"]).stdout == (
        "attempt 1\n"
    )


def _name(pod: dict[str, Any]) -> str:
    name: str = pod["metadata"]["name"]
    return name


def _sleep_processes(marker: str) -> list[int]:
    """Host pids of our node's containers whose command line holds ``marker``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cgroups = (proc / "cgroup").read_text()
        except OSError:
            continue
        if marker in cmdline and "/szal-real" in cgroups:
            found.append(int(proc.name))
    return found


def test_timeout_really_kills_the_container(
    kubeconfig: Path, kubectl: Kubectl, namespace: str, real_node: RealNode
) -> None:
    ensure_crds(kubectl)
    spec = {
        "mode": "Sequential",
        "template": real_node.template(),
        # busybox sh as PID 1 ignores SIGTERM unless it traps it; with the
        # trap the kubelet's SIGTERM ends the container (and its sleep) at once.
        "steps": [
            {
                "name": "slow",
                "script": "echo started; trap 'exit 143' TERM; sleep 31 & wait",
                "timeout": "2s",
            }
        ],
    }
    with OperatorProcess(kubeconfig, [namespace]):
        kubectl.apply(workflow("slow", spec), namespace)
        kubectl.apply(run("slow-1", "slow"), namespace)
        if real_node.local_node:
            poll_until(lambda: _sleep_processes("sleep 31"), timeout=60, what="sleep 31 running")
        status = wait_phase(kubectl, namespace, "slow-1", timeout=60)
    slow = status["steps"]["slow"]
    assert status["phase"] == "Failed"
    assert slow["phase"] == "TimedOut", slow
    assert "2s" in slow["message"]
    started = time.monotonic()
    if real_node.local_node:
        # Gone on the node itself: no process of the container is left.
        poll_until(
            lambda: not _sleep_processes("sleep 31"),
            timeout=20,
            what="the timed-out container's process to be gone from the node",
        )
        assert time.monotonic() - started < 20
    # Stopped in place, not deleted: the pod, its final state and its logs stay.
    pod_name = slow["podName"]

    def failed() -> dict[str, Any] | None:
        out = kubectl("get", "pod", pod_name, "-n", namespace, "-o", "json").stdout
        pod: dict[str, Any] = json.loads(out)
        return pod if pod.get("status", {}).get("phase") == "Failed" else None

    pod = poll_until(failed, timeout=60, what="the timed-out pod to end Failed")
    assert pod["status"].get("reason") == "DeadlineExceeded", pod["status"]
    assert "started" in kubectl("logs", pod_name, "-n", namespace).stdout


def test_rollback_runs_real_compensations_in_reverse_completion_order(
    kubeconfig: Path, kubectl: Kubectl, namespace: str, real_node: RealNode
) -> None:
    ensure_crds(kubectl)
    spec = {
        "mode": "Sequential",
        "rollbackOnFailure": True,
        "template": real_node.template(),
        "steps": [
            {"name": "one", "script": "echo do one", "rollback": {"script": "echo undo one"}},
            {"name": "two", "script": "echo do two", "rollback": {"script": "echo undo two"}},
            {"name": "three", "script": "echo fail; exit 1"},
        ],
    }
    with OperatorProcess(kubeconfig, [namespace]):
        kubectl.apply(workflow("rb", spec), namespace)
        kubectl.apply(run("rb-1", "rb"), namespace)
        status = wait_phase(kubectl, namespace, "rb-1", timeout=120)
    assert status["phase"] == "RolledBack", status
    one, two = status["steps"]["one"]["rollback"], status["steps"]["two"]["rollback"]
    assert one["phase"] == two["phase"] == "Succeeded"
    assert two["finishedAt"] <= one["startedAt"]  # two completed last, so it is undone first
    compensations = [
        p
        for p in pods_of(kubectl, namespace, "rb-1")
        if p["metadata"]["labels"].get("szal.dev/rollback") == "true"
    ]
    logs = {
        p["metadata"]["labels"]["szal.dev/step"]: kubectl(
            "logs", "-n", namespace, p["metadata"]["name"]
        ).stdout
        for p in compensations
    }
    assert logs == {"one": "undo one\n", "two": "undo two\n"}


def test_outputs_over_4kib_fail_the_step_with_a_message(
    kubeconfig: Path, kubectl: Kubectl, namespace: str, real_node: RealNode
) -> None:
    ensure_crds(kubectl)
    big = "x" * 5000
    spec = {
        "mode": "Sequential",
        "template": real_node.template(),
        "steps": [{"name": "big", "script": f'echo \'{{"blob": "{big}"}}\' > "$SZAL_OUTPUTS"'}],
    }
    with OperatorProcess(kubeconfig, [namespace]):
        kubectl.apply(workflow("big", spec), namespace)
        kubectl.apply(run("big-1", "big"), namespace)
        status = wait_phase(kubectl, namespace, "big-1", timeout=60)
    step = status["steps"]["big"]
    assert status["phase"] == "Failed"
    assert step["phase"] == "Failed"
    assert step.get("exitCode") == 0
    assert "4096-byte limit" in step["message"], step
    assert "outputs" not in step or not step["outputs"]


def _shape(status: dict[str, Any]) -> Any:
    """The status with timestamps, durations and names of pods/processes blanked."""
    volatile = {"startedAt", "finishedAt", "duration", "lastTransitionTime"}
    cluster_only = {"podName"}

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: ("<t>" if k in volatile else walk(v))
                for k, v in value.items()
                if k not in cluster_only
            }
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return walk(status)


def test_same_file_same_status_locally_and_on_the_real_node(
    kubeconfig: Path, kubectl: Kubectl, namespace: str, real_node: RealNode, tmp_path: Path
) -> None:
    manifest = workflow("parity-real", _dag(real_node))
    path = tmp_path / "parity.yaml"
    path.write_text(yaml.safe_dump(manifest))
    code, local_status, stderr = run_locally(path, tmp_path / "h.db")
    assert code == 1, stderr  # the run Failed, as designed
    ensure_crds(kubectl)
    with OperatorProcess(kubeconfig, [namespace]):
        kubectl.apply(manifest, namespace)
        kubectl.apply(run("parity-real", "parity-real"), namespace)
        cluster_status = wait_phase(kubectl, namespace, "parity-real", timeout=120)
    local_steps = _shape(local_status["steps"])
    cluster_steps = _shape(cluster_status["steps"])
    assert set(local_steps) == set(cluster_steps)
    for name in local_steps:
        assert local_steps[name] == cluster_steps[name], name
    for key in ("phase", "progress", "message"):
        assert local_status.get(key) == cluster_status.get(key), key
