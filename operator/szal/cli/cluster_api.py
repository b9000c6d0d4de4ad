"""What the cluster commands share: connecting, finding runs, and clear errors.

Who calls it: the ``cluster_*_cmd`` modules (``szal submit|list|get|logs|
cancel|suspend|resume|delete``) and shell completion. They run as ``szal``
and as the kubectl plugin ``kubectl-szal`` (the same entry point).

Decisions:

* **The kube context decides by default**, as for kubectl: credentials
  from :mod:`szal.runners.kubernetes.credentials` (``--kubeconfig``, else
  ``$KUBECONFIG``, in-cluster, ``~/.kube/config``; ``--context``), the
  namespace from ``-n``, else the context's, else ``default``.
* **Errors say what is wrong, not what failed**: a missing run names it
  and its namespace; a 404 on the group itself means the CRDs are not
  installed (and says how to install them); 401/403 quote the API server;
  an unreachable server names its URL. Exit codes as for local commands:
  1 for a lookup or cluster failure, 2 for invalid input (a bad kubeconfig
  or context, a manifest the API server refuses as invalid).
* A run's tree is drawn from its status alone: ``status.pinnedSpec`` gives
  the workflow (as the operator resolved it), ``status`` the step states.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from szal.cli.commanding import EXIT_FAILED, EXIT_INVALID, EXIT_OK

if TYPE_CHECKING:
    from szal.engine.state import RunState
    from szal.engine.workflow import ResolvedWorkflow
    from szal.runners.kubernetes.client import ApiClient

JsonDict = dict[str, Any]
GROUP_VERSION = "szal.dev/v1alpha1"
RUNS = "workflowruns"
WORKFLOWS = "workflows"
TERMINAL = frozenset({"Succeeded", "Failed", "RolledBack", "Cancelled"})
INSTALL_HINT = "install them with `szal crds | kubectl apply -f -`"


class ClusterError(Exception):
    """A message for the user and the exit code that goes with it."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def add_cluster_arguments(parser: argparse.ArgumentParser, *, all_namespaces: bool = False) -> None:
    """``--kubeconfig``, ``--context``, ``-n`` (and ``-A`` where it makes sense)."""
    group = parser.add_argument_group("cluster")
    group.add_argument("--kubeconfig", metavar="PATH", help="kubeconfig (default: as kubectl)")
    group.add_argument("--context", metavar="NAME", help="kubeconfig context (default: current)")
    group.add_argument(
        "-n", "--namespace", metavar="NS", help="namespace (default: the context's, else default)"
    )
    if all_namespaces:
        group.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")


@dataclass
class Cluster:
    """A connected client and the namespace the command works in."""

    client: ApiClient
    namespace: str

    def path(self, plural: str, name: str | None = None) -> str:
        from szal.runners.kubernetes.client import group_path

        return group_path(GROUP_VERSION, self.namespace, plural, name)

    async def not_found(self, what: str) -> ClusterError:
        """The right message for a 404: the object is missing, or the CRDs are."""
        from szal.runners.kubernetes.client import ApiError
        from szal.runners.kubernetes.discovering import served_resources

        missing = ClusterError(f"no {what} in namespace {self.namespace}")
        try:
            plurals = await served_resources(self.client)
        except ApiError:
            return missing  # the group is unknown: say what was asked for
        if plurals is None:
            return ClusterError(
                f"the szal.dev CRDs are not installed in this cluster; {INSTALL_HINT}"
            )
        if what.split()[0] == "run" and RUNS not in plurals:
            return ClusterError(f"the WorkflowRun CRD is not installed; {INSTALL_HINT}")
        return missing

    async def get_run(self, name: str) -> JsonDict:
        from szal.runners.kubernetes.client import NotFound

        try:
            return await self.client.get(self.path(RUNS, name))
        except NotFound:
            raise await self.not_found(f"run {name!r}") from None

    async def step_pods(self, run: str) -> list[JsonDict]:
        """The run's step pods (every attempt, rollbacks too)."""
        from szal.runners.kubernetes.client import core_path

        return await self.client.list(
            core_path(self.namespace, "pods"), label_selector=f"szal.dev/run={run}"
        )

    async def list_runs(
        self, *, all_namespaces: bool = False, selector: str | None = None
    ) -> list[JsonDict]:
        from szal.runners.kubernetes.client import NotFound, cluster_path

        path = cluster_path(GROUP_VERSION, RUNS) if all_namespaces else self.path(RUNS)
        try:
            return await self.client.list(path, label_selector=selector)
        except NotFound:
            raise await self.not_found("runs") from None


