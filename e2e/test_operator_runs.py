"""The operator running WorkflowRuns on the real control plane (kwok nodes).

Covers, each against ``szal operator`` as a subprocess serving a fresh
namespace: a diamond DAG with a condition and outputs; retry then succeed;
failure with rollback in reverse completion order; a per-attempt timeout;
the run deadline; suspend then resume; cancel; the Job launcher; GPU steps
(scheduled onto a GPU node, and an impossible request reported as
unschedulable); pods' labels and ownerReferences; Events; the pinned spec
(editing the Workflow mid-run changes nothing); ttlSecondsAfterFinished;
``kubectl get workflowruns`` columns and ``kubectl wait
--for=condition=Succeeded`` with the real kubectl.

Not covered here: crash safety (test_operator_crash.py), local/cluster
parity (test_operator_parity.py), status size (test_operator_status_size.py),
admission (the admission tests).

Step behaviour comes from the ``szal.dev/sim-*`` pod annotations that the
cluster's kwok stages read (duration, exit code, termination message); a
``-attempt-<n>`` / ``-rollback`` suffix applies to that attempt only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.conftest import Kubectl
from e2e.operator_support import (
    OperatorProcess,
    ensure_crds,
    free_port,
    pods_of,
    run,
    sim,
    status_of,
    step_phases,
    wait_for,
    wait_phase,
    workflow,
)
from szal.engine.timestamps import parse_timestamp

pytestmark = pytest.mark.e2e


@pytest.fixture
def operator(kubeconfig: Path, kubectl: Kubectl, namespace: str) -> Iterator[OperatorProcess]:
    ensure_crds(kubectl)
    with OperatorProcess(kubeconfig, [namespace]) as op:
        yield op


def submit(kubectl: Kubectl, ns: str, name: str, spec: dict[str, Any], **run_spec: Any) -> None:
    kubectl.apply(workflow(name, spec), ns)
    kubectl.apply(run(name, name, **run_spec), ns)


def wait_stopped_in_place(
    kubectl: Kubectl, namespace: str, run_name: str, steps: list[str]
) -> list[dict[str, Any]]:
    """The stopped attempts' pods: kept, deadline lowered, Failed with DeadlineExceeded.

    Stopping keeps the evidence (runners/kubernetes/applying.py): the operator
    lowers a stopped pod's activeDeadlineSeconds instead of deleting it, and
    the node (kwok's pod-deadline stage here, a kubelet on a real node) kills it.
    """

    def stopped() -> list[dict[str, Any]] | None:
        pods = {
            p["metadata"]["labels"]["szal.dev/step"]: p
            for p in pods_of(kubectl, namespace, run_name)
        }
        found = [pods.get(step) for step in steps]
        if any(p is None or (p.get("status") or {}).get("phase") != "Failed" for p in found):
            return None
        return [p for p in found if p is not None]

    found: list[dict[str, Any]] = wait_for(stopped, f"{', '.join(steps)} to be stopped in place")
    for pod in found:
        assert pod["spec"]["activeDeadlineSeconds"] == 1, pod["spec"]
        assert pod["status"]["reason"] == "DeadlineExceeded", pod["status"]
    return found


def test_diamond_dag_with_a_condition(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    spec = {
        "mode": "Dag",
        "template": {"image": "busybox:1.36", "pod": sim("300ms")},
        "steps": [
            {"name": "a", "command": ["true"], "pod": sim("300ms", message={"go": True, "n": 3})},
            {
                "name": "b",
                "command": ["true"],
                "dependsOn": ["a"],
                "when": "steps.a.outputs.go == true",
            },
            {"name": "c", "command": ["true"], "dependsOn": ["a"], "when": "steps.a.outputs.n > 5"},
            {"name": "d", "command": ["true"], "dependsOn": ["b", "c"]},
        ],
    }
    submit(kubectl, namespace, "diamond", spec)
    status = wait_phase(kubectl, namespace, "diamond")
    assert status["phase"] == "Succeeded", status
    assert step_phases(status) == {
        "a": ("Succeeded", 1),
        "b": ("Succeeded", 1),
        "c": ("Skipped", 0),
        "d": ("Succeeded", 1),
    }
    steps = status["steps"]
    assert steps["a"]["outputs"] == {"go": True, "n": 3}
    assert steps["c"]["message"] == "condition not met"
    assert parse_timestamp(steps["d"]["startedAt"]) >= parse_timestamp(steps["b"]["finishedAt"])
    assert status["progress"] == "4/4"
    assert status["workflow"]["name"] == "diamond" and status["workflow"]["specHash"]
    assert status["observedGeneration"] == 1
    cond = status["conditions"][0]
    assert (cond["type"], cond["status"]) == ("Succeeded", "True")

    pods = pods_of(kubectl, namespace, "diamond")
    assert sorted(p["metadata"]["labels"]["szal.dev/step"] for p in pods) == ["a", "b", "d"]
    run_uid = kubectl.get("workflowrun", "diamond", namespace)["metadata"]["uid"]  # type: ignore[index]
    for p in pods:
        owner = p["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["uid"], owner["controller"]) == ("WorkflowRun", run_uid, True)
        assert p["spec"]["restartPolicy"] == "Never"
        env = {e["name"]: e.get("value") for e in p["spec"]["containers"][0]["env"]}
        assert env["SZAL_RUN"] == "diamond" and env["SZAL_ATTEMPT"] == "1"

    events = kubectl.json(
        "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=diamond"
    )["items"]
    reasons = {e["reason"] for e in events}
    assert {"RunStarted", "StepSucceeded", "StepSkipped", "RunSucceeded"} <= reasons, reasons


def test_retry_then_succeed(operator: OperatorProcess, kubectl: Kubectl, namespace: str) -> None:
    spec = {
        "steps": [
            {
                "name": "flaky",
                "image": "busybox:1.36",
                "command": ["true"],
                "retries": {"limit": 2, "delay": "200ms"},
                "pod": sim("200ms", **{"szal.dev/sim-exit-code-attempt-1": "1"}),
            }
        ]
    }
    submit(kubectl, namespace, "retry", spec)
    status = wait_phase(kubectl, namespace, "retry")
    assert status["phase"] == "Succeeded", status
    assert step_phases(status) == {"flaky": ("Succeeded", 2)}
    attempts = sorted(
        p["metadata"]["labels"]["szal.dev/attempt"] for p in pods_of(kubectl, namespace, "retry")
    )
    assert attempts == ["1", "2"]
    reasons = {e["reason"] for e in kubectl.json("get", "events", "-n", namespace)["items"]}
    assert "Retrying" in reasons


def test_failure_rolls_back_in_reverse_completion_order(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    def step(name: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "command": ["true"], "rollback": {"command": ["undo", name]}, **extra}

    spec = {
        "mode": "Sequential",
        "rollbackOnFailure": True,
        "template": {"image": "busybox:1.36", "pod": sim("200ms")},
        "steps": [
            step("first"),
            step("second"),
            step("third"),
            {"name": "boom", "command": ["false"], "pod": sim("200ms", exit_code=3)},
        ],
    }
    submit(kubectl, namespace, "rb", spec)
    status = wait_phase(kubectl, namespace, "rb", timeout=90)
    assert status["phase"] == "RolledBack", status
    steps = status["steps"]
    assert steps["boom"]["phase"] == "Failed" and steps["boom"]["exitCode"] == 3
    rollbacks = {n: steps[n]["rollback"] for n in ("first", "second", "third")}
    assert all(r["phase"] == "Succeeded" for r in rollbacks.values()), rollbacks
    order = sorted(rollbacks, key=lambda n: parse_timestamp(rollbacks[n]["startedAt"]))
    assert order == ["third", "second", "first"]
    for later, earlier in (("second", "third"), ("first", "second")):
        assert parse_timestamp(rollbacks[later]["startedAt"]) >= parse_timestamp(
            rollbacks[earlier]["finishedAt"]
        )
    comp_pods = [
        p
        for p in pods_of(kubectl, namespace, "rb")
        if p["metadata"]["labels"].get("szal.dev/rollback") == "true"
    ]
    assert len(comp_pods) == 3
    env = {e["name"]: e.get("value") for e in comp_pods[0]["spec"]["containers"][0]["env"]}
    assert env["SZAL_ROLLBACK"] == "true"


def test_per_attempt_timeout(operator: OperatorProcess, kubectl: Kubectl, namespace: str) -> None:
    spec = {
        "steps": [
            {
                "name": "slow",
                "image": "busybox:1.36",
                "command": ["sleep", "60"],
                "timeout": "1s",
                "pod": sim("60s"),
            }
        ]
    }
    submit(kubectl, namespace, "tmo", spec)
    status = wait_phase(kubectl, namespace, "tmo", timeout=30)
    assert status["phase"] == "Failed", status
    slow = status["steps"]["slow"]
    assert slow["phase"] == "TimedOut" and "1s" in slow["message"], slow
    (pod,) = wait_stopped_in_place(kubectl, namespace, "tmo", ["slow"])
    assert slow["podName"] == pod["metadata"]["name"]


def test_run_deadline(operator: OperatorProcess, kubectl: Kubectl, namespace: str) -> None:
    spec = {
        "mode": "Parallel",
        "timeout": "2s",
        "template": {"image": "busybox:1.36", "pod": sim("60s")},
        "steps": [{"name": "x", "command": ["true"]}, {"name": "y", "command": ["true"]}],
    }
    submit(kubectl, namespace, "dl", spec)
    status = wait_phase(kubectl, namespace, "dl", timeout=30)
    assert status["phase"] == "Failed", status
    assert status["conditions"][0]["reason"] == "DeadlineExceeded"
    assert step_phases(status) == {"x": ("Cancelled", 1), "y": ("Cancelled", 1)}
    started = parse_timestamp(status["startedAt"])
    assert 2.0 <= parse_timestamp(status["finishedAt"]) - started < 4.0
    wait_stopped_in_place(kubectl, namespace, "dl", ["x", "y"])


def test_suspend_then_resume(operator: OperatorProcess, kubectl: Kubectl, namespace: str) -> None:
    spec = {
        "template": {"image": "busybox:1.36"},
        "steps": [
            {"name": "one", "command": ["true"], "pod": sim("2s")},
            {"name": "two", "command": ["true"], "pod": sim("200ms")},
        ],
    }
    submit(kubectl, namespace, "sus", spec)
    wait_for(lambda: pods_of(kubectl, namespace, "sus"), "the first pod")
    kubectl(
        "patch",
        "workflowrun",
        "sus",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"suspend":true}}',
    )
    wait_phase(kubectl, namespace, "sus", ["Paused"], timeout=10)
    # "one" finishes while paused; "two" must not start.
    wait_for(
        lambda: status_of(kubectl, namespace, "sus")["steps"]["one"]["phase"] == "Succeeded",
        "step one to finish while paused",
    )
    status = status_of(kubectl, namespace, "sus")
    assert status["phase"] == "Paused" and status["steps"]["two"]["phase"] == "Pending"
    assert len(pods_of(kubectl, namespace, "sus")) == 1
    kubectl(
        "patch",
        "workflowrun",
        "sus",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"suspend":false}}',
    )
    status = wait_phase(kubectl, namespace, "sus")
    assert status["phase"] == "Succeeded"
    assert status["observedGeneration"] == 3


def test_cancel(operator: OperatorProcess, kubectl: Kubectl, namespace: str) -> None:
    spec = {
        "template": {"image": "busybox:1.36"},
        "rollbackOnFailure": True,
        "steps": [
            {
                "name": "done",
                "command": ["true"],
                "pod": sim("100ms"),
                "rollback": {"command": ["undo"]},
            },
            {"name": "long", "command": ["true"], "pod": sim("60s")},
            {"name": "later", "command": ["true"]},
        ],
    }
    submit(kubectl, namespace, "cx", spec)
    wait_for(
        lambda: (
            status_of(kubectl, namespace, "cx").get("steps", {}).get("long", {}).get("phase")
            == "Running"
        ),
        "step long to run",
    )
    kubectl(
        "patch",
        "workflowrun",
        "cx",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"cancel":true}}',
    )
    status = wait_phase(kubectl, namespace, "cx", timeout=20)
    assert status["phase"] == "Cancelled", status
    assert step_phases(status) == {
        "done": ("Succeeded", 1),
        "long": ("Cancelled", 1),
        "later": ("Cancelled", 0),
    }
    assert "rollback" not in status["steps"]["done"]  # cancel never rolls back

    # Stopped, not deleted: the cancelled attempt's pod stays as evidence.
    (long_pod,) = wait_stopped_in_place(kubectl, namespace, "cx", ["long"])
    assert status["steps"]["long"]["podName"] == long_pod["metadata"]["name"]


def test_job_launcher(operator: OperatorProcess, kubectl: Kubectl, namespace: str) -> None:
    spec = {
        "steps": [
            {
                "name": "batch",
                "image": "busybox:1.36",
                "command": ["true"],
                "launcher": "Job",
                "pod": sim("300ms", message={"rows": 42}),
            },
            {
                "name": "after",
                "image": "busybox:1.36",
                "command": ["true"],
                "when": "steps.batch.outputs.rows == 42",
                "pod": sim("100ms"),
            },
        ]
    }
    submit(kubectl, namespace, "jobs", spec)
    status = wait_phase(kubectl, namespace, "jobs", timeout=60)
    assert status["phase"] == "Succeeded", status
    assert status["steps"]["batch"]["outputs"] == {"rows": 42}
    assert step_phases(status)["after"] == ("Succeeded", 1)
    jobs = kubectl.json("get", "jobs", "-n", namespace, "-l", "szal.dev/run=jobs")["items"]
    assert len(jobs) == 1
    job = jobs[0]
    assert job["spec"]["backoffLimit"] == 0
    assert job["metadata"]["ownerReferences"][0]["kind"] == "WorkflowRun"


def test_gpu_steps(operator: OperatorProcess, kubectl: Kubectl, namespace: str) -> None:
    spec = {
        "mode": "Parallel",
        "template": {"image": "busybox:1.36", "pod": sim("500ms")},
        "steps": [
            {
                "name": "train",
                "command": ["true"],
                "resources": {"gpu": {"count": 2, "product": "NVIDIA-H100-80GB-HBM3"}},
            },
            {
                "name": "impossible",
                "command": ["true"],
                "resources": {"gpu": {"count": 1, "product": "NVIDIA-B300-NOT-HERE"}},
            },
        ],
    }
    submit(kubectl, namespace, "gpu", spec)

    def train_done() -> bool:
        return (
            status_of(kubectl, namespace, "gpu").get("steps", {}).get("train", {}).get("phase")
            == "Succeeded"
        )

    wait_for(train_done, "the GPU step to succeed", timeout=60)
    pods = {p["metadata"]["labels"]["szal.dev/step"]: p for p in pods_of(kubectl, namespace, "gpu")}
    node = pods["train"]["spec"]["nodeName"]
    labels = kubectl.get("node", node)["metadata"]["labels"]  # type: ignore[index]
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"

    def reported() -> str | None:
        rec = status_of(kubectl, namespace, "gpu")["steps"]["impossible"]
        message = rec.get("message") or ""
        return message if "nodes are available" in message else None

    message = wait_for(reported, "the unschedulable reason in the step message", timeout=30)
    assert "node affinity/selector" in message or "nvidia.com/gpu" in message, message
    kubectl(
        "patch",
        "workflowrun",
        "gpu",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"cancel":true}}',
    )
    assert wait_phase(kubectl, namespace, "gpu")["phase"] == "Cancelled"


def test_kubectl_columns_and_wait(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    spec = {
        "steps": [{"name": "s", "image": "busybox:1.36", "command": ["true"], "pod": sim("1s")}]
    }
    submit(kubectl, namespace, "cols", spec)
    kubectl(
        "wait",
        "--for=condition=Succeeded",
        "workflowrun/cols",
        "-n",
        namespace,
        "--timeout=60s",
        timeout=70,
    )
    out = kubectl("get", "workflowruns", "-n", namespace).stdout.splitlines()
    header = out[0].split()
    assert header == ["NAME", "WORKFLOW", "PHASE", "PROGRESS", "DURATION", "AGE"], out
    row = out[1].split()
    assert row[:4] == ["cols", "cols", "Succeeded", "1/1"], out
    assert row[4].endswith("s"), out
    wide = kubectl("get", "workflowruns", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert "MESSAGE" in wide[0].split()
    wf = kubectl("get", "workflows.szal.dev", "-n", namespace).stdout.splitlines()
    assert wf[0].split()[:4] == ["NAME", "MODE", "STEPS", "VERSION"], wf
    wait_for(
        lambda: (
            kubectl("get", "workflows.szal.dev", "-n", namespace).stdout.splitlines()[1].split()[2]
            == "1"
        ),
        "the STEPS column",
    )


def test_editing_the_workflow_does_not_change_a_running_run(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    spec = {
        "template": {"image": "busybox:1.36", "pod": sim("1500ms")},
        "steps": [{"name": "one", "command": ["true"]}, {"name": "two", "command": ["true"]}],
    }
    submit(kubectl, namespace, "pin", spec)
    wait_for(lambda: pods_of(kubectl, namespace, "pin"), "the first pod")
    pinned = status_of(kubectl, namespace, "pin")["workflow"]
    edited = dict(spec, steps=[*spec["steps"], {"name": "three", "command": ["true"]}])  # type: ignore[list-item]
    kubectl.apply(workflow("pin", edited), namespace)
    # A restart in the middle must use the pinned spec too, not the edited one.
    operator.stop()
    operator.start()
    status = wait_phase(kubectl, namespace, "pin")
    assert status["phase"] == "Succeeded"
    assert set(status["steps"]) == {"one", "two"}
    assert status["workflow"] == pinned


def test_ttl_deletes_finished_runs(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    spec = {
        "steps": [{"name": "s", "image": "busybox:1.36", "command": ["true"], "pod": sim("100ms")}]
    }
    submit(kubectl, namespace, "ttl", spec, ttlSecondsAfterFinished=2)
    wait_phase(kubectl, namespace, "ttl")
    wait_for(
        lambda: kubectl.get("workflowrun", "ttl", namespace) is None,
        "the run to be deleted by its TTL",
        timeout=30,
    )
    wait_for(lambda: not pods_of(kubectl, namespace, "ttl"), "its pods to be collected", timeout=60)


def test_missing_workflow_fails_the_run(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    kubectl.apply(run("orphan", "no-such-workflow"), namespace)
    status = wait_phase(kubectl, namespace, "orphan", timeout=30)
    assert status["phase"] == "Failed"
    assert status["conditions"][0]["reason"] == "WorkflowNotFound"
    assert "no-such-workflow" in status["message"]


def test_szal_operator_serves_admission_webhooks(
    kubeconfig: Path, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    ensure_crds(kubectl)
    port = free_port()
    args = ("--webhook-port", str(port), "--webhook-cert-dir", str(tmp_path / "certs"))
    with OperatorProcess(kubeconfig, [namespace], *args):
        cyclic = {
            "mode": "Dag",
            "steps": [
                {"name": "a", "image": "busybox:1.36", "command": ["true"], "dependsOn": ["b"]},
                {"name": "b", "image": "busybox:1.36", "command": ["true"], "dependsOn": ["a"]},
            ],
        }

        def refused() -> str | None:
            proc = kubectl(
                "apply",
                "-n",
                namespace,
                "-f",
                "-",
                input=json.dumps(workflow("cyclic", cyclic)),
                check=False,
            )
            return proc.stderr if proc.returncode != 0 and "denied" in proc.stderr else None

        message = wait_for(refused, "the webhook to refuse a cyclic Workflow", timeout=30)
        assert "a -> b -> a" in message, message
        ok = {
            "steps": [
                {"name": "s", "image": "busybox:1.36", "command": ["true"], "pod": sim("100ms")}
            ]
        }
        submit(kubectl, namespace, "admitted", ok)
        assert wait_phase(kubectl, namespace, "admitted")["phase"] == "Succeeded"


def test_a_pod_deleted_by_someone_fails_its_attempt_and_is_retried(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    spec = {
        "steps": [
            {
                "name": "victim",
                "image": "busybox:1.36",
                "command": ["true"],
                "retries": {"limit": 1, "delay": "100ms"},
                "pod": sim("3s", **{"szal.dev/sim-duration-attempt-2": "200ms"}),
            },
        ]
    }
    submit(kubectl, namespace, "gone", spec)

    def running_pod() -> str | None:
        for p in pods_of(kubectl, namespace, "gone"):
            if p.get("status", {}).get("phase") == "Running":
                return str(p["metadata"]["name"])
        return None

    name = wait_for(running_pod, "the first attempt's pod to run")
    kubectl("delete", "pod", name, "-n", namespace, "--wait=false")
    status = wait_phase(kubectl, namespace, "gone", timeout=30)
    assert status["phase"] == "Succeeded", status
    assert step_phases(status) == {"victim": ("Succeeded", 2)}
    events = kubectl.json(
        "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=gone"
    )["items"]
    retry = [e["message"] for e in events if e["reason"] == "Retrying"]
    assert retry and "was deleted before it finished" in retry[0], retry


def test_concurrent_writers_cause_conflicts_not_damage(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    # Labels written by someone else change the run's resourceVersion under
    # the operator: its status patches then fail their precondition (409),
    # and it must re-read and re-plan without losing or repeating a step.
    spec = {
        "template": {"image": "busybox:1.36", "command": ["true"], "pod": sim("150ms")},
        "steps": [{"name": f"s{i}"} for i in range(12)],
    }
    submit(kubectl, namespace, "busy", spec)
    for i in range(40):
        kubectl("label", "workflowrun", "busy", "-n", namespace, f"poke={i}", "--overwrite")
        if status_of(kubectl, namespace, "busy").get("phase") == "Succeeded":
            break
    status = wait_phase(kubectl, namespace, "busy", timeout=60)
    assert status["phase"] == "Succeeded"
    assert step_phases(status) == {f"s{i}": ("Succeeded", 1) for i in range(12)}
    assert len(pods_of(kubectl, namespace, "busy")) == 12
