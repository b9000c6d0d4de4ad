"""``szal history``: past and current local runs, newest first.

Reads the history store (``--db``: a SQLite path or a Postgres URL). A
run whose ``szal run`` process died without finishing (SIGKILL, a crash,
a power cut) is shown as ``Interrupted`` with the phase it was last recorded in, e.g.
``Interrupted (Running)``; its steps' records stay as they were. A store
the operator mirrors cluster runs into holds several namespaces: the table
then gains a NAMESPACE column, and ``-n NAMESPACE`` keeps one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict

from szal.cli.commanding import EXIT_INVALID, EXIT_OK, Subcommand, open_history

# Where local runs live unless their file names a namespace (cli/loading.py).
LOCAL_NAMESPACE = "default"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        metavar="PATH|URL",
        help="history store: a SQLite path or a postgres:// URL (default: as szal run)",
    )
    parser.add_argument("--workflow", metavar="NAME", help="only runs of this workflow")
    parser.add_argument(
        "-n", "--namespace", metavar="NAMESPACE", help="only runs of this namespace"
    )
    parser.add_argument("--phase", metavar="PHASE", help="only runs in this phase (e.g. Failed)")
    parser.add_argument("--limit", type=int, default=20, metavar="N", help="at most N runs (20)")
    parser.add_argument("--json", action="store_true", help="print the runs as JSON")


def shown_phase(phase: str, interrupted: bool) -> str:
    return f"Interrupted ({phase})" if interrupted else phase


def age(seconds: float) -> str:
    if seconds < 120:
        return f"{int(seconds)}s"
    if seconds < 7200:
        return f"{int(seconds // 60)}m"
    if seconds < 172800:
        return f"{int(seconds // 3600)}h"
    return f"{int(seconds // 86400)}d"


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        line = "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print(line.rstrip())


def handle(args: argparse.Namespace) -> int:
    from szal.engine.phases import RunPhase

    if args.limit < 1:
        print(f"szal: --limit {args.limit}: must be at least 1", file=sys.stderr)
        return EXIT_INVALID
    phases = [phase.value for phase in RunPhase]
    if args.phase is not None and args.phase not in phases:
        print(f"szal: --phase {args.phase}: expected one of {', '.join(phases)}", file=sys.stderr)
        return EXIT_INVALID
    return asyncio.run(_history(args))


async def _history(args: argparse.Namespace) -> int:
    from szal.history.sqlite import default_db_path
    from szal.history.store import RunQuery
    from szal.spec.durations import format_duration

    store, code = await open_history(args.db or default_db_path())
    if store is None:
        return code
    try:
        page = await store.list_runs(
            RunQuery(
                workflow=args.workflow,
                namespace=args.namespace,
                phase=args.phase,
                limit=args.limit,
            )
        )
    finally:
        await store.close()
    if args.json:
        json.dump([asdict(r) for r in page.runs], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    if not page.runs:
        print("no runs yet", file=sys.stderr)
        return EXIT_OK
    now = time.time()
    with_namespace = len({run.namespace for run in page.runs}) > 1 or (
        args.namespace is None and page.runs[0].namespace != LOCAL_NAMESPACE
    )
    rows = [["NAME", "UID", "WORKFLOW", "PHASE", "PROGRESS", "DURATION", "AGE"]]
    if with_namespace:
        rows[0].insert(0, "NAMESPACE")
    for run in page.runs:
        if run.started_at is None:
            took = ""
        else:
            end = run.finished_at if run.finished_at is not None else None
            took = format_duration(end - run.started_at) if end is not None else ""
        row = [
            run.name,
            run.uid[:8],
            run.workflow,
            shown_phase(run.phase, run.interrupted),
            run.progress or "",
            took,
            age(now - run.created_at),
        ]
        rows.append([run.namespace, *row] if with_namespace else row)
    print_table(rows)
    return EXIT_OK


COMMAND = Subcommand(
    name="history",
    help="list local runs, newest first",
    description=__doc__ or "",
    add_arguments=add_arguments,
    handler=handle,
)
