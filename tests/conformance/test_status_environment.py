"""Conformance: the status object, the step environment, params, and migrations.

Covers DESIGN.md section 3's ``status`` (field names, the Succeeded
condition, progress ``done/total``, RFC 3339 UTC timestamps with
milliseconds, durations printed like ``1m12.4s``, the pinned workflow, the
per-step records and ``attempts: 0`` for steps that never ran, a lossless
round trip through ``RunState.from_status``), section 4 "Outputs"
(``SZAL_RUN``, ``SZAL_STEP``, ``SZAL_ATTEMPT``, ``SZAL_PARAM_<NAME>``,
``SZAL_CONTEXT`` and its shape; params never spliced into command text),
"Versioning" (the spec hash pinned at start) and the migration rules.
Deliberately not: ``SZAL_OUTPUTS`` and podName, which the runners add
(tests/local, tests/kubernetes).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from tests.conformance.support import FAIL, HANG, T0, Outcome, doc, resolved, run, simulator, step

from szal.engine import (
    CURRENT_VERSION,
    Launch,
    MigrationError,
    MigrationRegistry,
    RunState,
    compile_workflow,
    new_run_state,
    param_variable,
    run_context,
    step_environment,
    upgrade,
)
from szal.spec.durations import format_duration

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
RUN_FIELDS = {
    "phase",
    "conditions",
    "progress",
    "startedAt",
    "finishedAt",
    "duration",
    "message",
    "observedGeneration",
    "workflow",
    "steps",
}
STEP_FIELDS = {
    "phase",
    "attempts",
    "startedAt",
    "finishedAt",
    "exitCode",
    "message",
    "outputs",
    "podName",
    "rollback",
    # engine bookkeeping beyond DESIGN, needed to resume from the status
    "attemptStartedAt",
    "retryAt",
    "finishOrder",
}


def test_status_fields_are_designs() -> None:
    document = doc(
        [
            step("build", rollback={"command": ["undo"]}),
            step("test"),
            step("deploy"),
        ],
        rollbackOnFailure=True,
    )
    status, _ = run(
        document,
        {"build": Outcome(outputs={"image": "x"}, duration=72.4), "test": FAIL},
    )
    assert set(status) <= RUN_FIELDS
    assert {
        "phase",
        "conditions",
        "progress",
        "startedAt",
        "finishedAt",
        "duration",
        "message",
        "workflow",
        "steps",
    } <= set(status)
    assert status["progress"] == "3/3"
    assert status["workflow"]["name"] == "wf"
    assert status["workflow"]["version"] == 1
    assert re.fullmatch(r"[0-9a-f]+", status["workflow"]["specHash"])
    (condition,) = status["conditions"]
    assert set(condition) == {"type", "status", "reason", "message", "lastTransitionTime"}
    assert condition["type"] == "Succeeded"
    for record in status["steps"].values():
        assert set(record) <= STEP_FIELDS
    build = status["steps"]["build"]
    assert build["exitCode"] == 0
    assert build["outputs"] == {"image": "x"}
    assert build["attempts"] == 1
    assert set(build["rollback"]) >= {"phase", "startedAt", "finishedAt"}
    assert status["steps"]["deploy"]["attempts"] == 0
    assert "startedAt" not in status["steps"]["deploy"]
    json.dumps(status)  # plain JSON


def test_timestamps_are_rfc3339_utc_with_milliseconds() -> None:
    status, _ = run(doc([step("a"), step("b")]), {"a": Outcome(duration=1.2345)})
    stamps = [
        status["startedAt"],
        status["finishedAt"],
        status["conditions"][0]["lastTransitionTime"],
    ]
    for record in status["steps"].values():
        stamps += [record["startedAt"], record["finishedAt"]]
    for stamp in stamps:
        assert TIMESTAMP.match(stamp), stamp
    assert status["startedAt"] == "2027-01-15T08:00:00.000Z"
    assert status["steps"]["a"]["finishedAt"] == "2027-01-15T08:00:01.234Z"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (72.4, "1m12.4s"),
        (72.0, "1m12s"),
        (3.2, "3.2s"),
        (0.25, "250ms"),
        (60.0, "1m0s"),
        (7205.0, "2h0m5s"),
        (5.0, "5s"),
    ],
)
def test_durations_print_go_style(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    status, _ = run(doc([step("a")]), {"a": Outcome(duration=seconds)})
    assert status["duration"] == text


def test_status_while_running() -> None:
    sim = simulator(doc([step("a"), step("b"), step("c")]), {"b": HANG})
    sim.run()
    status = sim.state.to_status()
    assert status["phase"] == "Running"
    assert status["progress"] == "1/3"
    assert status["conditions"][0]["status"] == "Unknown"
    assert status["conditions"][0]["reason"] == "Running"
    assert "finishedAt" not in status
    assert status["steps"]["c"] == {"phase": "Pending", "attempts": 0}


def test_new_run_is_pending_with_every_step() -> None:
    workflow = resolved(doc([step("a"), step("p", steps=[step("c")])], mode="Hierarchical"))
    status = new_run_state(workflow).to_status()
    assert status["phase"] == "Pending"
    assert status["progress"] == "0/3"
    assert status["steps"] == {n: {"phase": "Pending", "attempts": 0} for n in ("a", "p", "c")}
    assert status["conditions"][0]["status"] == "Unknown"


def test_status_round_trips() -> None:
    document = doc(
        [step("a", rollback={"command": ["undo"]}), step("b", retries={"limit": 2})],
        rollbackOnFailure=True,
    )
    status, _ = run(document, {"a": Outcome(outputs={"k": [1, 2]}), "b": FAIL})
    assert RunState.from_status(status).to_status() == status


def test_spec_hash_changes_with_the_spec_and_is_stable() -> None:
    one = resolved(doc([step("a")])).spec_hash
    assert resolved(doc([step("a")])).spec_hash == one
    assert resolved(doc([step("a", timeout="1s")])).spec_hash != one


# -- environment --------------------------------------------------------------------


def test_step_environment() -> None:
    document = doc(
        [step("build", env=[{"name": "X", "value": "y"}]), step("test")],
        params=[
            {"name": "env", "default": "staging"},
            {"name": "my-param", "default": 3},
            {"name": "debug", "default": True},
        ],
    )
    sim = simulator(
        document, {"build": Outcome(outputs={"image": "i"}, exit_code=0)}, params={"env": "prod"}
    )
    sim.plan()
    sim.advance(None)
    sim.plan()  # build finished, test launched
    env = step_environment(
        compile_workflow(sim.workflow), sim.state, "test", 1, run_name="wf-1", namespace="ns"
    )
    assert env["SZAL_RUN"] == "wf-1"
    assert env["SZAL_STEP"] == "test"
    assert env["SZAL_ATTEMPT"] == "1"
    assert env["SZAL_PARAM_ENV"] == "prod"
    assert env["SZAL_PARAM_MY_PARAM"] == "3"
    assert env["SZAL_PARAM_DEBUG"] == "true"
    assert param_variable("my-param") == "SZAL_PARAM_MY_PARAM"
    context = json.loads(env["SZAL_CONTEXT"])
    assert context == {
        "params": {"env": "prod", "my-param": 3, "debug": True},
        "steps": {"build": {"phase": "Succeeded", "exitCode": 0, "outputs": {"image": "i"}}},
    }
    assert run_context(sim.workflow, sim.state) == context
    build_env = step_environment(
        compile_workflow(sim.workflow), sim.state, "build", 2, run_name="wf-1"
    )
    assert build_env["X"] == "y"
    assert build_env["SZAL_ATTEMPT"] == "2"


def test_context_covers_finished_steps_of_every_outcome() -> None:
    sim = simulator(doc([step("a"), step("b"), step("c")], mode="Parallel"), {"a": FAIL, "c": HANG})
    sim.run()
    context = run_context(sim.workflow, sim.state)
    assert set(context["steps"]) == {"a", "b"}
    assert context["steps"]["a"] == {"phase": "Failed", "exitCode": 1, "outputs": {}}


@pytest.mark.parametrize(
    "field",
    [
        {"command": ["echo", "{{params.env}}", "$(params.env)", "${SZAL_PARAM_ENV}"]},
        {"script": "echo {{params.env}} $(params.env) {{inputs.parameters.env}}"},
    ],
)
def test_params_are_never_spliced_into_command_text(field: dict[str, Any]) -> None:
    document = doc([{"name": "a", **field}], params=[{"name": "env", "default": "x; rm -rf /"}])
    sim = simulator(document, params={"env": "prod"})
    plan = sim.plan()
    (launch,) = [a for a in plan.actions if isinstance(a, Launch)]
    text = " ".join(launch.command.argv())
    assert "prod" not in text
    assert "rm -rf" not in text
    if "script" in field:
        assert launch.command.argv() == ["sh", "-c", field["script"]]
    else:
        assert launch.command.argv() == field["command"]


# -- versioning and migrations --------------------------------------------------------


def test_migrations_register_only_n_to_n_plus_one() -> None:
    registry = MigrationRegistry(current_version=3)
    with pytest.raises(MigrationError):
        registry.register(1, 3)
    registry.register(1)(lambda spec: {**spec, "renamed": True})
    with pytest.raises(MigrationError):
        registry.register(1)  # twice
    with pytest.raises(MigrationError):
        registry.register(3)  # beyond the current version


def test_migrations_run_in_order_and_current_is_a_no_op() -> None:
    registry = MigrationRegistry(current_version=3)
    registry.register(1)(lambda spec: {**spec, "trail": [*spec.get("trail", []), 1]})
    registry.register(2)(lambda spec: {**spec, "trail": [*spec.get("trail", []), 2]})
    out = registry.upgrade({"kind": "Workflow", "spec": {"version": 1, "steps": []}})
    assert out["spec"]["trail"] == [1, 2] and out["spec"]["version"] == 3
    current = {"version": 3, "steps": []}
    assert registry.upgrade(current) == current
    assert registry.upgrade({"steps": []}, target=1) == {"steps": []}  # default version 1


def test_migration_errors_name_the_versions() -> None:
    registry = MigrationRegistry(current_version=3)
    registry.register(2)(lambda spec: spec)  # the hop from 1 is missing
    with pytest.raises(MigrationError) as missing:
        registry.upgrade({"version": 1})
    assert "1" in str(missing.value)
    with pytest.raises(MigrationError) as newer:
        registry.upgrade({"version": 7})
    assert "7" in str(newer.value) and "3" in str(newer.value)


def test_default_registry_current_version_is_a_no_op() -> None:
    document = doc([step("a")], version=CURRENT_VERSION)
    assert upgrade(document) == document
    with pytest.raises(MigrationError):
        upgrade(doc([step("a")], version=CURRENT_VERSION + 1))


def test_a_run_pins_its_workflow() -> None:
    sim = simulator(doc([step("a"), step("b")], version=1), {"a": HANG})
    sim.plan()
    pinned = sim.state.to_status()["workflow"]
    assert pinned == {"name": "wf", "version": 1, "specHash": sim.workflow.spec_hash}
    assert sim.now == T0
