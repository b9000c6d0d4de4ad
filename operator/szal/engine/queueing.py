"""The run queue: which Pending runs may start now, under concurrency limits.

A Workflow's ``spec.concurrency: {key, limit}`` bounds how many runs with
the same key run at once (the key a fixed string, or the text a run's
params make of it); an operator setting bounds the runs of a namespace. A
run over a limit waits in phase Pending with the reason ``Queued`` and its
place in line. :func:`decide_queue` is the whole decision, pure (no I/O,
no clock): the caller lists the namespace's unfinished runs, it answers
which to start and where the others stand.

Decisions:

* Order: higher ``priority`` first, then older first (FIFO within a
  priority), then name (a total order, so every operator replica and
  every restart decides the same).
* Runs already started hold their slots until they end, whatever their
  priority: nothing is pre-empted.
* A run blocked only by its own key's limit does not hold up runs of
  other keys behind it (no head-of-line blocking across keys); the
  namespace limit, when full, holds everyone.
* A cancelled run never starts and leaves the line (the planner ends it
  Cancelled from Pending); the runs behind it move up.
* Positions count from 1 over the runs still waiting, in queue order.

Not wired into the operator yet (see docs/engine.md, "Queues").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["QUEUED", "QueueDecision", "QueuedRun", "decide_queue"]

QUEUED = "Queued"
"""The Succeeded condition's reason of a run waiting in line."""


@dataclass(frozen=True, slots=True)
class QueuedRun:
    """One unfinished run of a namespace, as the queue sees it."""

    name: str
    created_at: float
    priority: int = 0
    key: str | None = None
    """The concurrency key (None: the run has no per-key limit)."""
    limit: int | None = None
    """The per-key limit from its Workflow's ``spec.concurrency``."""
    started: bool = False
    """It has left Pending: it holds a slot."""
    cancelled: bool = False


@dataclass(frozen=True, slots=True)
class QueueDecision:
    """What to do: runs to start now, and each waiting run's place and reason."""

    start: tuple[str, ...] = ()
    waiting: dict[str, int] = field(default_factory=dict)
    """Waiting run -> its position in line (1 = next)."""
    messages: dict[str, str] = field(default_factory=dict)
    """Waiting run -> why it waits (for ``status.message``)."""


def _order(run: QueuedRun) -> tuple[int, float, str]:
    return (-run.priority, run.created_at, run.name)


def decide_queue(runs: Iterable[QueuedRun], namespace_limit: int | None = None) -> QueueDecision:
    """Which Pending runs start now and where the rest wait (see the module docstring)."""
    runs = list(runs)
    running = sum(1 for run in runs if run.started)
    per_key: Counter[str] = Counter(run.key for run in runs if run.started and run.key is not None)
    start: list[str] = []
    blocked: list[tuple[QueuedRun, str]] = []
    for run in sorted((r for r in runs if not r.started and not r.cancelled), key=_order):
        if namespace_limit is not None and running >= namespace_limit:
            blocked.append(
                (run, f"{running} of {namespace_limit} runs of the namespace are running")
            )
            continue
        if run.key is not None and run.limit is not None and per_key[run.key] >= run.limit:
            blocked.append(
                (run, f"{per_key[run.key]} of {run.limit} runs with key {run.key!r} are running")
            )
            continue
        start.append(run.name)
        running += 1
        if run.key is not None:
            per_key[run.key] += 1
    waiting = {run.name: i for i, (run, _) in enumerate(blocked, start=1)}
    messages = {run.name: f"queued (position {waiting[run.name]}): {why}" for run, why in blocked}
    return QueueDecision(tuple(start), waiting, messages)
