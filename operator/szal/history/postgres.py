"""The Postgres ExecutionStore: cluster history that outlives the run objects.

The operator mirrors every run here (through :mod:`szal.history.mirror`);
``szal history --db postgres://...`` and ``szal show`` read it. Same
interface and logical schema as the SQLite store, normalized rows on asyncpg
with a connection pool.

Decisions:

- **Lazy connections.** Constructing the store does no I/O; the pool is made
  on first use and remade after a failure. The operator can start while the
  database is down, and the mirror retries until it answers.
- **Migrations are append-only numbered SQL files** in
  ``migrations/postgres/NNNN_name.sql``, loaded and checked by
  :mod:`szal.history.migrating` (shared with SQLite), each applied in its
  own transaction under a session advisory lock (several operator replicas
  or CLIs may migrate at once) and recorded with its checksum in
  ``schema_migrations``.
  A database recorded at a version above the newest file raises
  :class:`~szal.history.store.SchemaTooNew` naming both versions.
- **Times are timestamptz** (what an admin querying the database expects),
  so they round-trip at microsecond precision; the records carry float epoch
  seconds. The keyset cursor is ``<epoch microseconds>|<uid>``, exact.
- **Writes are idempotent and never forget**, like SQLite: runs and attempts
  are upserts whose nullable fields COALESCE with the stored value, and an
  upsert that changes nothing writes nothing (no new row version). Events
  are ``ON CONFLICT DO NOTHING`` on their natural key.
- **A terminal row never goes back.** The engine never leaves a terminal
  phase, so an upsert that would turn a terminal run or attempt non-terminal
  can only be a stale replay (an operator replaying old transitions after a
  restart or an outage) and is ignored as a whole.
- **Event ids are committed in id order.** An identity column hands out ids
  at insert time, so two concurrent transactions could commit ids 8 and 7 in
  that order and a stream that already resumed past 8 would never see 7.
  Appends therefore take a transaction-level advisory lock: event writes are
  serialized (cheap: one operator writes), and ``events_after(id)`` never
  skips a row.
- **Concurrent writers to one run** take a per-run advisory lock before
  upserting its attempts, in uid order, so two writers cannot deadlock on
  the same rows.
- **Interrupted runs** are a local-mode notion (a ``szal run`` process that
  died). In the cluster the operator resumes every run from its status, so
  runs read from Postgres are never marked interrupted.
- **Optional schema.** ``schema=`` puts the tables in a Postgres schema of
  their own (created if missing): several installations, or tests, can
  share one database.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from szal.engine.phases import RunPhase, StepPhase
from szal.history.migrating import Migration, load_migrations, newest_version, refuse_newer
from szal.history.store import (
    EVENT_COLUMNS,
    AttemptRecord,
    EventRecord,
    RunDetail,
    RunPage,
    RunQuery,
    RunRecord,
    WorkflowRecord,
    WorkflowStats,
)

TERMINAL_RUN_PHASES = tuple(sorted(p.value for p in RunPhase if p.is_terminal))
TERMINAL_STEP_PHASES = tuple(sorted(p.value for p in StepPhase if p.is_terminal))

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def migrations() -> list[Migration]:
    """The bundled Postgres migrations, in version order."""
    return load_migrations("postgres")


def _to_ts(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, tz=UTC)


def _from_ts(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _encode_cursor(run: RunRecord) -> str:
    moment = _to_ts(run.created_at)
    assert moment is not None
    return f"{_micros(moment)}|{run.uid}"


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    micros, sep, uid = cursor.partition("|")
    if not sep or not micros.lstrip("-").isdigit():
        raise ValueError(f"not a history cursor: {cursor!r}")
    return _from_micros(int(micros)), uid


async def _init_connection(conn: Any) -> None:
    # Binary jsonb (a version byte, then the text) also works for COPY.
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda value: b"\x01" + json.dumps(value, separators=(",", ":")).encode(),
        decoder=lambda data: json.loads(data[1:]),
        schema="pg_catalog",
        format="binary",
    )


_RUN_COLUMNS = (
    "uid, name, namespace, workflow, workflow_version, spec_hash, params, phase,"
    " created_at, started_at, finished_at, message, progress"
)
_ATTEMPT_COLUMNS = (
    "run_uid, step, attempt, rollback, phase, started_at, finished_at, exit_code,"
    " message, outputs, node"
)
_UPSERT_RUN = """
INSERT INTO runs (uid, name, namespace, workflow, workflow_version, spec_hash, params, phase,
                  created_at, started_at, finished_at, message, progress)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT (uid) DO UPDATE SET
    name = EXCLUDED.name, namespace = EXCLUDED.namespace, workflow = EXCLUDED.workflow,
    workflow_version = EXCLUDED.workflow_version, spec_hash = EXCLUDED.spec_hash,
    params = EXCLUDED.params, phase = EXCLUDED.phase, created_at = EXCLUDED.created_at,
    started_at = COALESCE(EXCLUDED.started_at, runs.started_at),
    finished_at = COALESCE(EXCLUDED.finished_at, runs.finished_at),
    message = COALESCE(EXCLUDED.message, runs.message),
    progress = COALESCE(EXCLUDED.progress, runs.progress),
    updated_at = now()
