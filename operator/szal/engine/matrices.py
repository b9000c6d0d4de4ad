"""Matrix fan-out: one step written once, run once per combination of values.

A step with ``matrix: {params: {lr: [0.1, 0.01], batch: [32, 64]}}`` runs
once per combination of the cross product (the first param outermost),
then once per entry of ``matrix.include``; a step with ``forEach: <expr>``
runs once per item of the list the expression gives (``params.items``
holding a JSON list, or a list literal ``[1, 2, 3]``). See docs/engine.md,
"Matrix", for the semantics; this module holds all of it the planner does
not already have:

* :func:`matrix_issues`: the checks of one step's ``matrix``/``forEach``
  that need no run params (called by :func:`szal.engine.checks.validate_workflow`);
* :func:`default_issues`: a ``forEach`` checked with the params' declared
  defaults (also by ``validate_workflow``);
* :func:`expansion_issues`: the checks that need the run's params (a
  ``forEach`` list, the instance count, instance names), called by
  :func:`szal.engine.admitting.admit` before resolving;
* :func:`expand_step`: the rewrite :func:`szal.engine.workflow.resolve_workflow`
  applies: the matrix step becomes a step that runs nothing and has one
  child per instance (``train-0``, ``train-1``, ...) in a Parallel group.
  Everything else follows from the planner's existing rules for a step
  with children: dependents and the next sibling wait for the whole
  subtree, a failed instance makes the unit failed (``dependency failed``,
  ``prior step failed``, failFast), every instance counts in progress.

Decisions: the expansion happens once, when the run is admitted, from the
spec and the run's params alone, so it is the same on every re-plan and
after a restart from status (the status only has to name the instances,
which :func:`szal.engine.compiled.new_run_state` does). A ``forEach`` over
an upstream step's outputs (a graph growing while the run runs) is refused
with a clear message: it is left out for now (docs/engine.md, "Matrix").
"""

from __future__ import annotations

import heapq
import itertools
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from szal.dsl import ConditionError, compile_condition
from szal.engine.issues import SpecIssue
from szal.spec import MAX_MATRIX_INSTANCES, EnvVar, Step, WorkflowSpec

#: The key a ``forEach`` instance's item goes under (``matrix.item``, ``SZAL_MATRIX_ITEM``).
ITEM = "item"
_NAME_LIMIT = 63


def matrix_variable(name: str) -> str:
    """``SZAL_MATRIX_<NAME>``: upper-cased, ``-`` turned into ``_``."""
    return "SZAL_MATRIX_" + name.upper().replace("-", "_")


def is_matrix(step: Step) -> bool:
    """Whether ``step`` fans out (``matrix`` or ``forEach``)."""
    return step.matrix is not None or step.for_each is not None


def instance_name(step: str, k: int) -> str:
    """The name of instance ``k`` of ``step`` (``train-0``)."""
    return f"{step}-{k}"


def matrix_keys(step: Step) -> set[str] | None:
    """The names ``matrix.<name>`` may use in ``step`` (None: the step has no matrix)."""
    if step.for_each is not None:
        return {ITEM}
    if step.matrix is None:
        return None
    keys = set(step.matrix.params or {})
    for entry in step.matrix.include or ():
        keys.update(entry)
    return keys


def _static_count(step: Step) -> int | None:
    """The instance count when it is known without params (None for ``forEach``)."""
    if step.matrix is None or step.for_each is not None:
        return None
    product = 0
    if step.matrix.params:
        product = 1
        for values in step.matrix.params.values():
            product *= len(values)
    return product + len(step.matrix.include or ())


def _too_many(count: int) -> str:
    return f"expands to {count} instances; at most {MAX_MATRIX_INSTANCES} are allowed"


def matrix_issues(step: Step, path: str, param_names: set[str]) -> list[SpecIssue]:
    """Every problem of ``step``'s ``matrix``/``forEach`` that shows without run params."""
    if not is_matrix(step):
        return []
    issues: list[SpecIssue] = []

    def issue(field: str, message: str) -> None:
        issues.append(SpecIssue(f"{path}.{field}", step.name, field, message))

    if step.steps:
        issue(
            "matrix" if step.matrix is not None else "forEach",
            "a step with a matrix or forEach cannot have children (steps)",
        )
    matrix = step.matrix
    if matrix is not None and step.for_each is not None and (matrix.params or matrix.include):
        issue("matrix", "give matrix.params/matrix.include or forEach, not both")
    if matrix is not None and step.for_each is None:
        if not matrix.params and not matrix.include:
            issue("matrix", "empty matrix: give matrix.params, matrix.include or forEach")
        for name, values in (matrix.params or {}).items():
            if not values:
                issue(f"matrix.params.{name}", f"matrix param {name!r} has no values")
        for k, entry in enumerate(matrix.include or ()):
            if not entry:
                issue(f"matrix.include[{k}]", "an include entry needs at least one value")
    count = _static_count(step)
    if count is not None and count > MAX_MATRIX_INSTANCES:
        issue("matrix", _too_many(count))
    elif count:
        longest = instance_name(step.name, count - 1)
        if len(longest) > _NAME_LIMIT:
            issue("name", f"instance name {longest!r} is longer than {_NAME_LIMIT} characters")
    if step.for_each is not None:
        issues.extend(_for_each_issues(step, path, param_names))
    return issues


