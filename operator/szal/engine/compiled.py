"""The compiled workflow: everything the planner precomputes from the spec, once.

:func:`compile_workflow` turns a :class:`~szal.engine.workflow.ResolvedWorkflow`
into a :class:`CompiledWorkflow`: steps by integer index, parent and child
links, dependency adjacency both ways, sibling groups with their modes,
triggers, ``when`` conditions with the steps they name, the steps each step
can see (its ``when`` and ``SZAL_CONTEXT``; :mod:`szal.engine.visibility`), per-attempt limits
and the messages that quote them. It is immutable (a frozen dataclass of
tuples) and holds nothing about any run, so one compiled workflow serves
every session of it: the first plan of a run, a restart that reads the
state back from status, or a second run with the same resolved workflow.

A run is planned by attaching its state::

    compiled = compile_workflow(resolved)
    session = compiled.attach(state)            # szal.engine.planner.PlanSession
    plan = session.plan(observations, now)

Where a new step option goes: a per-step value the planner reads while
planning is precomputed here, as one more tuple indexed like ``names``
(see ``timeout`` or ``runs``); the session only reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from szal.dsl import Condition
from szal.engine.state import PinnedWorkflow, RunState, StepState
from szal.engine.visibility import Ranges, visible_ranges
from szal.engine.workflow import ResolvedStep, ResolvedWorkflow, RetryPolicy
from szal.spec.durations import format_duration

if TYPE_CHECKING:
    from szal.engine.planner import PlanSession

# Group modes, as small ints for the hot paths.
SEQUENTIAL = 0  # Sequential, and Hierarchical (its top level runs in order)
PARALLEL = 1
DAG = 2


def _mode_code(mode: str) -> int:
    if mode == "Parallel":
        return PARALLEL
    if mode == "Dag":
        return DAG
    return SEQUENTIAL


def _timed_out(text: str | None, seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return f"timed out: exceeded the timeout of {text or format_duration(seconds)}"


@dataclass(frozen=True, slots=True)
class CompiledWorkflow:
    """The immutable, run-independent indexes of one resolved workflow.

    Every per-step tuple is indexed by the step's position in
    ``workflow.steps`` (definition order, parents before children). Group 0
    is the top level; ``child_group[i]`` is the group of step ``i``'s
    children (-1 when it has none).
    """

    workflow: ResolvedWorkflow
    n: int
    names: tuple[str, ...]
    index: Mapping[str, int]
    steps: tuple[ResolvedStep, ...]
    parent: tuple[int, ...]
    children: tuple[tuple[int, ...], ...]
    deps: tuple[tuple[int, ...], ...]
    dependents: tuple[tuple[int, ...], ...]
    any_trigger: tuple[bool, ...]
    runs: tuple[bool, ...]  # has a command of its own (else it only orders children)
    when: tuple[Condition | None, ...]
    when_refs: tuple[tuple[str, ...], ...]  # the steps a condition names
    visible: tuple[Ranges, ...]  # the steps certain to have finished before it (visibility.py)
    timeout: tuple[float | None, ...]
    timeout_message: tuple[str | None, ...]
    retries: tuple[RetryPolicy, ...]
    compensable: tuple[bool, ...]  # has a rollback command
    rollback_timeout: tuple[float | None, ...]
    rollback_timeout_message: tuple[str | None, ...]
    group_of: tuple[int, ...]
    pos: tuple[int, ...]  # position in its group
    child_group: tuple[int, ...]
    members: tuple[tuple[int, ...], ...]
    group_mode: tuple[int, ...]
    group_owner: tuple[int, ...]  # the step whose children the group is (-1: top level)
    max_parallel: int
    params: Mapping[str, Any]
    deadline_message: str  # the run deadline as written (``spec.timeout``)

    def attach(
        self, state: RunState, *, run_name: str | None = None, namespace: str = ""
    ) -> PlanSession:
        """Start planning ``state`` (a new run's, or one read back from status).

        The session indexes ``state`` once, in O(n), and from then on owns
        it: it changes it in place on every ``plan`` call, and nothing else
        should change its phases. ``run_name``/``namespace`` fill
        ``run.name``/``run.namespace`` in conditions (``run_name`` defaults
        to the workflow's name).
        """
        from szal.engine.planner import PlanSession

        return PlanSession(self, state, run_name=run_name, namespace=namespace)

    def new_state(self) -> RunState:
        """A run that has not started (see :func:`new_run_state`)."""
        return new_run_state(self.workflow)


def new_run_state(workflow: ResolvedWorkflow) -> RunState:
    """A run that has not started: every step Pending with ``attempts: 0``, workflow pinned."""
    return RunState(
        steps={step.name: StepState() for step in workflow.steps},
        workflow=PinnedWorkflow(workflow.name, workflow.version, workflow.spec_hash),
    )


def compile_workflow(workflow: ResolvedWorkflow) -> CompiledWorkflow:
    """Precompute every run-independent index of ``workflow`` (O(steps + edges))."""
    steps = workflow.steps
    n = len(steps)
    index = {step.name: i for i, step in enumerate(steps)}
    parent = tuple(index[s.parent] if s.parent is not None else -1 for s in steps)
    children = tuple(tuple(index[c] for c in s.children) for s in steps)
    deps = tuple(tuple(index[d] for d in s.depends_on) for s in steps)
    dependents: list[list[int]] = [[] for _ in range(n)]
    for i, step_deps in enumerate(deps):
        for d in step_deps:
            dependents[d].append(i)
    when_refs: list[tuple[str, ...]] = []
    for s in steps:
        if s.when is None:
            when_refs.append(())
        else:
            refs = {r.name for r in s.when.references if r.root == "steps" and r.name in index}
            when_refs.append(tuple(sorted(refs)))
    members: list[tuple[int, ...]] = [tuple(i for i in range(n) if parent[i] == -1)]
    modes = [_mode_code(workflow.mode)]
    owners = [-1]
    child_group = [-1] * n
    for i, s in enumerate(steps):
        if s.children:
            child_group[i] = len(members)
            members.append(children[i])
            modes.append(_mode_code(s.mode))
            owners.append(i)
    group_of = [0] * n
    pos = [0] * n
    for g, group in enumerate(members):
        for p, i in enumerate(group):
            group_of[i] = g
            pos[i] = p
    timeout = workflow.timeout
    visible = visible_ranges(children, deps, group_of, members, modes, owners)
    return CompiledWorkflow(
        workflow=workflow,
        n=n,
        names=tuple(s.name for s in steps),
        index=index,
        steps=steps,
        parent=parent,
        children=children,
        deps=deps,
        dependents=tuple(tuple(d) for d in dependents),
        any_trigger=tuple(s.trigger == "Any" for s in steps),
        runs=tuple(s.command.script is not None or bool(s.command.argv()) for s in steps),
        when=tuple(s.when for s in steps),
        when_refs=tuple(when_refs),
        visible=visible,
        timeout=tuple(s.timeout for s in steps),
        timeout_message=tuple(_timed_out(s.timeout_text, s.timeout) for s in steps),
        retries=tuple(s.retries for s in steps),
        compensable=tuple(s.rollback is not None for s in steps),
        rollback_timeout=tuple(s.rollback_timeout for s in steps),
        rollback_timeout_message=tuple(
            _timed_out(s.rollback_timeout_text, s.rollback_timeout) for s in steps
        ),
        group_of=tuple(group_of),
        pos=tuple(pos),
        child_group=tuple(child_group),
        members=tuple(members),
        group_mode=tuple(modes),
        group_owner=tuple(owners),
        max_parallel=workflow.max_parallel if workflow.max_parallel else n + 1,
        params=dict(workflow.params),
        deadline_message=workflow.timeout_text or format_duration(timeout or 0.0),
    )
