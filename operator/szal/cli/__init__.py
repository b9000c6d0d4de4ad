"""The ``szal`` command: one entry point, one module per subcommand.

``main()`` builds an argparse parser from :data:`SUBCOMMANDS`, a plain list.
To add a subcommand, write ``szal/cli/<name>_cmd.py`` exposing
``COMMAND = Subcommand(...)`` (see :mod:`szal.cli.commanding`), then add one
import and one list entry below. Keep a subcommand module cheap to import
(the parser imports them all on every invocation): import heavy things
(kopf, the runners) inside its handler.

Exit codes are shared by all subcommands: ``EXIT_OK`` (0, success),
``EXIT_FAILED`` (1, the run ended in a phase other than Succeeded, or a
lookup failed), ``EXIT_INVALID`` (2, invalid input; the message names the
file, step and field), and 128 + signal number after SIGINT (130) or
SIGTERM (143).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from szal.cli import (
    cluster_completion_cmd,
    cluster_control_cmd,
    cluster_logs_cmd,
    cluster_retry_cmd,
    cluster_runs_cmd,
    cluster_submit_cmd,
    crds_cmd,
    history_cmd,
    operator_cmd,
    run_cmd,
    serve_cmd,
    show_cmd,
    validate_cmd,
)
from szal.cli.commanding import EXIT_FAILED, EXIT_INVALID, EXIT_OK, Subcommand

__all__ = ["EXIT_FAILED", "EXIT_INVALID", "EXIT_OK", "SUBCOMMANDS", "Subcommand", "main"]

SUBCOMMANDS: list[Subcommand] = [
    run_cmd.COMMAND,
    validate_cmd.COMMAND,
    history_cmd.COMMAND,
    show_cmd.COMMAND,
    serve_cmd.COMMAND,
    operator_cmd.COMMAND,
    crds_cmd.COMMAND,
    # The cluster: WorkflowRuns through the API server (also as `kubectl szal`).
    cluster_submit_cmd.COMMAND,
    cluster_runs_cmd.LIST,
    cluster_runs_cmd.GET,
    cluster_logs_cmd.COMMAND,
    *cluster_control_cmd.COMMANDS,
    cluster_retry_cmd.COMMAND,
    cluster_completion_cmd.COMMAND,
]


def build_parser() -> argparse.ArgumentParser:
    from szal import __version__

    parser = argparse.ArgumentParser(
        prog="szal",
        description="Szál: workflows on Kubernetes, or locally with `szal run`.",
    )
    parser.add_argument("--version", action="version", version=f"szal {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in SUBCOMMANDS:
        sub = commands.add_parser(
            command.name,
            help=command.help,
            description=command.description,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_arguments(sub)
        sub.set_defaults(handler=command.handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: the process's) and run the subcommand; return its exit code."""
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["__complete"]:  # the completion scripts' hidden entry
        return cluster_completion_cmd.complete_main(words[1:])
    parser = build_parser()
    args = parser.parse_args(words)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        # Ctrl-C outside a run (a run handles SIGINT itself and exits 130 too).
        print("szal: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `szal history | head`: not an error worth a traceback.
        sys.stderr.close()
        return EXIT_OK
