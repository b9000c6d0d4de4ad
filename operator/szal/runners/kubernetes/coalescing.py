"""When a run's status patch goes out: at once for small runs, under a byte budget for big ones.

Every status patch makes the API server store the *whole* run object
again, in etcd, which keeps each version until compaction. A 1,000-step
Parallel run whose object grows to 270 KiB, patched once or twice per
step, sent 109 MiB to etcd (issue 12), and a 5,000-step run filled etcd's
quota. The cost of a patch is the object's size, not the patch's.

So the reconciler asks :class:`WriteBudget` before each status write:

* a run object under ``small_object`` bytes (64 KiB: a run of a few
  hundred steps) is written at once, as before;
* a bigger one waits until the budget (``--status-write-budget``, bytes
  per second, shared by every run of the operator) has paid for the big
  writes before it; the changes of the passes in between are merged into
  one patch (the run fields, and every step record changed meanwhile);
* no change waits longer than ``max_delay`` seconds (10) after the first
  unwritten one, whatever the budget says;
* urgent writes go at once: a terminal run phase, any change of the run's
  phase (Paused, RollingBack...), the first write of a run (its pinned spec).

Only big runs' writes are charged to the budget: small ones are never
delayed, and charging them would only push big runs to ``max_delay``.

Why deferring is safe: the status may lag the pods, never lead them
("create, then record", docs/operator.md): pods are created when the plan
says, and a restarted operator adopts the pods the status does not know
yet. Events and the history mirror are not deferred.

Pure logic: the caller passes ``now`` (tested with a fake clock in
``tests/kubernetes/test_coalescing.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CoalescingSettings:
    """How status writes of big runs are spread out."""

    budget: float = 128 * 1024
    """Bytes per second of run objects the operator's deferred status writes may
    send (``--status-write-budget``); 0 writes every change at once."""
    small_object: int = 64 * 1024
    """Run objects smaller than this (bytes) are always written at once."""
    max_delay: float = 10.0
    """Seconds a change may wait at most, from the first unwritten one."""


class WriteBudget:
    """A leaky bucket of run-object bytes, shared by every run's reconciler."""

    def __init__(self, settings: CoalescingSettings | None = None) -> None:
        self.settings = settings or CoalescingSettings()
        self._paid_at = -math.inf  # when the budget has paid for every big write so far
        self.deferred = 0
        """Passes whose status write was put off (for metrics and tests)."""

    def deferrable(self, size: int) -> bool:
        """Whether a run object of ``size`` bytes is big enough to be coalesced at all."""
        return self.settings.budget > 0 and size >= self.settings.small_object

    def due(self, size: int, pending_since: float, now: float, *, urgent: bool = False) -> float:
        """When a status write of a run object of ``size`` bytes may go (``<= now``: now).

        ``pending_since`` is when the oldest unwritten change was made.
        """
        if urgent or not self.deferrable(size):
            return now
        at = min(self._paid_at, pending_since + self.settings.max_delay)
        if at > now:
            self.deferred += 1
            return at
        return now

    def spend(self, size: int, now: float) -> None:
        """Charge a write of a ``size``-byte run object made at ``now``."""
        if self.deferrable(size):
            self._paid_at = max(self._paid_at, now) + size / self.settings.budget
