"""PostgresStore against a real server: what the shared contract cannot see.

Covers migrations (from empty and from every earlier version, to the same
schema a fresh database gets; concurrent migrators; a newer schema refused;
the applied files pinned so nobody edits one; the same column names as the
SQLite schema, but for a listed few), concurrent writers on one run,
replays that change nothing (not even a row version), event ids a tailing
reader never skips, keyset pagination over ties and filters, statistics
against a reference computation, microsecond timestamps and lazy
connections. The ExecutionStore contract itself (shared with SQLite) lives
in tests/history/test_store_contract.py; the mirror in test_mirror.py.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from tests.history.records import run_record
from tests.postgres.server import drop_schema, new_schema, temporary_store

from szal.history.postgres import PostgresStore, migrations
from szal.history.sqlite import SqliteStore, percentile
from szal.history.store import (
    EVENT_COLUMNS,
    AttemptRecord,
    EventRecord,
    RunQuery,
    SchemaTooNew,
    WorkflowRecord,
)

pytestmark = pytest.mark.postgres

# The checksum of every migration file as released. A migration may already be
# applied in production: editing one changes nothing there and makes new
# databases differ from old ones. Add a new file instead, and a line here.
RELEASED_MIGRATIONS = {
    1: ("initial", "e2a8a52e9a629bf009eecfefebc23318cc03ae2da3f2b802e54c3d0573f17b36"),
    2: ("query_indexes", "0862d501d8fee8b9e2b8c51857e1c1ba21884ec255e08fa54df5ffa2e5e4377b"),
}


def event(uid: str, n: int, step: str | None = "a") -> EventRecord:
    return EventRecord(
        run_uid=uid,
        step=step,
        attempt=1,
        rollback=False,
        old="Pending",
        new=f"Phase{n}",
        event="StepStarted",
        at=1000.0 + n / 1000,
    )


async def catalog(store: PostgresStore) -> dict[str, list[tuple[Any, ...]]]:
    """The schema's tables, columns, indexes and constraints, for comparing schemas."""
    assert store.schema is not None
    conn = await asyncpg.connect(store.dsn)
    try:
        columns = await conn.fetch(
            "SELECT table_name, column_name, data_type, is_nullable, column_default"
            " FROM information_schema.columns WHERE table_schema = $1"
            " ORDER BY table_name, column_name",
            store.schema,
        )
        indexes = await conn.fetch(
            "SELECT tablename, indexname, replace(indexdef, $1, 'S') FROM pg_indexes"
            " WHERE schemaname = $2 ORDER BY indexname",
            f"{store.schema}.",
            store.schema,
        )
        constraints = await conn.fetch(
            "SELECT conname, pg_get_constraintdef(c.oid) FROM pg_constraint c"
            " JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = $1"
            " ORDER BY conname",
            store.schema,
        )
    finally:
        await conn.close()

    def strip(rows: list[Any]) -> list[tuple[Any, ...]]:
        return [tuple(str(v).replace(store.schema or "", "S") for v in r) for r in rows]

    return {
        "columns": strip(columns),
        "indexes": strip(indexes),
        "constraints": strip(constraints),
    }


# -- migrations ----------------------------------------------------------------


def test_released_migrations_are_unchanged_and_numbered() -> None:
    known = migrations()
    assert {m.version: (m.name, m.checksum) for m in known} == RELEASED_MIGRATIONS
    for migration in known:
        assert "may already be applied in production" in migration.sql.replace("\n-- ", " ")


async def test_migrate_from_empty(pg_dsn: str) -> None:
    async with temporary_store(pg_dsn, migrate=False) as store:
        assert await store.schema_version() == 0
        newest = len(migrations())
        assert await store.migrate() == newest
        assert await store.schema_version() == newest
        conn = await asyncpg.connect(pg_dsn)
        try:
            rows = await conn.fetch(
                f'SELECT version, name, checksum FROM "{store.schema}".schema_migrations'
                " ORDER BY version"
            )
        finally:
            await conn.close()
        assert [(r[0], r[1], r[2]) for r in rows] == [
            (m.version, m.name, m.checksum) for m in migrations()
        ]


