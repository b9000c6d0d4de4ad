"""``szal operator``: run the Kubernetes operator (kopf) in this process.

Namespace-scoped by default (``--namespace``, repeatable; without it the
kubeconfig context's namespace), or ``--all-namespaces``. Credentials come
from ``--kubeconfig``, ``$KUBECONFIG``, the in-cluster service account, or
``~/.kube/config``, in that order. SIGINT/SIGTERM stop it gracefully; it is
safe to SIGKILL at any moment (runs resume from their status and pods).
See docs/operator.md for the design and every setting.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from szal.cli.commanding import EXIT_FAILED, EXIT_INVALID, EXIT_OK, Subcommand
from szal.cli.serve_cmd import add_stream_arguments, stream_settings

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

    from szal.runners.kubernetes.settings import OperatorSettings
    from szal.serving.operating import ApiSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="serve runs in this namespace (repeatable; default: the kubeconfig's namespace)",
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="serve runs in every namespace"
    )
    parser.add_argument("--kubeconfig", type=Path, help="kubeconfig file (default: $KUBECONFIG)")
    parser.add_argument("--context", help="kubeconfig context (default: its current-context)")
    parser.add_argument(
        "--history-dsn",
        metavar="DSN",
        default=os.environ.get("SZAL_HISTORY_DSN") or None,
        help="mirror run history to this Postgres URL (postgresql://...; default:"
        " $SZAL_HISTORY_DSN); runs then carry the szal.dev/history finalizer until archived;"
        " default: no mirror",
    )
    parser.add_argument(
        "--history-finalizer-timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="with --history-dsn, how long a finished run waits for its history to be"
        " archived before it shows HistoryArchived=False, and how long a requested deletion"
        " waits before the history finalizer is released anyway (default: 300)",
    )
    hooks = parser.add_argument_group(
        "admission webhooks",
        "Development mode (no --webhook-service): serve on --webhook-host:--webhook-port with a"
        " self-signed certificate and register the webhook configuration. In-cluster mode"
        " (--webhook-service): listen on 0.0.0.0:--webhook-port (default 9443) behind that"
        " Service; the installer owns the webhook configuration; certificates are the"
        " operator's own (--webhook-secret) or cert-manager's (--webhook-cert-dir).",
    )
    hooks.add_argument(
        "--webhook-port",
        type=int,
        metavar="PORT",
        help="serve the admission webhooks (HTTPS) on PORT; default: off (9443 with"
        " --webhook-service)",
    )
    hooks.add_argument(
        "--webhook-host",
        default="127.0.0.1",
        help="development mode: address the API server reaches the webhooks at"
        " (default: 127.0.0.1)",
    )
    hooks.add_argument(
        "--webhook-cert-dir",
        type=Path,
        metavar="DIR",
        help="development mode: where the self-signed certificate is kept (default: a temp"
        " directory); in-cluster mode: a directory holding tls.crt and tls.key (a mounted"
        " cert-manager Secret), served as they are and reloaded when they change",
    )
    hooks.add_argument(
        "--webhook-service",
        metavar="NAME",
        help="in-cluster mode: the webhook Service's name (the certificate names NAME,"
        " NAME.NS, NAME.NS.svc, NAME.NS.svc.cluster.local)",
    )
    hooks.add_argument(
        "--webhook-namespace",
        metavar="NS",
        help="namespace of the webhook Service and Secret (default: $POD_NAMESPACE, else the"
        " credentials' namespace)",
    )
    hooks.add_argument(
        "--webhook-secret",
        metavar="NAME",
        help="in-cluster mode, self-managed certificates: the kubernetes.io/tls Secret holding"
        " the CA and the serving certificate (created if missing, renewed 30 days before"
        " expiry)",
    )
    hooks.add_argument(
        "--webhook-configuration",
        metavar="NAME",
        help="in-cluster mode, self-managed certificates: the ValidatingWebhookConfiguration"
        " whose caBundle is patched at start and after a rotation",
    )
    hooks.add_argument(
        "--webhook-extra-san",
        action="append",
        default=[],
        metavar="HOST",
        help="in-cluster mode, self-managed certificates: also name HOST (a DNS name or an IP"
        " address) in the serving certificate, for a webhook configuration that uses a url"
        " clientConfig (repeatable)",
    )
    hooks.add_argument(
        "--webhook-cert-check-interval",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="in-cluster mode, self-managed certificates: how often the Secret is checked for"
        " expiry and for another replica's rotation (default: 3600)",
    )
    election = parser.add_argument_group(
        "leader election",
        "With --leader-elect only the replica holding the Lease reconciles; every replica"
        " serves the webhook, /metrics, /healthz and /readyz (body: leader or standby).",
    )
    election.add_argument(
        "--leader-elect",
        action="store_true",
        help="elect a leader on a coordination.k8s.io Lease (for more than one replica)",
    )
    election.add_argument(
        "--leader-election-namespace",
        metavar="NS",
        help="namespace of the Lease (default: $POD_NAMESPACE, else the first served"
        " namespace, else default)",
    )
    election.add_argument(
        "--leader-election-lease-name",
        default="szal-operator",
        metavar="NAME",
        help="name of the Lease (default: szal-operator); the identity is $POD_NAME, else"
        " <hostname>_<pid>",
    )
    election.add_argument(
        "--leader-election-lease-duration",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="how long a standby waits after the leader's last renewal (default: 15)",
    )
    election.add_argument(
        "--leader-election-renew-deadline",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long a leader that cannot renew keeps reconciling (default: 10)",
    )
    election.add_argument(
        "--leader-election-retry-period",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="time between renewals and acquisition tries (default: 2)",
    )
    parser.add_argument(
        "--schedules",
        action="store_true",
        help="also run WorkflowSchedules (needs the workflowschedules CRD and RBAC)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve /metrics, /healthz and /readyz on PORT (default: off)",
    )
    parser.add_argument(
        "--metrics-host", default="0.0.0.0", help="address of the metrics server (default: all)"
    )
    api = parser.add_argument_group(
        "API server",
        "With --api-port: the REST API (/api/v1/), run event streams (needs --history-dsn) and"
        " the web UI, authenticated with TokenReview and authorized with SubjectAccessReview"
        " (the operator's account needs create on tokenreviews and subjectaccessreviews).",
    )
    api.add_argument(
        "--api-port", type=int, metavar="PORT", help="serve the API on PORT (default: off)"
    )
    api.add_argument(
        "--api-host", default="0.0.0.0", help="address of the API server (default: all)"
    )
    api.add_argument(
        "--api-no-auth",
        action="store_true",
        help="serve the API to anyone who reaches it, without TokenReview/SubjectAccessReview"
        " (only behind something else that authenticates)",
    )
    api.add_argument(
        "--api-auth-cache-ttl",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long a token's review and an access decision are reused (default: 10)",
    )
    add_stream_arguments(parser, poll_interval=1.0)
    parser.add_argument(
        "--default-image",
        default="busybox:1.36",
        help="image of steps that name none (default: busybox:1.36)",
    )
    parser.add_argument(
        "--status-write-budget",
        type=float,
        default=128 * 1024,
        metavar="BYTES_PER_S",
        help="bytes per second of run objects (64 KiB and larger) the operator's status "
        "writes may send; changes in between are merged, none waits over 10 s, terminal "
        "phases go at once; 0: write every change at once (default: 131072)",
    )
    parser.add_argument(
        "--pod-creation-rate",
        type=float,
        default=50.0,
        metavar="PER_SECOND",
        help="Pod/Job creations per second for the whole operator, a token bucket;"
        " 0: unlimited (default: 50)",
    )
    parser.add_argument(
        "--pod-creation-burst",
        type=int,
        default=100,
        metavar="N",
        help="creations allowed at once before --pod-creation-rate applies (default: 100)",
    )
    parser.add_argument(
        "--step-started-events",
        action="store_true",
        help="also post a StepStarted Event per attempt (one more API write per step)",
    )
    parser.add_argument("--no-events", action="store_true", help="post no Kubernetes Events")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")


def _settings(args: argparse.Namespace) -> OperatorSettings:
    """The operator's settings from the flags; ValueError names a bad combination."""
    from szal.runners.kubernetes.coalescing import CoalescingSettings
    from szal.runners.kubernetes.electing import ElectionSettings
    from szal.runners.kubernetes.events import EventSettings
    from szal.runners.kubernetes.runtime import ReconcilerSettings
    from szal.runners.kubernetes.settings import OperatorSettings

    if args.status_write_budget < 0:
        raise ValueError("--status-write-budget must be 0 or more bytes per second")

    if args.webhook_service and not (args.webhook_secret or args.webhook_cert_dir):
        raise ValueError(
            "--webhook-service needs --webhook-secret (self-managed certificates)"
            " or --webhook-cert-dir (cert-manager)"
        )
    for flag in ("webhook_secret", "webhook_configuration"):
        if getattr(args, flag) and not args.webhook_service:
            raise ValueError(f"--{flag.replace('_', '-')} needs --webhook-service")
    if args.pod_creation_rate < 0:
        raise ValueError(f"--pod-creation-rate {args.pod_creation_rate:g}: must not be negative")
    if args.pod_creation_burst < 1:
        raise ValueError(f"--pod-creation-burst {args.pod_creation_burst}: must be at least 1")
    election = None
    if args.leader_elect:
        election = ElectionSettings(
            namespace=args.leader_election_namespace or "",
            name=args.leader_election_lease_name,
            lease_duration=args.leader_election_lease_duration,
            renew_deadline=args.leader_election_renew_deadline,
            retry_period=args.leader_election_retry_period,
        )
    webhook_port = args.webhook_port
    if webhook_port is None and args.webhook_service:
        webhook_port = 9443
    return OperatorSettings(
        namespaces=tuple(args.namespace),
        clusterwide=args.all_namespaces,
        kubeconfig=args.kubeconfig,
        context=args.context,
        history_dsn=args.history_dsn,
        webhook_port=webhook_port,
        webhook_host=args.webhook_host,
        webhook_cert_dir=args.webhook_cert_dir,
        webhook_service=args.webhook_service,
        webhook_namespace=args.webhook_namespace,
        webhook_secret=args.webhook_secret,
        webhook_configuration=args.webhook_configuration,
        webhook_extra_sans=tuple(args.webhook_extra_san),
        webhook_cert_check_interval=args.webhook_cert_check_interval,
        leader_election=election,
        metrics_port=args.metrics_port,
        schedules=args.schedules,
        metrics_host=args.metrics_host,
        events=EventSettings(enabled=not args.no_events, step_started=args.step_started_events),
        reconciler=ReconcilerSettings(
            default_image=args.default_image,
            history_finalizer_timeout=args.history_finalizer_timeout,
            coalescing=CoalescingSettings(budget=args.status_write_budget),
            pod_creation_rate=args.pod_creation_rate or None,
            pod_creation_burst=args.pod_creation_burst,
        ),
    )


