"""The ExecutionStore contract, run against every store (see conftest.py).

Covers what callers rely on: idempotent upserts that never forget a value,
a terminal run or attempt that a later non-terminal write never takes back,
events stored once and ordered by id, logs appended in order, runs listed
newest first with keyset pagination and filters, lookup by uid or name,
``events_after`` for resuming streams, and workflow statistics
(percentiles interpolate like Postgres' ``percentile_cont``).
Does not cover store-specific behaviour (SQLite's interrupted-run detection
and concurrency live in test_sqlite.py).
"""

from __future__ import annotations

import pytest
from tests.history.records import run_record

from szal.history.store import (
    AttemptRecord,
    EventRecord,
    ExecutionStore,
    RunQuery,
    WorkflowRecord,
)


def event(uid: str, step: str | None, new: str, at: float, **changes: object) -> EventRecord:
    fields: dict[str, object] = dict(
        run_uid=uid,
        step=step,
        attempt=1 if step else 0,
        rollback=False,
        old="Pending",
        new=new,
        event="StepStarted" if step else "RunStarted",
        at=at,
    )
    fields.update(changes)
    return EventRecord(**fields)  # type: ignore[arg-type]


async def test_migrate_is_idempotent(store: ExecutionStore) -> None:
    first = await store.migrate()
    assert first >= 1
    assert await store.migrate() == first


async def test_save_workflow_twice_is_a_noop(store: ExecutionStore) -> None:
    record = WorkflowRecord("default", "wf", 1, "h1", {"steps": [{"name": "a"}]})
    await store.save_workflow(record)
    await store.save_workflow(record)


async def test_run_upsert_and_lookup(store: ExecutionStore) -> None:
    await store.upsert_run(run_record("u1"))
    await store.upsert_run(
        run_record("u1", phase="Succeeded", finished_at=1003.0, progress="2/2", message="done")
    )
    detail = await store.get_run("u1")
    assert detail is not None
    run = detail.run
    assert (run.phase, run.finished_at, run.progress, run.message) == (
        "Succeeded",
        1003.0,
        "2/2",
        "done",
    )
    assert run.params == {"env": "dev"}
    assert run.started_at == 1000.5
    assert not run.interrupted
    by_name = await store.get_run("run-u1")
    assert by_name is not None and by_name.run.uid == "u1"
    assert await store.get_run("nope") is None


async def test_lookup_by_name_returns_newest(store: ExecutionStore) -> None:
    await store.upsert_run(run_record("old", name="same", created_at=1.0, phase="Failed"))
    await store.upsert_run(run_record("new", name="same", created_at=2.0, phase="Succeeded"))
    detail = await store.get_run("same")
    assert detail is not None and detail.run.uid == "new"
    assert await store.get_run("same", namespace="elsewhere") is None


async def test_attempt_upsert_never_forgets(store: ExecutionStore) -> None:
    await store.upsert_run(run_record("u1"))
    await store.upsert_attempts([AttemptRecord("u1", "a", 1, False, "Running", started_at=5.0)])
    await store.upsert_attempts(
        [AttemptRecord("u1", "a", 1, False, "Failed", finished_at=6.0, exit_code=3)]
    )
    await store.upsert_attempts(
        [
            AttemptRecord("u1", "a", 2, False, "Succeeded", 7.0, 8.0, 0, None, {"x": 1}),
            AttemptRecord("u1", "a", 1, True, "Succeeded", 9.0, 9.5, 0),
        ]
    )
    detail = await store.get_run("u1")
    assert detail is not None
    got = [
        (a.step, a.attempt, a.rollback, a.phase, a.started_at, a.exit_code) for a in detail.attempts
    ]
    assert got == [
        ("a", 1, False, "Failed", 5.0, 3),
        ("a", 2, False, "Succeeded", 7.0, 0),
        ("a", 1, True, "Succeeded", 9.0, 0),
    ]
    assert detail.attempts[1].outputs == {"x": 1}


async def test_a_terminal_row_never_goes_back(store: ExecutionStore) -> None:
    """A stale replay (old transitions arriving after the final ones) changes nothing."""
    await store.upsert_run(run_record("u1", phase="Succeeded", progress="2/2", message="done"))
    await store.upsert_attempts(
        [
            AttemptRecord("u1", "a", 1, False, "Failed", 1.0, 2.0, 1, "exit 1"),
            AttemptRecord("u1", "b", 1, False, "TimedOut", 1.0, 3.0),
        ]
    )
    await store.upsert_run(run_record("u1", phase="Running", progress="1/2", message="late"))
    await store.write_batch(
        run_record("u1", phase="Pending", progress="0/2"),
        [
            AttemptRecord("u1", "a", 1, False, "Running", 1.0, message="started"),
            AttemptRecord("u1", "b", 1, False, "Waiting"),
        ],
    )
    detail = await store.get_run("u1")
    assert detail is not None
    assert (detail.run.phase, detail.run.progress, detail.run.message) == (
        "Succeeded",
        "2/2",
        "done",
    )
    assert [(a.step, a.phase, a.exit_code, a.message) for a in detail.attempts] == [
        ("a", "Failed", 1, "exit 1"),
        ("b", "TimedOut", None, None),
    ]


async def test_a_terminal_row_may_change_terminal_phase(store: ExecutionStore) -> None:
    """Only going back is refused: a run that fails into rollback may end RolledBack."""
    await store.upsert_run(run_record("u1", phase="Failed"))
    await store.upsert_run(run_record("u1", phase="RolledBack", message="rolled back"))
    detail = await store.get_run("u1")
    assert detail is not None
    assert (detail.run.phase, detail.run.message) == ("RolledBack", "rolled back")