async def connect(args: argparse.Namespace) -> Cluster:
    """Credentials and namespace from the command's options (see the module docstring)."""
    from szal.runners.kubernetes.client import ApiClient, RetrySettings
    from szal.runners.kubernetes.credentials import CredentialsError, load_credentials
    from szal.spec import BackoffSettings

    try:
        creds = await load_credentials(args.kubeconfig, args.context)
    except CredentialsError as error:
        raise ClusterError(f"no cluster to talk to: {error}", EXIT_INVALID) from None
    # A person is waiting: fail in seconds, not after the operator's patient retries.
    backoff = BackoffSettings("Exponential", delay=0.2, max_delay=1.0)
    retry = RetrySettings(attempts=3, backoff=backoff, request_timeout=15.0)
    client = ApiClient(creds, retry=retry)
    return Cluster(client, args.namespace or creds.default_namespace or "default")


def run_cluster_command(args: argparse.Namespace, body: Callable[[Cluster], Awaitable[int]]) -> int:
    """Connect, run ``body``, close; turn every expected failure into a message and a code."""

    async def main() -> int:
        cluster = await connect(args)
        try:
            return await body(cluster)
        finally:
            await cluster.client.close()

    from szal.runners.kubernetes.client import ApiError, Forbidden, Invalid, Unauthorized

    try:
        return asyncio.run(main())
    except ClusterError as error:
        print(f"szal: {error.message}", file=sys.stderr)
        return error.code
    except Forbidden as error:
        print(f"szal: permission denied: {error.message}", file=sys.stderr)
        return EXIT_FAILED
    except Unauthorized as error:
        print(f"szal: the API server refused the credentials: {error.message}", file=sys.stderr)
        return EXIT_FAILED
    except Invalid as error:
        print(f"szal: refused as invalid: {error.message}", file=sys.stderr)
        return EXIT_INVALID
    except ApiError as error:
        if error.reason == "Unreachable":
            print(f"szal: cannot reach the API server: {error.message}", file=sys.stderr)
        else:
            print(f"szal: {error}", file=sys.stderr)
        return EXIT_FAILED


# --- reading a run ------------------------------------------------------------


def parse_time(value: Any) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def age(obj: Mapping[str, Any], now: float | None = None) -> str:
    from szal.cli.history_cmd import age as format_age

    created = parse_time((obj.get("metadata") or {}).get("creationTimestamp"))
    if created is None:
        return ""
    return format_age(max(0.0, (now or time.time()) - created))


def run_view(obj: Mapping[str, Any]) -> tuple[ResolvedWorkflow | None, RunState]:
    """The run's workflow (from its pinned spec; None before the operator pinned it)
    and its state."""
    from szal.engine.state import RunState
    from szal.engine.workflow import resolve_workflow
    from szal.runners.kubernetes.pinning import decode_pinned

    status = dict(obj.get("status") or {})
    state = RunState.from_status(status) if status.get("phase") else RunState.from_status(None)
    pinned = status.get("pinnedSpec")
    if not isinstance(pinned, str) or not pinned:
        return None, state
    name, spec, params = decode_pinned(pinned)
    return resolve_workflow(spec, name=name, params=params, validate=False), state


def pod_labels(pod: JsonDict) -> dict[str, str]:
    return dict((pod.get("metadata") or {}).get("labels") or {})


def _attempt(pod: JsonDict) -> int:
    try:
        return int(pod_labels(pod).get("szal.dev/attempt", "0"))
    except ValueError:
        return 0


def latest_pods(pods: list[JsonDict], attempt: int | None = None) -> dict[str, JsonDict]:
    """Each step's pod of its latest (or the given) attempt; rollbacks left out."""
    chosen: dict[str, JsonDict] = {}
    for pod in pods:
        labels = pod_labels(pod)
        step = labels.get("szal.dev/step")
        if not step or labels.get("szal.dev/rollback") == "true":
            continue
        if attempt is not None and _attempt(pod) != attempt:
            continue
        if step not in chosen or _attempt(pod) > _attempt(chosen[step]):
            chosen[step] = pod
    return chosen


def phase_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("status") or {}).get("phase") or "Pending")


def now_utc() -> str:
    return datetime.now(UTC).isoformat()


__all__ = [
    "EXIT_OK",
    "Cluster",
    "ClusterError",
    "add_cluster_arguments",
    "connect",
    "run_cluster_command",
]
