"""Benchmark: the Postgres history store with a large history.

Loads N runs x M steps (default 10,000 x 10 = 100,000 step attempts, plus
two events per attempt and two per run) into a schema of its own with COPY,
then times the queries behind ``szal history`` (newest first, filters, a
page deep in the keyset), ``szal show`` (one run with its attempts and
events) and the workflow statistics: the median of several runs each, in
milliseconds. Also times writing through the store API (the mirror's path).

    .venv/bin/python -m bench.history [--dsn postgresql://...] [--runs 10000] [--steps 10]

Without --dsn (or SZAL_TEST_PG_DSN) it starts the throwaway test server with
tests/postgres/pg.sh and stops it afterwards if it started it. The schema
is dropped at the end. Results go in docs/benchmarks.md ("History store").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from szal.history.postgres import PostgresStore
from szal.history.store import AttemptRecord, EventRecord, RunQuery, RunRecord

PG_SH = Path(__file__).resolve().parent.parent / "tests" / "postgres" / "pg.sh"
SCHEMA = "bench_history"
WORKFLOWS = [f"wf-{i:02d}" for i in range(20)]
NAMESPACES = ["default", "ml", "ci", "prod"]
PHASES = ["Succeeded"] * 8 + ["Failed", "Cancelled"]
T0 = 1_790_000_000.0  # late 2026


def ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


def generate(runs: int, steps: int) -> tuple[list[tuple[Any, ...]], ...]:
    rng = random.Random(42)
    run_rows, attempt_rows, event_rows = [], [], []
    for i in range(runs):
        uid = f"{rng.getrandbits(128):032x}"
        created = T0 + i * 30 + rng.random()  # one run every ~30 s: 3.5 days
        phase = rng.choice(PHASES)
        clock = created + 1
        for s in range(steps):
            took = rng.uniform(1, 60)
            step_phase = "Failed" if phase == "Failed" and s == steps - 1 else "Succeeded"
            attempt_rows.append(
                (uid, f"step-{s}", 1, False, step_phase, ts(clock), ts(clock + took),
                 0 if step_phase == "Succeeded" else 1, None, {"n": s}, f"node-{s % 7}")
            )  # fmt: skip
            event_rows.append(
                (uid, f"step-{s}", 1, False, "Pending", "Running", "StepStarted", ts(clock), "")
            )
            event_rows.append(
                (uid, f"step-{s}", 1, False, "Running", step_phase, "StepFinished",
                 ts(clock + took), "")
            )  # fmt: skip
            clock += took
        event_rows.append(
            (uid, None, 0, False, "Pending", "Running", "RunStarted", ts(created), "")
        )
        event_rows.append((uid, None, 0, False, "Running", phase, "RunFinished", ts(clock), ""))
        run_rows.append(
            (uid, f"run-{i}", rng.choice(NAMESPACES), rng.choice(WORKFLOWS), 1, "h1",
             {"env": "prod"}, phase, ts(created), ts(created + 1), ts(clock), None,
             f"{steps}/{steps}")
        )  # fmt: skip
    return run_rows, attempt_rows, event_rows


async def timed(label: str, fn: Callable[[], Awaitable[Any]], repeat: int) -> float:
    await fn()  # warm the plan cache
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - began) * 1000)
    median = statistics.median(samples)
    print(f"  {label:<46} {median:8.2f} ms   (max {max(samples):.2f})")
    return median


async def bench(dsn: str, runs: int, steps: int, repeat: int) -> None:
    admin = await asyncpg.connect(dsn)
    await admin.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    store = PostgresStore(dsn, schema=SCHEMA)
    try:
        await store.migrate()
        run_rows, attempt_rows, event_rows = generate(runs, steps)
        pool = await store._get_pool()
        began = time.perf_counter()
        async with pool.acquire() as conn:
            await conn.copy_records_to_table(
                "runs",
                schema_name=SCHEMA,
                records=run_rows,
                columns=[
                    "uid", "name", "namespace", "workflow", "workflow_version", "spec_hash",
                    "params", "phase", "created_at", "started_at", "finished_at", "message",
                    "progress",
                ],
            )  # fmt: skip
            await conn.copy_records_to_table(
                "attempts",
                schema_name=SCHEMA,
                records=attempt_rows,
                columns=[
                    "run_uid", "step", "attempt", "rollback", "phase", "started_at",
                    "finished_at", "exit_code", "message", "outputs", "node",
                ],
            )  # fmt: skip
            await conn.copy_records_to_table(
                "events",
                schema_name=SCHEMA,
                records=event_rows,
                columns=[
                    "run_uid", "step", "attempt", "rollback", "old_phase", "new_phase",
                    "event", "at", "message",
                ],
            )  # fmt: skip
            await conn.execute("ANALYZE")
        load = time.perf_counter() - began
        print(
            f"loaded {len(run_rows):,} runs, {len(attempt_rows):,} step attempts,"
            f" {len(event_rows):,} events with COPY in {load:.2f} s (indexes and constraints on)"
        )

        # Writing through the store API, as the mirror does (one run = 1 + 1 + 1 calls).
        extra = 200
        began = time.perf_counter()
        for i in range(extra):
            uid = f"api-{i}"
            await store.upsert_run(
                RunRecord(uid, uid, "default", "wf-api", 1, "h1", {}, "Succeeded",
                          T0 + 1e6 + i, T0 + 1e6 + i, T0 + 1e6 + i + 9)
            )  # fmt: skip
            await store.upsert_attempts(
                [AttemptRecord(uid, f"s{s}", 1, False, "Succeeded", T0 + s, T0 + s + 1, 0)
                 for s in range(steps)]
            )  # fmt: skip
            await store.append_events(
                [EventRecord(uid, f"s{s}", 1, False, "Running", "Succeeded", "StepSucceeded",
                             T0 + s) for s in range(steps)]
            )  # fmt: skip
        api = time.perf_counter() - began
        print(
            f"store API: {extra} runs x {steps} steps (run, attempts, events) in {api:.2f} s"
            f" = {api / extra * 1000:.1f} ms per run"
        )

        # A cursor 100 pages (5,000 runs) deep, and a run to show.
        cursor: str | None = None
        for _ in range(100):
            cursor = (await store.list_runs(RunQuery(limit=50, after=cursor))).next_cursor
        deep = cursor
        some_uid = run_rows[runs // 2][0]
        since, until = T0 + runs * 10, T0 + runs * 20

        print(f"queries (median of {repeat}):")
        await timed("szal history (newest 50)", lambda: store.list_runs(RunQuery(limit=50)), repeat)
        await timed(
            "szal history --workflow wf-07",
            lambda: store.list_runs(RunQuery(workflow="wf-07", limit=50)),
            repeat,
        )
        await timed(
            "szal history --phase Failed",
            lambda: store.list_runs(RunQuery(phase="Failed", limit=50)),
            repeat,
        )
        await timed(
            "szal history --namespace ml --since --until",
            lambda: store.list_runs(RunQuery(namespace="ml", since=since, until=until, limit=50)),
            repeat,
        )
        await timed(
            "szal history, page 101 (keyset, 5,000 deep)",
            lambda: store.list_runs(RunQuery(limit=50, after=deep)),
            repeat,
        )
        await timed(
            "szal show <uid> (10 attempts, 22 events)", lambda: store.get_run(some_uid), repeat
        )
        await timed("szal show <name>", lambda: store.get_run(f"run-{runs // 3}"), repeat)
        await timed("workflow stats, one workflow", lambda: store.workflow_stats("wf-07"), repeat)
        await timed("workflow stats, all 20 workflows", lambda: store.workflow_stats(), repeat)

        plan = await admin.fetch(
            f"EXPLAIN SELECT * FROM {SCHEMA}.runs WHERE workflow = 'wf-07'"
            " ORDER BY created_at DESC, uid DESC LIMIT 51"
        )
        print("plan (workflow filter):", " / ".join(r[0].strip() for r in plan[:2]))
    finally:
        await store.close()
        await admin.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("SZAL_TEST_PG_DSN"))
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    started = False
    dsn = args.dsn
    if not dsn:
        started = subprocess.run(["bash", str(PG_SH), "status"], check=False).returncode != 0
        done = subprocess.run(
            ["bash", str(PG_SH), "start"], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            sys.exit(f"cannot start the test Postgres: {done.stderr}")
        dsn = done.stdout.strip()
    try:
        asyncio.run(bench(dsn, args.runs, args.steps, args.repeat))
    finally:
        if started:
            subprocess.run(["bash", str(PG_SH), "stop"], check=False)


if __name__ == "__main__":
    main()
