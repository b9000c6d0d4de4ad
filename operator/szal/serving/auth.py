"""Authentication and authorization of the API on a cluster, as kubectl's.

:func:`middleware` is installed by the operator's application (never by
``szal serve``, which binds loopback only). Every ``/api/v1/`` request but
the OpenAPI document needs a bearer token (``Authorization: Bearer ...``;
the stream route also takes ``?access_token=``, because a browser's
EventSource cannot send headers). The token is checked with a TokenReview,
and the user's right with a SubjectAccessReview per permission the route
needs, using the operator's own credentials (its ServiceAccount needs
``create`` on ``tokenreviews`` and ``subjectaccessreviews``, as the chart
grants with the API enabled):

- listing runs: ``list workflowruns`` in the namespace (cluster-wide for
  ``/api/v1/workflowruns`` without ``?namespace=``);
- one run and its stream: ``get workflowruns`` in the namespace;
- logs: that and ``get pods/log`` in the namespace.

401 without a token or with one the API server does not accept; 403 naming
the missing permission. Answers are cached for ``cache_ttl`` seconds (a
revoked token or right keeps working that long, as with any authorizing
webhook cache), in a bounded cache keyed by the token's SHA-256, never the
token itself.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from szal.runners.kubernetes.client import ApiClient, ApiError
from szal.spec import GROUP

CACHE_SIZE = 10_000
RUNS = "/api/v1/namespaces/{namespace}/workflowruns"
STREAM_ROUTE = RUNS + "/{name}/events"


@dataclass(frozen=True, slots=True)
class User:
    """Who a token belongs to (the TokenReview's ``status.user``)."""

    username: str
    uid: str
    groups: tuple[str, ...]
    extra: str  # JSON of the extra map: hashable, passed back as it came


@dataclass(frozen=True, slots=True)
class Permission:
    """One SubjectAccessReview's resourceAttributes."""

    verb: str
    resource: str
    namespace: str = ""
    group: str = GROUP
    subresource: str = ""

    def __str__(self) -> str:
        what = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        where = f"in namespace {self.namespace}" if self.namespace else "cluster-wide"
        return f"{self.verb} {what} {where}"


def permissions(request: web.Request) -> list[Permission] | None:
    """What the route of ``request`` needs; None: no authentication at all."""
    route = request.match_info.route.resource
    canonical = route.canonical if route is not None else ""
    ns = request.match_info.get("namespace", "")
    if canonical == "/api/v1/workflowruns":
        return [Permission("list", "workflowruns", request.query.get("namespace", ""))]
    if canonical == RUNS:
        return [Permission("list", "workflowruns", ns)]
    if canonical in (RUNS + "/{name}", STREAM_ROUTE):
        return [Permission("get", "workflowruns", ns)]
    if canonical == RUNS + "/{name}/steps/{step}/logs":
        return [
            Permission("get", "workflowruns", ns),
            Permission("get", "pods", ns, group="", subresource="log"),
        ]
    if canonical.startswith("/api/v1/") and canonical != "/api/v1/openapi.json":
        raise AssertionError(f"route {canonical} has no permissions declared")
    return None


class _Cache:
    def __init__(self, ttl: float, clock: Callable[[], float]) -> None:
        self.ttl = ttl
        self.clock = clock
        self.entries: OrderedDict[Any, tuple[float, Any]] = OrderedDict()

    def get(self, key: Any) -> tuple[bool, Any]:
        entry = self.entries.get(key)
        if entry is None or entry[0] < self.clock():
            return False, None
        return True, entry[1]

    def put(self, key: Any, value: Any) -> None:
        self.entries[key] = (self.clock() + self.ttl, value)
        self.entries.move_to_end(key)
        while len(self.entries) > CACHE_SIZE:
            self.entries.popitem(last=False)


class Authorizer:
    """TokenReview and SubjectAccessReview through the operator's API client, cached."""

    def __init__(
        self,
        client: ApiClient,
        cache_ttl: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self._users = _Cache(cache_ttl, clock)
        self._decisions = _Cache(cache_ttl, clock)
        self.reviews = 0
        """TokenReviews and SubjectAccessReviews sent (the cache's misses)."""

    async def authenticate(self, token: str) -> User | None:
        """The token's user, or None if the API server does not accept it."""
        key = hashlib.sha256(token.encode()).hexdigest()
        hit, user = self._users.get(key)
        if hit:
            return user  # type: ignore[no-any-return]
        self.reviews += 1
        answer = await self.client.request(
            "POST",
            "/apis/authentication.k8s.io/v1/tokenreviews",
            body={
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "spec": {"token": token},
            },
        )
        status = answer.get("status") or {}
        found = None
        if status.get("authenticated"):
            info = status.get("user") or {}
            found = User(
                str(info.get("username", "")),
                str(info.get("uid", "")),
                tuple(info.get("groups") or ()),
                json.dumps(info.get("extra") or {}, sort_keys=True),
            )
        self._users.put(key, found)
        return found

    async def allowed(self, user: User, permission: Permission) -> bool:
        """Whether RBAC (or whatever authorizes the cluster) lets ``user`` do ``permission``."""
        hit, decision = self._decisions.get((user, permission))
        if hit:
            return bool(decision)
        self.reviews += 1
        attributes = {
            "verb": permission.verb,
            "group": permission.group,
            "resource": permission.resource,
            "subresource": permission.subresource,
            "namespace": permission.namespace,
        }
        answer = await self.client.request(
            "POST",
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            body={
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {
                    "user": user.username,
                    "uid": user.uid,
                    "groups": list(user.groups),
                    "extra": json.loads(user.extra),
                    "resourceAttributes": attributes,
                },
            },
        )
        allowed = bool((answer.get("status") or {}).get("allowed"))
        self._decisions.put((user, permission), allowed)
        return allowed


def _error(status: type[web.HTTPException], message: str, **headers: str) -> web.HTTPException:
    return status(
        text=json.dumps({"error": message}), content_type="application/json", headers=headers
    )


def _token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    route = request.match_info.route.resource
    if route is not None and route.canonical == STREAM_ROUTE:
        return request.query.get("access_token") or None
    return None


def middleware(authorizer: Authorizer) -> Callable[..., Awaitable[web.StreamResponse]]:
    """An aiohttp middleware that admits only authenticated, authorized requests."""

    @web.middleware
    async def check(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        needed = permissions(request)
        if needed is None:
            return await handler(request)
        token = _token(request)
        if token is None:
            raise _error(
                web.HTTPUnauthorized, "a bearer token is required", **{"WWW-Authenticate": "Bearer"}
            )
        try:
            user = await authorizer.authenticate(token)
            if user is None:
                raise _error(
                    web.HTTPUnauthorized,
                    "the token was not accepted",
                    **{"WWW-Authenticate": "Bearer"},
                )
            for permission in needed:
                if not await authorizer.allowed(user, permission):
                    raise _error(web.HTTPForbidden, f"user {user.username!r} may not {permission}")
        except ApiError as error:
            raise _error(web.HTTPServiceUnavailable, f"cannot check the token: {error}") from None
        return await handler(request)

    return check
