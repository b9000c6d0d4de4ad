"""Applying a plan (``szal.runners.kubernetes.applying``) against a real local HTTP server.

Covers: the paths a Pod and a Job are created and deleted at; what each
create error becomes for the attempt (AlreadyExists: done; a quota: a
Pending observation and a retry on the next apply; a transient error: a
retry, told to the health hook; RBAC or validation: a Failed observation naming the object;
NotFound: raised, the run is gone); a started pod is stopped in place
(deadline lowered, kept), an unstarted pod and a Job are deleted, a gone one
is done, and a stopped attempt is known as stopped by us; per-step launchers (a
compensation always runs as a Pod); every API path in
``szal.runners.kubernetes`` is built by the client's path helpers.

Not covered: the manifests themselves (``test_pods.py``, golden files) and
a real API server's answers (the e2e operator tests).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.kubernetes.local_server import serving
from tests.kubernetes.run_api import RunApi

import szal.runners.kubernetes as kubernetes_runner
from szal.engine.actions import AttemptRef, Launch, Plan, Stop
from szal.engine.compiled import compile_workflow
from szal.engine.state import RunState, StepState
from szal.engine.workflow import ResolvedWorkflow, resolve_workflow
from szal.runners.kubernetes.applying import CreateRefusal, PlanApplier, classify_create_error
from szal.runners.kubernetes.client import (
    ApiClient,
    ApiError,
    Credentials,
    Forbidden,
    Invalid,
    NotFound,
    RetrySettings,
    cluster_path,
    core_path,
    group_path,
)
from szal.runners.kubernetes.events import RunRef
from szal.runners.kubernetes.pods import attempt_name
from szal.runners.kubernetes.runtime import ReconcilerSettings
from szal.spec import WorkflowSpec

NOW = 1_800_000_000.0
ONCE = RetrySettings(attempts=1, request_timeout=5)
RUN = RunRef("ns", "r", "uid-1")
PODS = "/api/v1/namespaces/ns/pods"
JOBS = "/apis/batch/v1/namespaces/ns/jobs"


def workflow() -> ResolvedWorkflow:
    spec = WorkflowSpec.model_validate(
        {
            "steps": [
                {"name": "a", "script": "true", "rollback": {"script": "undo"}},
                {"name": "j", "script": "true", "launcher": "Job"},
            ]
        }
    )
    return resolve_workflow(spec, name="wf", params={})


def launch(wf: ResolvedWorkflow, step: str, *, rollback: bool = False) -> Launch:
    resolved = next(s for s in wf.steps if s.name == step)
    command = resolved.rollback if rollback and resolved.rollback else resolved.command
    return Launch(AttemptRef(step, 1, rollback=rollback), resolved, command, None)


@pytest.fixture
async def api() -> AsyncIterator[tuple[RunApi, PlanApplier, ResolvedWorkflow, RunState]]:
    fake = RunApi()
    async with serving(fake.handle) as url, ApiClient(Credentials(url), retry=ONCE) as client:
        wf = workflow()
        applier = PlanApplier(client, ReconcilerSettings(), lambda: NOW, RUN)
        applier.attach(wf)
        state = RunState(steps={s.name: StepState() for s in wf.steps})
        yield fake, applier, wf, state


Fixture = tuple[RunApi, PlanApplier, ResolvedWorkflow, RunState]


async def test_pods_and_jobs_are_created_where_their_launcher_says(api: Fixture) -> None:
    fake, applier, wf, state = api
    plan = Plan(actions=(launch(wf, "a"), launch(wf, "j"), launch(wf, "j", rollback=True)))
    await applier.apply(plan, compile_workflow(wf), state)
    created = sorted((path, body["kind"]) for path, body in fake.requests("POST"))
    assert created == [(PODS, "Pod"), (PODS, "Pod"), (JOBS, "Job")]
    assert state.steps["a"].pod_name == attempt_name("r", "a", 1)
    assert not applier.retrying and applier.take_observations() == []
    assert applier.launcher_of("j") == "Job" and applier.launcher_of("a") == "Pod"


@pytest.mark.parametrize(
    ("code", "reason", "message", "outcome"),
    [
        (409, "AlreadyExists", "exists", "done"),
        (403, "Forbidden", 'pods "x" is forbidden: exceeded quota: q', "Pending"),
        (503, "ServiceUnavailable", "later", "retry"),
        (403, "Forbidden", "user cannot create pods", "Failed"),
        (422, "Invalid", "spec.containers: Required value", "Failed"),
    ],
)
async def test_create_errors_become_observations_or_retries(
    api: Fixture, code: int, reason: str, message: str, outcome: str
) -> None:
    fake, applier, wf, state = api
    fake.fail("POST", PODS, code, reason, message)
    await applier.apply(Plan(actions=(launch(wf, "a"),)), compile_workflow(wf), state)
    observations = applier.take_observations()
    assert [o.state for o in observations] == ([] if outcome in ("done", "retry") else [outcome])
    assert applier.retrying is (outcome in ("Pending", "retry"))
    if outcome == "Pending":
        assert observations[0].message == message
    if outcome == "Failed":
        assert observations[0].message is not None
        assert observations[0].message.startswith(f"cannot create pod {attempt_name('r', 'a', 1)}")
    # A retried launch goes out again with the next plan, even an empty one.
    await applier.apply(Plan(), compile_workflow(wf), state)
    retried = outcome in ("Pending", "retry")
    assert len(fake.requests("POST")) == (2 if retried else 1)


async def test_a_missing_namespace_is_raised(api: Fixture) -> None:
    fake, applier, wf, state = api
    fake.fail("POST", PODS, 404, "NotFound", 'namespaces "ns" not found')
    with pytest.raises(NotFound):
        await applier.apply(Plan(actions=(launch(wf, "a"),)), compile_workflow(wf), state)


async def test_a_started_pod_is_stopped_in_place_and_kept(api: Fixture) -> None:
    """Stopping keeps the evidence: the deadline is lowered, nothing is deleted."""
    fake, applier, wf, state = api
    pod = f"{PODS}/{attempt_name('r', 'a', 1)}"
    fake.objects[pod] = {"metadata": {"name": "p"}, "status": {"startTime": "2027-01-15T08:00:00Z"}}
    await applier.apply(
        Plan(actions=(Stop(AttemptRef("a", 1), "timeout"),)), compile_workflow(wf), state
    )
    assert fake.requests("DELETE") == []
    assert fake.requests("PATCH") == [(pod, {"spec": {"activeDeadlineSeconds": 1}})]
    assert fake.objects[pod]["spec"]["activeDeadlineSeconds"] == 1
    assert applier.stopped_by_us(AttemptRef("a", 1))


async def test_an_unstarted_pod_and_a_job_are_deleted_and_a_gone_one_is_done(api: Fixture) -> None:
    fake, applier, wf, state = api
    unstarted = f"{PODS}/{attempt_name('r', 'a', 1)}"
    fake.objects[unstarted] = {"metadata": {"name": "p"}, "status": {"phase": "Pending"}}
    gone = f"{PODS}/{attempt_name('r', 'a', 2)}"  # PATCH answers NotFound: nothing to stop
    job = f"{JOBS}/{attempt_name('r', 'j', 1)}"
    fake.fail("DELETE", job, 404, "NotFound")
    stops = (
        Stop(AttemptRef("a", 1), "cancelled"),
        Stop(AttemptRef("a", 2), "cancelled"),
        Stop(AttemptRef("j", 1), "cancelled"),
    )
    await applier.apply(Plan(actions=stops), compile_workflow(wf), state)
    deleted = sorted(path for path, _ in fake.requests("DELETE"))
    assert deleted == [unstarted, job]
    assert sorted(path for path, _ in fake.requests("PATCH")) == sorted([unstarted, gone])
    assert all(applier.stopped_by_us(stop.ref) for stop in stops)
    assert not applier.stopped_by_us(AttemptRef("a", 3))


def test_classification_reads_the_error_type_and_status() -> None:
    quota = Forbidden(403, "Forbidden", "forbidden: exceeded quota: compute")
    assert classify_create_error(quota) is CreateRefusal.QUOTA
    assert classify_create_error(Forbidden(403, "Forbidden", "no")) is CreateRefusal.PERMANENT
    assert classify_create_error(Invalid(422, "Invalid", "bad")) is CreateRefusal.PERMANENT
    assert classify_create_error(ApiError(0, "Unreachable", "x")) is CreateRefusal.TRANSIENT
    assert classify_create_error(ApiError(429, "TooMany", "x")) is CreateRefusal.TRANSIENT
    assert classify_create_error(ApiError(500, "Internal", "x")) is CreateRefusal.TRANSIENT


def test_path_helpers() -> None:
    assert core_path("ns", "pods") == PODS
    assert core_path("ns", "pods", "p", subresource="log") == f"{PODS}/p/log"
    assert group_path("batch/v1", "ns", "jobs", "j") == f"{JOBS}/j"
    assert (
        group_path("szal.dev/v1alpha1", "ns", "workflowruns", "r", subresource="status")
        == "/apis/szal.dev/v1alpha1/namespaces/ns/workflowruns/r/status"
    )
    everywhere = cluster_path("szal.dev/v1alpha1", "workflowruns")
    assert everywhere == "/apis/szal.dev/v1alpha1/workflowruns"
    with pytest.raises(ValueError, match="needs an object name"):
        core_path("ns", "pods", subresource="status")


def test_every_api_path_is_built_by_the_client_helpers() -> None:
    """No ``"/api..."`` literal (or ``+ "/status"``) outside client.py's helpers."""
    package = Path(kubernetes_runner.__file__).parent
    literal = re.compile(r"""f?["']/apis?/|\+\s*["']/status["']""")
    offenders = [
        f"{path.name}:{number}"
        for path in sorted(package.glob("*.py"))
        if path.name != "client.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if literal.search(line)
    ]
    assert offenders == []


async def test_a_transient_create_error_is_told_to_the_health_hook(api: Fixture) -> None:
    fake, applier, wf, state = api
    told: list[tuple[int, str]] = []
    applier.on_write_error = lambda error, what: told.append((error.status, what))
    fake.fail("POST", PODS, 500, "InternalError", "etcdserver: mvcc: database space exceeded")
    fake.fail("POST", PODS, 422, "Invalid", "bad")
    await applier.apply(Plan(actions=(launch(wf, "a"),)), compile_workflow(wf), state)
    assert told == [(500, f"creating pod {attempt_name('r', 'a', 1)}")]
    await applier.apply(Plan(), compile_workflow(wf), state)  # the retry: a 422, not the hook's
    assert len(told) == 1
