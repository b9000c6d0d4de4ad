"""The operator running finally steps (``spec.finally``) on the real control plane.

Covers, against ``szal operator`` as a subprocess serving a fresh
namespace: finally steps running after a failed run's rollback (their pods
start after the last compensation ended) with ``finally: true`` in the
status and the run ending RolledBack; cancel running the finally steps;
cancel with ``spec.skipFinally`` running none.

Not covered here: planner details (tests/engine/test_planner_finally.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.conftest import Kubectl
from e2e.operator_support import (
    OperatorProcess,
    ensure_crds,
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


def submit(kubectl: Kubectl, ns: str, name: str, spec: dict[str, Any]) -> None:
    kubectl.apply(workflow(name, spec), ns)
    kubectl.apply(run(name, name), ns)


def test_finally_runs_after_the_rollback(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    spec = {
        "rollbackOnFailure": True,
        "template": {"image": "busybox:1.36", "pod": sim("200ms")},
        "steps": [
            {"name": "first", "command": ["true"], "rollback": {"command": ["undo"]}},
            {"name": "boom", "command": ["false"], "pod": sim("200ms", exit_code=3)},
        ],
        "finally": [
            {"name": "report", "command": ["true"], "when": "run.phase == 'RolledBack'"},
            {"name": "never", "command": ["true"], "when": "run.phase == 'Succeeded'"},
        ],
    }
    submit(kubectl, namespace, "fin", spec)
    status = wait_phase(kubectl, namespace, "fin", timeout=90)
    assert status["phase"] == "RolledBack", status
    steps = status["steps"]
    assert steps["report"]["phase"] == "Succeeded" and steps["report"]["finally"] is True
    assert steps["never"]["phase"] == "Skipped"
    assert status["progress"] == "4/4"
    assert status["mainOutcome"]["phase"] == "RolledBack"
    undone = parse_timestamp(steps["first"]["rollback"]["finishedAt"])
    assert parse_timestamp(steps["report"]["startedAt"]) >= undone


@pytest.mark.parametrize("skip", [False, True])
def test_cancel_runs_finally_unless_skipped(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str, skip: bool
) -> None:
    spec = {
        "template": {"image": "busybox:1.36"},
        "steps": [{"name": "long", "command": ["true"], "pod": sim("60s")}],
        "finally": [{"name": "cleanup", "command": ["true"], "pod": sim("200ms")}],
    }
    name = "skip" if skip else "cx"
    submit(kubectl, namespace, name, spec)
    wait_for(
        lambda: (
            status_of(kubectl, namespace, name).get("steps", {}).get("long", {}).get("phase")
            == "Running"
        ),
        "step long to run",
    )
    patch = '{"spec":{"cancel":true,"skipFinally":true}}' if skip else '{"spec":{"cancel":true}}'
    kubectl("patch", "workflowrun", name, "-n", namespace, "--type=merge", "-p", patch)
    status = wait_phase(kubectl, namespace, name, timeout=60)
    assert status["phase"] == "Cancelled", status
    expected = ("Cancelled", 0) if skip else ("Succeeded", 1)
    assert step_phases(status) == {"long": ("Cancelled", 1), "cleanup": expected}
