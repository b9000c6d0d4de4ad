"""The SQLite ExecutionStore: local mode's history, one file per user.

``szal run`` writes here (default ``$XDG_DATA_HOME/szal/history.db``, i.e.
``~/.local/share/szal/history.db``); ``szal history`` and ``szal show`` read.

Decisions:

- **Two writers at once are safe.** WAL journal (readers never block the
  writer), a 30 s busy timeout, and every write is one ``BEGIN IMMEDIATE``
  transaction, which takes the write lock up front: a deferred transaction
  that upgrades from read to write can fail with SQLITE_BUSY *without*
  waiting, the classic SQLite deadlock between two processes.
- **Async without a second API.** The interface is async (the Postgres store
  is asyncpg); here every call runs on one private worker thread that owns
  the connection, so a busy wait on the lock never blocks the event loop and
  the connection is never shared between threads.
- **Migrations are append-only numbered SQL files** in
  ``migrations/sqlite/NNNN_name.sql``, loaded and checked by
  :mod:`szal.history.migrating` (shared with Postgres), applied in order
  inside the write lock and recorded in ``schema_migrations``; a database
  whose recorded version is above the newest file raises
  :class:`~szal.history.store.SchemaTooNew`.
- **Upserts never forget.** Updating an attempt with a field that is None
  keeps the stored value (COALESCE), so replaying partial records after a
  crash can only add information. A terminal run or attempt never goes
  back to a non-terminal phase: such an upsert is ignored as a whole.
  Events are ``INSERT OR IGNORE`` on their natural key. Logs are appended
  in numbered chunks.
- **Interrupted runs.** Each ``upsert_run`` records the writing process
  (host, pid, start time from ``/proc``). A reader that finds a non-terminal
  run whose writer on this host is gone (or whose pid now belongs to another
  process) returns it with ``interrupted=True``; the stored phase is left
  as it was (the store never invents a phase the engine did not decide).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

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

T = TypeVar("T")

TERMINAL_RUN_PHASES = frozenset(p.value for p in RunPhase if p.is_terminal)
BUSY_TIMEOUT_MS = 30_000

# A terminal row never goes back: the engine never leaves a terminal phase, so
# an upsert that would can only be a stale replay, and is ignored as a whole
# (as in the Postgres store). The phase lists are literals in the SQL: they
# are the enums' values, never user input.
_NEVER_BACK = "NOT ({table}.phase IN ({terminal}) AND excluded.phase NOT IN ({terminal}))"
_TERMINAL_RUNS = ", ".join(f"'{p}'" for p in sorted(TERMINAL_RUN_PHASES))
_TERMINAL_STEPS = ", ".join(f"'{v}'" for v in sorted(p.value for p in StepPhase if p.is_terminal))


def default_db_path() -> Path:
    """``$XDG_DATA_HOME/szal/history.db``, falling back to ``~/.local/share``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "szal" / "history.db"


def migrations() -> list[Migration]:
    """The bundled SQLite migrations, in version order."""
    return load_migrations("sqlite")


