"""The run state's serialized status and the status model agree, both ways.

Covers: every key ``RunState.to_status`` writes is a field of
``szal.spec.status.RunStatus`` (and its step, rollback, condition and
pinned-workflow records), every field of the model is written and read back
by the state, statuses of real planner runs (retries, timeouts, skips,
rollback) validate against the model, the clearable keys the operator
nulls in its merge patch are exactly the step keys a record may lack, the
phase enums' terminal sets agree with the engine's transition tables, and
``status_document`` (``szal run --json``) changes nothing but the form.
Does not cover the CRD conversion of the model (tests/crds).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from pydantic import BaseModel
from tests.engine.simulator import T0, Outcome, Simulator, by_step, resolve

from szal.engine.phases import RUN_TRANSITIONS, STEP_TRANSITIONS, RunPhase, StepPhase
from szal.engine.state import MainOutcome, PinnedWorkflow, RollbackState, RunState, StepState
from szal.spec.status import (
    TERMINAL_RUN_PHASES,
    TERMINAL_STEP_PHASES,
    Condition,
    MainOutcomeStatus,
    PinnedWorkflowStatus,
    RollbackStatus,
    RunStatus,
    StepStatus,
    clearable_keys,
    status_document,
    wire_keys,
)

# Every field of every state record set to a non-default value. A Waiting step
# writes all its keys (attemptStartedAt is kept while not terminal, retryAt
# while Waiting); finished_at makes the run write its duration.
ROLLBACK = RollbackState(StepPhase.FAILED, T0 + 5, T0 + 6, 3, "undo failed")
STEP = StepState(
    phase=StepPhase.WAITING,
    attempts=2,
    started_at=T0 + 1,
    finished_at=T0 + 2,
    attempt_started_at=T0 + 3,
    retry_at=T0 + 4,
    exit_code=1,
    message="attempt 2 failed; retrying in 1s",
    outputs={"k": "v", "n": None},
    pod_name="run-a-2",
    finish_order=1,
    rollback=ROLLBACK,
    final=True,
    reused_from="wf-original",
)
RUN = RunState(
    phase=RunPhase.ROLLING_BACK,
    steps={"a": STEP, "b": StepState(StepPhase.SUCCEEDED, 1, T0, T0 + 1, finish_order=0)},
    started_at=T0,
    finished_at=T0 + 9,
    message="step a failed; rolling back 1 step(s)",
    reason="RollingBack",
    condition_changed_at=T0 + 7,
    observed_generation=3,
    workflow=PinnedWorkflow("wf", 7, "abc123"),
    main_outcome=MainOutcome(RunPhase.FAILED, "RunFailed", "step a failed", "Cancelled"),
    finished_count=1,  # b
    next_finish_order=2,
)


def _keys(status: dict[str, Any]) -> dict[str, set[str]]:
    """The keys ``status`` holds, per record kind."""
    step = status["steps"]["a"]
    return {
        "RunStatus": set(status),
        "StepStatus": set(step),
        "RollbackStatus": set(step["rollback"]),
        "Condition": set(status["conditions"][0]),
        "PinnedWorkflowStatus": set(status["workflow"]),
        "MainOutcomeStatus": set(status["mainOutcome"]),
    }


MODELS: dict[str, type[BaseModel]] = {
    "RunStatus": RunStatus,
    "StepStatus": StepStatus,
    "RollbackStatus": RollbackStatus,
    "Condition": Condition,
    "PinnedWorkflowStatus": PinnedWorkflowStatus,
    "MainOutcomeStatus": MainOutcomeStatus,
}


@pytest.mark.parametrize("record", [ROLLBACK, STEP, RUN, RUN.workflow, RUN.main_outcome], ids=type)
def test_the_sample_sets_every_field_of_the_state(record: object) -> None:
    """Add a field to a state record: set it here, so the tests below see its key."""
    assert dataclasses.is_dataclass(record)
    blank = type(record).__new__(type(record))
    for f in dataclasses.fields(record):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            continue  # required: set by construction
        assert getattr(record, f.name) != default, f"set {type(blank).__name__}.{f.name}"


def test_every_key_the_state_writes_is_in_the_model_and_back() -> None:
    status = RUN.to_status()
    written = _keys(status)
    for kind, model in MODELS.items():
        missing_in_model = written[kind] - set(wire_keys(model))
        never_written = set(wire_keys(model)) - written[kind]
        assert not missing_in_model, f"{kind} lacks keys the state writes: {missing_in_model}"
        assert not never_written, f"{kind} has fields the state never writes: {never_written}"
    RunStatus.model_validate(status)  # extra="forbid": any unknown key fails here too


def test_every_model_field_is_read_back_by_the_state() -> None:
    document = status_document(RUN.to_status())
    assert RunState.from_status(document).to_status() == document


def test_model_refuses_a_key_it_does_not_know() -> None:
    status = RUN.to_status()
    status["steps"]["a"]["nodeName"] = "n1"
    with pytest.raises(ValueError, match="nodeName"):
        RunStatus.model_validate(status)


def test_status_document_keeps_the_shape_and_key_order() -> None:
    status = RUN.to_status()
    document = status_document(status)
    assert document == status
    assert list(document) == list(status)
    assert list(document["steps"]["a"]) == list(status["steps"]["a"])
    fresh = RunState(steps={"a": StepState()}).to_status()
    assert status_document(fresh) == fresh


def _statuses_of(spec: dict[str, Any], script: Any) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    sim = Simulator(resolve(spec), script)
    sim.run(on_plan=lambda s, _: seen.append(s.state.to_status()))
    return seen


def test_statuses_of_planner_runs_validate_against_the_model() -> None:
    undo = {"command": ["undo"]}
    spec = {
        "mode": "Dag",
        "rollbackOnFailure": True,
        "steps": [
            {"name": "a", "command": ["true"], "rollback": undo},
            {"name": "b", "command": ["true"], "dependsOn": ["a"], "when": "false"},
            {
                "name": "c",
                "command": ["true"],
                "dependsOn": ["a"],
                "timeout": "2s",
                "retries": {"limit": 1, "delay": "1s"},
            },
            {"name": "d", "command": ["true"], "dependsOn": ["c"]},
        ],
    }
    script = by_step({"c": [Outcome("Failed", exit_code=28), Outcome("Hang")]})
    statuses = _statuses_of(spec, script)
    phases = {s["steps"]["c"]["phase"] for s in statuses}
    assert {"Waiting", "TimedOut"} <= phases
    assert statuses[-1]["phase"] == "RolledBack"
    for status in statuses:
        RunStatus.model_validate(status)


def test_clearable_keys_are_what_a_step_record_may_lack() -> None:
    always = set(StepState().to_status())
    assert always == {"phase", "attempts"}
    assert set(clearable_keys(StepStatus)) == set(wire_keys(StepStatus)) - always
    assert clearable_keys(RunStatus) == ("message",)


def test_terminal_phases_are_those_the_tables_never_leave() -> None:
    assert {p for p, nxt in STEP_TRANSITIONS.items() if not nxt} == TERMINAL_STEP_PHASES
    assert {p for p, nxt in RUN_TRANSITIONS.items() if not nxt} == TERMINAL_RUN_PHASES
    assert set(STEP_TRANSITIONS) == set(StepPhase) and set(RUN_TRANSITIONS) == set(RunPhase)
