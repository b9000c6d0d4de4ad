"""Pinning and refusing runs (``szal.runners.kubernetes.pinning``), through the reconciler.

Covers, against a real local HTTP server (:mod:`tests.kubernetes.run_api`):
a run's first pass resolves its ``workflowRef``, creates its first pod and
writes ``status.pinnedSpec`` in its first status patch; a restarted
reconciler runs from that pin even after the Workflow is deleted; a run
whose workflow is missing or invalid is refused at its start
(:class:`RunRefused` with ``when`` AT_START) and fails with the reason in
its ``Succeeded`` condition; a started run whose pin is lost and whose
Workflow changed is refused after its start (``when`` AFTER_START) and
fails where it is; both are one error type. A run start goes through the
engine's one way in: its workflow is validated exactly once (counted where
every whole-workflow validation passes), and a refusal lists every problem
(a misspelt field naming the closest known one next to a cycle elsewhere).

Not covered: a real API server (``e2e/test_operator_runs.py``:
``test_editing_the_workflow_does_not_change_a_running_run``,
``test_missing_workflow_fails_the_run``) and the history finalizer
(``test_finalizing.py``, ``e2e/test_operator_history.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from unittest import mock

import pytest
from tests.kubernetes.local_server import serving
from tests.kubernetes.run_api import RunApi

from szal.runners.kubernetes.client import ApiClient, Credentials, RetrySettings
from szal.runners.kubernetes.events import EventPoster, RunRef
from szal.runners.kubernetes.observing import PodView, pod_view
from szal.runners.kubernetes.pinning import Refusal, RunRefused, decode_pinned, pin_run
from szal.runners.kubernetes.reconciler import RunReconciler
from szal.runners.kubernetes.runtime import Mailbox, Runtime

NOW = 1_800_000_000.0
ONCE = RetrySettings(attempts=1, request_timeout=5)
RUN_PATH = "/apis/szal.dev/v1alpha1/namespaces/ns/workflowruns/ci-1"
WORKFLOW_PATH = "/apis/szal.dev/v1alpha1/namespaces/ns/workflows/ci"
STEPS = [{"name": "a", "script": "true"}, {"name": "b", "script": "true", "dependsOn": ["a"]}]


def workflow_doc(steps: list[dict[str, Any]] = STEPS) -> dict[str, Any]:
    return {
        "apiVersion": "szal.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "ci", "namespace": "ns"},
        "spec": {"mode": "Dag", "steps": steps, "params": [{"name": "env"}]},
    }


def run_doc(status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "szal.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": "ci-1", "namespace": "ns", "uid": "u1", "generation": 1},
        "spec": spec or {"workflowRef": {"name": "ci"}, "params": {"env": "prod"}},
    }
    if status is not None:
        doc["status"] = status
    return doc


class Cluster:
    def __init__(self, api: RunApi, client: ApiClient) -> None:
        self.api = api
        self.client = client

    def reconciler(self) -> RunReconciler:
        """A fresh reconciler for the stored run, as after an operator restart."""
        body = self.api.objects[RUN_PATH]
        mailbox = Mailbox("ns", "ci-1", "u1", body)
        events = EventPoster(self.client)  # not started: Events are not this test's concern
        runtime = Runtime(self.client, events, self.pods_of, clock=lambda: NOW)
        return RunReconciler(runtime, mailbox)

    def pods_of(self, namespace: str, run: str) -> list[PodView]:
        """The pod index: every pod created so far (as just created, not yet running)."""
        views = (pod_view(body) for body in self.api.created)
        return [v for v in views if v is not None]

    @property
    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.api.objects[RUN_PATH].get("status") or {}
        return status

    def condition(self) -> tuple[str, str]:
        (succeeded,) = self.status["conditions"]
        return succeeded["reason"], succeeded["message"]


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    api = RunApi()
    async with serving(api.handle) as url, ApiClient(Credentials(url), retry=ONCE) as client:
        yield Cluster(api, client)


async def test_the_first_pass_pins_and_a_restart_runs_from_the_pin(cluster: Cluster) -> None:
    cluster.api.objects[WORKFLOW_PATH] = workflow_doc()
    cluster.api.objects[RUN_PATH] = run_doc()
    await cluster.reconciler().reconcile()
    assert cluster.status["phase"] == "Running"
    name, spec, params = decode_pinned(cluster.status["pinnedSpec"])
    assert (name, [s.name for s in spec.steps], params) == ("ci", ["a", "b"], {"env": "prod"})
    assert [view.ref.step for view in cluster.pods_of("ns", "ci-1")] == ["a"]
    # The Workflow goes; a restarted reconciler needs only the pin.
    del cluster.api.objects[WORKFLOW_PATH]
    cluster.api.seen.clear()
    restarted = cluster.reconciler()
    await restarted.reconcile()
    assert restarted.workflow is not None and restarted.workflow.name == "ci"
    assert ("GET", WORKFLOW_PATH, None) not in cluster.api.seen
    assert cluster.status["phase"] == "Running"
    assert cluster.status["steps"]["a"]["phase"] == "Running"


@pytest.mark.parametrize(
    ("spec", "reason", "words"),
    [
        ({"workflowRef": {"name": "gone"}}, "WorkflowNotFound", "'gone' not found"),
        ({"params": {"env": "x"}}, "InvalidWorkflow", "give either workflowRef or workflow"),
        ({"workflowRef": {"name": "ci"}, "params": {"nope": 1}}, "InvalidWorkflow", "nope"),
        (
            {"workflowRef": {"name": "ci"}, "params": {"env": {"a": 1}}},
            "InvalidWorkflow",
            """params.env: param 'env' expects a string (type string), got object {"a": 1}""",
        ),
        ({"workflow": {"steps": [{"name": "a"}]}}, "InvalidWorkflow", "command"),
    ],
)
async def test_a_run_that_cannot_start_is_refused_at_its_start(
    cluster: Cluster, spec: dict[str, Any], reason: str, words: str
) -> None:
    cluster.api.objects[WORKFLOW_PATH] = workflow_doc()
    cluster.api.objects[RUN_PATH] = run_doc(**spec)
    with pytest.raises(RunRefused) as refused:
        await pin_run(cluster.client, RunRef("ns", "ci-1", "u1"), cluster.api.objects[RUN_PATH])
    assert (refused.value.reason, refused.value.when) == (reason, Refusal.AT_START)
    assert words in refused.value.message
    # The reconciler fails the run at once, no pod created, and is done with it.
    reconciler = cluster.reconciler()
    assert await reconciler.reconcile() is None
    assert cluster.status["phase"] == "Failed"
    assert cluster.condition()[0] == reason and words in cluster.condition()[1]
    assert cluster.api.requests("POST") == [] and reconciler.finished


async def test_a_started_run_whose_pin_is_lost_is_refused_after_its_start(
    cluster: Cluster,
) -> None:
    cluster.api.objects[WORKFLOW_PATH] = workflow_doc()
    status = {
        "phase": "Running",
        "startedAt": "2027-01-15T08:00:00Z",
        "workflow": {"name": "ci", "version": "1", "specHash": "sha256:before-the-edit"},
        "steps": {"a": {"phase": "Running", "attempts": 1}, "b": {"phase": "Pending"}},
    }
    cluster.api.objects[RUN_PATH] = run_doc(status)
    reconciler = cluster.reconciler()
    with pytest.raises(RunRefused) as refused:
        await reconciler.reconcile()
    assert (refused.value.reason, refused.value.when) == ("PinnedSpecLost", Refusal.AFTER_START)
    # The loop fails the run where it is and ends.
    await cluster.reconciler().run()
    assert cluster.status["phase"] == "Failed"
    reason, message = cluster.condition()
    assert reason == "PinnedSpecLost" and "sha256:before-the-edit" in message
    assert cluster.status["steps"]["a"] == {"phase": "Running", "attempts": 1}
    assert cluster.api.requests("POST") == []


# -- the one way in: one validation per run start, every problem in the refusal ------

BROKEN = {
    "mode": "Dag",
    "steps": [
        {"name": "b", "comand": ["true"]},
        {"name": "c", "script": "true", "dependsOn": ["d"]},
        {"name": "d", "script": "true", "dependsOn": ["c"]},
    ],
}


@pytest.mark.parametrize(
    ("spec", "name"),
    [
        ({"workflowRef": {"name": "ci"}, "params": {"env": "prod"}}, "ci"),
        ({"workflow": {"steps": STEPS[:1]}}, "ci-1"),
    ],
    ids=["workflowRef", "inline"],
)
async def test_a_run_start_validates_its_workflow_once(
    cluster: Cluster, validations: mock.MagicMock, spec: dict[str, Any], name: str
) -> None:
    cluster.api.objects[WORKFLOW_PATH] = workflow_doc()
    pin = await pin_run(cluster.client, RunRef("ns", "ci-1", "u1"), run_doc(**spec))
    assert pin.first and pin.workflow.name == name
    assert validations.call_count == 1
    assert pin.text is not None and decode_pinned(pin.text)[2] == spec.get("params", {})


@pytest.mark.parametrize(
    ("spec", "lead"),
    [
        ({"workflowRef": {"name": "ci"}}, "Workflow ci: "),
        ({"workflow": BROKEN}, "invalid inline workflow: "),
    ],
    ids=["workflowRef", "inline"],
)
async def test_an_invalid_workflow_is_refused_with_every_problem(
    cluster: Cluster, validations: mock.MagicMock, spec: dict[str, Any], lead: str
) -> None:
    cluster.api.objects[WORKFLOW_PATH] = {**workflow_doc(), "spec": BROKEN}
    with pytest.raises(RunRefused) as refused:
        await pin_run(cluster.client, RunRef("ns", "ci-1", "u1"), run_doc(**spec))
    assert refused.value.reason == "InvalidWorkflow"
    assert refused.value.message == (
        lead + "step 'b': comand: unknown field; did you mean 'command'?; "
        "step 'c': dependsOn: dependency cycle: c -> d -> c"
    )
    assert validations.call_count == 1
