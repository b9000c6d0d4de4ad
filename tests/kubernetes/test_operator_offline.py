"""The operator's pure parts, without a cluster.

Covers: pod bodies to :class:`PodView` and to Observations (phases, exit
codes, termination-message outputs, unschedulable and image-pull reasons,
Job pods, catch-up timestamps); per-attempt simulation annotations; the
pinned spec's encoding; the status size of a 5,000-step run (DESIGN.md:
well under etcd's 1.5 MiB; the issue: under 1 MiB); Event bodies.

Not covered here: anything that needs the API server (e2e/test_operator_*.py)
and the HTTP client (test_operator_client.py).
"""

from __future__ import annotations

import json
from typing import Any

from szal.engine.actions import AttemptRef, Observation, Transition
from szal.engine.phases import EventReason, StepPhase
from szal.engine.planner import Planner, new_run_state
from szal.engine.workflow import resolve_workflow
from szal.runners.kubernetes.applying import per_attempt_annotations
from szal.runners.kubernetes.events import RunRef, describe, event_body
from szal.runners.kubernetes.observing import observe, parse_outputs, pod_view
from szal.runners.kubernetes.pinning import decode_pinned, encode_pinned
from szal.spec import WorkflowSpec

NOW = 1_800_000_000.0


def pod(
    phase: str,
    *,
    exit_code: int | None = None,
    message: str | None = None,
    conditions: list[dict[str, Any]] | None = None,
    waiting: dict[str, Any] | None = None,
    rollback: bool = False,
    job: str | None = None,
    finished: str = "2027-01-15T08:00:00Z",
) -> dict[str, Any]:
    labels = {"szal.dev/run": "r1", "szal.dev/step": "build", "szal.dev/attempt": "2"}
    if rollback:
        labels["szal.dev/rollback"] = "true"
    if job:
        labels["batch.kubernetes.io/job-name"] = job
    state: dict[str, Any] = {}
    if exit_code is not None:
        state["terminated"] = {
            "exitCode": exit_code,
            "reason": "Completed" if exit_code == 0 else "Error",
            "startedAt": "2027-01-15T07:59:58Z",
            "finishedAt": finished,
        }
        if message is not None:
            state["terminated"]["message"] = message
    elif waiting:
        state["waiting"] = waiting
    status: dict[str, Any] = {"phase": phase, "conditions": conditions or []}
    if state:
        status["containerStatuses"] = [{"name": "step", "state": state}]
    return {
        "metadata": {"name": "r1-build-2-abcdef", "uid": "u1", "labels": labels},
        "status": status,
    }


def test_a_pod_without_our_labels_is_not_a_step_pod() -> None:
    assert pod_view({"metadata": {"name": "x", "labels": {"app": "y"}}}) is None


def test_succeeded_pod_yields_outputs_from_the_termination_message() -> None:
    view = pod_view(pod("Succeeded", exit_code=0, message='{"coverage": 0.9}'))
    assert view is not None and view.ref == AttemptRef("build", 2)
    obs = observe(view, NOW)
    assert obs == Observation(
        AttemptRef("build", 2), "Succeeded", obs.at if obs else NOW, 0, {"coverage": 0.9}, None
    )


def test_plain_failure_leaves_the_message_to_the_planner() -> None:
    view = pod_view(pod("Failed", exit_code=3))
    assert view is not None
    obs = observe(view, NOW)
    assert obs is not None and obs.state == "Failed" and obs.exit_code == 3
    assert obs.message is None


def test_termination_text_that_is_not_json_becomes_the_message() -> None:
    assert parse_outputs("disk full\n") == (None, "disk full")
    assert parse_outputs("[1, 2]")[0] is None
    assert parse_outputs("x" * 5000)[1] == "outputs larger than 4096 bytes ignored"
    assert parse_outputs("") == (None, None)


def test_outputs_over_the_limit_fail_a_step_that_exited_zero() -> None:
    # What a real kubelet reports for 5,000 bytes of JSON: its last 4096 bytes.
    cut = ('{"blob": "' + "0" * 5000 + '"}')[-4096:]
    for message in (cut, '{"blob": "' + "0" * 5000 + '"}'):
        view = pod_view(pod("Succeeded", exit_code=0, message=message))
        assert view is not None
        obs = observe(view, NOW)
        assert obs is not None and obs.state == "Failed" and obs.exit_code == 0
        assert obs.outputs is None and obs.message is not None
        assert "4096" in obs.message
    # Small outputs that are not JSON stay a message on a step that succeeded.
    view = pod_view(pod("Succeeded", exit_code=0, message="done, see logs"))
    assert view is not None
    obs = observe(view, NOW)
    assert obs is not None and obs.state == "Succeeded" and obs.message == "done, see logs"


def test_unschedulable_pod_is_pending_with_the_schedulers_reason() -> None:
    cond = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/5 nodes are available: 5 Insufficient nvidia.com/gpu.",
    }
    view = pod_view(pod("Pending", conditions=[cond]))
    assert view is not None
    obs = observe(view, NOW)
    assert obs is not None and obs.state == "Pending"
    assert obs.message == "0/5 nodes are available: 5 Insufficient nvidia.com/gpu."


def test_image_pull_errors_are_reported_while_pending() -> None:
    waiting = {"reason": "ImagePullBackOff", "message": "Back-off pulling image nope:1"}
    view = pod_view(pod("Pending", waiting=waiting))
    assert view is not None
    obs = observe(view, NOW)
    assert obs is not None and obs.message == "Back-off pulling image nope:1"


def test_compensation_and_job_pods_are_recognised() -> None:
    view = pod_view(pod("Running", rollback=True, job="r1-build-2-abcdef"))
    assert view is not None
    assert view.ref == AttemptRef("build", 2, rollback=True)
    assert view.job == "r1-build-2-abcdef"