def _for_each_issues(step: Step, path: str, param_names: set[str]) -> list[SpecIssue]:
    assert step.for_each is not None

    def issue(message: str) -> SpecIssue:
        return SpecIssue(f"{path}.forEach", step.name, "forEach", message)

    try:
        expression = compile_condition(step.for_each)
    except ConditionError as exc:
        return [issue(exc.message)]
    if expression is None:
        return [issue("forEach needs an expression (params.<name> or a list)")]
    issues: list[SpecIssue] = []
    for ref in sorted(expression.references, key=lambda r: (r.root, r.name)):
        if ref.root == "params" and ref.name not in param_names:
            issues.append(issue(f"unknown param {ref.name!r}"))
        elif ref.root == "steps":
            issues.append(
                issue(
                    f"forEach over step outputs (steps.{ref.name}) is not supported yet:"
                    " use a list from params"
                )
            )
        elif ref.root in ("matrix", "run"):
            issues.append(issue(f"forEach may name only params, not {ref.root}.{ref.name}"))
    return issues


def for_each_items(step: Step, params: Mapping[str, Any]) -> list[Any]:
    """The list ``step``'s ``forEach`` gives for ``params`` (ValueError saying why not)."""
    assert step.for_each is not None
    expression = compile_condition(step.for_each)
    assert expression is not None  # matrix_issues refused it otherwise
    value = expression.value({"params": dict(params)})
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError(
                f"forEach over a non-list: {step.for_each!r} is the text {value!r}, not a JSON list"
            ) from None
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, list):
        raise ValueError(
            f"forEach over a non-list: {step.for_each!r} is {json.dumps(value)}, not a list"
        )
    if not value:
        raise ValueError(f"forEach over an empty list: {step.for_each!r} has no items")
    return value


