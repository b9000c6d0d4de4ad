"""The application factory: REST, streams and health on one aiohttp app.

Called by ``szal serve`` (:mod:`szal.cli.serve_cmd`) and by the operator's
API server. :func:`build_app` wires a :class:`~szal.serving.sources.RunSource`
(what runs exist) and an optional :class:`~szal.serving.hub.StreamHub` (live
event streams; None when there is no history store). :func:`serving` runs an
application on a TCP port for as long as a ``with`` block lasts, the one way
both callers start it.

Decisions: the hub is closed when the application shuts down, so open
streams end (clients reconnect with ``Last-Event-ID``) instead of holding
the shutdown for their heartbeat; handlers are cancelled when their client
disconnects (every handler only reads, so nothing is left half done);
``/healthz`` answers without auth.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from szal.serving import rest, streaming, webui
from szal.serving.auth import Authorizer, middleware
from szal.serving.hub import StreamHub
from szal.serving.openapi import document
from szal.serving.sources import RunSource


async def _openapi(_: web.Request) -> web.Response:
    return web.json_response(document())


async def _healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")


def build_app(
    source: RunSource,
    hub: StreamHub | None,
    *,
    authorizer: Authorizer | None = None,
    registry: CollectorRegistry | None = None,
) -> web.Application:
    """The live-surface application over ``source`` (streams through ``hub``);
    with ``authorizer`` every API request is authenticated and authorized;
    with ``registry`` it serves ``/metrics`` (``szal serve``; the operator has
    its own metrics port)."""
    app = web.Application(middlewares=[middleware(authorizer)] if authorizer else [])
    if registry is not None:

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(
                body=generate_latest(registry), content_type="text/plain", charset="utf-8"
            )

        app.router.add_get("/metrics", metrics)
    app[rest.SOURCE] = source
    app[streaming.HUB] = hub
    rest.add_routes(app)
    streaming.add_routes(app)
    webui.add_routes(app)
    app.router.add_get("/api/v1/openapi.json", _openapi)
    app.router.add_get("/healthz", _healthz)

    async def close_hub(_: web.Application) -> None:
        if hub is not None:
            await hub.close()

    app.on_shutdown.append(close_hub)
    return app


@contextlib.asynccontextmanager
async def serving(app: web.Application, host: str, port: int) -> AsyncIterator[int]:
    """Serve ``app`` on ``host:port`` (0: a free port) and yield the bound port."""
    # handler_cancellation: a stream whose client hung up is cancelled at once,
    # freeing its client slot, instead of noticing at its next heartbeat.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    try:
        yield int(bound)
    finally:
        await runner.cleanup()
