"""``szal serve``: the API, the run streams, /metrics and the web UI over local history.

Serves :func:`szal.serving.app.build_app` over the history store ``szal run``
writes (``--db``, default as ``szal run``) on 127.0.0.1 only: local history
has no authentication, so it is never offered to the network. ``--port 0``
picks a free port; the address is printed on stderr either way. Another
process writes the history, so the streams poll it (``--poll-interval``).
SIGINT/SIGTERM stop it (open streams end; clients resume with Last-Event-ID).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import TYPE_CHECKING

from szal.cli.commanding import EXIT_INVALID, EXIT_OK, Subcommand, open_history

if TYPE_CHECKING:
    from szal.serving.hub import StreamSettings

LOOPBACK = "127.0.0.1"


def add_stream_arguments(parser: argparse.ArgumentParser, *, poll_interval: float) -> None:
    """The stream hub's flags (shared with ``szal operator``)."""
    group = parser.add_argument_group("streams")
    group.add_argument(
        "--max-stream-clients",
        type=int,
        default=1000,
        metavar="N",
        help="stream clients (SSE and WebSocket) allowed at once; more get 503 (default: 1000)",
    )
    group.add_argument(
        "--stream-client-buffer",
        type=int,
        default=256,
        metavar="N",
        help="events a stream client may fall behind before it is dropped with a resync"
        " event (default: 256)",
    )
    group.add_argument(
        "--stream-heartbeat",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="heartbeat interval on a quiet stream (default: 15)",
    )
    group.add_argument(
        "--stream-poll-interval",
        type=float,
        default=poll_interval,
        metavar="SECONDS",
        help=f"how often a watched run's new events are read (default: {poll_interval:g})",
    )


def stream_settings(args: argparse.Namespace) -> StreamSettings:
    """The hub's settings from the flags; ValueError names a bad one."""
    from szal.serving.hub import StreamSettings

    for flag in ("max_stream_clients", "stream_client_buffer"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be at least 1")
    for flag in ("stream_heartbeat", "stream_poll_interval"):
        if getattr(args, flag) <= 0:
            raise ValueError(f"--{flag.replace('_', '-')} must be positive")
    return StreamSettings(
        max_clients=args.max_stream_clients,
        client_buffer=args.stream_client_buffer,
        heartbeat=args.stream_heartbeat,
        poll_interval=args.stream_poll_interval,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        metavar="PATH|URL",
        help="history store: a SQLite path or a postgres:// URL (default: as szal run)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=8080,
        metavar="PORT",
        help="port on 127.0.0.1 (default: 8080; 0 picks a free one)",
    )
    add_stream_arguments(parser, poll_interval=0.25)


def handle(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        print(f"szal serve: --port {args.port}: not a TCP port", file=sys.stderr)
        return EXIT_INVALID
    try:
        settings = stream_settings(args)
    except ValueError as error:
        print(f"szal serve: {error}", file=sys.stderr)
        return EXIT_INVALID
    return asyncio.run(_serve(args, settings))


async def _serve(args: argparse.Namespace, settings: StreamSettings) -> int:
    from prometheus_client import CollectorRegistry

    from szal.history.sqlite import default_db_path
    from szal.serving.app import build_app, serving
    from szal.serving.hub import StreamHub
    from szal.serving.metrics import EventTail, RunMetrics, StreamCollector
    from szal.serving.sources import HistorySource

    target = args.db or default_db_path()
    store, code = await open_history(target)
    if store is None:
        return code
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    hub = StreamHub(store, settings)
    registry = CollectorRegistry(auto_describe=False)
    run_metrics = RunMetrics()
    registry.register(run_metrics)
    registry.register(StreamCollector(hub))
    tail = EventTail(store, run_metrics, settings.poll_interval)
    tail.start()
    app = build_app(HistorySource(store), hub, registry=registry)
    try:
        try:
            async with serving(app, LOOPBACK, args.port) as port:
                print(f"szal serve: http://{LOOPBACK}:{port}/ (history: {target})", file=sys.stderr)
                await stop.wait()
        except OSError as error:
            print(f"szal serve: --port {args.port}: {error.strerror or error}", file=sys.stderr)
            return EXIT_INVALID
    finally:
        await tail.stop()
        await store.close()
    return EXIT_OK


COMMAND = Subcommand(
    name="serve",
    help="serve the API and run streams over local history (127.0.0.1 only)",
    description=__doc__ or "",
    add_arguments=add_arguments,
    handler=handle,
)
