"""``szal logs RUN [STEP] [-f]``: the output of a cluster run's step pods.

Read through the API server (``pods/log``, as ``kubectl logs``), so it needs
the same RBAC and nothing else. With STEP: that step's latest attempt,
printed as it is (``--attempt N`` for another one). Without: every step
that has a pod, in the run's order, each line prefixed ``[step]``. ``-f``
follows: with STEP until its pod ends; without, every step's pod as it
starts (a watch on the run's pods) until the run ended and every followed
stream closed. A missing run or step, or a step without a pod yet, is an
error naming it (exit 1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from szal.cli.cluster_api import (
    TERMINAL,
    Cluster,
    ClusterError,
    JsonDict,
    add_cluster_arguments,
    latest_pods,
    phase_of,
    pod_labels,
    run_cluster_command,
)
from szal.cli.commanding import EXIT_OK, Subcommand


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="the WorkflowRun's name")
    parser.add_argument("step", metavar="STEP", nargs="?", help="one step (default: all)")
    parser.add_argument("-f", "--follow", action="store_true", help="stream new output")
    parser.add_argument("--attempt", type=int, metavar="N", help="with STEP: attempt N")
    add_cluster_arguments(parser)


def _started(pod: JsonDict) -> bool:
    """Whether the step container ran (so the kubelet has a log to give)."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        state = status.get("state") or {}
        if state.get("running") or state.get("terminated"):
            return True
    return False


def _step_order(run: JsonDict) -> list[str]:
    from szal.cli.cluster_api import run_view

    workflow, state = run_view(run)
    if workflow is not None:
        return [s.name for s in workflow.steps]
    return list(state.steps)


async def _print_log(cluster: Cluster, pod: JsonDict, prefix: str, follow: bool) -> None:
    from szal.runners.kubernetes.client import core_path

    name = pod["metadata"]["name"]
    params = {"container": "step"}
    if follow:
        params["follow"] = "true"
    path = core_path(cluster.namespace, "pods", name, subresource="log")
    async with cluster.client.stream(path, params=params) as body:
        pending = b""
        async for chunk in body.iter_any():
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                sys.stdout.write(prefix + line.decode(errors="replace") + "\n")
            sys.stdout.flush()
        if pending:
            sys.stdout.write(prefix + pending.decode(errors="replace") + "\n")
            sys.stdout.flush()


async def _follow_all(cluster: Cluster, run_name: str, order: list[str]) -> None:
    """Every step's latest pod as it starts, until the run ended and the streams closed."""
    from szal.runners.kubernetes.client import ApiError, core_path

    width = max((len(s) for s in order), default=0)
    followed: dict[str, asyncio.Task[None]] = {}

    def start(pod: JsonDict) -> None:
        step = pod_labels(pod).get("szal.dev/step", "")
        key = pod["metadata"]["name"]
        if key in followed or not step or pod_labels(pod).get("szal.dev/rollback") == "true":
            return
        if _started(pod):
            prefix = f"[{step}]".ljust(width + 3)
            followed[key] = asyncio.create_task(_print_log(cluster, pod, prefix, True))

    try:
        while True:
            pods = await cluster.step_pods(run_name)
            for pod in sorted(
                pods,
                key=lambda p: (
                    order.index(pod_labels(p).get("szal.dev/step", ""))
                    if pod_labels(p).get("szal.dev/step") in order
                    else 0
                ),
            ):
                start(pod)
            run = await cluster.get_run(run_name)
            if phase_of(run) in TERMINAL:
                for pod in await cluster.step_pods(run_name):
                    start(pod)
                await asyncio.gather(*followed.values(), return_exceptions=True)
                return
            params = {
                "watch": "true",
                "labelSelector": f"szal.dev/run={run_name}",
                "timeoutSeconds": "30",
            }
            try:
                async with cluster.client.stream(
                    core_path(cluster.namespace, "pods"), params=params, read_timeout=60
                ) as body:
                    async for line in body:
                        if not line.strip():
                            continue
                        event: dict[str, Any] = json.loads(line)
                        if event.get("type") in ("ADDED", "MODIFIED"):
                            start(event["object"])
                        phase = (event.get("object") or {}).get("status", {}).get("phase")
                        if phase in ("Succeeded", "Failed") or event.get("type") == "DELETED":
                            break  # maybe the run's end: re-read it above
            except (ApiError, TimeoutError):
                pass
    finally:
        for task in followed.values():
            task.cancel()


def handle(args: argparse.Namespace) -> int:
    async def body(cluster: Cluster) -> int:
        run = await cluster.get_run(args.run)
        order = _step_order(run)
        pods = await cluster.step_pods(args.run)
        if args.step is not None:
            if args.step not in order:
                known = ", ".join(order) or "none yet"
                raise ClusterError(f"run {args.run!r} has no step {args.step!r} (steps: {known})")
            chosen = latest_pods(
                [p for p in pods if pod_labels(p).get("szal.dev/step") == args.step], args.attempt
            )
            pod = chosen.get(args.step)
            if pod is None:
                which = f"attempt {args.attempt}" if args.attempt else "a pod"
                step_phase = (
                    ((run.get("status") or {}).get("steps") or {})
                    .get(args.step, {})
                    .get("phase", "Pending")
                )
                raise ClusterError(
                    f"step {args.step!r} of run {args.run!r} has no {which} ({step_phase})"
                )
            await _print_log(cluster, pod, "", args.follow)
            return EXIT_OK
        if args.follow:
            await _follow_all(cluster, args.run, order)
            return EXIT_OK
        chosen = latest_pods(pods)
        width = max((len(s) for s in chosen), default=0)
        for step in [s for s in order if s in chosen]:
            if _started(chosen[step]):
                await _print_log(cluster, chosen[step], f"[{step}]".ljust(width + 3), False)
        return EXIT_OK

    if args.attempt is not None and (args.attempt < 1 or args.step is None):
        print("szal: --attempt N needs a STEP and N >= 1", file=sys.stderr)
        return 2
    return run_cluster_command(args, body)


COMMAND = Subcommand(
    name="logs",
    help="print (or follow) the logs of a cluster run's steps",
    description=__doc__ or "",
    add_arguments=add_arguments,
    handler=handle,
)