@pytest.mark.parametrize("start", range(1, len(migrations())))
async def test_migrate_from_each_earlier_version(pg_dsn: str, start: int) -> None:
    async with temporary_store(pg_dsn) as fresh:
        expected = await catalog(fresh)
    async with temporary_store(pg_dsn, migrate=False) as store:
        assert await store.migrate(target=start) == start
        assert await store.schema_version() == start
        # Rows written at the old version survive the upgrade.
        await store.upsert_run(run_record("old"))
        await store.upsert_attempts([AttemptRecord("old", "a", 1, False, "Succeeded", 1.0, 2.0)])
        await store.append_events([event("old", 1)])
        assert await store.migrate() == len(migrations())
        assert await catalog(store) == expected
        detail = await store.get_run("old")
        assert detail is not None
        assert [a.step for a in detail.attempts] == ["a"] and len(detail.events) == 1


async def test_newer_schema_is_refused(pg_store: PostgresStore) -> None:
    newest = len(migrations())
    conn = await asyncpg.connect(pg_store.dsn)
    try:
        await conn.execute(
            f'INSERT INTO "{pg_store.schema}".schema_migrations (version, name, checksum)'
            " VALUES ($1, 'from_the_future', '')",
            newest + 1,
        )
    finally:
        await conn.close()
    with pytest.raises(SchemaTooNew) as caught:
        await pg_store.migrate()
    message = str(caught.value)
    assert f"version {newest + 1}" in message and f"({newest})" in message
    assert "upgrade szal" in message


async def test_concurrent_migrators_apply_each_file_once(pg_dsn: str) -> None:
    schema = new_schema()
    stores = [PostgresStore(pg_dsn, schema=schema, max_size=2) for _ in range(6)]
    try:
        versions = await asyncio.gather(*(s.migrate() for s in stores))
        assert versions == [len(migrations())] * len(stores)
        conn = await asyncpg.connect(pg_dsn)
        try:
            applied = await conn.fetchval(f'SELECT count(*) FROM "{schema}".schema_migrations')
        finally:
            await conn.close()
        assert applied == len(migrations())
    finally:
        for store in stores:
            await store.close()
        await drop_schema(pg_dsn, schema)


# Columns only one store has, on purpose (docs/history.md, "Both schemas").
ONLY_IN_SQLITE = {("runs", "runner_host"), ("runs", "runner_pid"), ("runs", "runner_start")}
ONLY_IN_POSTGRES = {("runs", "updated_at"), ("schema_migrations", "checksum")}


async def test_both_stores_name_their_columns_alike(
    pg_store: PostgresStore, tmp_path: Path
) -> None:
    lite = SqliteStore(tmp_path / "h.db")
    try:
        await lite.migrate()
    finally:
        await lite.close()
    with sqlite3.connect(tmp_path / "h.db") as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        in_sqlite = {
            (table, column[1])
            for table in tables
            if not table.startswith("sqlite_")
            for column in conn.execute(f"PRAGMA table_info({table})")
        }
    in_postgres = {(table, column) for table, column, *_ in (await catalog(pg_store))["columns"]}
    assert in_sqlite - in_postgres == ONLY_IN_SQLITE
    assert in_postgres - in_sqlite == ONLY_IN_POSTGRES
    assert {c for t, c in in_sqlite if t == "events"} == set(EVENT_COLUMNS.split(", "))


# -- writes --------------------------------------------------------------------


async def test_concurrent_writers_on_one_run(pg_dsn: str) -> None:
    """Several pools upsert the same run and attempts and append one event log."""
    schema = new_schema()
    writers = [PostgresStore(pg_dsn, schema=schema, max_size=3) for _ in range(6)]
    log = [event("u1", n, step=f"s{n % 5}") for n in range(60)]
    attempts = [AttemptRecord("u1", f"s{n}", 1, False, "Running", 10.0 + n) for n in range(5)]
    try:
        await writers[0].migrate()

        async def write(store: PostgresStore, seed: int) -> None:
            rng = random.Random(seed)
            for chunk_start in range(0, len(log), 7):
                await store.upsert_run(run_record("u1", progress=f"{chunk_start}/60"))
                shuffled = attempts[:]
                rng.shuffle(shuffled)  # different row orders must not deadlock
                await store.upsert_attempts(shuffled)
                await store.append_events(log[chunk_start : chunk_start + 7 + rng.randrange(7)])

        await asyncio.gather(*(write(s, i) for i, s in enumerate(writers)))
        detail = await writers[0].get_run("u1")
        assert detail is not None
        assert [e.new for e in detail.events] == [e.new for e in log]
        assert len(detail.attempts) == 5
    finally:
        for store in writers:
            await store.close()
        await drop_schema(pg_dsn, schema)


