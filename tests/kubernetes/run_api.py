"""A small WorkflowRun API for the reconciler's seams, served over real HTTP.

:class:`RunApi` keeps objects by API path, answers GET, POST (create),
DELETE, merge PATCH of ``.../status`` and JSON PATCH of
``metadata.finalizers`` (``test``/``add``/``remove``) the way the API server does for
what the reconciler needs (404 for a missing object, a resourceVersion
bump per write), records every request, and answers scripted errors for
chosen (method, path) pairs. Served with :func:`tests.kubernetes.local_server.serving`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


def api_status(code: int, reason: str, message: str = "m") -> dict[str, Any]:
    """A Kubernetes ``Status`` body."""
    return {"kind": "Status", "code": code, "reason": reason, "message": message}


@dataclass
class RunApi:
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: dict[tuple[str, str], list[tuple[int, str, str]]] = field(default_factory=dict)
    seen: list[tuple[str, str, Any]] = field(default_factory=list)
    created: list[dict[str, Any]] = field(default_factory=list)
    """Every object created (POST), oldest first."""
    version: int = 0

    def fail(self, method: str, path: str, code: int, reason: str, message: str = "m") -> None:
        """Answer the next ``method path`` with this error."""
        self.errors.setdefault((method, path), []).append((code, reason, message))

    def requests(self, method: str) -> list[tuple[str, Any]]:
        return [(path, body) for m, path, body in self.seen if m == method]

    def _bump(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.version)
        return obj

    async def handle(self, request: web.Request) -> web.Response:
        text = await request.text()
        body = json.loads(text) if text else None
        method, path = request.method, request.path
        self.seen.append((method, path, body))
        scripted = self.errors.get((method, path))
        if scripted:
            code, reason, message = scripted.pop(0)
            return web.json_response(api_status(code, reason, message), status=code)
        if method == "POST":
            self.created.append(body)
            return web.json_response(body, status=201)
        target = path.removesuffix("/status")
        obj = self.objects.get(target)
        if obj is None:
            return web.json_response(api_status(404, "NotFound"), status=404)
        if method == "PATCH" and path.endswith("/status"):
            status = obj.setdefault("status", {})
            for key, value in (body.get("status") or {}).items():
                if value is None:
                    status.pop(key, None)
                else:
                    status[key] = value
            return web.json_response(self._bump(obj))
        if method == "PATCH" and request.content_type == "application/merge-patch+json":
            _merge(obj, body)
            return web.json_response(self._bump(obj))
        if method == "PATCH":
            return self._json_patch(obj, body)
        if method == "DELETE":
            del self.objects[target]
        return web.json_response(obj)

    def _json_patch(self, obj: dict[str, Any], ops: list[dict[str, Any]]) -> web.Response:
        meta = obj.setdefault("metadata", {})
        finalizers = list(meta.get("finalizers") or [])
        for op in ops:
            path, index = op["path"], -1
            if path == "/metadata/resourceVersion":
                current = meta.get("resourceVersion")
            elif path == "/metadata/finalizers":
                current = finalizers
            elif path.startswith("/metadata/finalizers/"):
                last = path.rsplit("/", 1)[1]
                index = len(finalizers) if last == "-" else int(last)
                current = finalizers[index] if index < len(finalizers) else None
            else:
                raise AssertionError(f"unexpected JSON patch path {path}")
            if op["op"] == "test" and current != op["value"]:
                return web.json_response(api_status(422, "Invalid", "test failed"), status=422)
            if op["op"] == "add":
                if index < 0:
                    finalizers = list(op["value"])
                else:
                    finalizers.insert(index, op["value"])
            if op["op"] == "remove":
                del finalizers[index]
        meta["finalizers"] = finalizers
        return web.json_response(self._bump(obj))


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """RFC 7386 merge patch, in place."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value
