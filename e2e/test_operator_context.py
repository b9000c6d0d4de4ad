"""Long step contexts on the real control plane (issue 12): the API server takes the pods.

Covers, against ``szal operator`` serving a fresh namespace: a Sequential
run of 12 steps each leaving 3.9 KB of outputs (kwok's simulated
termination message) succeeds; early steps get ``SZAL_CONTEXT`` as a
variable, later ones (context over 32 KiB) the ``szal.dev/context``
annotation, the downwardAPI volume that projects it and
``SZAL_CONTEXT_FILE``, and the annotation holds every earlier step's
outputs; a Parallel run's pods carry no other step in their context.

Not covered: the kubelet writing the projected file (kwok runs no
containers; the real-node tests run real ones) and the manifest details
(tests/kubernetes/test_pods.py).
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
    pods_of,
    run,
    sim,
    wait_phase,
    workflow,
)

pytestmark = pytest.mark.e2e

STEPS = 12


@pytest.fixture
def operator(kubeconfig: Path, kubectl: Kubectl, namespace: str) -> Iterator[OperatorProcess]:
    ensure_crds(kubectl)
    with OperatorProcess(kubeconfig, [namespace]) as op:
        yield op


def _env(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0]["env"]}


def test_a_long_context_goes_as_a_projected_annotation(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    outputs = {"blob": "x" * 3900}
    spec = {
        "template": {
            "image": "busybox:1.36",
            "command": ["true"],
            "pod": sim("0s", message=outputs),
        },
        "steps": [{"name": f"s{i:02d}"} for i in range(STEPS)],
    }
    kubectl.apply(workflow("long", spec), namespace)
    kubectl.apply(run("long", "long"), namespace)
    status = wait_phase(kubectl, namespace, "long", timeout=120.0)
    assert status["phase"] == "Succeeded", status
    pods = {
        p["metadata"]["labels"]["szal.dev/step"]: p for p in pods_of(kubectl, namespace, "long")
    }
    assert len(pods) == STEPS
    first, last = pods["s00"], pods[f"s{STEPS - 1:02d}"]
    assert json.loads(_env(first)["SZAL_CONTEXT"])["steps"] == {}
    assert "volumes" not in first["spec"] or not any(
        v["name"] == "szal-context" for v in first["spec"]["volumes"]
    )
    env = _env(last)
    assert "SZAL_CONTEXT" not in env
    assert env["SZAL_CONTEXT_FILE"] == "/var/run/szal/context/context.json"
    context = json.loads(last["metadata"]["annotations"]["szal.dev/context"])
    assert sorted(context["steps"]) == [f"s{i:02d}" for i in range(STEPS - 1)]
    assert all(s["outputs"] == outputs for s in context["steps"].values())
    volume = next(v for v in last["spec"]["volumes"] if v["name"] == "szal-context")
    assert volume["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"] == (
        "metadata.annotations['szal.dev/context']"
    )


def test_parallel_pods_carry_no_other_step(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    spec = {
        "mode": "Parallel",
        "maxParallel": 2,
        "template": {
            "image": "busybox:1.36",
            "command": ["true"],
            "pod": sim("0s", message={"k": 1}),
        },
        "steps": [{"name": f"p{i}"} for i in range(6)],
    }
    kubectl.apply(workflow("wide", spec), namespace)
    kubectl.apply(run("wide", "wide"), namespace)
    status = wait_phase(kubectl, namespace, "wide", timeout=120.0)
    assert status["phase"] == "Succeeded", status
    pods = pods_of(kubectl, namespace, "wide")
    assert len(pods) == 6
    assert all(json.loads(_env(p)["SZAL_CONTEXT"])["steps"] == {} for p in pods)