def _api_settings(args: argparse.Namespace) -> ApiSettings | None:
    """The API server's settings, or None without --api-port; ValueError names a bad flag."""
    from szal.serving.operating import ApiSettings

    if args.api_port is None:
        return None
    if not 0 < args.api_port <= 65535:
        raise ValueError(f"--api-port {args.api_port}: not a TCP port")
    if args.api_auth_cache_ttl < 0:
        raise ValueError("--api-auth-cache-ttl must not be negative")
    return ApiSettings(
        port=args.api_port,
        host=args.api_host,
        auth=not args.api_no_auth,
        auth_cache_ttl=args.api_auth_cache_ttl,
        streams=stream_settings(args),
    )


async def _serve(
    args: argparse.Namespace, settings: OperatorSettings, api: ApiSettings | None
) -> None:
    from szal.runners.kubernetes.operator import Operator
    from szal.runners.kubernetes.runtime import HistorySink

    async with contextlib.AsyncExitStack() as stack:
        store = None
        if args.history_dsn:
            from szal.history.open import open_store

            store = open_store(args.history_dsn)
            stack.push_async_callback(store.close)
        mirrored = store
        hub = None
        if api is not None:
            from szal.runners.kubernetes.client import load_credentials
            from szal.runners.kubernetes.metrics import check_free
            from szal.serving.notifying import NotifyingStore
            from szal.serving.operating import api_server

            check_free(api.host, api.port, "--api-port")
            namespaces = () if args.all_namespaces else settings.namespaces
            if not namespaces and not args.all_namespaces:
                default = load_credentials(args.kubeconfig, args.context).default_namespace
                namespaces = (default or "default",)
            served = await stack.enter_async_context(
                api_server(api, load_credentials(args.kubeconfig, args.context), namespaces, store)
            )
            hub = served.hub
            if store is not None and hub is not None:
                mirrored = NotifyingStore(store, hub)
        from szal.serving.metrics import RunMetrics, StreamCollector, operator_observer

        run_metrics = RunMetrics()
        collectors: list[Collector] = [run_metrics]
        if hub is not None:
            collectors.append(StreamCollector(hub))
        history: HistorySink | None = None
        if mirrored is not None:
            from szal.history.mirror import HistoryMirror
            from szal.runners.kubernetes.archiving import MirrorSink

            mirror = HistoryMirror(mirrored)
            mirror.start()
            stack.push_async_callback(mirror.close)
            history = MirrorSink(mirror)
        observer = operator_observer(run_metrics) if settings.metrics_port is not None else None
        await Operator(settings, history=history, observer=observer, collectors=collectors).run()


def handle(args: argparse.Namespace) -> int:
    from szal.runners.kubernetes.client import CredentialsError
    from szal.runners.kubernetes.metrics import PortUnavailable

    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        logging.getLogger("kopf").setLevel(max(level, logging.WARNING))
    try:
        settings = _settings(args)
        api = _api_settings(args)
    except ValueError as error:
        print(f"szal operator: {error}", file=sys.stderr)
        return EXIT_INVALID
    try:
        asyncio.run(_serve(args, settings, api))
    except CredentialsError as error:
        print(f"szal operator: {error}", file=sys.stderr)
        return EXIT_INVALID
    except PortUnavailable as error:
        print(f"szal operator: {error}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


COMMAND = Subcommand(
    name="operator",
    help="run the Kubernetes operator",
    description=__doc__ or "",
    add_arguments=add_arguments,
    handler=handle,
)
