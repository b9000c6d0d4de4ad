"""Showing a local run as it happens: a live tree on a terminal, lines otherwise.

``szal run`` picks one of the two listeners (both implement the local
runner's ``RunListener``):

- :class:`LiveTree` (a terminal): a rich ``Live`` view, refreshed a few
  times a second, of the steps as a tree (Hierarchical children under their
  parent) with phase, attempt and duration, and the run's phase and
  progress on top. It is left on screen when the run ends.
- :class:`PlainLines` (a pipe, a file, CI logs): one line per transition,
  ``HH:MM:SS.mmm  step  Old -> New  (attempt n) message``, flushed at once.

With ``--json`` the progress goes to stderr so stdout holds only the status.

:func:`render_tree` draws the tree from a status alone; ``szal get`` and
``szal submit --watch`` draw cluster runs with it, so both look the same.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from typing import IO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text
from rich.tree import Tree

from szal.engine.actions import Plan
from szal.engine.phases import StepPhase
from szal.engine.state import RunState, StepState
from szal.engine.workflow import ResolvedWorkflow
from szal.spec.durations import format_duration

PHASE_STYLE = {
    "Pending": "dim",
    "Waiting": "yellow",
    "Running": "bold cyan",
    "Succeeded": "green",
    "Failed": "bold red",
    "TimedOut": "bold red",
    "Skipped": "dim",
    "Cancelled": "magenta",
    "Paused": "yellow",
    "RollingBack": "yellow",
    "RolledBack": "magenta",
}
PHASE_ICON = {
    "Pending": "·",
    "Waiting": "↻",
    "Running": "▶",
    "Succeeded": "✓",
    "Failed": "✗",
    "TimedOut": "⏱",
    "Skipped": "-",
    "Cancelled": "■",
}


def step_duration(step: StepState, now: float) -> float | None:
    if step.started_at is None:
        return None
    end = step.finished_at if step.finished_at is not None else now
    return max(0.0, end - step.started_at)


class PlainLines:
    """One line per transition, for logs and pipes."""

    def __init__(self, out: IO[str], run_name: str) -> None:
        self.out = out
        self.run_name = run_name

    def on_plan(self, state: RunState, plan: Plan, now: float) -> None:
        for t in plan.transitions:
            stamp = datetime.fromtimestamp(t.at).strftime("%H:%M:%S.%f")[:-3]
            who = f"run {self.run_name}" if t.step is None else t.step
            if t.rollback:
                who += " (rollback)"
            detail = f" attempt {t.attempt}" if t.step is not None and t.attempt else ""
            if t.exit_code is not None:
                detail += f" exit {t.exit_code}"
            if t.message:
                detail += f": {t.message}"
            self.out.write(f"{stamp}  {who}  {t.old or '-'} -> {t.new}{detail}\n")
        if plan.transitions:
            self.out.flush()

    def close(self) -> None:
        self.out.flush()


class LiveTree:
    """A live tree of steps on a terminal (rich)."""

    def __init__(self, console: Console, workflow: ResolvedWorkflow, run_name: str) -> None:
        self.console = console
        self.workflow = workflow
        self.run_name = run_name
        self.state: RunState | None = None
        self.live = Live(
            get_renderable=self.render,
            console=console,
            refresh_per_second=8,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self.live.start()

    def on_plan(self, state: RunState, plan: Plan, now: float) -> None:
        self.state = state

    def close(self) -> None:
        self.live.refresh()
        self.live.stop()

    def render(self) -> RenderableType:
        if self.state is None:
            return Text(f"{self.run_name}: starting…")
        return render_tree(self.workflow, self.run_name, self.state, time.time())


def render_tree(
    workflow: ResolvedWorkflow,
    run_name: str,
    state: RunState,
    now: float,
    extra: Mapping[str, str] | None = None,
) -> RenderableType:
    """The run as a tree: its phase and progress on top, one line per step.

    ``extra`` adds text to a step's line (``szal get -o wide``: the pod).
    Shared by the live view of local runs and ``szal get`` of cluster runs.
    """
    run_phase = state.phase.value
    took = state.duration(now)
    head = Text.assemble(
        (f"{workflow.name}", "bold"),
        f"  run {run_name}  ",
        (run_phase, PHASE_STYLE.get(run_phase, "")),
        f"  {state.progress}",
        f"  {format_duration(took)}" if took is not None else "",
    )
    tree = Tree(head, guide_style="dim")
    nodes: dict[str | None, Tree] = {None: tree}
    for step in workflow.steps:
        parent = nodes.get(step.parent, tree)
        line = _step_line(step.name, state, now)
        if extra and extra.get(step.name):
            line.append(f"  {extra[step.name]}", style="dim")
        nodes[step.name] = parent.add(line)
    parts: list[RenderableType] = [tree]
    if state.message and state.phase.is_terminal:
        parts.append(Text(state.message, style=PHASE_STYLE.get(run_phase, "")))
    return Group(*parts)


def _step_line(name: str, state: RunState, now: float) -> Text:
    step = state.steps.get(name)
    if step is None:
        return Text(name, style="dim")
    phase = step.phase.value
    style = PHASE_STYLE.get(phase, "")
    line = Text.assemble(
        (f"{PHASE_ICON.get(phase, '?')} ", style),
        (name, "bold" if step.phase is StepPhase.RUNNING else ""),
        "  ",
        (phase, style),
    )
    if step.attempts > 1 or (step.attempts and step.phase is StepPhase.WAITING):
        line.append(f"  attempt {step.attempts}")
    took = step_duration(step, now)
    if took is not None:
        line.append(f"  {format_duration(took)}", style="dim")
    if step.message:
        line.append(f"  {step.message}", style="dim")
    if step.rollback is not None:
        rb = step.rollback.phase.value
        line.append("  rollback ", style="dim")
        line.append(rb, style=PHASE_STYLE.get(rb, ""))
    return line
