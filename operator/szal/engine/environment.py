"""The environment a step's process or container gets.

Both runners call :func:`step_environment` when they carry out a
:class:`~szal.engine.actions.Launch`, so a step sees the same variables
locally and in a Pod (DESIGN.md section 4, "Outputs"): ``SZAL_RUN``,
``SZAL_STEP``, ``SZAL_ATTEMPT``, one ``SZAL_PARAM_<NAME>`` per param and
``SZAL_CONTEXT``, a JSON object of the params and the finished steps it can
see. Runners add ``SZAL_OUTPUTS`` (a file path locally, the termination-message
path in a Pod). Params reach a step only as variables, never spliced into
command text.

Since issue 12 a step's context holds only the steps its ``when`` could name
(:mod:`szal.engine.visibility`, precomputed in
:attr:`~szal.engine.compiled.CompiledWorkflow.visible`): in a 5,000-step
Parallel run that is no step at all, instead of every step finished so far
(up to 295 KB per pod, past the kernel's 128 KiB limit for one variable). A
compensation sees what its step saw plus the step itself. A context longer
than :data:`CONTEXT_ENV_LIMIT` is handed over as a file instead
(:func:`deliver_context`, ``SZAL_CONTEXT_FILE``); where the file lives is
the runner's business.

Decisions: the command's own ``env`` comes first and the ``SZAL_*``
variables win over it, so a step cannot forge its identity; param values
that are not strings are written as JSON (``true``, ``3``, ``0.5``); a
compensation gets ``SZAL_ROLLBACK=true``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from szal.engine.compiled import CompiledWorkflow
from szal.engine.matrices import fan_out_outputs
from szal.engine.state import RunState
from szal.engine.workflow import ResolvedWorkflow

CONTEXT_ENV_LIMIT = 32 * 1024
"""The longest ``SZAL_CONTEXT`` passed as a variable (bytes, UTF-8); longer goes as a file.

Linux refuses one variable over 128 KiB (``MAX_ARG_STRLEN``: exec fails
with "Argument list too long") and all of them together past a quarter of
the stack limit; 32 KiB keeps well clear of both and of a Pod's size.
"""


def param_variable(name: str) -> str:
    """``SZAL_PARAM_<NAME>``: upper-cased, ``-`` turned into ``_``."""
    return "SZAL_PARAM_" + name.upper().replace("-", "_")


def _text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def run_context(
    workflow: ResolvedWorkflow, state: RunState, visible: Iterable[int] | None = None
) -> dict[str, Any]:
    """``{"params": ..., "steps": {name: {phase, exitCode, outputs}}}`` of finished steps.

    ``visible``: the indexes (in ``workflow.steps``) of the steps to cover, in
    definition order; None covers every step (the whole run's view).
    """
    steps: dict[str, Any] = {}
    names = [s.name for s in workflow.steps]
    for i in range(len(names)) if visible is None else visible:
        name = names[i]
        rec = state.steps.get(name)
        if rec is None or not rec.phase.is_terminal:
            continue
        outputs: Any = rec.outputs if rec.outputs is not None else {}
        step = workflow.steps[i]
        if step.fan_out:  # a matrix: its instances' outputs, in order
            outputs = fan_out_outputs(
                [state.steps[c] for c in step.children], range(len(step.children))
            )
        steps[name] = {
            "phase": rec.phase.value,
            "exitCode": rec.exit_code,
            "outputs": outputs,
        }
    return {"params": dict(workflow.params), "steps": steps}


def visible_steps(compiled: CompiledWorkflow, step: str, *, rollback: bool = False) -> list[int]:
    """The indexes ``step``'s context covers: what it can see (and itself, for a compensation)."""
    i = compiled.index[step]
    out = [k for r in compiled.visible[i] for k in r]
    if rollback:
        out.append(i)
        out.sort()
    return out


def step_environment(
    compiled: CompiledWorkflow,
    state: RunState,
    step: str,
    attempt: int,
    *,
    run_name: str,
    namespace: str = "",
    rollback: bool = False,
) -> dict[str, str]:
    """Every variable for one attempt of ``step`` (or its compensation)."""
    workflow = compiled.workflow
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
    context = run_context(workflow, state, visible_steps(compiled, step, rollback=rollback))
    if resolved.matrix is not None:
        context["matrix"] = dict(resolved.matrix)
    env["SZAL_CONTEXT"] = json.dumps(context, separators=(",", ":"))
    if rollback:
        env["SZAL_ROLLBACK"] = "true"
    return env


def deliver_context(env: dict[str, str], path: str) -> tuple[dict[str, str], str | None]:
    """``env`` as it goes to the process, and the context text to write at ``path``, if any.

    A ``SZAL_CONTEXT`` up to :data:`CONTEXT_ENV_LIMIT` bytes stays a variable
    (None: nothing to write). A longer one is dropped from the variables and
    ``SZAL_CONTEXT_FILE`` names ``path`` instead, where the runner puts the
    same JSON text. A step reads whichever of the two it is given.
    """
    text = env.get("SZAL_CONTEXT")
    if text is None or len(text.encode()) <= CONTEXT_ENV_LIMIT:
        return env, None
    out = {k: v for k, v in env.items() if k != "SZAL_CONTEXT"}
    out["SZAL_CONTEXT_FILE"] = path
    return out, text
