"""The reconciler coalescing a big run's status writes, against a real local HTTP server.

Covers, in virtual time: with every run object counted as big and a tiny
budget, the first write (the pin) goes at once; steps finishing in later
passes are not written until the budget allows, then in one merge patch
holding every step changed meanwhile; the pass returns the write's due
time as its wake-up; the terminal phase is written at once. Not covered:
the budget's arithmetic (test_coalescing.py) and a real API server
(bench/scale.py).
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.kubernetes.local_server import serving
from tests.kubernetes.run_api import RunApi

from szal.runners.kubernetes.client import ApiClient, Credentials, RetrySettings
from szal.runners.kubernetes.coalescing import CoalescingSettings
from szal.runners.kubernetes.events import EventPoster
from szal.runners.kubernetes.observing import pod_view
from szal.runners.kubernetes.reconciler import RunReconciler
from szal.runners.kubernetes.runtime import Mailbox, ReconcilerSettings, Runtime

ONCE = RetrySettings(attempts=1, request_timeout=5)
RUN_PATH = "/apis/szal.dev/v1alpha1/namespaces/ns/workflowruns/big"
STATUS_PATH = RUN_PATH + "/status"
STEPS = ["a", "b", "c"]


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def run_doc() -> dict[str, Any]:
    steps = [{"name": s, "script": "true"} for s in STEPS]
    return {
        "apiVersion": "szal.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": "big", "namespace": "ns", "uid": "u1", "generation": 1},
        "spec": {"workflow": {"mode": "Parallel", "steps": steps}},
    }


@pytest.fixture
async def served() -> AsyncIterator[tuple[RunApi, ApiClient]]:
    api = RunApi()
    async with serving(api.handle) as url, ApiClient(Credentials(url), retry=ONCE) as client:
        yield api, client


def finished(api: RunApi, step: str) -> Any:
    body = copy.deepcopy(
        next(p for p in api.created if p["metadata"]["labels"]["szal.dev/step"] == step)
    )
    body["metadata"]["uid"] = f"pod-{step}"
    body["status"] = {
        "phase": "Succeeded",
        "containerStatuses": [{"state": {"terminated": {"exitCode": 0, "message": "{}"}}}],
    }
    return pod_view(body)


async def test_big_run_writes_are_merged_under_the_budget(
    served: tuple[RunApi, ApiClient],
) -> None:
    api, client = served
    api.objects[RUN_PATH] = run_doc()
    clock = Clock()
    # Every object counts as big; 100 bytes/s: each write pays for seconds.
    settings = ReconcilerSettings(coalescing=CoalescingSettings(budget=100, small_object=1))
    runtime = Runtime(client, EventPoster(client), lambda ns, r: (), settings, clock=clock)
    mailbox = Mailbox("ns", "big", "u1", api.objects[RUN_PATH])
    reconciler = RunReconciler(runtime, mailbox)

    def patches() -> list[Any]:
        return [body for path, body in api.requests("PATCH") if path == STATUS_PATH]

    await reconciler.reconcile()  # pins and launches: urgent, written at once
    assert len(patches()) == 1 and len(api.created) == 3
    for step in ("a", "b"):
        clock.now += 0.1
        view = finished(api, step)
        assert view is not None
        mailbox.post_pod("MODIFIED", view)
        mailbox.body = api.objects[RUN_PATH]
        wake = await reconciler.reconcile()
        assert wake is not None and wake > clock.now  # deferred, wakes when due
        assert len(patches()) == 1
    due = wake
    clock.now = max(due, clock.now)
    mailbox.body = api.objects[RUN_PATH]
    await reconciler.reconcile()  # nothing new, but the write is due
    (_, merged) = patches()
    assert set(merged["status"]["steps"]) == {"a", "b"}
    assert api.objects[RUN_PATH]["status"]["steps"]["b"]["phase"] == "Succeeded"
    clock.now += 0.1
    view = finished(api, "c")
    assert view is not None
    mailbox.post_pod("MODIFIED", view)
    mailbox.body = api.objects[RUN_PATH]
    await reconciler.reconcile()  # the run ends: written at once, budget or not
    assert len(patches()) == 3
    assert api.objects[RUN_PATH]["status"]["phase"] == "Succeeded"
