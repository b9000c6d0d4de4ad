"""``szal validate FILE...``: check workflow files without running anything.

Every problem in every file is printed (one per line, naming file, step and
field); exit 0 when all files are valid, 2 otherwise. Local GPU capacity is
not checked here (a manifest meant for a cluster is valid on a laptop
without GPUs); ``szal run`` checks it before starting.
"""

from __future__ import annotations

import argparse
import sys

from szal.cli.commanding import EXIT_INVALID, EXIT_OK, Subcommand


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="Workflow/WorkflowRun YAML files")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only problems")


def handle(args: argparse.Namespace) -> int:
    from szal.cli.loading import validate_file

    status = EXIT_OK
    for path in args.files:
        problems = validate_file(path)
        if problems:
            status = EXIT_INVALID
            for problem in problems:
                print(problem, file=sys.stderr)
        elif not args.quiet:
            print(f"{path}: valid")
    return status


COMMAND = Subcommand(
    name="validate",
    help="check workflow files (exit 0 valid, 2 invalid)",
    description=__doc__ or "",
    add_arguments=add_arguments,
    handler=handle,
)