async def test_a_tailing_reader_never_skips_an_event(pg_dsn: str) -> None:
    """Ids are committed in id order, so resuming from the last id seen is exact."""
    schema = new_schema()
    writers = [PostgresStore(pg_dsn, schema=schema, max_size=2) for _ in range(4)]
    reader = PostgresStore(pg_dsn, schema=schema, max_size=1)
    try:
        await reader.migrate()
        for w in range(len(writers)):
            await reader.upsert_run(run_record(f"w{w}"))
        done = asyncio.Event()

        async def write(index: int, store: PostgresStore) -> None:
            for n in range(50):
                await store.append_events([event(f"w{index}", n)])

        async def tail() -> list[int]:
            seen: list[int] = []
            last = 0
            while True:
                finished = done.is_set()
                for e in await reader.events_after(last):
                    assert e.id is not None
                    seen.append(e.id)
                    last = e.id
                if finished:
                    return seen

        tailer = asyncio.create_task(tail())
        await asyncio.gather(*(write(i, s) for i, s in enumerate(writers)))
        done.set()
        seen = await tailer
        every = [e.id for e in await reader.events_after(0, limit=10_000)]
        assert seen == every and len(every) == 200
    finally:
        for store in [*writers, reader]:
            await store.close()
        await drop_schema(pg_dsn, schema)


async def test_replay_changes_nothing(pg_store: PostgresStore) -> None:
    workflow = WorkflowRecord("default", "wf", 1, "h1", {"steps": [{"name": "a"}]})
    run = run_record("u1", phase="Succeeded", finished_at=1002.0, message="ok")
    attempts = [AttemptRecord("u1", "a", 1, False, "Succeeded", 1000.6, 1001.0, 0, None, {"x": 1})]
    events = [event("u1", n) for n in range(3)]

    async def write_all() -> None:
        await pg_store.save_workflow(workflow)
        await pg_store.upsert_run(run)
        await pg_store.upsert_attempts(attempts)
        await pg_store.append_events(events)

    async def versions() -> list[Any]:
        conn = await asyncpg.connect(pg_store.dsn)
        try:
            return [
                await conn.fetch(f'SELECT xmin::text, * FROM "{pg_store.schema}".{table}')
                for table in ("workflows", "runs", "attempts", "events")
            ]
        finally:
            await conn.close()

    await write_all()
    before = await versions()
    await write_all()
    await write_all()
    # Same rows, and no new row versions (xmin) either: a replay writes nothing.
    assert await versions() == before
    await pg_store.upsert_run(run_record("u1", phase="Succeeded", progress="1/1"))
    assert (await versions())[1] != before[1]  # while a real change does


async def test_partial_records_never_forget(pg_store: PostgresStore) -> None:
    await pg_store.upsert_run(run_record("u1", message="started", progress="0/2"))
    await pg_store.upsert_run(run_record("u1", started_at=None, phase="Succeeded"))
    detail = await pg_store.get_run("u1")
    assert detail is not None
    assert (detail.run.phase, detail.run.started_at, detail.run.message) == (
        "Succeeded",
        1000.5,
        "started",
    )


async def test_timestamps_round_trip_to_the_microsecond(pg_store: PostgresStore) -> None:
    created = 1795636862.345678
    await pg_store.upsert_run(run_record("u1", created_at=created, started_at=created + 0.000001))
    detail = await pg_store.get_run("u1")
    assert detail is not None
    assert detail.run.created_at == pytest.approx(created, abs=1e-6)
    assert detail.run.started_at is not None
    assert detail.run.started_at - detail.run.created_at == pytest.approx(1e-6, abs=2e-7)


# -- reads ---------------------------------------------------------------------