WHERE NOT (runs.phase = ANY($14::text[]) AND NOT EXCLUDED.phase = ANY($14::text[]))
  AND (runs.name, runs.namespace, runs.workflow, runs.workflow_version, runs.spec_hash,
       runs.params, runs.phase, runs.created_at, runs.started_at, runs.finished_at,
       runs.message, runs.progress)
  IS DISTINCT FROM
      (EXCLUDED.name, EXCLUDED.namespace, EXCLUDED.workflow, EXCLUDED.workflow_version,
       EXCLUDED.spec_hash, EXCLUDED.params, EXCLUDED.phase, EXCLUDED.created_at,
       COALESCE(EXCLUDED.started_at, runs.started_at),
       COALESCE(EXCLUDED.finished_at, runs.finished_at),
       COALESCE(EXCLUDED.message, runs.message), COALESCE(EXCLUDED.progress, runs.progress))
"""

_UPSERT_ATTEMPT = """
INSERT INTO attempts (run_uid, step, attempt, rollback, phase, started_at, finished_at,
                      exit_code, message, outputs, node)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (run_uid, step, attempt, rollback) DO UPDATE SET
    phase = EXCLUDED.phase,
    started_at = COALESCE(EXCLUDED.started_at, attempts.started_at),
    finished_at = COALESCE(EXCLUDED.finished_at, attempts.finished_at),
    exit_code = COALESCE(EXCLUDED.exit_code, attempts.exit_code),
    message = COALESCE(EXCLUDED.message, attempts.message),
    outputs = COALESCE(EXCLUDED.outputs, attempts.outputs),
    node = COALESCE(EXCLUDED.node, attempts.node)
WHERE NOT (attempts.phase = ANY($12::text[]) AND NOT EXCLUDED.phase = ANY($12::text[]))
  AND (attempts.phase, attempts.started_at, attempts.finished_at, attempts.exit_code,
       attempts.message, attempts.outputs, attempts.node)
  IS DISTINCT FROM
      (EXCLUDED.phase, COALESCE(EXCLUDED.started_at, attempts.started_at),
       COALESCE(EXCLUDED.finished_at, attempts.finished_at),
       COALESCE(EXCLUDED.exit_code, attempts.exit_code),
       COALESCE(EXCLUDED.message, attempts.message),
       COALESCE(EXCLUDED.outputs, attempts.outputs), COALESCE(EXCLUDED.node, attempts.node))
