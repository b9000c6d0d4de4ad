"""The web UI: static pages and one script, served by the same application.

:func:`add_routes` is called by :func:`szal.serving.app.build_app`. The UI is
plain HTML, CSS and browser JavaScript in ``szal/serving/ui/`` (package
data), with no build step and no Node toolchain: it reads the same
``/api/v1/`` API and stream as any client (see ``ui/szal.js``). Pages:

- ``/ui/`` - the runs list with namespace, workflow and phase filters;
- ``/ui/runs/{namespace}/{name}`` - one run: its DAG coloured by phase
  (attempts, durations, skipped reasons, compensations, hierarchical
  children as dashed edges), updated live from the run's event stream, and
  a step's attempts and logs on click.

The files hold no data, so they are served without authentication; the
data they fetch goes through the API's auth like any request. ``/``
redirects to ``/ui/``.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
_STATIC = ("szal.js", "szal.css")


def _file(name: str) -> web.Response:
    data = resources.files("szal.serving").joinpath("ui", name).read_bytes()
    suffix = name[name.rindex(".") :]
    return web.Response(
        body=data,
        content_type=_TYPES[suffix],
        charset="utf-8",
        headers={"Cache-Control": "no-cache"},
    )


async def _index(_: web.Request) -> web.Response:
    return _file("index.html")


async def _run(_: web.Request) -> web.Response:
    return _file("run.html")


async def _static(request: web.Request) -> web.Response:
    name = request.match_info["file"]
    if name not in _STATIC:
        raise web.HTTPNotFound(text=f"no UI file {name!r}")
    return _file(name)


async def _root(_: web.Request) -> web.Response:
    raise web.HTTPFound("/ui/")


def add_routes(app: web.Application) -> None:
    """Register the UI's routes on ``app``."""
    app.router.add_get("/", _root)
    app.router.add_get("/ui/", _index)
    app.router.add_get("/ui/runs/{namespace}/{name}", _run)
    app.router.add_get("/ui/static/{file}", _static)
