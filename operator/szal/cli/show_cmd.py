"""``szal show RUN``: one run from local history, with every step attempt.

RUN is a run's name (the newest run of that name), its uid, or a unique
prefix of at least 6 characters of its uid (as ``szal run`` and
``szal history`` print it). ``--logs STEP`` prints the step's captured
output (stdout and stderr interleaved) instead: the last attempt, or
``--attempt N``; ``--rollback`` prints its compensation's output.
``--json`` prints the stored run, attempts and events as JSON (field names
as in :mod:`szal.history.store`); a missing run exits 1.

A store the operator mirrors cluster runs into holds several namespaces: a
name used in more than one is refused (exit 2) with the candidates listed,
and ``-n NAMESPACE`` picks one. A cluster run's step output is not in the
history store; ``--logs`` says where it is (``szal logs``, the pod's logs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING

from szal.cli.commanding import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    Subcommand,
    open_history,
    redacted,
)

if TYPE_CHECKING:
    from szal.history.store import RunDetail


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="run name, uid, or uid prefix")
    parser.add_argument(
        "-n", "--namespace", metavar="NAMESPACE", help="the run's namespace, for a name"
    )
    parser.add_argument(
        "--db",
        metavar="PATH|URL",
        help="history store: a SQLite path or a postgres:// URL (default: as szal run)",
    )
    parser.add_argument("--json", action="store_true", help="print the run record as JSON")
    parser.add_argument("--logs", metavar="STEP", help="print the captured output of STEP")
    parser.add_argument("--attempt", type=int, metavar="N", help="with --logs: attempt N")
    parser.add_argument(
        "--rollback", action="store_true", help="with --logs: the step's compensation"
    )


def _clock(value: float | None) -> str:
    return "" if value is None else datetime.fromtimestamp(value).strftime("%H:%M:%S.%f")[:-3]


def _where_logs_are(detail: RunDetail, step: str, attempt: int | None) -> str:
    """The note for a step that ran but has no stored output."""
    from szal.runners.kubernetes.pods import attempt_name

    run = detail.run
    chosen = attempt or max(a.attempt for a in detail.attempts if a.step == step)
    pod = attempt_name(run.name, step, chosen)
    return (
        f"szal: no output stored for step {step!r} (attempt {chosen}) of run"
        f" {run.namespace}/{run.name}: the step printed nothing, or the operator ran it and"
        f" its output is in the Pod's logs: szal logs {run.name} {step} -n {run.namespace}"
        f" (kubectl logs {pod} -n {run.namespace})"
    )


def handle(args: argparse.Namespace) -> int:
    if args.attempt is not None and args.attempt < 1:
        print(f"szal: --attempt {args.attempt}: must be at least 1", file=sys.stderr)
        return EXIT_INVALID
    return asyncio.run(_show(args))


async def _show(args: argparse.Namespace) -> int:
    from szal.cli.history_cmd import print_table, shown_phase
    from szal.history.sqlite import default_db_path
    from szal.history.store import RunQuery, SchemaTooNew
    from szal.spec.durations import format_duration

    target = args.db or default_db_path()
    store, code = await open_history(target)
    if store is None:
        return code
    try:
        if args.namespace is None:
            same_name = await store.list_runs(RunQuery(name=args.run, limit=200))
            namespaces = sorted({r.namespace for r in same_name.runs})
            if len(namespaces) > 1:
                print(
                    f"szal: run name {args.run!r} is used in {len(namespaces)} namespaces;"
                    " pick one with -n: " + ", ".join(f"{ns}/{args.run}" for ns in namespaces),
                    file=sys.stderr,
                )
                return EXIT_INVALID
        detail = await store.get_run(args.run, args.namespace)
        if detail is None:
            print(f"szal: no run {args.run!r} in {redacted(target)}", file=sys.stderr)
            return EXIT_FAILED
        uid = detail.run.uid
        if args.logs:
            if args.rollback:
                text = await store.get_rollback_log(uid, args.logs)
            else:
                text = await store.get_log(uid, args.logs, args.attempt)
            steps = {a.step for a in detail.attempts}
            if not text and args.logs in steps:
                # Local runs store what a step printed; the operator leaves it in the Pod.
                print(_where_logs_are(detail, args.logs, args.attempt), file=sys.stderr)
                return EXIT_OK
            if not text and args.logs not in steps:
                print(
                    f"szal: run {detail.run.name} has no step {args.logs!r} that ran",
                    file=sys.stderr,
                )
                return EXIT_FAILED
            sys.stdout.write(text)
            return EXIT_OK
    except SchemaTooNew as exc:
        print(f"szal: {exc}", file=sys.stderr)
        return EXIT_INVALID
    finally:
        await store.close()

    if args.json:
        json.dump(
            {
                "run": asdict(detail.run),
                "attempts": [asdict(a) for a in detail.attempts],
                "events": [asdict(e) for e in detail.events],
            },
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
        return EXIT_OK

    run = detail.run
    took = (
        format_duration(run.finished_at - run.started_at)
        if run.started_at is not None and run.finished_at is not None
        else ""
    )
    print(f"Run:       {run.name}  ({run.uid})")
    print(f"Workflow:  {run.workflow} v{run.workflow_version}  ({run.spec_hash})")
    print(f"Phase:     {shown_phase(run.phase, run.interrupted)}  {run.progress or ''}")
    if run.params:
        print(f"Params:    {json.dumps(run.params, sort_keys=True)}")
    print(f"Started:   {_clock(run.started_at)}   Finished: {_clock(run.finished_at)}   {took}")
    if run.message:
        print(f"Message:   {run.message}")
    if run.interrupted:
        print("Note:      the szal run process that ran this is gone; the run did not finish")
    if detail.attempts:
        print()
        rows = [["STEP", "ATTEMPT", "PHASE", "EXIT", "STARTED", "DURATION", "MESSAGE"]]
        for a in detail.attempts:
            rows.append(
                [
                    a.step + (" (rollback)" if a.rollback else ""),
                    str(a.attempt),
                    a.phase,
                    "" if a.exit_code is None else str(a.exit_code),
                    _clock(a.started_at),
                    format_duration(a.finished_at - a.started_at)
                    if a.started_at is not None and a.finished_at is not None
                    else "",
                    (a.message or "")
                    + (f"  outputs={json.dumps(a.outputs, sort_keys=True)}" if a.outputs else ""),
                ]
            )
        print_table(rows)
    skipped = [
        e for e in detail.events if e.step and e.attempt == 0 and e.new in ("Skipped", "Cancelled")
    ]
    if skipped:
        print()
        for e in skipped:
            print(f"{e.step}: {e.new}" + (f" ({e.message})" if e.message else ""))
    return EXIT_OK


COMMAND = Subcommand(
    name="show",
    help="show one run: steps, attempts, timings; --logs STEP for its output",
    description=__doc__ or "",
    add_arguments=add_arguments,
    handler=handle,
)
