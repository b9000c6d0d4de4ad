"""A real local HTTP server for the API client tests (STYLE.md: a fake is a
real server, not a monkeypatch).

:func:`serving` runs one aiohttp handler for every path and method on a free
loopback port and yields its base URL; the client under test talks HTTP to
it exactly as to an API server. Used by the client and leader-election tests.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web


@contextlib.asynccontextmanager
async def serving(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[str]:
    """Serve ``handler`` on 127.0.0.1 (a free port) and yield ``http://127.0.0.1:<port>``."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
