"""``szal run FILE``: run a workflow on this machine, recorded in local history.

Steps run as local processes (``image`` is ignored; see docs/local-mode.md),
driven by the same planner as the operator. The run's status (DESIGN.md
section 3) is printed with ``--json``; progress goes to the terminal as a
live tree, or as one line per transition when output is not a terminal.

Exit codes: 0 the run Succeeded; 1 it ended in another phase; 2 invalid
input (nothing ran); 130 / 143 after SIGINT / SIGTERM: running steps get
SIGTERM (SIGKILL after ``--grace-period``; a second signal kills at once),
steps not started are Cancelled, the finally steps (``spec.finally``) run
unless a second signal came, the run ends Cancelled and is recorded so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
import uuid
from typing import TYPE_CHECKING

from szal.cli.commanding import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    Subcommand,
    open_history,
    redacted,
    sqlite_path_problem,
)

if TYPE_CHECKING:
    from szal.engine.state import RunState


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file", metavar="FILE", nargs="?", help="a Workflow or WorkflowRun YAML file"
    )
    parser.add_argument(
        "--retry-from",
        metavar="RUN",
        help="instead of FILE: run again the pinned spec and params of the recorded run RUN"
        " (name or uid), keeping its Succeeded steps (docs/engine.md, 'Retry from failed')",
    )
    parser.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a workflow param (repeatable); overrides the WorkflowRun's params",
    )
    parser.add_argument(
        "--db",
        metavar="PATH",
        help="history database (default: $XDG_DATA_HOME/szal/history.db,"
        " i.e. ~/.local/share/szal/history.db)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the final run status as JSON on stdout"
    )
    parser.add_argument(
        "--max-parallel",
        type=int,
        metavar="N",
        help="run at most N steps at once (overrides the workflow's maxParallel)",
    )
    parser.add_argument(
        "--grace-period",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="between SIGTERM and SIGKILL when a step is stopped (default: 10)",
    )
    parser.add_argument("--name", help="the run's name (default: <workflow>-<random>)")


def handle(args: argparse.Namespace) -> int:
    from szal.cli.loading import InputError, load_file, parse_param_options
    from szal.runners.local.gpus import discover_gpus

    if args.max_parallel is not None and args.max_parallel < 1:
        print(f"szal: --max-parallel {args.max_parallel}: must be at least 1", file=sys.stderr)
        return EXIT_INVALID
    if args.grace_period < 0:
        print(f"szal: --grace-period {args.grace_period:g}: must not be negative", file=sys.stderr)
        return EXIT_INVALID
    if args.db is not None:
        problem = _db_problem(args.db)
        if problem is not None:
            print(f"szal: --db {redacted(args.db)}: {problem}", file=sys.stderr)
            return EXIT_INVALID
    if (args.file is None) == (args.retry_from is None):
        print("szal: give a FILE to run, or --retry-from RUN (not both)", file=sys.stderr)
        return EXIT_INVALID
    gpus = discover_gpus()
    if args.retry_from is not None:
        if args.param:
            print(
                "szal: --retry-from runs with the original run's params; -p is not allowed",
                file=sys.stderr,
            )
            return EXIT_INVALID
        return asyncio.run(_retry(args, gpus))
    try:
        params = parse_param_options(args.param)
        loaded = load_file(
            args.file, params, gpus_available=len(gpus), gpus_found=_gpus_found(gpus)
        )
    except InputError as exc:
        for line in str(exc).splitlines():
            print(f"szal: {line}", file=sys.stderr)
        return EXIT_INVALID
    return asyncio.run(_run(args, loaded, gpus))


def _db_problem(db: str) -> str | None:
    from szal.history.open import is_postgres_url

    if is_postgres_url(db):
        return (
            "szal run records to a local SQLite file; a Postgres URL is for"
            " szal history/show and the operator's --history-dsn"
        )
    return sqlite_path_problem(db)


def _gpus_found(gpus: tuple[str, ...]) -> str:
    """Where the GPU count came from, for the message when a step asks for more."""
    if "SZAL_GPUS" in os.environ:
        return (
            f"SZAL_GPUS={os.environ['SZAL_GPUS']!r} lists {len(gpus)}:"
            " it is a comma-separated list of GPU ids, empty for none"
        )
    return "found by nvidia-smi" if gpus else "nvidia-smi found none"


async def _retry(args: argparse.Namespace, gpus: tuple[str, ...]) -> int:
    """``--retry-from RUN``: the recorded run's pinned spec, seeded with its Succeeded steps."""
    from szal.cli.loading import LoadedRun
    from szal.engine.admitting import Refused, admit
    from szal.engine.retrying import retry_problem, seed_retry
    from szal.history.reusing import step_records
    from szal.history.sqlite import SqliteStore, default_db_path

    db = args.db or default_db_path()
    store, code = await open_history(db)
    if store is None:
        return code
    try:
        detail = await store.get_run(args.retry_from)
        if detail is None:
            print(f"szal: no run {args.retry_from!r} in {redacted(db)}", file=sys.stderr)
            return EXIT_FAILED
        original = detail.run
        problem = retry_problem(original.name, original.phase)
        if problem is not None:
            print(f"szal: {problem}", file=sys.stderr)
            return EXIT_FAILED
        assert isinstance(store, SqliteStore)  # --db is never a Postgres URL here
        stored = await store.get_workflow(original.namespace, original.workflow, original.spec_hash)
    finally:
        await store.close()
    if stored is None:
        print(
            f"szal: run {original.name!r}: its definition ({original.spec_hash}) is not in"
            f" {redacted(db)}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    admitted = admit(stored.spec, original.params, name=original.workflow, gpus_available=len(gpus))
    if isinstance(admitted, Refused):
        for issue in admitted.issues:
            print(f"szal: run {original.name!r}: {issue}", file=sys.stderr)
        return EXIT_INVALID
    if admitted.workflow.spec_hash != original.spec_hash:
        print(
            f"szal: run {original.name!r} pinned {original.spec_hash}; its stored definition"
            f" now reads as {admitted.workflow.spec_hash}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    loaded = LoadedRun(
        f"run {original.name}",
        original.workflow,
        admitted,
        None,
        original.namespace,
        dict(stored.spec),
    )
    seed = seed_retry(admitted.workflow, step_records(detail), original.name)
    return await _run(args, loaded, gpus, seed)


async def _run(
    args: argparse.Namespace,
    loaded: object,
    gpus: tuple[str, ...],
    seed: RunState | None = None,
) -> int:
    from szal.cli.loading import LoadedRun
    from szal.cli.progress import LiveTree, PlainLines
    from szal.history.recording import RunIdentity
    from szal.history.sqlite import default_db_path
    from szal.runners.local import LocalRunner, LocalSettings

    assert isinstance(loaded, LoadedRun)
    workflow = loaded.admitted.workflow  # admitted by load_file: validated once, resolved

    store, code = await open_history(args.db or default_db_path())
    if store is None:
        return code

    run_name = args.name or loaded.run_name or f"{loaded.workflow_name}-{uuid.uuid4().hex[:5]}"
    identity = RunIdentity(
        uid=str(uuid.uuid4()),
        name=run_name,
        namespace=loaded.namespace,
        created_at=time.time(),
        params=loaded.params,
        definition=loaded.definition,
    )
    progress_out = sys.stderr if args.json else sys.stdout
    listener: LiveTree | PlainLines
    if progress_out.isatty() and os.environ.get("TERM") != "dumb":
        from rich.console import Console

        listener = LiveTree(Console(file=progress_out), workflow, run_name)
    else:
        listener = PlainLines(progress_out, run_name)

    runner = LocalRunner(
        workflow,
        identity,
        store=store,
        settings=LocalSettings(
            max_parallel=args.max_parallel,
            grace_period=args.grace_period,
            gpus=gpus,
        ),
        listener=listener,
        state=seed,
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, runner.request_cancel, signum)
    try:
        state = await runner.run()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        listener.close()
        await store.close()

    if args.json:
        from szal.spec.status import status_document

        # Through the status model: the same shape (and key order) as a cluster run's status.
        json.dump(status_document(state.to_status()), sys.stdout, indent=2)
        sys.stdout.write("\n")
        sys.stdout.flush()
    else:
        from szal.spec.durations import format_duration

        took = state.duration()
        summary = f"run {run_name} {state.phase.value}"
        if took is not None:
            summary += f" in {format_duration(took)}"
        if state.message:
            summary += f": {state.message}"
        print(summary, file=progress_out)
        db = f" --db {args.db}" if args.db else ""
        print(f"details: szal show{db} {identity.uid[:8]}", file=progress_out)
    if runner.cancel_signal is not None:
        return 128 + runner.cancel_signal
    return EXIT_OK if state.phase.value == "Succeeded" else EXIT_FAILED


COMMAND = Subcommand(
    name="run",
    help="run a workflow file locally (exit 0 Succeeded, 1 otherwise, 2 invalid input)",
    description=__doc__ or "",
    add_arguments=add_arguments,
    handler=handle,
)
