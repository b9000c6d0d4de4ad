"""The OpenAPI 3.1 document of the ``/api/v1/`` API, served at ``/api/v1/openapi.json``.

Written by hand next to the handlers (:mod:`szal.serving.rest`,
:mod:`szal.serving.streaming`) rather than generated from them: the API is
small and the document is its contract. A test checks that every route the
application registers under ``/api/v1/`` is documented here and the other
way round.
"""

from __future__ import annotations

from typing import Any

_NULLABLE_STRING = {"type": ["string", "null"]}
_TIME = {"type": ["string", "null"], "format": "date-time"}

_RUN = {
    "type": "object",
    "properties": {
        "uid": {"type": "string"},
        "name": {"type": "string"},
        "namespace": {"type": "string"},
        "workflow": {"type": "string"},
        "workflowVersion": {"type": "integer"},
        "specHash": {"type": "string"},
        "params": {"type": "object"},
        "phase": {"type": "string"},
        "createdAt": _TIME,
        "startedAt": _TIME,
        "finishedAt": _TIME,
        "message": _NULLABLE_STRING,
        "progress": _NULLABLE_STRING,
        "interrupted": {"type": "boolean"},
    },
}
_ATTEMPT = {
    "type": "object",
    "properties": {
        "step": {"type": "string"},
        "attempt": {"type": "integer"},
        "rollback": {"type": "boolean"},
        "phase": {"type": "string"},
        "startedAt": _TIME,
        "finishedAt": _TIME,
        "exitCode": {"type": ["integer", "null"]},
        "message": _NULLABLE_STRING,
        "outputs": {"type": ["object", "null"]},
        "node": _NULLABLE_STRING,
    },
}
_EVENT = {
    "type": "object",
    "properties": {
        "id": {
            "type": "integer",
            "description": "the history event log's id; streams resume after it",
        },
        "step": _NULLABLE_STRING,
        "attempt": {"type": "integer"},
        "rollback": {"type": "boolean"},
        "old": _NULLABLE_STRING,
        "new": {"type": "string"},
        "event": {"type": "string"},
        "at": _TIME,
        "message": {"type": "string"},
    },
}
_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "parameter": {"type": "string"}},
    "required": ["error"],
}


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "description": description,
        "schema": schema or {"type": "string"},
    }


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "400": _json({"$ref": "#/components/schemas/Error"}, "bad parameter (named in the body)"),
    "401": {"description": "no or an invalid bearer token (on a cluster)"},
    "403": {"description": "the token's user may not get workflowruns (or pods/log) here"},
    "404": _json({"$ref": "#/components/schemas/Error"}, "no such run or step"),
}
_LIST_PARAMETERS = [
    _query("workflow", "only runs of this workflow"),
    _query(
        "version",
        "only runs that pinned this spec.version (the author's version)",
        {"type": "integer", "minimum": 1},
    ),
    _query("phase", "only runs in this phase (Pending, Running, Succeeded, ...)"),
    _query("since", "created at or after (RFC 3339 or epoch seconds)"),
    _query("until", "created before (RFC 3339 or epoch seconds)"),
    _query("limit", "page size, 1..500 (default 50)", {"type": "integer"}),
    _query("cursor", "the previous page's nextCursor"),
]
_LIST = {
    "summary": "List runs, newest first (keyset pagination)",
    "responses": {
        "200": _json(
            {
                "type": "object",
                "properties": {
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/Run"}},
                    "nextCursor": _NULLABLE_STRING,
                },
            },
            "a page of runs",
        ),
        **_ERRORS,
    },
}
_RUN_PATH = "/api/v1/namespaces/{namespace}/workflowruns/{name}"


def document() -> dict[str, Any]:
    """The OpenAPI document (a fresh dict each call)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Szál API",
            "version": "v1",
            "description": "Runs, their attempts, events and logs; live streams per run.",
        },
        "components": {
            "schemas": {"Run": _RUN, "Attempt": _ATTEMPT, "Event": _EVENT, "Error": _ERROR},
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a Kubernetes token (on a cluster; checked with TokenReview)",
                }
            },
        },
        "security": [{"bearer": []}, {}],
        "paths": {
            "/api/v1/workflowruns": {
                "get": {
                    **_LIST,
                    "operationId": "listRuns",
                    "parameters": [
                        _query("namespace", "only runs of this namespace"),
                        *_LIST_PARAMETERS,
                    ],
                }
            },
            "/api/v1/namespaces/{namespace}/workflowruns": {
                "get": {
                    **_LIST,
                    "operationId": "listNamespacedRuns",
                    "parameters": [_path("namespace"), *_LIST_PARAMETERS],
                }
            },
            _RUN_PATH: {
                "get": {
                    "operationId": "getRun",
                    "summary": "One run (by name, the newest of that name, or by uid)",
                    "parameters": [_path("namespace"), _path("name")],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "run": {"$ref": "#/components/schemas/Run"},
                                    "attempts": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Attempt"},
                                    },
                                    "events": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Event"},
                                    },
                                    "workflow": {
                                        "type": ["object", "null"],
                                        "description": "the pinned spec",
                                    },
                                },
                            },
                            "the run",
                        ),
                        **_ERRORS,
                    },
                }
            },
            _RUN_PATH + "/steps/{step}/logs": {
                "get": {
                    "operationId": "getStepLogs",
                    "summary": "A step's output (the last attempt unless ?attempt=N)",
                    "parameters": [
                        _path("namespace"),
                        _path("name"),
                        _path("step"),
                        _query(
                            "attempt", "attempt number (default: the last)", {"type": "integer"}
                        ),
                        _query("rollback", "the compensation's output", {"type": "boolean"}),
                    ],
                    "responses": {
                        "200": {
                            "description": "the output; X-Szal-Log-Origin: history or pod",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        **_ERRORS,
                    },
                }
            },
            _RUN_PATH + "/events": {
                "get": {
                    "operationId": "streamRunEvents",
                    "summary": "The run's events as Server-Sent Events, or a WebSocket (Upgrade)",
                    "description": (
                        "Each SSE message has id = the event log id, event = step or run,"
                        " data = an Event. Last-Event-ID (header) or ?after=ID resumes after"
                        " that id. ': heartbeat' comments keep the connection open; the"
                        " stream ends with event: end when the run has ended. A client that"
                        " falls behind gets event: resync and is disconnected; it should"
                        " reload the run and reconnect with Last-Event-ID. Over WebSocket"
                        " every message is a JSON object {type: event|end|resync, ...}."
                    ),
                    "parameters": [
                        _path("namespace"),
                        _path("name"),
                        _query("after", "resume after this event id", {"type": "integer"}),
                        {"name": "Last-Event-ID", "in": "header", "schema": {"type": "integer"}},
                    ],
                    "responses": {
                        "200": {"description": "the stream", "content": {"text/event-stream": {}}},
                        "101": {"description": "WebSocket upgrade"},
                        "503": {"description": "client limit reached (Retry-After)"},
                        **_ERRORS,
                    },
                }
            },
            "/api/v1/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "security": [{}],
                    "responses": {"200": _json({"type": "object"}, "the OpenAPI document")},
                }
            },
        },
    }
