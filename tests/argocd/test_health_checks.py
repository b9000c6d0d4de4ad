"""Argo CD health of Workflow and WorkflowRun objects, in Argo CD's interpreter.

Two kinds of input:

* **captured**: ``captured/*.json`` are objects ``kubectl get -o json``
  printed for real runs on the test cluster, driven through the operator by
  ``e2e/test_argocd_health.py`` (which writes them when
  ``SZAL_ARGOCD_CAPTURE`` names this directory; they are kept as printed);
* **hand-written** edge cases the cluster cannot be made to show on demand:
  a status that lags the spec (derived from a captured object by bumping
  ``metadata.generation``), a phase this version of the checks does not
  know, a terminating run, a status without a phase.

Every case runs with the argocd-cm sandbox and again with the standard
libraries open (``useOpenLibs``): the checks must not depend on either.
Not covered: the argocd-cm snippets (test_snippets.py), the harness itself
(test_harness.py), live runs (e2e).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.argocd.harness import assess

CAPTURED = Path(__file__).parent / "captured"


def load(name: str) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads((CAPTURED / f"{name}.json").read_text())
    return obj


def both(obj: dict[str, Any]) -> dict[str, Any]:
    """The health, checked to be the same with and without open libraries."""
    sandboxed, opened = assess([obj]), assess([obj], open_libs=True)
    assert sandboxed == opened
    return sandboxed[0]


def run_obj(status: dict[str, Any] | None, generation: int = 1, **meta: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "szal.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": "r", "namespace": "ns", "generation": generation, **meta},
        "spec": {"workflowRef": {"name": "w"}},
    }
    if status is not None:
        obj["status"] = status
    return obj


def wf_obj(status: dict[str, Any] | None, generation: int = 1) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "szal.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "w", "namespace": "ns", "generation": generation},
        "spec": {"steps": [{"name": "a", "command": ["true"]}]},
    }
    if status is not None:
        obj["status"] = status
    return obj


def cond(status: str, reason: str, message: str = "") -> list[dict[str, Any]]:
    return [{"type": "Succeeded", "status": status, "reason": reason, "message": message}]


# --- hand-written WorkflowRun cases ---------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (None, ("Progressing", "Waiting for the operator")),
        ({}, ("Progressing", "Waiting for the operator")),
        (
            {"conditions": [{"type": "HistoryArchived", "status": "True"}]},
            ("Progressing", "Waiting for the operator"),
        ),
        (
            {"phase": "Pending", "progress": "0/2", "observedGeneration": 1},
            ("Progressing", "Pending: 0/2 steps finished"),
        ),
        (
            {"phase": "Running", "observedGeneration": 1},
            ("Progressing", "Running"),
        ),
        (
            {
                "phase": "RollingBack",
                "progress": "3/3",
                "observedGeneration": 1,
                "message": "step 'b' failed",
                "conditions": cond("Unknown", "RollingBack", "step 'b' failed"),
            },
            ("Progressing", "RollingBack: 3/3 steps finished; step 'b' failed"),
        ),
        (
            {
                "phase": "Failed",
                "progress": "0/0",
                "duration": "0s",
                "message": "Workflow 'w' not found in namespace ns",
                "conditions": cond("False", "WorkflowNotFound", "x"),
            },
            (
                "Degraded",
                "Failed (WorkflowNotFound): 0/0 steps finished in 0s;"
                " Workflow 'w' not found in namespace ns",
            ),
        ),
        # The message falls back to the condition's.
        (
            {"phase": "Cancelled", "conditions": cond("False", "Cancelled", "run cancelled")},
            ("Degraded", "Cancelled; run cancelled"),
        ),
        # A newer operator's phase: the Succeeded condition decides.
        (
            {
                "phase": "Archiving",
                "observedGeneration": 1,
                "conditions": cond("True", "Archiving"),
            },
            ("Healthy", "Archiving"),
        ),
        (
            {"phase": "Archiving", "observedGeneration": 1, "conditions": cond("Unknown", "X")},
            ("Progressing", "Archiving (X)"),
        ),
        ({"phase": "Archiving"}, ("Unknown", "Unknown phase Archiving")),
        # No phase, only the condition (kstatus-style readers write only that).
        (
            {"conditions": cond("False", "Failed", "it broke")},
            ("Degraded", "Succeeded=False (Failed); it broke"),
        ),
    ],
)
def test_workflow_run_cases(status: dict[str, Any] | None, expected: tuple[str, str]) -> None:
    result = both(run_obj(status))
    assert (result["status"], result["message"]) == expected, result


@pytest.mark.parametrize("phase", ["Pending", "Running", "Paused", "RollingBack"])
def test_an_unfinished_run_waits_for_the_operator_to_observe_the_spec(phase: str) -> None:
    result = both(run_obj({"phase": phase, "observedGeneration": 2}, generation=3))
    assert result == {
        "status": "Progressing",
        "message": "Waiting for the operator to observe generation 3 (status is of generation 2)",
    }
    result = both(run_obj({"phase": phase}, generation=3))
    assert result["message"] == "Waiting for the operator to observe generation 3"


@pytest.mark.parametrize(
    ("phase", "health"),
    [
        ("Succeeded", "Healthy"),
        ("Failed", "Degraded"),
        ("RolledBack", "Degraded"),
        ("Cancelled", "Degraded"),
    ],
)
def test_a_finished_run_ignores_later_spec_edits(phase: str, health: str) -> None:
    """The operator never re-observes a finished run; its result is final."""
    result = both(run_obj({"phase": phase, "observedGeneration": 1}, generation=4))
    assert result["status"] == health


def test_a_terminating_run_is_progressing_with_argo_cds_message() -> None:
    obj = run_obj(
        {"phase": "Succeeded", "observedGeneration": 1},
        deletionTimestamp="2026-12-02T10:00:00Z",
        finalizers=["szal.dev/history"],
    )
    assert both(obj) == {
        "status": "Progressing",
        "message": "Pending deletion; blocked by finalizers: szal.dev/history",
    }


# --- hand-written Workflow cases ------------------------------------------------


@pytest.mark.parametrize(
    ("status", "generation", "expected"),
    [
        (None, 1, ("Progressing", "Waiting for the operator")),
        ({}, 1, ("Progressing", "Waiting for the operator")),
        ({"stepCount": 1, "observedGeneration": 1}, 1, ("Healthy", "1 step")),
        ({"stepCount": 12, "observedGeneration": 2}, 2, ("Healthy", "12 steps")),
        ({"observedGeneration": 2}, 2, ("Healthy", "Observed generation 2")),
        (
            {"stepCount": 3, "observedGeneration": 1},
            2,
            (
                "Progressing",
                "Waiting for the operator to observe generation 2 (status is of generation 1)",
            ),
        ),
    ],
)
def test_workflow_cases(
    status: dict[str, Any] | None, generation: int, expected: tuple[str, str]
) -> None:
    result = both(wf_obj(status, generation))
    assert (result["status"], result["message"]) == expected, result
