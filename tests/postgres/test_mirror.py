"""HistoryMirror against real Postgres servers, including a real outage.

Covers: submit never blocks (database unreachable), every run archived
complete and in submission order, replays that change nothing, the outage
(a private server halted mid-stream and restarted: the backlog is flushed,
complete and in order), an operator that starts before its database, one
bad run not holding up the others, and close() draining with a deadline.
Does not cover the operator's finalizer and warning condition, which use
``archived`` / ``wait_archived`` (the operator's own tests do).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from tests.postgres.server import Instance, drop_schema, free_port, new_schema, temporary_store

from szal.history.mirror import HistoryBatch, HistoryMirror, MirrorSettings
from szal.history.postgres import PostgresStore
from szal.history.store import AttemptRecord, EventRecord, RunRecord, WorkflowRecord
from szal.spec import BackoffSettings

pytestmark = pytest.mark.postgres

FAST = MirrorSettings(
    workers=4,
    backoff=BackoffSettings("Exponential", delay=0.05, max_delay=0.5, jitter=0.5),
    write_timeout=5.0,
)


def transitions(uid: str, steps: int, t0: float = 5000.0) -> Iterator[HistoryBatch]:
    """The batches a run of ``steps`` sequential steps produces, in order."""
    workflow = WorkflowRecord("default", "wf", 1, "h1", {"steps": steps})
    clock = iter(t0 + n * 0.25 for n in range(10_000))

    def run(phase: str, progress: int, finished_at: float | None = None) -> RunRecord:
        return RunRecord(
            uid, f"run-{uid}", "default", "wf", 1, "h1", {}, phase, t0, t0, finished_at,
            None, f"{progress}/{steps}",
        )  # fmt: skip

    def ev(step: str | None, old: str | None, new: str, name: str) -> EventRecord:
        return EventRecord(uid, step, 1 if step else 0, False, old, new, name, next(clock))

    yield HistoryBatch(workflow, run("Running", 0), (), [ev(None, "Pending", "Running", "Run")])
    for i in range(steps):
        step = f"s{i}"
        began = next(clock)
        yield HistoryBatch(
            None,
            run("Running", i),
            [AttemptRecord(uid, step, 1, False, "Running", began, node="n1")],
            [ev(step, "Pending", "Running", "StepStarted")],
        )
        yield HistoryBatch(
            None,
            run("Running", i + 1),
            [AttemptRecord(uid, step, 1, False, "Succeeded", None, began + 1, 0, None, {"i": i})],
            [ev(step, "Running", "Succeeded", "StepSucceeded")],
        )
    yield HistoryBatch(
        None,
        run("Succeeded", steps, finished_at=next(clock)),
        (),
        [ev(None, "Running", "Succeeded", "RunSucceeded")],
    )


def interleaved(uids: list[str], steps: int) -> list[HistoryBatch]:
    streams = [list(transitions(uid, steps)) for uid in uids]
    out: list[HistoryBatch] = []
    for i in range(max(len(s) for s in streams)):
        out += [s[i] for s in streams if i < len(s)]
    return out


async def assert_archived_complete(store: PostgresStore, uid: str, steps: int) -> None:
    expected = list(transitions(uid, steps))
    detail = await store.get_run(uid)
    assert detail is not None, uid
    assert detail.run.phase == "Succeeded" and detail.run.progress == f"{steps}/{steps}"
    assert [(a.step, a.phase, a.exit_code, a.node) for a in detail.attempts] == [
        (f"s{i}", "Succeeded", 0, "n1") for i in range(steps)
    ]
    # In submission order: ids ascend exactly as the transitions were made.
    assert [(e.step, e.new, e.at) for e in detail.events] == [
        (e.step, e.new, e.at) for b in expected for e in b.events
    ]
    assert await store.get_workflow("default", "wf", "h1") is not None


async def test_submit_never_blocks_while_the_database_is_unreachable() -> None:
    store = PostgresStore(f"postgresql://postgres@127.0.0.1:{free_port()}/x", connect_timeout=1)
    batches = interleaved([f"r{i}" for i in range(20)], steps=49)  # 2,000 batches
    async with HistoryMirror(store, FAST) as mirror:
        slowest = 0.0
        began = time.perf_counter()
        for batch in batches:
            one = time.perf_counter()
            mirror.submit(batch)
            slowest = max(slowest, time.perf_counter() - one)
        total = time.perf_counter() - began
        assert mirror.pending() == len(batches)
        assert not await mirror.wait_archived("r0", timeout=0.5)
        assert mirror.failing() and isinstance(mirror.last_error, OSError)
        assert slowest < 0.01 and total < 1.0, (slowest, total)
        assert await mirror.close(timeout=0.1) == len(batches)
    await store.close()


async def test_every_run_is_archived_complete_and_in_order(pg_store: PostgresStore) -> None:
    uids = [f"run{i}" for i in range(12)]
    async with HistoryMirror(pg_store, FAST) as mirror:
        for batch in interleaved(uids, steps=8):
            mirror.submit(batch)
        assert all([await mirror.wait_archived(uid, timeout=30) for uid in uids])
        assert mirror.pending() == 0 and mirror.failing() == []
        assert mirror.written_batches == 12 * (2 * 8 + 2)
    for uid in uids:
        await assert_archived_complete(pg_store, uid, 8)


async def test_replayed_transitions_change_nothing(pg_store: PostgresStore) -> None:
    batches = list(transitions("r1", 5))
    async with HistoryMirror(pg_store, FAST) as mirror:
        for batch in batches:
            mirror.submit(batch)
        assert await mirror.wait_archived("r1", timeout=30)
        first = await pg_store.get_run("r1")
        # An operator restart replays the whole run, then part of it again.
        for batch in [*batches, *batches[3:7]]:
            mirror.submit(batch)
        assert not mirror.archived("r1")
        assert await mirror.wait_archived("r1", timeout=30)
    assert await pg_store.get_run("r1") == first
    await assert_archived_complete(pg_store, "r1", 5)


async def test_outage_mid_stream_loses_nothing(pg_instance: Instance) -> None:
    """Postgres halted mid-run and restarted: the backlog arrives complete, in order."""
    dsn = pg_instance.start()
    store = PostgresStore(dsn, connect_timeout=2, command_timeout=5)
    uids = [f"run{i}" for i in range(6)]
    batches = interleaved(uids, steps=10)
    third = len(batches) // 3
    async with HistoryMirror(store, FAST) as mirror:
        for batch in batches[:third]:
            mirror.submit(batch)
        # Archived means "all submitted so far is committed", finished or not.
        assert all([await mirror.wait_archived(uid, timeout=30) for uid in uids])
        assert mirror.pending() == 0

        pg_instance.halt()
        outage_began = time.monotonic()
        for batch in batches[third:]:
            mirror.submit(batch)  # the runs go on and finish during the outage
        assert not await mirror.wait_archived(uids[0], timeout=1.0)
        assert mirror.failing() and mirror.last_error is not None
        assert mirror.pending() == len(batches) - third

        pg_instance.start()
        restarted = time.monotonic()
        assert all([await mirror.wait_archived(uid, timeout=60) for uid in uids])
        flushed = time.monotonic() - restarted
        print(
            f"\noutage: {len(batches) - third} batches of {len(uids)} runs queued during"
            f" {restarted - outage_began:.1f}s down; flushed {flushed:.2f}s after restart"
        )
        assert mirror.pending() == 0 and mirror.failing() == []
    for uid in uids:
        await assert_archived_complete(store, uid, 10)
    await store.close()


async def test_operator_starts_before_its_database(pg_instance: Instance) -> None:
    store = PostgresStore(
        f"postgresql://postgres@127.0.0.1:{pg_instance.port}/szal_test", connect_timeout=1
    )
    async with HistoryMirror(store, FAST) as mirror:
        for batch in transitions("early", 3):
            mirror.submit(batch)
        assert not await mirror.wait_archived("early", timeout=0.3)
        pg_instance.start()  # schema created by the mirror once the server answers
        assert await mirror.wait_archived("early", timeout=60)
    await assert_archived_complete(store, "early", 3)
    await store.close()


async def test_a_bad_run_does_not_hold_up_the_others(pg_store: PostgresStore) -> None:
    good = list(transitions("good", 3))
    bad = next(transitions("bad", 3))
    # Postgres refuses NUL characters in text: this write can never succeed.
    poisoned = HistoryBatch(None, bad.run, [AttemptRecord("bad", "x\x00", 1, False, "Running")])
    async with HistoryMirror(pg_store, FAST) as mirror:
        mirror.submit(poisoned)
        for batch in good:
            mirror.submit(batch)
        assert await mirror.wait_archived("good", timeout=30)
        assert mirror.failing() == ["bad"] and mirror.pending("bad") == 1
        assert await mirror.close(timeout=0.1) == 1
    await assert_archived_complete(pg_store, "good", 3)


async def test_close_drains_the_queue(pg_dsn: str) -> None:
    schema = new_schema()
    store = PostgresStore(pg_dsn, schema=schema)
    try:
        mirror = HistoryMirror(store, FAST)
        mirror.start()
        for batch in interleaved(["a", "b", "c"], steps=4):
            mirror.submit(batch)
        assert await mirror.close(timeout=30) == 0
        with pytest.raises(RuntimeError, match="closed"):
            mirror.submit(next(transitions("late", 1)))
        for uid in ("a", "b", "c"):
            await assert_archived_complete(store, uid, 4)
    finally:
        await store.close()
        await drop_schema(pg_dsn, schema)


async def test_wait_archived_is_bounded() -> None:
    async with temporary_store() as store, HistoryMirror(store, FAST) as mirror:
        assert not mirror.archived("unknown")
        assert not await mirror.wait_archived("unknown", timeout=0.01)