def test_a_pod_that_finished_long_ago_keeps_its_own_finish_time() -> None:
    view = pod_view(pod("Succeeded", exit_code=0))
    assert view is not None and view.finished_at is not None
    late = observe(view, view.finished_at + 600)
    fresh = observe(view, view.finished_at + 0.5)
    assert late is not None and late.at == view.finished_at
    assert fresh is not None and fresh.at == view.finished_at + 0.5


def test_unknown_phase_is_no_observation() -> None:
    view = pod_view(pod("Unknown"))
    assert view is not None and observe(view, NOW) is None


def test_per_attempt_annotations_override_only_their_attempt() -> None:
    given = {
        "szal.dev/sim-exit-code": "0",
        "szal.dev/sim-exit-code-attempt-1": "1",
        "szal.dev/sim-exit-code-rollback": "7",
        "other/x-attempt-1": "kept as is",
    }
    first: dict[str, Any] = {"annotations": dict(given)}
    per_attempt_annotations(first, AttemptRef("s", 1))
    assert first["annotations"]["szal.dev/sim-exit-code"] == "1"
    assert "other/x" not in first["annotations"]
    second: dict[str, Any] = {"annotations": dict(given)}
    per_attempt_annotations(second, AttemptRef("s", 2))
    assert second["annotations"]["szal.dev/sim-exit-code"] == "0"
    comp: dict[str, Any] = {"annotations": dict(given)}
    per_attempt_annotations(comp, AttemptRef("s", 1, rollback=True))
    assert comp["annotations"]["szal.dev/sim-exit-code"] == "7"


def _big_spec(n: int) -> WorkflowSpec:
    return WorkflowSpec.model_validate(
        {
            "mode": "Parallel",
            "maxParallel": 50,
            "template": {"image": "busybox:1.36"},
            "steps": [
                {"name": f"step-{i:05d}", "command": ["sh", "-c", f"echo {i}"]} for i in range(n)
            ],
        }
    )


def test_pinned_spec_round_trips() -> None:
    spec = _big_spec(3)
    name, back, params = decode_pinned(encode_pinned("wf", spec, {"env": "prod"}))
    assert (name, back, params) == ("wf", spec, {"env": "prod"})


def test_status_of_a_5000_step_run_stays_under_one_mebibyte() -> None:
    spec = _big_spec(5000)
    workflow = resolve_workflow(spec, name="big", params={})
    state = new_run_state(workflow)
    planner = Planner(workflow)
    now = NOW
    plan = planner.plan(state, [], now)
    finished = 0
    while not state.phase.is_terminal:
        now += 1.0
        launched = [a.ref for a in plan.actions]
        obs = [
            Observation(ref, "Succeeded", now, 0, {"n": finished + k}, None)
            for k, ref in enumerate(launched)
        ]
        finished += len(obs)
        plan = planner.plan(state, obs, now)
    status = state.to_status()
    status["pinnedSpec"] = encode_pinned("big", spec, {})
    size = len(json.dumps(status, separators=(",", ":")))
    assert state.phase.value == "Succeeded" and finished == 5000
    assert size < 1024 * 1024, size


def test_event_bodies_name_the_run_and_the_transition() -> None:
    t = Transition(
        "build",
        StepPhase.RUNNING,
        StepPhase.FAILED,
        NOW,
        EventReason.STEP_FAILED,
        "boom",
        2,
        False,
        3,
        StepPhase.FAILED,
    )
    body = event_body(RunRef("ns", "r1", "uid-1"), t, "op-0")
    assert body["reason"] == "StepFailed" and body["type"] == "Warning"
    assert body["involvedObject"] == {
        "apiVersion": "szal.dev/v1alpha1",
        "kind": "WorkflowRun",
        "name": "r1",
        "namespace": "ns",
        "uid": "uid-1",
    }
    assert describe(t) == "step build: Running -> Failed (attempt 2), exit code 3: boom"


def test_a_retry_event_says_how_the_attempt_ended_from_the_outcome() -> None:
    """Running -> Waiting: the outcome field, not the message, says failed or timed out."""
    run = RunRef("ns", "r1", "uid-1")
    curl = "attempt 1 curl: (28) Connection timed out; retrying in 1s"
    failed = Transition(
        "get",
        StepPhase.RUNNING,
        StepPhase.WAITING,
        NOW,
        EventReason.RETRYING,
        curl,
        1,
        exit_code=28,
        outcome=StepPhase.FAILED,
    )
    timed_out = Transition(
        "get",
        StepPhase.RUNNING,
        StepPhase.WAITING,
        NOW,
        EventReason.RETRYING,
        "attempt 1",
        1,
        outcome=StepPhase.TIMED_OUT,
    )
    assert describe(failed).startswith("step get: Running -> Waiting (attempt 1 failed)")
    assert describe(timed_out).startswith("step get: Running -> Waiting (attempt 1 timed out)")
    assert event_body(run, failed, "op-0")["type"] == "Warning"


def test_workflow_status_patch_counts_steps_once_per_generation() -> None:
    from szal.runners.kubernetes.workflows import status_patch

    spec = {"steps": [{"name": "a", "script": "true", "steps": [{"name": "b", "script": "x"}]}]}
    body: dict[str, Any] = {"metadata": {"generation": 3}, "spec": spec}
    assert status_patch(body) == {"status": {"stepCount": 2, "observedGeneration": 3}}
    body["status"] = {"observedGeneration": 3}
    assert status_patch(body) is None  # current already: no write
    assert status_patch({"metadata": {"generation": 1}, "spec": {"steps": [{"nam": 1}]}}) is None
