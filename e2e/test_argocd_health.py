"""Argo CD's health of real WorkflowRuns and Workflows, on the test cluster.

One scenario (module fixture) drives runs through ``szal operator`` on the
real control plane (kwok plays the pods) into every phase Argo CD has to
tell apart, and captures each object as ``kubectl get -o json`` prints it
at that moment: before the operator saw it (no status), Running, Paused
(suspend), Cancelled, Failed (a step fails; the run deadline; a missing
Workflow), RollingBack, RolledBack, Succeeded; a Workflow before and after
the operator observed it; a run created the way Argo CD creates a hook
(generateName, hook annotations, Argo CD's hook finalizer), then released
and deleted as Argo CD does; and the example Application's PreSync and
PostSync hooks (deploy/argocd/example) as shipped. Each captured object is
fed to the shipped Lua checks in the harness (gopher-lua, Argo CD's sandbox)
and its health status and message are asserted. The argocd-cm patch is
applied to a ConfigMap with the real kubectl.

``SZAL_ARGOCD_CAPTURE=tests/argocd/captured`` also writes the captured
objects there: the fixtures of the fast tests in tests/argocd.

Not covered: a real Argo CD controller (none can run here); the states a
run passes too quickly to capture reliably (a status lagging the spec):
those are hand-written cases in tests/argocd.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.argocd.harness import ARGOCD, KINDS, assess, script

from e2e.conftest import Kubectl, fresh_namespace
from e2e.operator_support import (
    OperatorProcess,
    ensure_crds,
    run,
    sim,
    status_of,
    wait_for,
    wait_phase,
    workflow,
)

pytestmark = pytest.mark.e2e

HOOK_FINALIZER = "argocd.argoproj.io/hook-finalizer"

WORKFLOWS: dict[str, dict[str, Any]] = {
    "wf-ok": {
        "template": {"image": "busybox:1.36", "pod": sim("200ms")},
        "steps": [{"name": "a", "command": ["true"]}, {"name": "b", "command": ["true"]}],
    },
    "wf-long": {
        "template": {"image": "busybox:1.36"},
        "steps": [
            {"name": "one", "command": ["sleep", "60"], "pod": sim("60s")},
            {"name": "two", "command": ["true"], "pod": sim("200ms")},
        ],
    },
    "wf-boom": {
        "mode": "Sequential",
        "template": {"image": "busybox:1.36"},
        "steps": [
            {"name": "fine", "command": ["true"], "pod": sim("100ms")},
            {
                "name": "boom",
                "command": ["false"],
                "pod": sim("100ms", exit_code=3, message="disk full"),
            },
        ],
    },
    "wf-rb": {
        "mode": "Sequential",
        "rollbackOnFailure": True,
        "template": {"image": "busybox:1.36"},
        "steps": [
            {
                "name": "first",
                "command": ["true"],
                "rollback": {"command": ["undo"]},
                "pod": sim("100ms", **{"szal.dev/sim-duration-rollback": "8s"}),
            },
            {"name": "boom", "command": ["false"], "pod": sim("100ms", exit_code=2)},
        ],
    },
    "wf-deadline": {
        "timeout": "2s",
        "template": {"image": "busybox:1.36", "pod": sim("60s")},
        "steps": [{"name": "x", "command": ["true"]}],
    },
}


class Scenario:
    """The namespace, the captured objects, and what Argo CD makes of them."""

    def __init__(self, kubectl: Kubectl, namespace: str) -> None:
        self.kubectl = kubectl
        self.namespace = namespace
        self.captured: dict[str, dict[str, Any]] = {}

    def get(self, kind: str, name: str) -> dict[str, Any]:
        obj = self.kubectl.get(f"{kind.lower()}s.szal.dev", name, self.namespace)
        assert obj is not None, f"{kind} {name} is gone"
        return obj

    def capture(self, label: str, kind: str, name: str) -> dict[str, Any]:
        obj = self.get(kind, name)
        self.captured[label] = obj
        return obj

    def create(self, manifest: dict[str, Any]) -> str:
        """``kubectl create`` (generateName needs create, not apply); the name."""
        done = self.kubectl(
            "create", "-n", self.namespace, "-o", "json", "-f", "-", input=json.dumps(manifest)
        )
        name: str = json.loads(done.stdout)["metadata"]["name"]
        return name

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.kubectl(
            "patch",
            "workflowrun",
            name,
            "-n",
            self.namespace,
            "--type=merge",
            "-p",
            json.dumps({"spec": spec}),
        )

    def wait_step(self, run_name: str, step: str, phase: str) -> None:
        wait_for(
            lambda: (
                (status_of(self.kubectl, self.namespace, run_name).get("steps") or {})
                .get(step, {})
                .get("phase")
                == phase
            ),
            f"step {step} of {run_name} to be {phase}",
        )


@pytest.fixture(scope="module")
def scenario(kubeconfig: Path, kubectl: Kubectl) -> Iterator[Scenario]:
    ensure_crds(kubectl)
    with fresh_namespace(kubectl) as ns:
        s = Scenario(kubectl, ns)
        drive(s, kubeconfig)
        target = os.environ.get("SZAL_ARGOCD_CAPTURE")
        if target:
            Path(target).mkdir(parents=True, exist_ok=True)
            for label, obj in s.captured.items():
                (Path(target) / f"{label}.json").write_text(
                    json.dumps(obj, indent=2, sort_keys=True) + "\n"
                )
        yield s


def drive(s: Scenario, kubeconfig: Path) -> None:
    kubectl, ns = s.kubectl, s.namespace
    for name, spec in WORKFLOWS.items():
        kubectl.apply(workflow(name, spec), ns)
    kubectl.apply(run("early", "wf-ok"), ns)
    s.capture("workflow-unobserved", "Workflow", "wf-ok")
    s.capture("run-no-status", "WorkflowRun", "early")
    # As Argo CD creates a hook: generateName, annotations, its finalizer.
    hook = run("unused", "wf-ok")
    hook["metadata"] = {
        "generateName": "hook-",
        "annotations": {
            "argocd.argoproj.io/hook": "PostSync",
            "argocd.argoproj.io/hook-delete-policy": "HookSucceeded",
        },
        "finalizers": [HOOK_FINALIZER],
    }
    hook_name = s.create(hook)

    with OperatorProcess(kubeconfig, [ns]):
        for name in ("long", "boom", "rb", "deadline"):
            kubectl.apply(run(name, f"wf-{name}"), ns)
        kubectl.apply(run("orphan", "no-such-workflow"), ns)
        kubectl.apply(yaml.safe_load((ARGOCD / "example" / "workflow.yaml").read_text()), ns)
        presync = s.create(yaml.safe_load((ARGOCD / "example" / "presync-run.yaml").read_text()))
        postsync = s.create(yaml.safe_load((ARGOCD / "example" / "postsync-run.yaml").read_text()))

        # The compensation runs 8 s: RollingBack is captured first, with room.
        wait_phase(kubectl, ns, "rb", ["RollingBack", "RolledBack"], timeout=30)
        s.capture("run-rolling-back", "WorkflowRun", "rb")
        s.wait_step("long", "one", "Running")
        s.capture("run-running", "WorkflowRun", "long")
        s.patch_spec("long", {"suspend": True})
        wait_phase(kubectl, ns, "long", ["Paused"], timeout=20)
        s.capture("run-paused", "WorkflowRun", "long")
        s.patch_spec("long", {"cancel": True})
        wait_phase(kubectl, ns, "long", ["Cancelled"], timeout=20)
        s.capture("run-cancelled", "WorkflowRun", "long")

        wait_phase(kubectl, ns, "rb", ["RolledBack"], timeout=30)
        s.capture("run-rolled-back", "WorkflowRun", "rb")

        for name, label in (
            ("early", "run-succeeded"),
            ("boom", "run-failed"),
            ("deadline", "run-deadline-exceeded"),
            ("orphan", "run-workflow-not-found"),
            (hook_name, "hook-succeeded"),
            (presync, "example-presync"),
            (postsync, "example-postsync"),
        ):
            wait_phase(kubectl, ns, name, timeout=60)
            s.capture(label, "WorkflowRun", name)
        wait_for(lambda: s.get("Workflow", "wf-ok").get("status"), "the Workflow's status")
        s.capture("workflow-observed", "Workflow", "wf-ok")
        s.capture("example-workflow", "Workflow", "smoke-test")

        # Argo CD, the hook done: it removes its finalizer, then deletes the hook.
        kubectl(
            "patch", "workflowrun", hook_name, "-n", ns, "--type=json",
            "-p", json.dumps([{"op": "remove", "path": "/metadata/finalizers/0"}]),
        )  # fmt: skip
        kubectl("delete", "workflowrun", hook_name, "-n", ns, "--wait=true", "--timeout=30s")


# label -> (health status, message); <D> stands for any duration.
EXPECTED: dict[str, tuple[str, str]] = {
    "workflow-unobserved": ("Progressing", "Waiting for the operator"),
    "workflow-observed": ("Healthy", "2 steps"),
    "example-workflow": ("Healthy", "2 steps"),
    "run-no-status": ("Progressing", "Waiting for the operator"),
    "run-running": ("Progressing", "Running: 0/2 steps finished"),
    "run-paused": ("Suspended", "Paused: 0/2 steps finished; run suspended"),
    "run-cancelled": ("Degraded", "Cancelled in <D>: 0/2 steps succeeded; run cancelled"),
    "run-failed": (
        "Degraded",
        "Failed in <D>: 1/2 steps succeeded; step 'boom' failed; boom (exit code 3): disk full",
    ),
    "run-deadline-exceeded": (
        "Degraded",
        "Failed (DeadlineExceeded) in <D>: 0/1 steps succeeded; run exceeded its timeout of 2s",
    ),
    "run-workflow-not-found": (
        "Degraded",
        "Failed (WorkflowNotFound) in <D>; Workflow 'no-such-workflow' not found in namespace <NS>",
    ),
    "run-rolling-back": (
        "Progressing",
        "RollingBack: 2/2 steps finished; step 'boom' failed; rolling back 1 step(s);"
        " boom (exit code 2): failed with exit code 2",
    ),
    "run-rolled-back": (
        "Degraded",
        "RolledBack in <D>: 1/2 steps succeeded; step 'boom' failed; rolled back 1 step(s);"
        " boom (exit code 2): failed with exit code 2",
    ),
    "run-succeeded": ("Healthy", "Succeeded in <D>: 2/2 steps succeeded"),
    "hook-succeeded": ("Healthy", "Succeeded in <D>: 2/2 steps succeeded"),
    "example-presync": ("Healthy", "Succeeded in <D>: 2/2 steps succeeded"),
    "example-postsync": ("Healthy", "Succeeded in <D>: 2/2 steps succeeded"),
}


def matches(message: str, expected: str, namespace: str) -> bool:
    pattern = re.escape(expected).replace("<D>", r"[0-9][0-9.hms]*").replace("<NS>", namespace)
    return re.fullmatch(pattern, message) is not None


def test_every_state_was_captured(scenario: Scenario) -> None:
    assert sorted(scenario.captured) == sorted(EXPECTED)
    phases = {
        label: (obj.get("status") or {}).get("phase") for label, obj in scenario.captured.items()
    }
    assert phases["run-running"] == "Running" and phases["run-paused"] == "Paused"
    assert phases["run-rolling-back"] == "RollingBack", (
        "the rollback finished before it was captured"
    )


@pytest.mark.parametrize("label", sorted(EXPECTED))
def test_health_of_captured_object(scenario: Scenario, label: str) -> None:
    obj = scenario.captured[label]
    result = assess([obj])[0]
    status, message = EXPECTED[label]
    assert result["status"] == status, (result, obj.get("status"))
    assert matches(result["message"], message, scenario.namespace), (result, message)
    assert assess([obj], open_libs=True)[0] == result


def test_argo_cds_hook_finalizer_does_not_disturb_the_run(scenario: Scenario) -> None:
    hook = scenario.captured["hook-succeeded"]
    assert hook["metadata"]["finalizers"] == [HOOK_FINALIZER]
    assert hook["metadata"]["name"].startswith("hook-")
    names = [
        o["metadata"]["name"]
        for o in scenario.kubectl.json("get", "workflowruns", "-n", scenario.namespace)["items"]
    ]
    assert hook["metadata"]["name"] not in names, "the released hook was not deleted"


def test_argocd_cm_patch_is_accepted_by_the_api_server(scenario: Scenario) -> None:
    kubectl, ns = scenario.kubectl, scenario.namespace
    kubectl(
        "create", "configmap", "argocd-cm", "-n", ns, "--from-literal=url=https://argocd.example"
    )
    kubectl(
        "patch", "configmap", "argocd-cm", "-n", ns, "--type=merge",
        "--patch-file", str(ARGOCD / "argocd-cm.yaml"),
    )  # fmt: skip
    data = kubectl.json("get", "configmap", "argocd-cm", "-n", ns)["data"]
    assert data.pop("url") == "https://argocd.example"
    assert data == {
        f"resource.customizations.health.szal.dev_{k}": script(k).read_text() for k in KINDS
    }
