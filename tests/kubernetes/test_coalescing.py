"""Status-write coalescing of big runs (``szal.runners.kubernetes.coalescing``), on a fake clock.

Covers: small run objects always written at once and never charged; big
ones spaced so bytes per second stay under the budget; no change waiting
past ``max_delay``; urgent writes (terminal phases, phase changes) at once;
a budget of 0 turning coalescing off; the budget shared between runs.
Not covered: the reconciler merging the changes of the passes in between
(tests/kubernetes/test_lifecycle.py drives the reconciler on a local API
server) and a real API server (bench/scale.py).
"""

from __future__ import annotations

import itertools

from szal.runners.kubernetes.coalescing import CoalescingSettings, WriteBudget

KIB = 1024
BIG = 256 * KIB  # 2 s of the default 128 KiB/s budget


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0


def test_small_objects_go_at_once_and_cost_nothing() -> None:
    budget = WriteBudget()
    for _ in range(100):
        assert budget.due(63 * KIB, 1000.0, 1000.0) == 1000.0
        budget.spend(63 * KIB, 1000.0)
    assert budget.due(BIG, 1000.0, 1000.0) == 1000.0  # nothing charged by the small ones
    assert budget.deferred == 0


def test_big_objects_stay_under_the_budget() -> None:
    clock, budget = FakeClock(), WriteBudget()
    written: list[float] = []
    pending_since: float | None = None
    end = clock.now + 60
    while clock.now < end:  # a change every 50 ms, for a minute
        if pending_since is None:
            pending_since = clock.now
        if budget.due(BIG, pending_since, clock.now) <= clock.now:
            budget.spend(BIG, clock.now)
            written.append(clock.now)
            pending_since = None
        clock.now += 0.05
    assert len(written) * BIG / 60 <= 128 * KIB * 1.05  # within one write of the budget
    assert len(written) >= 29  # and the budget is used: about one write per 2 s
    gaps = [b - a for a, b in itertools.pairwise(written)]
    assert min(gaps) >= 2.0 - 1e-9


def test_no_change_waits_past_max_delay() -> None:
    budget = WriteBudget(CoalescingSettings(budget=10 * KIB, max_delay=10.0))
    budget.spend(1024 * KIB, 0.0)  # paid for at 102.4 s
    assert budget.due(1024 * KIB, 1.0, 1.0) == 11.0
    assert budget.due(1024 * KIB, 1.0, 11.0) == 11.0  # due now: write
    assert budget.deferred == 1


def test_urgent_writes_go_at_once() -> None:
    budget = WriteBudget()
    budget.spend(BIG, 0.0)
    assert budget.due(BIG, 0.5, 0.5) == 2.0
    assert budget.due(BIG, 0.5, 0.5, urgent=True) == 0.5


def test_zero_budget_turns_coalescing_off() -> None:
    budget = WriteBudget(CoalescingSettings(budget=0))
    budget.spend(10 * BIG, 0.0)
    assert budget.due(10 * BIG, 0.0, 0.0) == 0.0


def test_the_budget_is_shared_between_runs() -> None:
    budget = WriteBudget()
    budget.spend(BIG, 0.0)  # run A
    budget.spend(BIG, 0.0)  # run B, same instant: paid for at 4 s
    assert budget.due(BIG, 0.0, 1.0) == 4.0
