"""``szal cancel|suspend|resume|delete RUN``: change a WorkflowRun on the cluster.

Cancel, suspend and resume set the run's ``spec.cancel`` / ``spec.suspend``
with one merge patch, exactly what ``kubectl patch`` would write: the
operator does the rest (stops running steps; launches nothing new until
resumed). A run already finished is left alone and says so (exit 1 for
cancel, suspend and resume: nothing could change). ``delete`` deletes the
run (its pods go with it, through their ownerReferences). Several RUNs may
be given; a missing one is an error naming it (exit 1). A cancelled run
still runs its finally steps (``spec.finally``); ``cancel --skip-finally``
also sets ``spec.skipFinally`` so they are not run (or are stopped).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from szal.cli.cluster_api import (
    RUNS,
    TERMINAL,
    Cluster,
    add_cluster_arguments,
    phase_of,
    run_cluster_command,
)
from szal.cli.commanding import EXIT_FAILED, EXIT_OK, Subcommand

PATCHES = {
    "cancel": ({"spec": {"cancel": True}}, "cancelled"),
    "suspend": ({"spec": {"suspend": True}}, "suspended"),
    "resume": ({"spec": {"suspend": False}}, "resumed"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", metavar="RUN", nargs="+", help="WorkflowRun name(s)")
    add_cluster_arguments(parser)


def add_cancel_arguments(parser: argparse.ArgumentParser) -> None:
    add_arguments(parser)
    parser.add_argument(
        "--skip-finally",
        action="store_true",
        help="do not run the run's finally steps (stop them if they run)",
    )


def patch_for(verb: str, args: argparse.Namespace) -> tuple[dict[str, dict[str, bool]], str]:
    """The merge patch of ``verb`` and the word that says it was done."""
    patch, done = PATCHES[verb]
    if verb == "cancel" and getattr(args, "skip_finally", False):
        return {"spec": {"cancel": True, "skipFinally": True}}, done
    return patch, done


def _handler(verb: str) -> Callable[[argparse.Namespace], int]:
    def handle(args: argparse.Namespace) -> int:
        async def body(cluster: Cluster) -> int:
            from szal.runners.kubernetes.client import NotFound

            code = EXIT_OK
            for name in args.runs:
                if verb == "delete":
                    try:
                        await cluster.client.delete(cluster.path(RUNS, name), resource=RUNS)
                    except NotFound:
                        raise await cluster.not_found(f"run {name!r}") from None
                    print(f"workflowrun.szal.dev/{name} deleted")
                    continue
                run = await cluster.get_run(name)
                if phase_of(run) in TERMINAL:
                    print(f"szal: run {name!r} already ended ({phase_of(run)})", file=sys.stderr)
                    code = EXIT_FAILED
                    continue
                patch, done = patch_for(verb, args)
                await cluster.client.merge_patch(cluster.path(RUNS, name), patch, resource=RUNS)
                print(f"workflowrun.szal.dev/{name} {done}")
            return code

        return run_cluster_command(args, body)

    return handle


def _command(verb: str, help: str) -> Subcommand:
    return Subcommand(
        name=verb,
        help=help,
        description=__doc__ or "",
        add_arguments=add_cancel_arguments if verb == "cancel" else add_arguments,
        handler=_handler(verb),
    )


COMMANDS = [
    _command("cancel", "cancel a WorkflowRun on the cluster (no rollback; finally steps run)"),
    _command("suspend", "suspend a WorkflowRun on the cluster (launch nothing new)"),
    _command("resume", "resume a suspended WorkflowRun on the cluster"),
    _command("delete", "delete a WorkflowRun (and its pods) from the cluster"),
]
