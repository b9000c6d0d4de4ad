"""``szal retry RUN``: a new WorkflowRun that keeps RUN's Succeeded steps and runs the rest.

The new run carries RUN's *pinned* spec and params inline (``spec.workflow``,
decoded from ``status.pinnedSpec``: the spec RUN ran, not the Workflow as it
is now) and the annotation ``szal.dev/retry-of: RUN``. The operator, when it
starts the run, reads RUN's status and seeds the new run with its Succeeded
steps (:mod:`szal.runners.kubernetes.retrying`, the rule itself in
:mod:`szal.engine.retrying`). Only a run that ended without succeeding can be
retried (exit 1 otherwise). The new run is named ``<RUN>-retry-<random>``
unless ``--name`` is given; ``--watch`` follows it as ``szal get --watch``.
"""

from __future__ import annotations

import argparse

from szal.cli.cluster_api import (
    RUNS,
    Cluster,
    ClusterError,
    add_cluster_arguments,
    phase_of,
    run_cluster_command,
)
from szal.cli.commanding import Subcommand

RETRY_OF = "szal.dev/retry-of"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="the WorkflowRun to retry")
    parser.add_argument("--name", help="the new run's name (default: <RUN>-retry-<random>)")
    parser.add_argument(
        "--watch", action="store_true", help="follow the new run until it ends (as get --watch)"
    )
    add_cluster_arguments(parser)


def handle(args: argparse.Namespace) -> int:
    async def body(cluster: Cluster) -> int:
        from szal.cli.cluster_watch import announce_created
        from szal.engine.retrying import retry_problem
        from szal.runners.kubernetes.client import AlreadyExists
        from szal.runners.kubernetes.pinning import decode_pinned

        original = await cluster.get_run(args.run)
        problem = retry_problem(args.run, phase_of(original) or None)
        if problem is not None:
            raise ClusterError(problem)
        pinned = (original.get("status") or {}).get("pinnedSpec")
        if not isinstance(pinned, str) or not pinned:
            raise ClusterError(
                f"run {args.run!r} has no pinned spec in its status (it never started)"
            )
        _, spec, params = decode_pinned(pinned)
        metadata: dict[str, object] = {"annotations": {RETRY_OF: args.run}}
        labels = (original.get("metadata") or {}).get("labels")
        if labels:
            metadata["labels"] = labels
        if args.name:
            metadata["name"] = args.name
        else:
            metadata["generateName"] = f"{args.run}-retry-"
        manifest = {
            "apiVersion": "szal.dev/v1alpha1",
            "kind": "WorkflowRun",
            "metadata": metadata,
            "spec": {
                "workflow": spec.model_dump(mode="json", by_alias=True, exclude_none=True),
                "params": params,
            },
        }
        try:
            created = await cluster.client.create(cluster.path(RUNS), manifest, resource=RUNS)
        except AlreadyExists:
            raise ClusterError(
                f"run {args.name!r} already exists in namespace {cluster.namespace}"
            ) from None
        name = str(created["metadata"]["name"])
        return await announce_created(cluster, name, args.watch, f" (retry of {args.run})")

    return run_cluster_command(args, body)


COMMAND = Subcommand(
    name="retry",
    help="re-run a failed WorkflowRun on the cluster, keeping its Succeeded steps",
    description=__doc__ or "",
    add_arguments=add_arguments,
    handler=handle,
)
