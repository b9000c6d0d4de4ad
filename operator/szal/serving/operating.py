"""The operator's API server: the live-surface application on ``--api-port``.

``szal operator`` (:mod:`szal.cli.operator_cmd`) enters :func:`api_server`
around the operator's run when ``--api-port`` is set; this is the whole
hook, so the operator and reconciler modules know nothing of the API. It
wires the cluster source (live runs from the API server merged with the
history store, :mod:`szal.serving.cluster`), the stream hub (only with a
history store: event ids are the store's; the mirror's writes notify it
through :class:`~szal.serving.notifying.NotifyingStore`) and TokenReview /
SubjectAccessReview auth (:mod:`szal.serving.auth`), which only an explicit
``--api-no-auth`` turns off.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from szal.history.store import ExecutionStore
from szal.runners.kubernetes.client import ApiClient, Credentials
from szal.serving.app import build_app, serving
from szal.serving.auth import Authorizer
from szal.serving.cluster import ClusterSource
from szal.serving.hub import StreamHub, StreamSettings
from szal.serving.sources import HistorySource

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """The operator's API server (``--api-*`` flags; the chart's ``api`` values)."""

    port: int
    """TCP port of the API, streams and UI."""
    host: str = "0.0.0.0"
    """Address to listen on."""
    auth: bool = True
    """Check every request with TokenReview and SubjectAccessReview (off only on request)."""
    auth_cache_ttl: float = 10.0
    """Seconds a token's review and an access decision are reused."""
    streams: StreamSettings = field(default_factory=StreamSettings)
    """The stream hub's settings."""


@dataclass
class ApiServer:
    """What a running API server exposes to the operator: the hub (or None) and the port."""

    hub: StreamHub | None
    port: int


@contextlib.asynccontextmanager
async def api_server(
    settings: ApiSettings,
    credentials: Credentials,
    namespaces: tuple[str, ...],
    store: ExecutionStore | None,
) -> AsyncIterator[ApiServer]:
    """Serve the API for as long as the block runs; ``namespaces`` empty: all."""
    async with ApiClient(credentials) as client:
        hub = StreamHub(store, settings.streams) if store is not None else None
        source = ClusterSource(client, namespaces, HistorySource(store) if store else None)
        authorizer = Authorizer(client, settings.auth_cache_ttl) if settings.auth else None
        if authorizer is None:
            logger.warning(
                "the API on port %d serves without authentication (--api-no-auth)", settings.port
            )
        app = build_app(source, hub, authorizer=authorizer)
        async with serving(app, settings.host, settings.port) as port:
            logger.info("API on %s:%d", settings.host, port)
            yield ApiServer(hub, port)
