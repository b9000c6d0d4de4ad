"""A workflow resolved for running: template merged, durations parsed, graph built.

:func:`resolve_workflow` turns a validated :class:`~szal.spec.WorkflowSpec`
into a :class:`ResolvedWorkflow`, once per run. It is the only place where
the step ``template`` is merged (a step's own fields win; ``env`` merges by
name; ``pod`` merges field by field) and where Hierarchical nesting is
flattened into one graph, so the planner works on a flat, indexed structure
and never walks the spec again.
"""

from __future__ import annotations

from dataclasses import dataclass

from szal.dsl import Condition
from szal.spec import GpuRequest, Launcher, Mode, PodOptions, Trigger


@dataclass(frozen=True, slots=True)
class Command:
    """What to execute: ``command`` + ``args`` exec'd, or ``script`` via ``sh -c``."""

    image: str | None
    command: tuple[str, ...] | None
    args: tuple[str, ...] | None
    script: str | None
    env: tuple[tuple[str, str], ...]

    def argv(self) -> list[str]:
        """The argument vector for a local process (``image`` is ignored)."""
        if self.script is not None:
            return ["sh", "-c", self.script]
        return [*(self.command or ()), *(self.args or ())]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempts = limit + 1; delay before attempt n+1 per ``backoff``, capped."""

    limit: int = 0
    backoff: str = "Fixed"
    delay: float = 1.0
    max_delay: float | None = None

    def delay_after(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt + 1``."""
        if self.backoff == "Linear":
            value = self.delay * attempt
        elif self.backoff == "Exponential":
            value = self.delay * (2 ** (attempt - 1))
        else:
            value = self.delay
        return min(value, self.max_delay) if self.max_delay is not None else value


@dataclass(frozen=True, slots=True)
class ResolvedStep:
    """One step with the template merged in and everything parsed.

    ``index`` is the step's position in :attr:`ResolvedWorkflow.steps`
    (definition order, parents before children); ``parent`` names the
    Hierarchical parent, ``group_mode`` is the mode of the sibling group the
    step belongs to, ``mode`` the mode of its own children.
    """

    name: str
    index: int
    command: Command
    timeout: float | None
    retries: RetryPolicy
    depends_on: tuple[str, ...]
    trigger: Trigger
    when: Condition | None
    rollback: Command | None
    rollback_timeout: float | None
    cpu: str | None
    memory: str | None
    gpu: GpuRequest | None
    launcher: Launcher
    pod: PodOptions | None
    parent: str | None
    children: tuple[str, ...]
    group_mode: Mode
    mode: Mode


@dataclass(frozen=True, slots=True)
class ResolvedWorkflow:
    """Everything the planner needs, indexed. Built once per run."""

    name: str
    version: int
    spec_hash: str
    mode: Mode
    timeout: float | None
    max_parallel: int | None
    fail_fast: bool
    rollback_on_failure: bool
    params: dict[str, object]
    steps: tuple[ResolvedStep, ...]
    by_name: dict[str, ResolvedStep]
