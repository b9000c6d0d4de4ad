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


# --- captured from real runs ---------------------------------------------------

CAPTURED_HEALTH: dict[str, tuple[str, str]] = {
    "workflow-unobserved": ("Progressing", "Waiting for the operator"),
    "workflow-observed": ("Healthy", "2 steps"),
    "example-workflow": ("Healthy", "2 steps"),
    "run-no-status": ("Progressing", "Waiting for the operator"),
    "run-running": ("Progressing", "Running: 0/2 steps finished"),
    "run-paused": ("Suspended", "Paused: 0/2 steps finished; run suspended"),
    "run-cancelled": ("Degraded", "Cancelled in 4.3s: 0/2 steps succeeded; run cancelled"),
    "run-failed": (
        "Degraded",
        "Failed in 430ms: 1/2 steps succeeded; step 'boom' failed; boom (exit code 3): disk full",
    ),
    "run-deadline-exceeded": (
        "Degraded",
        "Failed (DeadlineExceeded) in 2s: 0/1 steps succeeded; run exceeded its timeout of 2s",
    ),
    "run-workflow-not-found": (
        "Degraded",
        "Failed (WorkflowNotFound) in 0ms;"
        " Workflow 'no-such-workflow' not found in namespace t-8b2134ca",
    ),
    "run-rolling-back": (
        "Progressing",
        "RollingBack: 2/2 steps finished; step 'boom' failed; rolling back 1 step(s);"
        " boom (exit code 2): failed with exit code 2",
    ),
    "run-rolled-back": (
        "Degraded",
        "RolledBack in 8.6s: 1/2 steps succeeded; step 'boom' failed; rolled back 1 step(s);"
        " boom (exit code 2): failed with exit code 2",
    ),
    "run-succeeded": ("Healthy", "Succeeded in 921ms: 2/2 steps succeeded"),
    "hook-succeeded": ("Healthy", "Succeeded in 840ms: 2/2 steps succeeded"),
    "example-presync": ("Healthy", "Succeeded in 913ms: 2/2 steps succeeded"),
    "example-postsync": ("Healthy", "Succeeded in 945ms: 2/2 steps succeeded"),
}


def test_every_captured_object_has_an_expectation() -> None:
    assert sorted(p.stem for p in CAPTURED.glob("*.json")) == sorted(CAPTURED_HEALTH)


@pytest.mark.parametrize("label", sorted(CAPTURED_HEALTH))
def test_captured(label: str) -> None:
    result = both(load(label))
    assert (result["status"], result["message"]) == CAPTURED_HEALTH[label], result


def test_captured_all_at_once() -> None:
    """One harness process judges many objects of both kinds, each on its own."""
    labels = sorted(CAPTURED_HEALTH)
    results = assess([load(label) for label in labels])
    assert [(r["status"], r["message"]) for r in results] == [CAPTURED_HEALTH[x] for x in labels]


@pytest.mark.parametrize("label", ["run-running", "run-paused", "run-rolling-back"])
def test_captured_unfinished_run_after_a_spec_edit(label: str) -> None:
    """Derived: the captured object with metadata.generation bumped, as right
    after ``kubectl patch`` and before the operator's next status write."""
    obj = load(label)
    observed = obj["status"]["observedGeneration"]
    obj["metadata"]["generation"] = observed + 1
    assert both(obj) == {
        "status": "Progressing",
        "message": f"Waiting for the operator to observe generation {observed + 1}"
        f" (status is of generation {observed})",
    }


@pytest.mark.parametrize("label", ["run-succeeded", "run-cancelled", "run-rolled-back"])
def test_captured_finished_run_after_a_spec_edit(label: str) -> None:
    obj = load(label)
    expected = both(obj)
    obj["metadata"]["generation"] = obj["status"]["observedGeneration"] + 5
    assert both(obj) == expected


def test_captured_hook_being_released_and_deleted() -> None:
    """Derived: Argo CD deletes a hook; its finalizer keeps Argo CD's rule off."""
    obj = load("hook-succeeded")
    obj["metadata"]["deletionTimestamp"] = "2026-12-02T10:30:00Z"
    assert both(obj)["status"] == "Healthy"  # still carries argocd.argoproj.io/hook-finalizer
    obj["metadata"]["finalizers"] = []
    assert both(obj) == {"status": "Progressing", "message": "Pending deletion"}


# --- hand-written WorkflowRun cases ---------------------------------------------


def test_failed_steps_are_named_in_order_up_to_three() -> None:
    steps = {
        name: {"phase": "Failed", "attempts": 1, "exitCode": code, "message": f"m{code}"}
        for name, code in (("d", 4), ("b", 2), ("a", 1), ("c", 3))
    }
    steps["slow"] = {"phase": "TimedOut", "attempts": 1, "message": "timed out after 1s"}
    steps["ok"] = {"phase": "Succeeded", "attempts": 1}
    steps["maybe"] = {"phase": "Skipped", "attempts": 0}
    result = both(
        run_obj(
            {
                "phase": "Failed",
                "duration": "3s",
                "progress": "7/7",
                "message": "5 steps failed",
                "observedGeneration": 1,
                "steps": steps,
            }
        )
    )
    assert result == {
        "status": "Degraded",
        "message": "Failed in 3s: 1/7 steps succeeded, 1 skipped; 5 steps failed;"
        " a (exit code 1): m1; b (exit code 2): m2; c (exit code 3): m3; and 2 more failed",
    }
    del steps["a"], steps["b"], steps["c"]
    result = both(run_obj({"phase": "Failed", "observedGeneration": 1, "steps": steps}))
    assert result["message"] == (
        "Failed: 1/4 steps succeeded, 1 skipped;"
        " d (exit code 4): m4; slow timed out: timed out after 1s"
    )


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
                "Failed (WorkflowNotFound) in 0s: 0/0 steps finished;"
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


def test_a_5000_step_run_is_judged_within_argo_cds_deadline() -> None:
    """The check walks status.steps; Argo CD stops a script after 1 s (so does the harness)."""
    steps = {
        f"s{i:04d}": {"phase": "Failed" if i % 1000 == 0 else "Succeeded", "attempts": 1}
        for i in range(5000)
    }
    result = both(run_obj({"phase": "Failed", "observedGeneration": 1, "steps": steps}))
    assert result == {
        "status": "Degraded",
        "message": "Failed: 4995/5000 steps succeeded; s0000; s1000; s2000; and 2 more failed",
    }
