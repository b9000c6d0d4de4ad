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
import logging
import os
import sys
from pathlib import Path

from szal.cli.commanding import EXIT_INVALID, EXIT_OK, Subcommand


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
    parser.add_argument(
        "--webhook-port",
        type=int,
        metavar="PORT",
        help="serve the admission webhooks (HTTPS) on PORT and register them; default: off",
    )
    parser.add_argument(
        "--webhook-host",
        default="127.0.0.1",
        help="address the API server reaches the webhooks at (default: 127.0.0.1)",
    )
    parser.add_argument(
        "--webhook-cert-dir",
        type=Path,
        help="where the self-signed webhook certificate is kept (default: a temp directory)",
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
    parser.add_argument(
        "--default-image",
        default="busybox:1.36",
        help="image of steps that name none (default: busybox:1.36)",
    )
    parser.add_argument(
        "--step-started-events",
        action="store_true",
        help="also post a StepStarted Event per attempt (one more API write per step)",
    )
    parser.add_argument("--no-events", action="store_true", help="post no Kubernetes Events")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")


async def _serve(args: argparse.Namespace) -> None:
    from szal.runners.kubernetes.events import EventSettings
    from szal.runners.kubernetes.operator import Operator, OperatorSettings
    from szal.runners.kubernetes.reconciler import HistorySink, ReconcilerSettings

    settings = OperatorSettings(
        namespaces=tuple(args.namespace),
        clusterwide=args.all_namespaces,
        kubeconfig=args.kubeconfig,
        context=args.context,
        history_dsn=args.history_dsn,
        webhook_port=args.webhook_port,
        webhook_host=args.webhook_host,
        webhook_cert_dir=args.webhook_cert_dir,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        events=EventSettings(enabled=not args.no_events, step_started=args.step_started_events),
        reconciler=ReconcilerSettings(
            default_image=args.default_image,
            history_finalizer_timeout=args.history_finalizer_timeout,
        ),
    )
    history: HistorySink | None = None
    mirror = None
    if args.history_dsn:
        from szal.history.mirror import HistoryMirror
        from szal.history.open import open_store
        from szal.runners.kubernetes.archiving import MirrorSink

        mirror = HistoryMirror(open_store(args.history_dsn))
        mirror.start()
        history = MirrorSink(mirror)
    try:
        await Operator(settings, history=history).run()
    finally:
        if mirror is not None:
            await mirror.close()
            await mirror.store.close()


def handle(args: argparse.Namespace) -> int:
    from szal.runners.kubernetes.client import CredentialsError

    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        logging.getLogger("kopf").setLevel(max(level, logging.WARNING))
    try:
        asyncio.run(_serve(args))
    except CredentialsError as error:
        print(f"szal operator: {error}", file=sys.stderr)
        return EXIT_INVALID
    return EXIT_OK


COMMAND = Subcommand(
    name="operator",
    help="run the Kubernetes operator",
    description=__doc__ or "",
    add_arguments=add_arguments,
    handler=handle,
)