def _process_start(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (Linux), to detect pid reuse."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            stat = fh.read()
    except OSError:
        return None
    # Field 22 (starttime); the command name (field 2) may contain spaces, so
    # count from the closing parenthesis.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    if start is not None:
        now_start = _process_start(pid)
        if now_start is not None and now_start != start:
            return False  # the pid was reused
    return True


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


class SqliteStore:
    """ExecutionStore on one SQLite file. Call :meth:`migrate` before use."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="szal-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._host = socket.gethostname()
        self._pid = os.getpid()
        self._pid_start = _process_start(self._pid)
        self._closed = threading.Event()

    # -- plumbing ---------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            if str(self.path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                str(self.path), isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000
            )
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._conn = conn
        return self._conn

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed.is_set():
            raise RuntimeError("store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(self._connect()))

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def in_transaction(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return await self._call(in_transaction)

    # -- schema -----------------------------------------------------------------

    async def migrate(self) -> int:
        known = migrations()

        def run(conn: sqlite3.Connection) -> int:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
            row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
            current = int(row[0] or 0)
            refuse_newer(current, known, str(self.path))
            for migration in known:
                if migration.version <= current:
                    continue
                for statement in _statements(migration.sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, time.time()),
                )
            return newest_version(known)

        return await self._write(run)

    async def schema_version(self) -> int:
        """The version recorded in the database (0 when never migrated)."""

        def run(conn: sqlite3.Connection) -> int:
            try:
                row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
            except sqlite3.OperationalError:
                return 0
            return int(row[0] or 0)

        return await self._call(run)

    async def close(self) -> None:
        if self._closed.is_set():
            return

        def run() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._executor, run)
        self._closed.set()
        self._executor.shutdown(wait=True)

    # -- writes -----------------------------------------------------------------

    async def save_workflow(self, record: WorkflowRecord) -> None:
        await self._write(lambda conn: self._save_workflow(conn, record))

    def _save_workflow(self, conn: sqlite3.Connection, record: WorkflowRecord) -> None:
        conn.execute(
            "INSERT OR IGNORE INTO workflows"
            " (namespace, name, spec_hash, version, spec, stored_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                record.namespace,
                record.name,
                record.spec_hash,
                record.version,
                _dumps(record.spec),
                time.time(),
            ),
        )

    async def get_workflow(
        self, namespace: str, name: str, spec_hash: str
    ) -> WorkflowRecord | None:
        """A stored definition by its key (SQLite extra, used by ``szal show``)."""

        def run(conn: sqlite3.Connection) -> WorkflowRecord | None:
            row = conn.execute(
                "SELECT version, spec FROM workflows"
                " WHERE namespace = ? AND name = ? AND spec_hash = ?",
                (namespace, name, spec_hash),
            ).fetchone()
            if row is None:
                return None
            return WorkflowRecord(namespace, name, int(row[0]), spec_hash, json.loads(row[1]))

        return await self._call(run)

    async def upsert_run(self, record: RunRecord) -> None:
        await self._write(lambda conn: self._upsert_run(conn, record))

    def _upsert_run(self, conn: sqlite3.Connection, record: RunRecord) -> None:
        conn.execute(
            "INSERT INTO runs (uid, name, namespace, workflow, workflow_version, spec_hash,"
            " params, phase, created_at, started_at, finished_at, message, progress,"
            " runner_host, runner_pid, runner_start)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (uid) DO UPDATE SET"
            " name = excluded.name, namespace = excluded.namespace,"
            " workflow = excluded.workflow, workflow_version = excluded.workflow_version,"
            " spec_hash = excluded.spec_hash, params = excluded.params,"
            " phase = excluded.phase, created_at = excluded.created_at,"
            " started_at = COALESCE(excluded.started_at, runs.started_at),"
            " finished_at = COALESCE(excluded.finished_at, runs.finished_at),"
            " message = COALESCE(excluded.message, runs.message),"
            " progress = COALESCE(excluded.progress, runs.progress),"
            " runner_host = excluded.runner_host, runner_pid = excluded.runner_pid,"
            " runner_start = excluded.runner_start"
            f" WHERE {_NEVER_BACK.format(table='runs', terminal=_TERMINAL_RUNS)}",
            (
                record.uid,
                record.name,
                record.namespace,
                record.workflow,
                record.workflow_version,
                record.spec_hash,
                _dumps(record.params),
                record.phase,
                record.created_at,
                record.started_at,
                record.finished_at,
                record.message,
                record.progress,
                self._host,
                self._pid,
                self._pid_start,
            ),
        )

    async def upsert_attempts(self, records: Sequence[AttemptRecord]) -> None:
        if not records:
            return
        await self._write(lambda conn: self._upsert_attempts(conn, records))

    def _upsert_attempts(self, conn: sqlite3.Connection, records: Sequence[AttemptRecord]) -> None:
        rows = [
            (
                r.run_uid,
                r.step,
                r.attempt,
                int(r.rollback),
                r.phase,
                r.started_at,
                r.finished_at,
                r.exit_code,
                r.message,
                None if r.outputs is None else _dumps(r.outputs),
                r.node,
            )
            for r in records
        ]

        conn.executemany(
            "INSERT INTO attempts (run_uid, step, attempt, rollback, phase, started_at,"
            " finished_at, exit_code, message, outputs, node, seq)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
            "  (SELECT COALESCE(MAX(seq), 0) + 1 FROM attempts))"
            " ON CONFLICT (run_uid, step, attempt, rollback) DO UPDATE SET"
            " phase = excluded.phase,"
            " started_at = COALESCE(excluded.started_at, attempts.started_at),"
            " finished_at = COALESCE(excluded.finished_at, attempts.finished_at),"
            " exit_code = COALESCE(excluded.exit_code, attempts.exit_code),"
            " message = COALESCE(excluded.message, attempts.message),"
            " outputs = COALESCE(excluded.outputs, attempts.outputs),"
            " node = COALESCE(excluded.node, attempts.node)"
            f" WHERE {_NEVER_BACK.format(table='attempts', terminal=_TERMINAL_STEPS)}",
            rows,
        )

    async def append_events(self, records: Sequence[EventRecord]) -> None:
        if not records:
            return
        await self._write(lambda conn: self._append_events(conn, records))

    def _append_events(self, conn: sqlite3.Connection, records: Sequence[EventRecord]) -> None:
        rows = [
            (
                r.run_uid,
                r.step or "",
                r.attempt,
                int(r.rollback),
                r.old,
                r.new,
                r.event,
                r.at,
                r.message,
            )
            for r in records
        ]

        conn.executemany(
            "INSERT OR IGNORE INTO events"
            " (run_uid, step, attempt, rollback, old_phase, new_phase, event, at, message)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    async def write_batch(
        self,
        run: RunRecord,
        attempts: Sequence[AttemptRecord] = (),
        events: Sequence[EventRecord] = (),
        workflows: Sequence[WorkflowRecord] = (),
    ) -> None:
        def batch(conn: sqlite3.Connection) -> None:
            for workflow in workflows:
                self._save_workflow(conn, workflow)
            self._upsert_run(conn, run)
            if attempts:
                self._upsert_attempts(conn, attempts)
            if events:
                self._append_events(conn, events)

        # One transaction: one fsync, and readers never see half a batch.
        await self._write(batch)

    async def append_log(
        self, run_uid: str, step: str, attempt: int, rollback: bool, text: str
    ) -> None:
        if not text:
            return

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO logs (run_uid, step, attempt, rollback, chunk, text)"
                " VALUES (?, ?, ?, ?, (SELECT COALESCE(MAX(chunk), 0) + 1 FROM logs"
                "  WHERE run_uid = ? AND step = ? AND attempt = ? AND rollback = ?), ?)",
                (
                    run_uid,
                    step,
                    attempt,
                    int(rollback),
                    run_uid,
                    step,
                    attempt,
                    int(rollback),
                    text,
                ),
            )

        await self._write(run)

    # -- reads ------------------------------------------------------------------

    _RUN_COLUMNS = (
        "uid, name, namespace, workflow, workflow_version, spec_hash, params, phase,"
        " created_at, started_at, finished_at, message, progress,"
        " runner_host, runner_pid, runner_start"
    )

    def _run_from_row(self, row: Sequence[Any]) -> RunRecord:
        phase = str(row[7])
        host, pid, start = row[13], row[14], row[15]
        interrupted = (
            phase not in TERMINAL_RUN_PHASES
            and host == self._host
            and pid is not None
            and not _alive(int(pid), start)
        )
        return RunRecord(
            uid=row[0],
            name=row[1],
            namespace=row[2],
            workflow=row[3],
            workflow_version=int(row[4]),
            spec_hash=row[5],
            params=json.loads(row[6]),
            phase=phase,
            created_at=float(row[8]),
            started_at=row[9],
            finished_at=row[10],
            message=row[11],
            progress=row[12],
            interrupted=interrupted,
        )

    async def list_runs(self, query: RunQuery) -> RunPage:
        where: list[str] = []
        args: list[Any] = []
        if query.workflow is not None:
            where.append("workflow = ?")
            args.append(query.workflow)
        if query.namespace is not None:
            where.append("namespace = ?")
            args.append(query.namespace)
        if query.name is not None:
            where.append("name = ?")
            args.append(query.name)
        if query.phase is not None:
            where.append("phase = ?")
            args.append(query.phase)
        if query.since is not None:
            where.append("created_at >= ?")
            args.append(query.since)
        if query.until is not None:
            where.append("created_at < ?")
            args.append(query.until)
        if query.after:
            created, _, uid = query.after.partition("|")
            where.append("(created_at < ? OR (created_at = ? AND uid < ?))")
            args += [float(created), float(created), uid]
        sql = f"SELECT {self._RUN_COLUMNS} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, uid DESC LIMIT ?"
        limit = max(1, query.limit)
        args.append(limit + 1)

        def run(conn: sqlite3.Connection) -> RunPage:
            rows = conn.execute(sql, args).fetchall()
            runs = [self._run_from_row(r) for r in rows[:limit]]
            cursor = None
            if len(rows) > limit:
                last = runs[-1]
                cursor = f"{last.created_at!r}|{last.uid}"
            return RunPage(runs=runs, next_cursor=cursor)

        return await self._call(run)

    async def get_run(self, ref: str, namespace: str | None = None) -> RunDetail | None:
        def run(conn: sqlite3.Connection) -> RunDetail | None:
            row = conn.execute(
                f"SELECT {self._RUN_COLUMNS} FROM runs WHERE uid = ?", (ref,)
            ).fetchone()
            if row is None:
                sql = f"SELECT {self._RUN_COLUMNS} FROM runs WHERE name = ?"
                args: list[Any] = [ref]
                if namespace is not None:
                    sql += " AND namespace = ?"
                    args.append(namespace)
                row = conn.execute(
                    sql + " ORDER BY created_at DESC, uid DESC LIMIT 1", args
                ).fetchone()
            if row is None and len(ref) >= 6:
                # A unique uid prefix, as git accepts a short hash.
                rows = conn.execute(
                    f"SELECT {self._RUN_COLUMNS} FROM runs WHERE uid LIKE ? LIMIT 2",
                    (ref.replace("%", "").replace("_", "") + "%",),
                ).fetchall()
                row = rows[0] if len(rows) == 1 else None
            if row is None:
                return None
            record = self._run_from_row(row)
            attempts = [
                AttemptRecord(
                    run_uid=a[0],
                    step=a[1],
                    attempt=int(a[2]),
                    rollback=bool(a[3]),
                    phase=a[4],
                    started_at=a[5],
                    finished_at=a[6],
                    exit_code=a[7],
                    message=a[8],
                    outputs=None if a[9] is None else json.loads(a[9]),
                    node=a[10],
                )
                for a in conn.execute(
                    "SELECT run_uid, step, attempt, rollback, phase, started_at, finished_at,"
                    " exit_code, message, outputs, node FROM attempts WHERE run_uid = ?"
                    " ORDER BY COALESCE(started_at, 1e18), seq",
                    (record.uid,),
                )
            ]
            events = [
                _event_from_row(e)
                for e in conn.execute(
                    f"SELECT {EVENT_COLUMNS} FROM events WHERE run_uid = ? ORDER BY id",
                    (record.uid,),
                )
            ]
            return RunDetail(run=record, attempts=attempts, events=events)

        return await self._call(run)

    async def get_log(self, run_uid: str, step: str, attempt: int | None = None) -> str:
        def run(conn: sqlite3.Connection) -> str:
            chosen = attempt
            if chosen is None:
                row = conn.execute(
                    "SELECT MAX(attempt) FROM logs WHERE run_uid = ? AND step = ? AND rollback = 0",
                    (run_uid, step),
                ).fetchone()
                if row is None or row[0] is None:
                    return ""
                chosen = int(row[0])
            rows = conn.execute(
                "SELECT text FROM logs WHERE run_uid = ? AND step = ? AND attempt = ?"
                " AND rollback = 0 ORDER BY chunk",
                (run_uid, step, chosen),
            ).fetchall()
            return "".join(r[0] for r in rows)

        return await self._call(run)

    async def get_rollback_log(self, run_uid: str, step: str) -> str:
        """Captured output of a step's compensation (SQLite extra)."""

        def run(conn: sqlite3.Connection) -> str:
            rows = conn.execute(
                "SELECT text FROM logs WHERE run_uid = ? AND step = ? AND rollback = 1"
                " ORDER BY attempt, chunk",
                (run_uid, step),
            ).fetchall()
            return "".join(r[0] for r in rows)

        return await self._call(run)

    async def events_after(
        self, after_id: int, run_uid: str | None = None, limit: int = 1000
    ) -> list[EventRecord]:
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE id > ?"
        args: list[Any] = [after_id]
        if run_uid is not None:
            sql += " AND run_uid = ?"
            args.append(run_uid)
        sql += " ORDER BY id LIMIT ?"
        args.append(limit)

        def run(conn: sqlite3.Connection) -> list[EventRecord]:
            return [_event_from_row(e) for e in conn.execute(sql, args)]

        return await self._call(run)

    async def workflow_stats(
        self, workflow: str | None = None, namespace: str | None = None
    ) -> list[WorkflowStats]:
        placeholders = ", ".join("?" for _ in TERMINAL_RUN_PHASES)
        sql = (
            "SELECT namespace, workflow, phase, started_at, finished_at FROM runs"
            f" WHERE phase IN ({placeholders})"
        )
        args: list[Any] = sorted(TERMINAL_RUN_PHASES)
        if workflow is not None:
            sql += " AND workflow = ?"
            args.append(workflow)
        if namespace is not None:
            sql += " AND namespace = ?"
            args.append(namespace)

        def run(conn: sqlite3.Connection) -> list[WorkflowStats]:
            groups: dict[tuple[str, str], list[tuple[str, float | None]]] = {}
            for ns, wf, phase, started, finished in conn.execute(sql, args):
                took = None if started is None or finished is None else finished - started
                groups.setdefault((ns, wf), []).append((phase, took))
            out: list[WorkflowStats] = []
            for (ns, wf), rows in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
                durations = sorted(d for _, d in rows if d is not None)
                succeeded = sum(1 for p, _ in rows if p == RunPhase.SUCCEEDED)
                out.append(
                    WorkflowStats(
                        workflow=wf,
                        namespace=ns,
                        runs=len(rows),
                        succeeded=succeeded,
                        success_rate=succeeded / len(rows),
                        p50_seconds=percentile(durations, 0.5),
                        p95_seconds=percentile(durations, 0.95),
                    )
                )
            return out

        return await self._call(run)


def _event_from_row(row: Sequence[Any]) -> EventRecord:
    return EventRecord(
        id=int(row[0]),
        run_uid=row[1],
        step=row[2] or None,
        attempt=int(row[3]),
        rollback=bool(row[4]),
        old=row[5],
        new=row[6],
        event=row[7],
        at=float(row[8]),
        message=row[9],
    )


def percentile(sorted_values: Sequence[float], fraction: float) -> float | None:
    """Linear interpolation between closest ranks: Postgres' ``percentile_cont``."""
    if not sorted_values:
        return None
    position = fraction * (len(sorted_values) - 1)
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def _statements(sql: str) -> list[str]:
    """Split a migration file into statements (no semicolons inside our literals)."""
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    text = "\n".join(line.split("--", 1)[0] for line in lines)
    return [part.strip() for part in text.split(";") if part.strip()]