"""

_INSERT_EVENT = """
INSERT INTO events (run_uid, step, attempt, rollback, old_phase, new_phase, event, at, message)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT ON CONSTRAINT events_natural_key DO NOTHING
"""

# Advisory lock keys, scoped to the schema the tables live in.
# The migration lock is taken before the schema may exist ($1: its name, if set).
_MIGRATE_KEY = "hashtext('szal.migrate.' || COALESCE($1::text, current_schema()))"
_MIGRATE_LOCK = f"SELECT pg_advisory_lock({_MIGRATE_KEY})"
_MIGRATE_UNLOCK = f"SELECT pg_advisory_unlock({_MIGRATE_KEY})"
_EVENTS_LOCK = "SELECT pg_advisory_xact_lock(hashtext('szal.events.' || current_schema()))"
_RUN_LOCK = "SELECT pg_advisory_xact_lock(hashtext('szal.run.' || current_schema() || $1))"


class PostgresStore:
    """ExecutionStore on PostgreSQL (asyncpg pool). Call :meth:`migrate` before use.

    ``dsn`` is a libpq URL (``postgresql://user@host:5432/db``); ``schema``
    keeps the tables in their own Postgres schema. ``command_timeout`` bounds
    every statement and ``connect_timeout`` every new connection, so a slow
    or unreachable server fails a call instead of hanging it.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str | None = None,
        min_size: int = 1,
        max_size: int = 10,
        command_timeout: float = 30.0,
        connect_timeout: float = 10.0,
    ) -> None:
        if schema is not None and not _SCHEMA_NAME.match(schema):
            raise ValueError(f"invalid schema name {schema!r}: use [a-z_][a-z0-9_]*")
        self.dsn = dsn
        self.schema = schema
        self._min_size = min_size
        self._max_size = max_size
        self._command_timeout = command_timeout
        self._connect_timeout = connect_timeout
        self._pool: Any = None
        self._pool_lock = asyncio.Lock()
        self._closed = False

    # -- plumbing ---------------------------------------------------------------

    async def _get_pool(self) -> Any:
        if self._closed:
            raise RuntimeError("store is closed")
        if self._pool is not None:
            return self._pool
        async with self._pool_lock:
            if self._pool is None:
                settings = {"application_name": "szal"}
                if self.schema is not None:
                    settings["search_path"] = self.schema
                self._pool = await asyncpg.create_pool(
                    self.dsn,
                    min_size=self._min_size,
                    max_size=self._max_size,
                    command_timeout=self._command_timeout,
                    timeout=self._connect_timeout,
                    init=_init_connection,
                    server_settings=settings,
                )
        return self._pool

    async def close(self) -> None:
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=10)
            except (TimeoutError, OSError, asyncpg.PostgresError):
                pool.terminate()

    # -- schema -----------------------------------------------------------------

    async def migrate(self, *, target: int | None = None) -> int:
        """Create or upgrade the schema; return the version it is at.

        ``target`` stops after that version (tests use it to build each earlier
        version); by default every bundled migration is applied.
        """
        known = migrations()
        newest = newest_version(known)
        goal = newest if target is None else min(target, newest)
        pool = await self._get_pool()
        async with pool.acquire() as conn:
            await conn.execute(_MIGRATE_LOCK, self.schema)
            try:
                if self.schema is not None:
                    await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version integer PRIMARY KEY, name text NOT NULL,"
                    " checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                current = int(
                    await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
                )
                refuse_newer(current, known, self._where())
                for migration in known:
                    if migration.version <= current or migration.version > goal:
                        continue
                    async with conn.transaction():
                        await conn.execute(migration.sql)
                        await conn.execute(
                            "INSERT INTO schema_migrations (version, name, checksum)"
                            " VALUES ($1, $2, $3)",
                            migration.version,
                            migration.name,
                            migration.checksum,
                        )
                    current = migration.version
                return current
            finally:
                await conn.execute(_MIGRATE_UNLOCK, self.schema)

    async def schema_version(self) -> int:
        """The version recorded in the database (0 when never migrated)."""
        pool = await self._get_pool()
        async with pool.acquire() as conn:
            if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
                return 0
            return int(
                await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            )

    def _where(self) -> str:
        host = self.dsn.rpartition("@")[2]  # never print a password
        return f"{host} (schema {self.schema})" if self.schema else host

    # -- writes -----------------------------------------------------------------

    async def save_workflow(self, record: WorkflowRecord) -> None:
        pool = await self._get_pool()
        await self._save_workflow(pool, record)

    @staticmethod
    async def _save_workflow(conn: Any, record: WorkflowRecord) -> None:
        await conn.execute(
            "INSERT INTO workflows (namespace, name, spec_hash, version, spec)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            record.namespace,
            record.name,
            record.spec_hash,
            record.version,
            record.spec,
        )

    async def get_workflow(
        self, namespace: str, name: str, spec_hash: str
    ) -> WorkflowRecord | None:
        """A stored definition by its key (as the SQLite store offers)."""
        pool = await self._get_pool()
        row = await pool.fetchrow(
            "SELECT version, spec FROM workflows"
            " WHERE namespace = $1 AND name = $2 AND spec_hash = $3",
            namespace,
            name,
            spec_hash,
        )
        if row is None:
            return None
        return WorkflowRecord(namespace, name, int(row[0]), spec_hash, row[1])

    async def upsert_run(self, record: RunRecord) -> None:
        pool = await self._get_pool()
        await self._upsert_run(pool, record)

    @staticmethod
    async def _upsert_run(conn: Any, record: RunRecord) -> None:
        await conn.execute(
            _UPSERT_RUN,
            record.uid,
            record.name,
            record.namespace,
            record.workflow,
            record.workflow_version,
            record.spec_hash,
            record.params,
            record.phase,
            _to_ts(record.created_at),
            _to_ts(record.started_at),
            _to_ts(record.finished_at),
            record.message,
            record.progress,
            TERMINAL_RUN_PHASES,
        )

    async def upsert_attempts(self, records: Sequence[AttemptRecord]) -> None:
        if not records:
            return
        pool = await self._get_pool()
        async with pool.acquire() as conn, conn.transaction():
            await self._upsert_attempts(conn, records)

    @staticmethod
    async def _upsert_attempts(conn: Any, records: Sequence[AttemptRecord]) -> None:
        rows = [
            (
                r.run_uid,
                r.step,
                r.attempt,
                r.rollback,
                r.phase,
                _to_ts(r.started_at),
                _to_ts(r.finished_at),
                r.exit_code,
                r.message,
                r.outputs,
                r.node,
                TERMINAL_STEP_PHASES,
            )
            for r in records
        ]
        for uid in sorted({r.run_uid for r in records}):
            await conn.execute(_RUN_LOCK, uid)
        await conn.executemany(_UPSERT_ATTEMPT, rows)

    async def append_events(self, records: Sequence[EventRecord]) -> None:
        if not records:
            return
        pool = await self._get_pool()
        async with pool.acquire() as conn, conn.transaction():
            await self._append_events(conn, records)

    @staticmethod
    async def _append_events(conn: Any, records: Sequence[EventRecord]) -> None:
        rows = [
            (
                r.run_uid,
                r.step,
                r.attempt,
                r.rollback,
                r.old,
                r.new,
                r.event,
                _to_ts(r.at),
                r.message,
            )
            for r in records
        ]
        await conn.execute(_EVENTS_LOCK)
        await conn.executemany(_INSERT_EVENT, rows)

    async def write_batch(
        self,
        run: RunRecord,
        attempts: Sequence[AttemptRecord] = (),
        events: Sequence[EventRecord] = (),
        workflows: Sequence[WorkflowRecord] = (),
    ) -> None:
        # One transaction: a reader never sees the run's new phase without
        # the attempts and events that led to it. Locks in a fixed order
        # (the run's, then the event log's) so batches cannot deadlock.
        pool = await self._get_pool()
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(_RUN_LOCK, run.uid)
            for workflow in workflows:
                await self._save_workflow(conn, workflow)
            await self._upsert_run(conn, run)
            if attempts:
                await self._upsert_attempts(conn, attempts)
            if events:
                await self._append_events(conn, events)

    async def append_log(
        self, run_uid: str, step: str, attempt: int, rollback: bool, text: str
    ) -> None:
        if not text:
            return
        pool = await self._get_pool()
        await pool.execute(
            "INSERT INTO logs (run_uid, step, attempt, rollback, text) VALUES ($1, $2, $3, $4, $5)",
            run_uid,
            step,
            attempt,
            rollback,
            text,
        )

    # -- reads ------------------------------------------------------------------

    async def list_runs(self, query: RunQuery) -> RunPage:
        where: list[str] = []
        args: list[Any] = []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if query.workflow is not None:
            where.append(f"workflow = {arg(query.workflow)}")
        if query.namespace is not None:
            where.append(f"namespace = {arg(query.namespace)}")
        if query.name is not None:
            where.append(f"name = {arg(query.name)}")
        if query.phase is not None:
            where.append(f"phase = {arg(query.phase)}")
        if query.since is not None:
            where.append(f"created_at >= {arg(_to_ts(query.since))}")
        if query.until is not None:
            where.append(f"created_at < {arg(_to_ts(query.until))}")
        if query.after:
            created, uid = _decode_cursor(query.after)
            # A row comparison: Postgres walks the (..., created_at, uid) index.
            where.append(f"(created_at, uid) < ({arg(created)}, {arg(uid)})")
        limit = max(1, query.limit)
        sql = f"SELECT {_RUN_COLUMNS} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY created_at DESC, uid DESC LIMIT {arg(limit + 1)}"
        pool = await self._get_pool()
        rows = await pool.fetch(sql, *args)
        runs = [_run_from_row(r) for r in rows[:limit]]
        cursor = _encode_cursor(runs[-1]) if len(rows) > limit else None
        return RunPage(runs=runs, next_cursor=cursor)

    async def get_run(self, ref: str, namespace: str | None = None) -> RunDetail | None:
        pool = await self._get_pool()
        async with pool.acquire() as conn:
            row = await conn.fetchrow(f"SELECT {_RUN_COLUMNS} FROM runs WHERE uid = $1", ref)
            if row is None:
                if namespace is None:
                    row = await conn.fetchrow(
                        f"SELECT {_RUN_COLUMNS} FROM runs WHERE name = $1"
                        " ORDER BY created_at DESC, uid DESC LIMIT 1",
                        ref,
                    )
                else:
                    row = await conn.fetchrow(
                        f"SELECT {_RUN_COLUMNS} FROM runs WHERE name = $1 AND namespace = $2"
                        " ORDER BY created_at DESC, uid DESC LIMIT 1",
                        ref,
                        namespace,
                    )
            if row is None and len(ref) >= 6:
                # A unique uid prefix, as git accepts a short hash.
                rows = await conn.fetch(
                    f"SELECT {_RUN_COLUMNS} FROM runs WHERE starts_with(uid, $1) LIMIT 2", ref
                )
                row = rows[0] if len(rows) == 1 else None
            if row is None:
                return None
            run = _run_from_row(row)
            attempts = [
                _attempt_from_row(a)
                for a in await conn.fetch(
                    f"SELECT {_ATTEMPT_COLUMNS} FROM attempts WHERE run_uid = $1"
                    " ORDER BY started_at ASC NULLS LAST, seq",
                    run.uid,
                )
            ]
            events = [
                _event_from_row(e)
                for e in await conn.fetch(
                    f"SELECT {EVENT_COLUMNS} FROM events WHERE run_uid = $1 ORDER BY id",
                    run.uid,
                )
            ]
        return RunDetail(run=run, attempts=attempts, events=events)

    async def get_log(self, run_uid: str, step: str, attempt: int | None = None) -> str:
        pool = await self._get_pool()
        if attempt is None:
            text = await pool.fetchval(
                "SELECT string_agg(text, '' ORDER BY chunk) FROM logs"
                " WHERE run_uid = $1 AND step = $2 AND NOT rollback AND attempt ="
                " (SELECT MAX(attempt) FROM logs"
                "  WHERE run_uid = $1 AND step = $2 AND NOT rollback)",
                run_uid,
                step,
            )
        else:
            text = await pool.fetchval(
                "SELECT string_agg(text, '' ORDER BY chunk) FROM logs"
                " WHERE run_uid = $1 AND step = $2 AND attempt = $3 AND NOT rollback",
                run_uid,
                step,
                attempt,
            )
        return str(text) if text is not None else ""

    async def get_rollback_log(self, run_uid: str, step: str) -> str:
        """Captured output of a step's compensation (as the SQLite store offers)."""
        pool = await self._get_pool()
        text = await pool.fetchval(
            "SELECT string_agg(text, '' ORDER BY attempt, chunk) FROM logs"
            " WHERE run_uid = $1 AND step = $2 AND rollback",
            run_uid,
            step,
        )
        return str(text) if text is not None else ""

    async def events_after(
        self, after_id: int, run_uid: str | None = None, limit: int = 1000
    ) -> list[EventRecord]:
        pool = await self._get_pool()
        if run_uid is None:
            rows = await pool.fetch(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE id > $1 ORDER BY id LIMIT $2",
                after_id,
                limit,
            )
        else:
            rows = await pool.fetch(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE run_uid = $2 AND id > $1"
                " ORDER BY id LIMIT $3",
                after_id,
                run_uid,
                limit,
            )
        return [_event_from_row(r) for r in rows]

    async def workflow_stats(
        self, workflow: str | None = None, namespace: str | None = None
    ) -> list[WorkflowStats]:
        sql = (
            "SELECT namespace, workflow, count(*) AS runs,"
            " count(*) FILTER (WHERE phase = $4) AS succeeded,"
            " percentile_cont(0.5) WITHIN GROUP (ORDER BY took) AS p50,"
            " percentile_cont(0.95) WITHIN GROUP (ORDER BY took) AS p95"
            " FROM (SELECT namespace, workflow, phase,"
            "   extract(epoch FROM finished_at - started_at)::float8 AS took"
            "   FROM runs WHERE phase = ANY($1::text[])"
            "   AND ($2::text IS NULL OR workflow = $2)"
            "   AND ($3::text IS NULL OR namespace = $3)) AS finished"
            " GROUP BY namespace, workflow ORDER BY workflow, namespace"
        )
        pool = await self._get_pool()
        rows = await pool.fetch(
            sql, list(TERMINAL_RUN_PHASES), workflow, namespace, RunPhase.SUCCEEDED.value
        )
        return [
            WorkflowStats(
                workflow=r["workflow"],
                namespace=r["namespace"],
                runs=int(r["runs"]),
                succeeded=int(r["succeeded"]),
                success_rate=int(r["succeeded"]) / int(r["runs"]),
                p50_seconds=r["p50"],
                p95_seconds=r["p95"],
            )
            for r in rows
        ]


def _run_from_row(row: Any) -> RunRecord:
    return RunRecord(
        uid=row[0],
        name=row[1],
        namespace=row[2],
        workflow=row[3],
        workflow_version=int(row[4]),
        spec_hash=row[5],
        params=row[6],
        phase=row[7],
        created_at=row[8].timestamp(),
        started_at=_from_ts(row[9]),
        finished_at=_from_ts(row[10]),
        message=row[11],
        progress=row[12],
    )


def _attempt_from_row(row: Any) -> AttemptRecord:
    return AttemptRecord(
        run_uid=row[0],
        step=row[1],
        attempt=int(row[2]),
        rollback=bool(row[3]),
        phase=row[4],
        started_at=_from_ts(row[5]),
        finished_at=_from_ts(row[6]),
        exit_code=row[7],
        message=row[8],
        outputs=row[9],
        node=row[10],
    )


def _event_from_row(row: Any) -> EventRecord:
    return EventRecord(
        id=int(row[0]),
        run_uid=row[1],
        step=row[2],
        attempt=int(row[3]),
        rollback=bool(row[4]),
        old=row[5],
        new=row[6],
        event=row[7],
        at=row[8].timestamp(),
        message=row[9],
    )
