"""The environment a step's process or container gets.

Both runners call :func:`step_environment` when they carry out a
:class:`~szal.engine.actions.Launch`, so a step sees the same variables
locally and in a Pod (DESIGN.md section 4, "Outputs"): ``SZAL_RUN``,
``SZAL_STEP``, ``SZAL_ATTEMPT``, one ``SZAL_PARAM_<NAME>`` per param and
``SZAL_CONTEXT``, a JSON object of the params and the steps finished so far.
Runners add ``SZAL_OUTPUTS`` (a file path locally, the termination-message
path in a Pod). Params reach a step only as variables, never spliced into
command text.

Decisions: the command's own ``env`` comes first and the ``SZAL_*``
variables win over it, so a step cannot forge its identity; param values
that are not strings are written as JSON (``true``, ``3``, ``0.5``); a
compensation gets ``SZAL_ROLLBACK=true``.
"""

from __future__ import annotations

import json
from typing import Any

from szal.engine.matrices import fan_out_outputs
from szal.engine.state import RunState
from szal.engine.workflow import ResolvedWorkflow


def param_variable(name: str) -> str:
    """``SZAL_PARAM_<NAME>``: upper-cased, ``-`` turned into ``_``."""
    return "SZAL_PARAM_" + name.upper().replace("-", "_")


def _text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def run_context(workflow: ResolvedWorkflow, state: RunState) -> dict[str, Any]:
    """``{"params": ..., "steps": {name: {phase, exitCode, outputs}}}`` of finished steps."""
    steps: dict[str, Any] = {}
    for step in workflow.steps:
        rec = state.steps.get(step.name)
        if rec is None or not rec.phase.is_terminal:
            continue
        outputs: Any = rec.outputs if rec.outputs is not None else {}
        if step.fan_out:  # a matrix: its instances' outputs, in order
            outputs = fan_out_outputs(
                [state.steps[c] for c in step.children], range(len(step.children))
            )
        steps[step.name] = {
            "phase": rec.phase.value,
            "exitCode": rec.exit_code,
            "outputs": outputs,
        }
    return {"params": dict(workflow.params), "steps": steps}


def step_environment(
    workflow: ResolvedWorkflow,
    state: RunState,
    step: str,
    attempt: int,
    *,
    run_name: str,
    namespace: str = "",
    rollback: bool = False,
) -> dict[str, str]:
    """Every variable for one attempt of ``step`` (or its compensation)."""
    resolved = workflow.by_name[step]
    command = resolved.rollback if rollback and resolved.rollback is not None else resolved.command
    env: dict[str, str] = dict(command.env)
    env["SZAL_RUN"] = run_name
    if namespace:
        env["SZAL_NAMESPACE"] = namespace
    env["SZAL_STEP"] = step
    env["SZAL_ATTEMPT"] = str(attempt)
    for name, value in workflow.params.items():
        env[param_variable(name)] = _text(value)
    context = run_context(workflow, state)
    if resolved.matrix is not None:
        context["matrix"] = dict(resolved.matrix)
    env["SZAL_CONTEXT"] = json.dumps(context, separators=(",", ":"))
    if rollback:
        env["SZAL_ROLLBACK"] = "true"
    return env
