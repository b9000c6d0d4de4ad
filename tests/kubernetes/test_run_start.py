"""The operator's run start goes through the engine's one way in, validating once.

Covers the reconciler's start path (``RunReconciler._pin`` on a run without a
pinned spec): a run of a Workflow fetched over HTTP from a real local server
and a run with an inline workflow are each validated exactly once (counted
where every whole-workflow validation passes), resolved with the run's
params and pinned; an invalid one is refused with reason InvalidWorkflow and
every problem (an unknown field naming the closest known one next to a cycle
elsewhere); a missing Workflow is WorkflowNotFound.

Not covered here: the rest of a reconcile pass (e2e/test_operator_runs.py
against a real API server) and the admission webhook (test_admission.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any
from unittest import mock

import pytest
from aiohttp import web
from tests.kubernetes.local_server import serving

from szal.engine import checks
from szal.runners.kubernetes.client import ApiClient, Credentials, RetrySettings
from szal.runners.kubernetes.events import EventPoster
from szal.runners.kubernetes.reconciler import (
    Mailbox,
    RunReconciler,
    RunRefused,
    Runtime,
    decode_pinned,
)

FAST = RetrySettings(attempts=1, initial_delay=0.01, max_delay=0.02, request_timeout=5)
STEPS = [{"name": "a", "script": "true"}]
BROKEN = {
    "mode": "Dag",
    "steps": [
        {"name": "b", "comand": ["true"]},
        {"name": "c", "script": "true", "dependsOn": ["d"]},
        {"name": "d", "script": "true", "dependsOn": ["c"]},
    ],
}


def workflow(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "szal.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": "7"},
        "spec": spec,
    }


WORKFLOWS = {
    "ci": workflow("ci", {"params": [{"name": "env", "default": "dev"}], "steps": STEPS}),
    "broken": workflow("broken", BROKEN),
}


async def _api(request: web.Request) -> web.StreamResponse:
    prefix = "/apis/szal.dev/v1alpha1/namespaces/ns/workflows/"
    name = request.path.removeprefix(prefix)
    if request.method == "GET" and request.path.startswith(prefix) and name in WORKFLOWS:
        return web.json_response(WORKFLOWS[name])
    status = {"kind": "Status", "code": 404, "reason": "NotFound", "message": "not found"}
    return web.json_response(status, status=404)


@pytest.fixture
async def client() -> AsyncIterator[ApiClient]:
    async with serving(_api) as url, ApiClient(Credentials(server=url), retry=FAST) as api:
        yield api


@pytest.fixture
def validations() -> Iterator[mock.MagicMock]:
    with mock.patch.object(checks, "_walk", wraps=checks._walk) as walk:
        yield walk


def reconciler(client: ApiClient, spec: dict[str, Any]) -> tuple[RunReconciler, dict[str, Any]]:
    body = {
        "apiVersion": "szal.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": "r1", "namespace": "ns", "uid": "u1", "resourceVersion": "1"},
        "spec": spec,
    }
    runtime = Runtime(client=client, events=EventPoster(client), pods_of=lambda ns, run: [])
    return RunReconciler(runtime, Mailbox("ns", "r1", "u1", body)), body


async def test_a_run_of_a_workflow_is_validated_once(
    client: ApiClient, validations: mock.MagicMock
) -> None:
    run, body = reconciler(client, {"workflowRef": {"name": "ci"}, "params": {"env": "prod"}})
    resolved, started = await run._pin(body, {})
    assert started
    assert resolved.name == "ci" and resolved.params == {"env": "prod"}
    assert validations.call_count == 1
    assert run._pinned_text is not None
    name, spec, params = decode_pinned(run._pinned_text)
    assert (name, params, spec.steps[0].name) == ("ci", {"env": "prod"}, "a")


async def test_an_inline_workflow_is_validated_once(
    client: ApiClient, validations: mock.MagicMock
) -> None:
    run, body = reconciler(client, {"workflow": {"steps": STEPS}})
    resolved, started = await run._pin(body, {})
    assert started and resolved.name == "r1"
    assert validations.call_count == 1


@pytest.mark.parametrize(
    ("spec", "lead"),
    [({"workflowRef": {"name": "broken"}}, "Workflow broken: "), ({"workflow": BROKEN}, None)],
    ids=["workflowRef", "inline"],
)
async def test_an_invalid_workflow_is_refused_with_every_problem(
    client: ApiClient, validations: mock.MagicMock, spec: dict[str, Any], lead: str | None
) -> None:
    run, body = reconciler(client, spec)
    with pytest.raises(RunRefused) as info:
        await run._pin(body, {})
    assert info.value.reason == "InvalidWorkflow"
    assert info.value.message == (
        (lead or "invalid inline workflow: ")
        + "step 'b': comand: unknown field; did you mean 'command'?; "
        "step 'c': dependsOn: dependency cycle: c -> d -> c"
    )
    assert validations.call_count == 1


async def test_a_missing_workflow_is_not_found(client: ApiClient) -> None:
    run, body = reconciler(client, {"workflowRef": {"name": "gone"}})
    with pytest.raises(RunRefused) as info:
        await run._pin(body, {})
    assert info.value.reason == "WorkflowNotFound"
