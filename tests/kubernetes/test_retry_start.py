"""A retried WorkflowRun's start in the operator (runners/kubernetes/retrying.py).

Covers, through the reconciler against a real local HTTP server
(:mod:`tests.kubernetes.run_api`): a run annotated ``szal.dev/retry-of``
starts with the original's Succeeded steps carried over (outputs, attempts,
``reusedFrom``) in its first status patch, creates pods only for the
other steps, and a restarted reconciler goes on from that status; a retry
whose original is missing, still running, or ran another spec fails at its
start with reason ``RetryRefused`` and creates no pod. Not covered: ``szal
retry`` itself and a real API server (``e2e/test_retry.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.kubernetes.local_server import serving
from tests.kubernetes.run_api import RunApi
from tests.kubernetes.test_pinning import ONCE, RUN_PATH, Cluster

from szal.engine.admitting import Admitted, admit
from szal.runners.kubernetes.client import ApiClient, Credentials

ORIGINAL_PATH = "/apis/szal.dev/v1alpha1/namespaces/ns/workflowruns/orig"
SPEC = {
    "mode": "Dag",
    "steps": [
        {"name": "a", "script": "true"},
        {"name": "b", "script": "true", "dependsOn": ["a"]},
        {"name": "c", "script": "true", "dependsOn": ["b"]},
    ],
}


def spec_hash(spec: dict[str, Any]) -> str:
    admitted = admit(spec, {}, name="ci-1")
    assert isinstance(admitted, Admitted)
    return admitted.workflow.spec_hash


def original(phase: str = "Failed", hash_: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "szal.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": "orig", "namespace": "ns", "uid": "u0"},
        "spec": {"workflow": SPEC},
        "status": {
            "phase": phase,
            "workflow": {"name": "orig", "version": 1, "specHash": hash_ or spec_hash(SPEC)},
            "steps": {
                "a": {
                    "phase": "Succeeded",
                    "attempts": 2,
                    "exitCode": 0,
                    "outputs": {"artifact": "x"},
                    "startedAt": "2026-12-01T10:00:00.000Z",
                    "finishedAt": "2026-12-01T10:00:01.000Z",
                    "finishOrder": 0,
                },
                "b": {"phase": "Failed", "attempts": 1, "exitCode": 1, "finishOrder": 1},
                "c": {"phase": "Skipped", "attempts": 0, "message": "dependency failed"},
            },
        },
    }


def retry_doc() -> dict[str, Any]:
    return {
        "apiVersion": "szal.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {
            "name": "ci-1",
            "namespace": "ns",
            "uid": "u1",
            "generation": 1,
            "annotations": {"szal.dev/retry-of": "orig"},
        },
        "spec": {"workflow": SPEC},
    }


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    api = RunApi()
    async with serving(api.handle) as url, ApiClient(Credentials(url), retry=ONCE) as client:
        yield Cluster(api, client)


async def test_a_retry_starts_with_the_original_succeeded_steps(cluster: Cluster) -> None:
    cluster.api.objects[ORIGINAL_PATH] = original()
    cluster.api.objects[RUN_PATH] = retry_doc()
    await cluster.reconciler().reconcile()
    steps = cluster.status["steps"]
    assert cluster.status["phase"] == "Running"
    assert steps["a"]["phase"] == "Succeeded"
    assert steps["a"]["reusedFrom"] == "orig"
    assert steps["a"]["outputs"] == {"artifact": "x"}
    assert steps["a"]["attempts"] == 2
    assert steps["b"]["phase"] == "Running" and "reusedFrom" not in steps["b"]
    assert [view.ref.step for view in cluster.pods_of("ns", "ci-1")] == ["b"]
    # A restart goes on from the status: nothing of the original is read again.
    cluster.api.seen.clear()
    await cluster.reconciler().reconcile()
    assert ("GET", ORIGINAL_PATH, None) not in cluster.api.seen
    assert cluster.status["steps"]["a"]["reusedFrom"] == "orig"
    assert [view.ref.step for view in cluster.pods_of("ns", "ci-1")] == ["b"]


@pytest.mark.parametrize(
    ("stored", "words"),
    [
        (None, "retry of 'orig': no such run in namespace ns"),
        (original("Running"), "retry of 'orig': run 'orig' is still Running"),
        (original(hash_="0000"), "retry of 'orig': it ran spec 0000"),
    ],
)
async def test_a_retry_that_cannot_start_fails_at_its_start(
    cluster: Cluster, stored: dict[str, Any] | None, words: str
) -> None:
    if stored is not None:
        cluster.api.objects[ORIGINAL_PATH] = stored
    cluster.api.objects[RUN_PATH] = retry_doc()
    await cluster.reconciler().reconcile()
    assert cluster.status["phase"] == "Failed"
    reason, message = cluster.condition()
    assert reason == "RetryRefused"
    assert message.startswith(words)
    assert cluster.pods_of("ns", "ci-1") == []
