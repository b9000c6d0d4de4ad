"""The ``/api/v1/`` REST handlers: list runs, get one run, a step's logs.

Registered on the application by :func:`szal.serving.app.build_app`; they read
a :class:`~szal.serving.sources.RunSource` stored on the app under
:data:`SOURCE`. The OpenAPI document (:mod:`szal.serving.openapi`) describes
exactly these routes; a test keeps the two in step.

Decisions:

- Bad input is a 400 whose JSON body names the parameter (``{"error": ...,
  "parameter": "limit"}``), as the CLI names the field; an unknown run or
  step is a 404 naming it.
- Listing is keyset-paginated (``cursor`` is the previous page's
  ``nextCursor``), newest first, ``limit`` 1..500 (default 50); ``since`` and
  ``until`` take RFC 3339 or epoch seconds and filter on the creation time
  (``since <= createdAt < until``), as ``szal history`` does.
- Logs are ``text/plain``; the ``X-Szal-Log-Origin`` header says whether
  they came from the history store or live from the pod.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from szal.engine.phases import RunPhase
from szal.history.store import RunQuery
from szal.serving.encoding import detail_json, parse_time, run_json
from szal.serving.sources import RunSource

SOURCE: web.AppKey[RunSource] = web.AppKey("source", RunSource)
MAX_LIMIT = 500
RUN_PHASES = frozenset(p.value for p in RunPhase)


class BadParameter(web.HTTPBadRequest):
    """A 400 naming the offending query parameter."""

    def __init__(self, parameter: str, problem: str) -> None:
        super().__init__(
            text=web.json_response(
                {"error": f"{parameter}: {problem}", "parameter": parameter}
            ).text,
            content_type="application/json",
        )


def not_found(what: str) -> web.HTTPNotFound:
    """A 404 whose JSON body names what was not found."""
    return web.HTTPNotFound(
        text=web.json_response({"error": f"{what} not found"}).text,
        content_type="application/json",
    )


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadParameter(name, f"not an integer: {raw!r}") from None
    if not low <= value <= high:
        raise BadParameter(name, f"must be between {low} and {high}, got {value}")
    return value


def _time_param(request: web.Request, name: str) -> float | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        return parse_time(raw)
    except ValueError:
        raise BadParameter(name, f"not an RFC 3339 time or epoch seconds: {raw!r}") from None


def _version_param(request: web.Request) -> int | None:
    """``?version=``: the author's ``spec.version`` the runs pinned (an integer >= 1)."""
    if "version" not in request.query:
        return None
    return _int_param(request, "version", 1, 1, 2**31 - 1)


def run_query(request: web.Request) -> RunQuery:
    """The listing filters of a request (the path's namespace wins over ``?namespace=``)."""
    unknown = set(request.query) - {
        "namespace",
        "workflow",
        "version",
        "phase",
        "since",
        "until",
        "limit",
        "cursor",
    }
    if unknown:
        raise BadParameter(sorted(unknown)[0], "unknown parameter")
    phase = request.query.get("phase")
    if phase is not None and phase not in RUN_PHASES:
        raise BadParameter(
            "phase", f"not a run phase: {phase!r} (one of {', '.join(sorted(RUN_PHASES))})"
        )
    cursor = request.query.get("cursor")
    if cursor is not None and "|" not in cursor:
        raise BadParameter("cursor", "not a cursor from a previous page's nextCursor")
    return RunQuery(
        workflow=request.query.get("workflow"),
        version=_version_param(request),
        namespace=request.match_info.get("namespace") or request.query.get("namespace"),
        phase=phase,
        since=_time_param(request, "since"),
        until=_time_param(request, "until"),
        limit=_int_param(request, "limit", 50, 1, MAX_LIMIT),
        after=cursor,
    )


async def list_runs(request: web.Request) -> web.Response:
    """``GET /api/v1/workflowruns`` and ``/api/v1/namespaces/{namespace}/workflowruns``."""
    try:
        page = await request.app[SOURCE].list_runs(run_query(request))
    except ValueError:
        # A store that cannot decode the cursor: it came from elsewhere.
        raise BadParameter("cursor", "not a cursor from a previous page's nextCursor") from None
    body: dict[str, Any] = {
        "items": [run_json(r) for r in page.runs],
        "nextCursor": page.next_cursor,
    }
    return web.json_response(body)


async def get_run(request: web.Request) -> web.Response:
    """``GET /api/v1/namespaces/{namespace}/workflowruns/{name}``: status, attempts, events."""
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    source = request.app[SOURCE]
    detail = await source.get_run(namespace, name)
    if detail is None:
        raise not_found(f"workflowrun {namespace}/{name}")
    return web.json_response(detail_json(detail, await source.get_workflow(detail.run)))


async def get_logs(request: web.Request) -> web.Response:
    """``GET .../workflowruns/{name}/steps/{step}/logs?attempt=N&rollback=true``."""
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    step = request.match_info["step"]
    unknown = set(request.query) - {"attempt", "rollback"}
    if unknown:
        raise BadParameter(sorted(unknown)[0], "unknown parameter")
    attempt = (
        _int_param(request, "attempt", 0, 1, 1_000_000) if "attempt" in request.query else None
    )
    rollback_raw = request.query.get("rollback", "false")
    if rollback_raw not in ("true", "false"):
        raise BadParameter("rollback", f"true or false, got {rollback_raw!r}")
    source = request.app[SOURCE]
    detail = await source.get_run(namespace, name)
    if detail is None:
        raise not_found(f"workflowrun {namespace}/{name}")
    if not any(a.step == step for a in detail.attempts):
        raise not_found(f"step {step!r} of workflowrun {namespace}/{name} (no attempt of it)")
    log = await source.get_log(detail.run, step, attempt, rollback_raw == "true")
    return web.Response(text=log.text, headers={"X-Szal-Log-Origin": log.origin})


def add_routes(app: web.Application) -> None:
    """Register the REST routes on ``app``."""
    app.router.add_get("/api/v1/workflowruns", list_runs)
    app.router.add_get("/api/v1/namespaces/{namespace}/workflowruns", list_runs)
    app.router.add_get("/api/v1/namespaces/{namespace}/workflowruns/{name}", get_run)
    app.router.add_get(
        "/api/v1/namespaces/{namespace}/workflowruns/{name}/steps/{step}/logs", get_logs
    )
