"""Admission checks (``szal.runners.kubernetes.admission``) and the webhook certificate.

Covers: what the pure checks refuse and with which message (cycles, unknown
dependencies, bad ``when``, missing or invalid ``workflowRef`` target,
params that do not match, newer definition versions; an unknown field naming
the closest known one and a cycle elsewhere refused together, one validation
per review), that a lookup failure
admits the run, that handlers are registered on the given registry for
CREATE and UPDATE of the main resource only. (The webhook certificates:
``tests/kubernetes/test_tls.py``.)

Not covered: the webhook round trip through a real API server and
``kubectl apply`` (``e2e/test_crds_admission.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from unittest import mock

import kopf
import pytest

from szal.runners.kubernetes.admission import (
    WORKFLOW_HANDLER_ID,
    WORKFLOW_RUN_HANDLER_ID,
    WORKFLOW_SCHEDULE_HANDLER_ID,
    AdmissionRefused,
    check_workflow,
    check_workflow_run,
    check_workflow_schedule,
    register_admission,
)


def _workflow(steps: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "szal.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "ci", "namespace": "ns"},
        "spec": {"steps": steps, **spec},
    }


def _run(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "szal.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": "ci-1", "namespace": "ns"},
        "spec": spec,
    }


CYCLIC = _workflow(
    [
        {"name": "a", "script": "true", "dependsOn": ["b"]},
        {"name": "b", "script": "true", "dependsOn": ["a"]},
    ],
    mode="Dag",
)
VALID = _workflow(
    [{"name": "a", "script": "true"}],
    params=[{"name": "env"}, {"name": "level", "default": 1}],
)


def _refusal(check: Any) -> str:
    with pytest.raises(AdmissionRefused) as info:
        check()
    return info.value.message


def test_a_valid_workflow_passes() -> None:
    check_workflow(VALID)


def test_a_cycle_is_refused_naming_it() -> None:
    message = _refusal(lambda: check_workflow(CYCLIC))
    assert message.startswith("Workflow 'ci' is invalid")
    assert "a -> b -> a" in message


def test_every_problem_is_listed_with_step_and_field() -> None:
    workflow = _workflow(
        [
            {"name": "a", "script": "true", "dependsOn": ["ghost"]},
            {"name": "b", "script": "true", "when": "steps.nope.phase == 'Succeeded'"},
            {"name": "c", "script": "true", "when": "params.missing == 1"},
        ],
        mode="Dag",
    )
    message = _refusal(lambda: check_workflow(workflow))
    lines = message.splitlines()[1:]
    assert len(lines) >= 3
    assert any("'a'" in line and "dependsOn" in line and "ghost" in line for line in lines)
    assert any("'b'" in line and "when" in line for line in lines)
    assert any("'c'" in line and "missing" in line for line in lines)


def test_a_format_newer_than_the_code_is_refused() -> None:
    newer = {**_workflow([{"name": "a", "script": "true"}]), "apiVersion": "szal.dev/v2"}
    message = _refusal(lambda: check_workflow(newer))
    assert "apiVersion" in message and "szal.dev/v2" in message


def test_any_author_version_is_admitted() -> None:
    check_workflow(_workflow([{"name": "a", "script": "true"}], version=2026))


async def _fetch_nothing(namespace: str, name: str) -> Mapping[str, Any] | None:
    return None


def _fetching(workflow: dict[str, Any]) -> Any:
    async def fetch(namespace: str, name: str) -> Mapping[str, Any] | None:
        assert namespace == "ns"
        return workflow if name == workflow["metadata"]["name"] else None

    return fetch


async def test_a_run_of_an_existing_workflow_with_its_params_passes() -> None:
    run = _run(workflowRef={"name": "ci"}, params={"env": "prod"})
    await check_workflow_run(run, namespace="ns", fetch_workflow=_fetching(VALID))


async def test_a_missing_workflow_ref_is_refused() -> None:
    run = _run(workflowRef={"name": "gone"})
    with pytest.raises(AdmissionRefused) as info:
        await check_workflow_run(run, namespace="ns", fetch_workflow=_fetch_nothing)
    assert "Workflow 'gone' not found in namespace 'ns'" in info.value.message


async def test_params_must_match_the_workflow() -> None:
    run = _run(workflowRef={"name": "ci"}, params={"colour": "red"})
    with pytest.raises(AdmissionRefused) as info:
        await check_workflow_run(run, namespace="ns", fetch_workflow=_fetching(VALID))
    message = info.value.message
    assert "unknown param 'colour'" in message
    assert "missing required param 'env'" in message


async def test_a_run_of_an_invalid_workflow_is_refused() -> None:
    run = _run(workflowRef={"name": "ci"})
    with pytest.raises(AdmissionRefused) as info:
        await check_workflow_run(run, namespace="ns", fetch_workflow=_fetching(CYCLIC))
    assert "a -> b -> a" in info.value.message


async def test_inline_workflows_are_validated_without_a_lookup() -> None:
    run = _run(workflow=CYCLIC["spec"])
    with pytest.raises(AdmissionRefused) as info:
        await check_workflow_run(run, namespace="ns", fetch_workflow=None)
    assert "a -> b -> a" in info.value.message
    await check_workflow_run(
        _run(workflow=VALID["spec"], params={"env": "x"}), namespace="ns", fetch_workflow=None
    )


async def test_both_or_neither_source_is_refused() -> None:
    with pytest.raises(AdmissionRefused):
        await check_workflow_run(_run(), namespace="ns", fetch_workflow=None)
    both = _run(workflowRef={"name": "ci"}, workflow=VALID["spec"], params={"env": "x"})
    with pytest.raises(AdmissionRefused):
        await check_workflow_run(both, namespace="ns", fetch_workflow=None)


async def test_without_a_fetcher_the_ref_is_left_to_the_reconciler() -> None:
    run = _run(workflowRef={"name": "whatever"}, params={"any": 1})
    await check_workflow_run(run, namespace="ns", fetch_workflow=None)


async def test_a_failing_lookup_admits_the_run() -> None:
    async def broken(namespace: str, name: str) -> Mapping[str, Any] | None:
        raise ConnectionError("API server unreachable")

    run = _run(workflowRef={"name": "ci"})
    await check_workflow_run(run, namespace="ns", fetch_workflow=broken)


def test_handlers_are_registered_on_the_given_registry() -> None:
    registry = kopf.OperatorRegistry()
    register_admission(registry, fetch_workflow=_fetch_nothing)
    handlers = {h.id: h for h in registry._webhooks.get_all_handlers()}
    assert set(handlers) == {
        WORKFLOW_HANDLER_ID,
        WORKFLOW_RUN_HANDLER_ID,
        WORKFLOW_SCHEDULE_HANDLER_ID,
    }
    for handler in handlers.values():
        assert set(handler.operations or ()) == {"CREATE", "UPDATE"}
        assert handler.subresource is None
        assert handler.reason is not None and handler.reason.name == "VALIDATING"
    assert kopf.OperatorRegistry()._webhooks.get_all_handlers() == []


# -- one way in: every problem at once, one validation per review --------------------

BROKEN = _workflow(
    [
        {"name": "a", "script": "true"},
        {"name": "b", "comand": ["true"]},
        {"name": "c", "script": "true", "dependsOn": ["d"]},
        {"name": "d", "script": "true", "dependsOn": ["c"]},
    ],
    mode="Dag",
)
BROKEN_PROBLEMS = [
    "- step 'b': comand: unknown field; did you mean 'command'?",
    "- step 'c': dependsOn: dependency cycle: c -> d -> c",
]


def test_an_unknown_field_and_a_cycle_elsewhere_are_refused_together(
    validations: mock.MagicMock,
) -> None:
    message = _refusal(lambda: check_workflow(BROKEN))
    assert message.splitlines() == ["Workflow 'ci' is invalid (2 problems):", *BROKEN_PROBLEMS]
    assert validations.call_count == 1


async def test_an_inline_workflow_is_refused_with_every_problem(
    validations: mock.MagicMock,
) -> None:
    run = _run(workflow=BROKEN["spec"], params={"colour": "red"})
    with pytest.raises(AdmissionRefused) as info:
        await check_workflow_run(run, namespace="ns", fetch_workflow=None)
    assert info.value.problems == [line[2:] for line in BROKEN_PROBLEMS]
    assert validations.call_count == 1


async def test_one_validation_per_run_review(validations: mock.MagicMock) -> None:
    await check_workflow_run(
        _run(workflow=VALID["spec"], params={"env": "x"}), namespace="ns", fetch_workflow=None
    )
    assert validations.call_count == 1
    run = _run(workflowRef={"name": "ci"}, params={"env": "prod"})
    await check_workflow_run(run, namespace="ns", fetch_workflow=_fetching(VALID))
    assert validations.call_count == 2
    with pytest.raises(AdmissionRefused) as info:
        await check_workflow_run(
            _run(workflowRef={"name": "ci"}), namespace="ns", fetch_workflow=_fetching(BROKEN)
        )
    assert "did you mean 'command'?" in info.value.message
    assert "c -> d -> c" in info.value.message
    assert validations.call_count == 3


async def test_a_mapping_valued_param_is_refused() -> None:
    run = _run(workflowRef={"name": "ci"}, params={"env": {"nested": 1}})
    with pytest.raises(AdmissionRefused) as info:
        await check_workflow_run(run, namespace="ns", fetch_workflow=_fetching(VALID))
    assert "spec.params.env" in info.value.message


async def test_the_registered_handler_refuses_with_the_same_message() -> None:
    registry = kopf.OperatorRegistry()
    register_admission(registry, fetch_workflow=_fetch_nothing)
    (handler,) = [h for h in registry._webhooks.get_all_handlers() if h.id == WORKFLOW_HANDLER_ID]
    with pytest.raises(kopf.AdmissionError) as info:
        await handler.fn(body=kopf.Body(BROKEN), namespace="ns", operation="CREATE")
    assert str(info.value).splitlines()[1:] == BROKEN_PROBLEMS
    assert info.value.code == 422


def test_a_refusal_is_logged_as_one_info_line(caplog: pytest.LogCaptureFixture) -> None:
    """kopf logs a refused review at ERROR, whole; the operator says it once, at INFO."""
    from szal.runners.kubernetes.admission import quiet_refusals

    quiet_refusals()
    quiet_refusals()  # idempotent: one filter
    kopf_objects = logging.getLogger("kopf.objects")
    with caplog.at_level(logging.INFO):
        kopf_objects.error(
            "Webhook 'validate-workflow' failed permanently: Workflow 'x' is invalid "
            "(2 problems):\n  step 'a': cycle\n  step 'b': unknown field"
        )
        kopf_objects.error("Handler 'other' failed with an exception. Will retry.")
    refusal, other = caplog.records
    assert (refusal.levelname, refusal.getMessage()) == (
        "INFO",
        "admission refused: Webhook 'validate-workflow' failed permanently: "
        "Workflow 'x' is invalid (2 problems):",
    )
    assert other.levelname == "ERROR"  # only refusals are quieted
    with caplog.at_level(logging.WARNING):
        caplog.clear()
        kopf_objects.error("Webhook 'validate-workflow' failed permanently: no")
    assert caplog.records == []  # --quiet: not even the INFO line


# -- a run's spec is immutable but for its controls ------------------------------------


async def _review_update(old: dict[str, Any], new: dict[str, Any]) -> None:
    """The registered WorkflowRun handler on an UPDATE (its Workflow no longer exists)."""
    registry = kopf.OperatorRegistry()
    register_admission(registry, fetch_workflow=_fetch_nothing)
    (handler,) = [
        h for h in registry._webhooks.get_all_handlers() if h.id == WORKFLOW_RUN_HANDLER_ID
    ]
    await handler.fn(body=kopf.Body(new), old=kopf.Body(old), namespace="ns", operation="UPDATE")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"workflowRef": {"name": "other"}}, "workflowRef"),
        ({"params": {"env": "prod"}}, "params"),
        ({"workflow": {"steps": [{"name": "a", "command": ["true"]}]}}, "workflow"),
    ],
)
async def test_changing_what_a_run_runs_is_refused(change: dict[str, Any], field: str) -> None:
    old = _run(workflowRef={"name": "ci"}, params={"env": "dev"})
    new = _run(**{**old["spec"], **change})
    with pytest.raises(kopf.AdmissionError) as info:
        await _review_update(old, new)
    assert f"spec.{field} is immutable" in str(info.value)
    assert "except suspend, cancel, skipFinally, ttlSecondsAfterFinished" in str(info.value)
    assert info.value.code == 422


async def test_controls_change_even_when_the_workflow_is_gone() -> None:
    old = _run(workflowRef={"name": "ci"}, params={"env": "dev"})
    for control in ({"suspend": True}, {"cancel": True}, {"ttlSecondsAfterFinished": 60}):
        await _review_update(old, _run(**{**old["spec"], **control}))


# -- WorkflowSchedule: the cron expression and time zone -----------------------------


def _schedule(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "szal.dev/v1alpha1",
        "kind": "WorkflowSchedule",
        "metadata": {"name": "nightly", "namespace": "ns", "uid": "u", "resourceVersion": "1"},
        "spec": {"schedule": "0 2 * * *", "workflowRef": {"name": "ci"}, **spec},
    }


def test_a_valid_schedule_is_admitted() -> None:
    check_workflow_schedule(_schedule())
    check_workflow_schedule(_schedule(schedule="@hourly", timeZone="Europe/Budapest"))


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"schedule": "every night"}, "spec.schedule: not a cron expression: 'every night'"),
        ({"schedule": "61 * * * *"}, "spec.schedule: not a cron expression: '61 * * * *'"),
        ({"timeZone": "Mars/Olympus"}, "spec.timeZone: unknown time zone 'Mars/Olympus'"),
    ],
)
def test_a_bad_cron_expression_or_zone_is_refused(spec: dict[str, Any], problem: str) -> None:
    with pytest.raises(AdmissionRefused) as refused:
        check_workflow_schedule(_schedule(**spec))
    assert refused.value.problems == [problem]
    assert "WorkflowSchedule 'nightly' is invalid" in refused.value.message


def test_a_schedule_of_the_wrong_shape_is_refused_naming_the_field() -> None:
    with pytest.raises(AdmissionRefused) as refused:
        check_workflow_schedule(_schedule(concurrencyPolicy="Sometimes"))
    assert refused.value.problems[0].startswith("spec.concurrencyPolicy: ")