async def test_keyset_pages_match_a_full_sort(pg_store: PostgresStore) -> None:
    rng = random.Random(7)
    runs = [
        run_record(
            f"u{i:04d}",
            # Few distinct instants: many ties, broken by uid.
            created_at=1000.0 + rng.randrange(40) / 7,
            workflow=rng.choice(["build", "deploy"]),
            namespace=rng.choice(["default", "prod"]),
            phase=rng.choice(["Succeeded", "Failed", "Running"]),
            workflow_version=rng.choice([1, 5, 2026]),
        )
        for i in range(400)
    ]
    for run in runs:
        await pg_store.upsert_run(run)

    for query, keep in [
        (RunQuery(), lambda r: True),
        (RunQuery(workflow="build"), lambda r: r.workflow == "build"),
        (
            RunQuery(workflow="build", version=5),
            lambda r: r.workflow == "build" and r.workflow_version == 5,
        ),
        (RunQuery(version=2026), lambda r: r.workflow_version == 2026),
        (
            RunQuery(namespace="prod", phase="Failed"),
            lambda r: r.namespace == "prod" and r.phase == "Failed",
        ),
        (
            RunQuery(workflow="deploy", since=1001.0, until=1004.0),
            lambda r: r.workflow == "deploy" and 1001.0 <= r.created_at < 1004.0,
        ),
    ]:
        expected = sorted(
            (r for r in runs if keep(r)),
            key=lambda r: (round(r.created_at * 1e6), r.uid),
            reverse=True,
        )
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            page = await pg_store.list_runs(
                RunQuery(
                    workflow=query.workflow,
                    version=query.version,
                    namespace=query.namespace,
                    phase=query.phase,
                    since=query.since,
                    until=query.until,
                    limit=13,
                    after=cursor,
                )
            )
            assert len(page.runs) <= 13
            seen += [r.uid for r in page.runs]
            pages += 1
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == [r.uid for r in expected], query
        assert pages == max(1, -(-len(expected) // 13))


async def test_bad_cursor_is_a_value_error(pg_store: PostgresStore) -> None:
    with pytest.raises(ValueError, match="cursor"):
        await pg_store.list_runs(RunQuery(after="not-a-cursor"))


async def test_stats_match_percentile_cont(pg_store: PostgresStore) -> None:
    rng = random.Random(3)
    expected: dict[tuple[str, str], list[tuple[str, float]]] = {}
    for i in range(300):
        workflow, namespace = rng.choice(["a", "b", "c"]), rng.choice(["x", "y"])
        phase = rng.choice(["Succeeded", "Succeeded", "Failed", "Cancelled", "Running"])
        took = round(rng.uniform(0.5, 100), 3)
        await pg_store.upsert_run(
            run_record(
                f"u{i}",
                workflow=workflow,
                namespace=namespace,
                phase=phase,
                started_at=2000.0,
                finished_at=2000.0 + took,
            )
        )
        if phase != "Running":
            expected.setdefault((namespace, workflow), []).append((phase, took))
    stats = await pg_store.workflow_stats()
    assert [(s.namespace, s.workflow) for s in stats] == sorted(
        expected, key=lambda key: (key[1], key[0])
    )
    for s in stats:
        rows = expected[(s.namespace, s.workflow)]
        durations = sorted(d for _, d in rows)
        succeeded = sum(1 for p, _ in rows if p == "Succeeded")
        assert (s.runs, s.succeeded) == (len(rows), succeeded)
        assert s.success_rate == pytest.approx(succeeded / len(rows))
        assert s.p50_seconds == pytest.approx(percentile(durations, 0.5), abs=1e-5)
        assert s.p95_seconds == pytest.approx(percentile(durations, 0.95), abs=1e-5)
    only = await pg_store.workflow_stats(workflow="a", namespace="y")
    assert [(s.workflow, s.namespace) for s in only] == [("a", "y")]


async def test_lookup_by_uid_prefix(pg_store: PostgresStore) -> None:
    await pg_store.upsert_run(run_record("3f2a9c-1111"))
    await pg_store.upsert_run(run_record("3f2a9c-2222"))
    await pg_store.upsert_run(run_record("77aa01-3333"))
    found = await pg_store.get_run("77aa01")
    assert found is not None and found.run.uid == "77aa01-3333"
    assert await pg_store.get_run("3f2a9c") is None  # ambiguous


async def test_construction_does_no_io_and_failures_are_quick() -> None:
    store = PostgresStore("postgresql://postgres@127.0.0.1:9/none", connect_timeout=2)
    try:
        with pytest.raises(OSError):
            await store.list_runs(RunQuery())
    finally:
        await store.close()


async def test_logs_keep_compensations_apart(pg_store: PostgresStore) -> None:
    await pg_store.upsert_run(run_record("u1"))
    await pg_store.append_log("u1", "a", 1, False, "step ")
    await pg_store.append_log("u1", "a", 1, True, "undo ")
    await pg_store.append_log("u1", "a", 1, True, "done")
    assert await pg_store.get_log("u1", "a") == "step "
    assert await pg_store.get_rollback_log("u1", "a") == "undo done"