async def test_events_are_stored_once_in_order(store: ExecutionStore) -> None:
    await store.upsert_run(run_record("u1"))
    batch = [
        event("u1", None, "Running", 1.0),
        event("u1", "a", "Running", 1.1),
        event("u1", "a", "Succeeded", 2.0, old="Running", event="StepSucceeded"),
    ]
    await store.append_events(batch)
    await store.append_events(batch)  # a replay after a crash
    detail = await store.get_run("u1")
    assert detail is not None
    assert [(e.step, e.new) for e in detail.events] == [
        (None, "Running"),
        ("a", "Running"),
        ("a", "Succeeded"),
    ]
    ids = [e.id for e in detail.events]
    assert all(i is not None for i in ids) and ids == sorted(ids)


async def test_events_after_resumes_a_stream(store: ExecutionStore) -> None:
    for uid in ("u1", "u2"):
        await store.upsert_run(run_record(uid))
        await store.append_events(
            [event(uid, None, "Running", 1.0), event(uid, "a", "Running", 2.0)]
        )
    every = await store.events_after(0)
    assert len(every) == 4
    first_id = every[0].id
    assert first_id is not None
    rest = await store.events_after(first_id)
    assert [e.id for e in rest] == [e.id for e in every[1:]]
    only_u2 = await store.events_after(0, run_uid="u2")
    assert {e.run_uid for e in only_u2} == {"u2"} and len(only_u2) == 2
    assert len(await store.events_after(0, limit=3)) == 3


async def test_logs_append_per_attempt(store: ExecutionStore) -> None:
    await store.upsert_run(run_record("u1"))
    await store.append_log("u1", "a", 1, False, "first ")
    await store.append_log("u1", "a", 1, False, "attempt\n")
    await store.append_log("u1", "a", 2, False, "second attempt\n")
    assert await store.get_log("u1", "a", 1) == "first attempt\n"
    assert await store.get_log("u1", "a") == "second attempt\n"
    assert await store.get_log("u1", "missing") == ""


async def test_list_runs_newest_first_with_keyset_pages(store: ExecutionStore) -> None:
    for i in range(5):
        await store.upsert_run(run_record(f"u{i}", created_at=100.0 + i))
    # Two runs created at the same instant still page deterministically.
    await store.upsert_run(run_record("u9", created_at=104.0))
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = await store.list_runs(RunQuery(limit=2, after=cursor))
        seen += [r.uid for r in page.runs]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == ["u9", "u4", "u3", "u2", "u1", "u0"]


async def test_list_runs_filters(store: ExecutionStore) -> None:
    await store.upsert_run(run_record("a", workflow="build", phase="Succeeded", created_at=1.0))
    await store.upsert_run(run_record("b", workflow="build", phase="Failed", created_at=2.0))
    await store.upsert_run(run_record("c", workflow="deploy", namespace="prod", created_at=3.0))

    async def uids(query: RunQuery) -> list[str]:
        return [r.uid for r in (await store.list_runs(query)).runs]

    assert await uids(RunQuery(workflow="build")) == ["b", "a"]
    assert await uids(RunQuery(phase="Failed")) == ["b"]
    assert await uids(RunQuery(namespace="prod")) == ["c"]
    assert await uids(RunQuery(name="run-b")) == ["b"]
    assert await uids(RunQuery(name="run-c", namespace="default")) == []
    assert await uids(RunQuery(since=2.0)) == ["c", "b"]
    assert await uids(RunQuery(until=2.0)) == ["a"]


async def test_workflow_stats(store: ExecutionStore) -> None:
    durations = [1.0, 2.0, 3.0, 4.0]
    for i, took in enumerate(durations):
        await store.upsert_run(
            run_record(
                f"u{i}",
                phase="Succeeded" if i < 3 else "Failed",
                created_at=float(i),
                started_at=10.0,
                finished_at=10.0 + took,
            )
        )
    await store.upsert_run(run_record("live", phase="Running", created_at=9.0))
    await store.upsert_run(
        run_record("other", workflow="other", phase="Succeeded", started_at=0.0, finished_at=1.0)
    )
    stats = {s.workflow: s for s in await store.workflow_stats()}
    wf = stats["wf"]
    assert (wf.runs, wf.succeeded) == (4, 3)
    assert wf.success_rate == pytest.approx(0.75)
    assert wf.p50_seconds == pytest.approx(2.5)
    assert wf.p95_seconds == pytest.approx(3.85)
    only = await store.workflow_stats(workflow="other")
    assert [s.workflow for s in only] == ["other"]


async def test_write_batch_is_all_or_nothing(store: ExecutionStore) -> None:
    """A batch whose last part fails leaves no trace of its first parts.

    The operator's mirror relies on this: a reader (or the finalizer check)
    that sees a run's final phase also sees every attempt and event of it.
    """
    await store.write_batch(
        run_record("b1"),
        [AttemptRecord("b1", "a", 1, False, "Running", started_at=1001.0)],
        [event("b1", None, "Running", 1000.5)],
        [WorkflowRecord("default", "wf", 1, "h1", {"steps": [{"name": "a"}]})],
    )
    # Outputs that cannot be encoded fail the batch after the run row was written.
    unencodable = {"x": object()}
    with pytest.raises(Exception):  # noqa: B017 - each driver wraps it its own way
        await store.write_batch(
            run_record("b1", phase="Succeeded", finished_at=1003.0),
            [AttemptRecord("b1", "a", 1, False, "Succeeded", 1001.0, 1002.0, 0, None, unencodable)],
            [event("b1", "a", "Succeeded", 1002.0)],
        )
    detail = await store.get_run("b1")
    assert detail is not None
    assert detail.run.phase == "Running"
    assert [(a.step, a.phase) for a in detail.attempts] == [("a", "Running")]
    assert [e.new for e in detail.events] == ["Running"]
