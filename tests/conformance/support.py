"""Helpers for the conformance tests: workflows as users write them, run in virtual time.

A workflow is a plain dict shaped like the YAML a user applies (``apiVersion``,
``kind``, ``metadata``, ``spec``). :func:`run` parses it through the public
engine API (``parse_workflow`` -> ``validate_run_params`` ->
``resolve_workflow``), drives the planner with the simulated executor of
``tests/engine/simulator.py`` and returns the status object
(``RunState.to_status()``) that ``szal run --json`` prints, plus the simulator
for the few assertions that need the timeline (launch times, stop actions).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tests.engine.simulator import T0, Outcome, Script, Simulator, always, by_step

from szal.engine import (
    SpecIssue,
    WorkflowInvalid,
    parse_workflow,
    resolve_workflow,
    validate_run_params,
)

__all__ = [
    "FAIL",
    "HANG",
    "OK",
    "T0",
    "Outcome",
    "Simulator",
    "always",
    "by_step",
    "doc",
    "issues",
    "launch_times",
    "messages",
    "phases",
    "resolved",
    "run",
    "simulator",
    "started",
    "step",
]

OK = Outcome("Succeeded")
FAIL = Outcome("Failed")
HANG = Outcome("Hang")


def step(name: str, **fields: Any) -> dict[str, Any]:
    """A leaf step as a user writes it: ``{name, command: [true], ...}``."""
    out: dict[str, Any] = {"name": name, "command": ["true"]}
    for key, value in fields.items():
        out[key] = value
    return out


def doc(steps: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    """A whole ``kind: Workflow`` document."""
    return {
        "apiVersion": "szal.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "wf"},
        "spec": {**spec, "steps": steps},
    }


def resolved(document: Mapping[str, Any], params: Mapping[str, Any] | None = None) -> Any:
    workflow = parse_workflow(document)
    values, problems = validate_run_params(workflow.spec, dict(params or {}))
    assert not problems, problems
    return resolve_workflow(workflow.spec, name=workflow.metadata.name or "wf", params=values)


def simulator(
    document: Mapping[str, Any],
    script: Script | Mapping[str, Outcome | list[Outcome]] | None = None,
    *,
    params: Mapping[str, Any] | None = None,
    rollback: Script | Mapping[str, Outcome | list[Outcome]] | None = None,
) -> Simulator:
    if script is None:
        script = always(OK)
    elif isinstance(script, Mapping):
        script = by_step(script)
    if isinstance(rollback, Mapping):
        rollback = by_step(rollback)
    return Simulator(resolved(document, params), script, rollback_script=rollback)


def run(
    document: Mapping[str, Any],
    script: Script | Mapping[str, Outcome | list[Outcome]] | None = None,
    *,
    params: Mapping[str, Any] | None = None,
    rollback: Script | Mapping[str, Outcome | list[Outcome]] | None = None,
) -> tuple[dict[str, Any], Simulator]:
    """Run to a terminal phase; return ``(status, simulator)``."""
    sim = simulator(document, script, params=params, rollback=rollback)
    sim.run()
    return sim.state.to_status(), sim


def issues(document: Mapping[str, Any]) -> list[SpecIssue]:
    """Every issue ``szal validate`` would list for ``document`` (empty when valid)."""
    try:
        parse_workflow(document)
    except WorkflowInvalid as exc:
        return exc.issues
    return []


def phases(status: Mapping[str, Any]) -> dict[str, str]:
    return {name: s["phase"] for name, s in status["steps"].items()}


def messages(status: Mapping[str, Any]) -> dict[str, str | None]:
    return {name: s.get("message") for name, s in status["steps"].items()}


def started(sim: Simulator) -> list[str]:
    """Steps in the order their first attempt was launched."""
    return [ref.step for ref in sim.launched if not ref.rollback and ref.attempt == 1]


def launch_times(sim: Simulator, name: str) -> list[float]:
    """Seconds after T0 at which each attempt of ``name`` was launched."""
    return [at - T0 for at, a in sim.launches if a.ref.step == name and not a.ref.rollback]
