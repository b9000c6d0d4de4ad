"""``szal submit``: start a WorkflowRun on the cluster.

``szal submit FILE`` runs what ``szal run FILE`` would run locally, on the
cluster: the file is loaded and validated the same way (errors name the
file, step and field; exit 2) and submitted as a WorkflowRun carrying the
workflow inline (``spec.workflow``), so the cluster needs no Workflow
object. A file holding only a WorkflowRun whose ``workflowRef`` names a
Workflow not in the file is submitted as it is (that Workflow must be on
the cluster). ``szal submit --from workflow/NAME`` runs the cluster's
Workflow NAME (``spec.workflowRef``). ``-p name=value`` sets params
(checked against the workflow's declared ones, converted like their
defaults); ``--name`` names the run, ``--generate-name`` asks the API server
for a unique name from the file's (runs from ``--from`` or with no name get
``<workflow>-<random>``). ``--watch`` follows the run until it ends, as
``szal get --watch``, and exits 0 only when it Succeeded.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from szal.cli.cluster_api import (
    RUNS,
    WORKFLOWS,
    Cluster,
    ClusterError,
    JsonDict,
    add_cluster_arguments,
    run_cluster_command,
)
from szal.cli.commanding import EXIT_INVALID, Subcommand

FROM_KINDS = ("workflow", "workflows", "workflow.szal.dev", "workflows.szal.dev")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", nargs="?", help="workflow file ('-': stdin)")
    parser.add_argument(
        "--from", dest="source", metavar="workflow/NAME", help="a Workflow on the cluster"
    )
    parser.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a param (repeatable)",
    )
    parser.add_argument("--name", metavar="NAME", help="the run's name")
    parser.add_argument("--generate-name", action="store_true", help="a unique name from the run's")
    parser.add_argument("-w", "--watch", action="store_true", help="follow the run until it ends")
    add_cluster_arguments(parser)


def _workflow_name(source: str) -> str:
    kind, sep, name = source.partition("/")
    if not sep or kind.lower() not in FROM_KINDS or not name:
        raise ClusterError(f"--from {source}: expected workflow/NAME", EXIT_INVALID)
    return name


def _metadata(name: str | None, fallback: str, generate: bool) -> JsonDict:
    if name and not generate:
        return {"name": name}
    return {"generateName": f"{name or fallback}-"}


def _run(metadata: JsonDict, spec: JsonDict) -> JsonDict:
    return {
        "apiVersion": "szal.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": metadata,
        "spec": spec,
    }


def _checked_params(
    spec: Any, given: dict[str, Any], options: dict[str, str], source: str
) -> dict[str, Any]:
    """``given`` plus the ``-p`` options, converted and validated against ``spec``."""
    from szal.cli.loading import InputError, convert_param
    from szal.engine.validation import validate_run_params

    try:
        merged = dict(given)
        for key, value in options.items():
            merged[key] = convert_param(spec, key, value, source)
    except InputError as error:
        raise ClusterError(str(error), EXIT_INVALID) from None
    _, issues = validate_run_params(spec, merged)
    if issues:
        raise ClusterError("\n".join(f"{source}: {issue}" for issue in issues), EXIT_INVALID)
    return merged


async def _cluster_workflow(cluster: Cluster, name: str) -> Any:
    from szal.engine.migrations import upgrade
    from szal.engine.validation import WorkflowInvalid, parse_workflow
    from szal.runners.kubernetes.client import NotFound

    try:
        doc = await cluster.client.get(cluster.path(WORKFLOWS, name))
    except NotFound:
        raise await cluster.not_found(f"Workflow {name!r}") from None
    try:
        return parse_workflow(upgrade(doc), source=f"Workflow {name}").spec
    except (WorkflowInvalid, ValueError) as error:
        raise ClusterError(
            f"Workflow {name} on the cluster is invalid: {error}", EXIT_INVALID
        ) from None


async def _from_workflow(
    cluster: Cluster, args: argparse.Namespace, options: dict[str, str]
) -> JsonDict:
    name = _workflow_name(args.source)
    spec = await _cluster_workflow(cluster, name)
    params = _checked_params(spec, {}, options, f"Workflow {name}")
    return _run(
        _metadata(args.name, name, args.generate_name),
        {"workflowRef": {"name": name}, "params": params},
    )


async def _from_file(
    cluster: Cluster, args: argparse.Namespace, options: dict[str, str]
) -> JsonDict:
    from szal.cli.loading import InputError, load_file, read_documents

    try:
        documents = read_documents(args.file)
        kinds = [str(d.get("kind")) for d in documents if isinstance(d, dict)]
        if kinds == ["WorkflowRun"]:
            doc = documents[0]
            ref = ((doc.get("spec") or {}).get("workflowRef") or {}).get("name")
            if ref:
                # The Workflow lives on the cluster: check the params against it.
                spec = await _cluster_workflow(cluster, str(ref))
                given = dict((doc.get("spec") or {}).get("params") or {})
                params = _checked_params(spec, given, options, args.file)
                metadata = doc.get("metadata") or {}
                name = args.name or metadata.get("name")
                run_spec = {**doc["spec"], "params": params}
                return _run(
                    {**_labels(metadata), **_metadata(name, str(ref), args.generate_name)}, run_spec
                )
        loaded = load_file(args.file, options)
    except InputError as error:
        raise ClusterError(str(error), EXIT_INVALID) from None
    spec = {"workflow": loaded.definition, "params": loaded.params}
    return _run(
        _metadata(args.name or loaded.run_name, loaded.workflow_name, args.generate_name), spec
    )


def _labels(metadata: JsonDict) -> JsonDict:
    kept = {k: metadata[k] for k in ("labels", "annotations") if metadata.get(k)}
    return kept


def handle(args: argparse.Namespace) -> int:
    from szal.cli.loading import InputError, parse_param_options

    if (args.file is None) == (args.source is None):
        print("szal: submit: give a FILE or --from workflow/NAME (one of them)", file=sys.stderr)
        return EXIT_INVALID
    try:
        options = parse_param_options(args.param)
    except InputError as error:
        print(f"szal: {error}", file=sys.stderr)
        return EXIT_INVALID

    async def body(cluster: Cluster) -> int:
        from szal.cli.cluster_watch import announce_created
        from szal.runners.kubernetes.client import AlreadyExists

        manifest = await (_from_workflow if args.source else _from_file)(cluster, args, options)
        try:
            created = await cluster.client.create(cluster.path(RUNS), manifest, resource=RUNS)
        except AlreadyExists:
            name = manifest["metadata"].get("name")
            raise ClusterError(
                f"run {name!r} already exists in namespace {cluster.namespace}"
                " (--generate-name makes a unique one)"
            ) from None
        name = str(created["metadata"]["name"])
        return await announce_created(cluster, name, args.watch)

    return run_cluster_command(args, body)


COMMAND = Subcommand(
    name="submit",
    help="start a WorkflowRun on the cluster (from a file or a Workflow there)",
    description=__doc__ or "",
    add_arguments=add_arguments,
    handler=handle,
)
