"""The run queue decision (engine/queueing.py), pure, in virtual time.

Covers: a per-key limit and a namespace limit, priority first then FIFO
(then name), started runs holding their slots (no pre-emption), no
head-of-line blocking across keys, cancelled runs leaving the line,
positions and messages, and a simulated queue of ten runs with limit 2
and mixed priorities: the start order and never more than two running.
Deliberately not: the operator applying it (not wired yet).
"""

from __future__ import annotations

import random

from szal.engine.queueing import QueuedRun, decide_queue


def run(
    name: str,
    at: float,
    priority: int = 0,
    key: str | None = "k",
    limit: int = 2,
    started: bool = False,
    cancelled: bool = False,
) -> QueuedRun:
    return QueuedRun(name, at, priority, key, limit, started, cancelled)


def test_priority_first_then_fifo_then_name() -> None:
    runs = [run("c", 3), run("a", 1), run("hi", 9, priority=5), run("b", 1)]
    decision = decide_queue(runs)
    assert decision.start == ("hi", "a")
    assert decision.waiting == {"b": 1, "c": 2}
    assert decision.messages["b"] == "queued (position 1): 2 of 2 runs with key 'k' are running"


def test_started_runs_hold_their_slots_whatever_their_priority() -> None:
    runs = [run("old", 1, started=True), run("old2", 2, started=True), run("urgent", 3, priority=9)]
    decision = decide_queue(runs)
    assert decision.start == ()
    assert decision.waiting == {"urgent": 1}


def test_a_full_key_does_not_block_other_keys() -> None:
    runs = [
        run("a1", 1, key="a", limit=1, started=True),
        run("a2", 2, key="a", limit=1, priority=9),
        run("b1", 3, key="b", limit=1),
        run("free", 4, key=None),
    ]
    decision = decide_queue(runs)
    assert decision.start == ("b1", "free")
    assert decision.waiting == {"a2": 1}


def test_the_namespace_limit_holds_everyone() -> None:
    runs = [run("s", 0, key=None, started=True), run("x", 1, key="x"), run("y", 2, key=None)]
    decision = decide_queue(runs, namespace_limit=2)
    assert decision.start == ("x",)
    assert decision.waiting == {"y": 1}
    assert decision.messages["y"].endswith("2 of 2 runs of the namespace are running")


def test_a_cancelled_run_leaves_the_line() -> None:
    runs = [run("r1", 1, started=True), run("r2", 2, started=True), run("r3", 3), run("r4", 4)]
    assert decide_queue(runs).waiting == {"r3": 1, "r4": 2}
    runs[2] = run("r3", 3, cancelled=True)
    decision = decide_queue(runs)
    assert decision.waiting == {"r4": 1}
    assert "r3" not in decision.start


def test_ten_runs_limit_two_mixed_priorities_run_in_order_never_more_than_two() -> None:
    rng = random.Random(7)
    priorities = [rng.choice([0, 1, 5]) for _ in range(10)]
    runs = {f"r{i}": run(f"r{i}", float(i), priority=p) for i, p in enumerate(priorities)}
    expected = sorted(runs, key=lambda n: (-runs[n].priority, runs[n].created_at))
    started: list[str] = []
    running: list[str] = []
    while len(started) < 10:
        decision = decide_queue(runs.values())
        for name in decision.start:
            runs[name] = QueuedRun(name, runs[name].created_at, runs[name].priority, "k", 2, True)
            started.append(name)
            running.append(name)
        assert len(running) <= 2
        assert sorted(decision.waiting.values()) == list(range(1, len(decision.waiting) + 1))
        finished = running.pop(0)  # the oldest running run ends
        del runs[finished]
    assert started == expected