def combinations(step: Step, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each instance's values, in instance order (ValueError for a bad ``forEach``)."""
    if step.for_each is not None:
        return [{ITEM: item} for item in for_each_items(step, params)]
    assert step.matrix is not None
    out: list[dict[str, Any]] = []
    crossed = step.matrix.params or {}
    if crossed:
        names = list(crossed)
        for values in itertools.product(*(crossed[name] for name in names)):
            out.append(dict(zip(names, values, strict=True)))
    out.extend(dict(entry) for entry in step.matrix.include or ())
    return out


def _walk(steps: list[Step], prefix: str) -> Iterator[tuple[Step, str]]:
    for step in steps:
        path = f"{prefix}[{step.name}]"
        yield step, path
        if step.steps:
            yield from _walk(step.steps, f"{path}.steps")


def default_issues(spec: WorkflowSpec) -> list[SpecIssue]:
    """``forEach`` problems the declared defaults show (``szal validate`` has no run params).

    Only a ``forEach`` whose every param has a default is checked: a default
    that is no list is a mistake in the definition, whatever a run gives.
    """
    defaults = {p.name: p.default for p in spec.params if p.default is not None}
    issues: list[SpecIssue] = []
    for step, path in _walk(spec.steps, "spec.steps"):
        if step.for_each is None or step.steps:
            continue
        try:
            expression = compile_condition(step.for_each)
        except ConditionError:
            continue  # matrix_issues reports it
        if expression is None or any(
            ref.root != "params" or ref.name not in defaults for ref in expression.references
        ):
            continue
        try:
            count = len(for_each_items(step, defaults))
        except ValueError as exc:
            issues.append(SpecIssue(f"{path}.forEach", step.name, "forEach", str(exc)))
            continue
        if count > MAX_MATRIX_INSTANCES:
            issues.append(SpecIssue(f"{path}.forEach", step.name, "forEach", _too_many(count)))
    return issues


def expansion_issues(spec: WorkflowSpec, params: Mapping[str, Any]) -> list[SpecIssue]:
    """The problems of expanding ``spec``'s matrices for ``params``.

    A ``forEach`` that gives no list (or an empty one), more than
    :data:`~szal.spec.MAX_MATRIX_INSTANCES` instances, and instance names
    that are taken by another step or are not DNS-1123 labels.
    """
    issues: list[SpecIssue] = []
    walked = list(_walk(spec.steps, "spec.steps"))
    taken = {step.name for step, _ in walked}
    for step, path in walked:
        if not is_matrix(step):
            continue
        field = "forEach" if step.for_each is not None else "matrix"
        try:
            count = len(combinations(step, params))
        except ValueError as exc:
            issues.append(SpecIssue(f"{path}.{field}", step.name, field, str(exc)))
            continue
        if count > MAX_MATRIX_INSTANCES:
            issues.append(SpecIssue(f"{path}.{field}", step.name, field, _too_many(count)))
            continue
        for k in range(count):
            name = instance_name(step.name, k)
            if name in taken:
                message = f"instance {name!r} has the name of another step"
                issues.append(SpecIssue(f"{path}.name", step.name, "name", message))
                break
            taken.add(name)
        longest = instance_name(step.name, count - 1)
        if len(longest) > _NAME_LIMIT:
            message = f"instance name {longest!r} is longer than {_NAME_LIMIT} characters"
            issues.append(SpecIssue(f"{path}.name", step.name, "name", message))
    return issues


def fan_out_message(count: int) -> str:
    """The message of a matrix step once its instances may start."""
    return f"fanned out to {count} instance{'s' if count != 1 else ''}"


class _HasOutputs(Protocol):
    outputs: dict[str, Any] | None


def fan_out_outputs(records: Sequence[_HasOutputs], instances: Iterable[int]) -> list[Any]:
    """A matrix step's ``outputs`` as its dependents see them: the instances', in order."""
    return [records[k].outputs if records[k].outputs is not None else {} for k in instances]


def _text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def expand_step(step: Step, params: Mapping[str, Any]) -> tuple[Step, dict[str, dict[str, Any]]]:
    """``step`` rewritten as a fan-out, and each instance's values by instance name.

    The returned step keeps the matrix step's name, wiring (``dependsOn``,
    ``trigger``) and place; it runs nothing and has one child per instance,
    in a Parallel group. Each instance is the step's own definition (its
    command, env, retries, timeout, resources, rollback and ``when``) with
    ``SZAL_MATRIX_<NAME>`` added to its env.
    """
    values = combinations(step, params)
    instances: list[Step] = []
    by_name: dict[str, dict[str, Any]] = {}
    for k, combo in enumerate(values):
        name = instance_name(step.name, k)
        env = [
            *(step.env or ()),
            *(EnvVar(name=matrix_variable(key), value=_text(v)) for key, v in combo.items()),
        ]
        instances.append(
            step.model_copy(
                update={
                    "name": name,
                    "depends_on": [],
                    "trigger": "All",
                    "matrix": None,
                    "for_each": None,
                    "env": env,
                }
            )
        )
        by_name[name] = combo
    parent = step.model_copy(
        update={
            "command": None,
            "args": None,
            "script": None,
            "when": None,
            "rollback": None,
            "steps": instances,
            "mode": "Parallel",
            "matrix": None,
            "for_each": None,
        }
    )
    return parent, by_name


class Pools:
    """Each matrix's own ``maxParallel``, for :class:`~szal.engine.attempts.Attempts`.

    A matrix step's instances form its pool. :meth:`may_start` says whether
    an instance may start now (and counts it when it does); a ready
    instance refused is *held* here, out of the readiness queue, so a long
    queue of held instances is not popped again on every plan call, and
    :meth:`release` puts as many back as there are free slots. The running
    instances of a pool are a set pruned by phase when read, so no caller
    has to report an attempt's end: O(maxParallel) per check. Rebuilt from
    the state on attach (running instances counted, nothing held).
    """

    __slots__ = ("_held", "_limit", "_pool", "_recs", "_running", "_running_phase")

    def __init__(
        self, parents: Sequence[int], limits: Sequence[int], recs: Sequence[Any], running: Any
    ) -> None:
        self._limit = limits
        self._pool = [p if p >= 0 and limits[p] else -1 for p in parents]
        self._recs = recs
        self._running_phase = running
        self._running: dict[int, set[int]] = {}
        self._held: dict[int, list[int]] = {}
        for i, rec in enumerate(recs):
            pool = self._pool[i]
            if pool >= 0 and rec.phase is running and rec.attempts > 0:
                self._running.setdefault(pool, set()).add(i)

    @property
    def holding(self) -> bool:
        """Whether some ready instance waits for its matrix's slot."""
        return bool(self._held)

    def _live(self, pool: int) -> set[int]:
        live = self._running.setdefault(pool, set())
        recs, phase = self._recs, self._running_phase
        for c in [c for c in live if recs[c].phase is not phase]:
            live.discard(c)
        return live

    def full(self, i: int) -> bool:
        """Whether step ``i``'s matrix has no free slot (False outside a capped matrix)."""
        pool = self._pool[i]
        return pool >= 0 and len(self._live(pool)) >= self._limit[pool]

    def may_start(self, i: int, *, hold: bool = True) -> bool:
        """Whether step ``i`` may start now; counted if so, held (with ``hold``) if not."""
        pool = self._pool[i]
        if pool < 0:
            return True
        live = self._live(pool)
        if len(live) >= self._limit[pool]:
            if hold:
                heapq.heappush(self._held.setdefault(pool, []), i)
            return False
        live.add(i)
        return True

    def release(self, queue: list[int]) -> None:
        """Move held instances back to the readiness ``queue`` (a heap), up to the free slots."""
        for pool in list(self._held):
            held = self._held[pool]
            free = self._limit[pool] - len(self._live(pool))
            while held and free > 0:
                heapq.heappush(queue, heapq.heappop(held))
                free -= 1
            if not held:
                del self._held[pool]
