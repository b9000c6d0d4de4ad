"""``szal list`` and ``szal get RUN``: WorkflowRuns on the cluster.

``szal list [-A] [-l SELECTOR] [-o wide|json|yaml|name]`` prints a table
like ``kubectl get workflowruns`` (NAME WORKFLOW PHASE PROGRESS DURATION
AGE; NAMESPACE first with ``-A``; MESSAGE with ``-o wide``).
``szal get RUN`` draws the run's tree as ``szal run`` does for a local run;
``-o wide`` adds each step's pod and exit code, ``-o json|yaml`` prints the
object; ``--watch`` keeps the tree live until the run ends (exit 0 when it
Succeeded, 1 otherwise). Exit 1 for a missing run, 2 for a bad option.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from szal.cli.cluster_api import (
    Cluster,
    JsonDict,
    add_cluster_arguments,
    age,
    phase_of,
    run_cluster_command,
)
from szal.cli.commanding import EXIT_FAILED, EXIT_OK, Subcommand


def print_object(doc: Any, output: str) -> None:
    """``-o json|yaml``."""
    import yaml

    if output == "json":
        print(json.dumps(doc, indent=2))
    else:
        print(yaml.safe_dump(doc, sort_keys=False), end="")


# --- list -----------------------------------------------------------------------


def add_list_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-l", "--selector", metavar="SELECTOR", help="label selector, as kubectl")
    parser.add_argument("-o", "--output", choices=["wide", "json", "yaml", "name"], help="format")
    add_cluster_arguments(parser, all_namespaces=True)


def run_row(obj: JsonDict, *, namespace: bool, wide: bool, now: float) -> list[str]:
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    spec = obj.get("spec") or {}
    workflow = (
        (status.get("workflow") or {}).get("name")
        or (spec.get("workflowRef") or {}).get("name")
        or ""
    )
    row = [str(meta.get("namespace", ""))] if namespace else []
    row += [
        str(meta.get("name", "")),
        str(workflow),
        phase_of(obj)
        + (" (suspended)" if spec.get("suspend") and phase_of(obj) != "Paused" else ""),
        str(status.get("progress") or ""),
        str(status.get("duration") or ""),
        age(obj, now),
    ]
    if wide:
        row.append(str(status.get("message") or ""))
    return row


def handle_list(args: argparse.Namespace) -> int:
    from szal.cli.history_cmd import print_table

    async def body(cluster: Cluster) -> int:
        runs = await cluster.list_runs(all_namespaces=args.all_namespaces, selector=args.selector)
        runs.sort(key=lambda r: (r["metadata"].get("namespace", ""), r["metadata"]["name"]))
        if args.output in ("json", "yaml"):
            print_object({"apiVersion": "v1", "kind": "List", "items": runs}, args.output)
            return EXIT_OK
        if args.output == "name":
            for run in runs:
                print(f"workflowrun.szal.dev/{run['metadata']['name']}")
            return EXIT_OK
        if not runs:
            where = "any namespace" if args.all_namespaces else f"namespace {cluster.namespace}"
            print(f"No runs in {where}.", file=sys.stderr)
            return EXIT_OK
        wide = args.output == "wide"
        header = ["NAMESPACE"] if args.all_namespaces else []
        header += ["NAME", "WORKFLOW", "PHASE", "PROGRESS", "DURATION", "AGE"]
        header += ["MESSAGE"] if wide else []
        now = time.time()
        rows = [run_row(r, namespace=args.all_namespaces, wide=wide, now=now) for r in runs]
        print_table([header, *rows])
        return EXIT_OK

    return run_cluster_command(args, body)


LIST = Subcommand(
    name="list",
    help="list WorkflowRuns on the cluster",
    description=__doc__ or "",
    add_arguments=add_list_arguments,
    handler=handle_list,
)


# --- get ------------------------------------------------------------------------


def add_get_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="the WorkflowRun's name")
    parser.add_argument("-o", "--output", choices=["wide", "json", "yaml"], help="format")
    parser.add_argument("-w", "--watch", action="store_true", help="follow the run until it ends")
    add_cluster_arguments(parser)


def handle_get(args: argparse.Namespace) -> int:
    from rich.console import Console

    from szal.cli.cluster_watch import follow, render_run

    async def body(cluster: Cluster) -> int:
        if args.watch:
            obj = await follow(cluster, args.run)
            return EXIT_OK if phase_of(obj) == "Succeeded" else EXIT_FAILED
        obj = await cluster.get_run(args.run)
        if args.output in ("json", "yaml"):
            print_object(obj, args.output)
            return EXIT_OK
        pods = await cluster.step_pods(args.run) if args.output == "wide" else None
        Console(soft_wrap=True).print(render_run(obj, time.time(), pods))
        return EXIT_OK

    return run_cluster_command(args, body)


GET = Subcommand(
    name="get",
    help="show one WorkflowRun on the cluster as a tree (--watch: live)",
    description=__doc__ or "",
    add_arguments=add_get_arguments,
    handler=handle_get,
)
