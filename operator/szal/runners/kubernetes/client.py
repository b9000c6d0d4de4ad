"""A small async Kubernetes API client on aiohttp, for the operator's own writes.

Why not kopf's client: it is private API (``kopf._cogs.clients``), and a
pod handler cannot write the owning run's status through kopf's ``patch``.
Why not the official client: it is sync-first, heavy (most of a kopf
process's memory, per kopf's docs) and generated. The operator needs a
dozen calls - create, delete, get, list, merge-patch of ``/status`` with a
``resourceVersion`` precondition, and Events - so this module is those
calls, typed, over one shared :class:`aiohttp.ClientSession`.

Decisions:

* **Credentials** come from :mod:`szal.runners.kubernetes.credentials`
  (kubeconfigs through ``kubernetes_asyncio``'s loader: exec plugins,
  auth providers, several files, contexts; or the in-cluster service
  account). :func:`load_credentials` delegates there; the operator hands the
  same :class:`Credentials` to kopf's login handler so both clients always
  talk to the same server as the same user. After a 401, or once an exec
  plugin's token expired, the client asks :attr:`Credentials.refresher` for
  new ones and retries the request once (a new TLS session when the client
  certificate changed).
* **Errors are typed by meaning**: :class:`NotFound`, :class:`AlreadyExists`,
  :class:`Conflict` (a stale ``resourceVersion``), :class:`Invalid`,
  :class:`Forbidden`; 429, 5xx and connection errors are retried here with
  a capped backoff (Retry-After is honoured), so callers only see errors
  that retrying cannot fix.
* **Every write is counted** by verb and resource (:attr:`ApiClient.writes`)
  so the operator can export it and the benchmark can check "≤ 3 API writes
  per step" without trusting anything but this client.
* There is no sync twin (STYLE.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import aiohttp

from szal.runners.kubernetes.credentials import (
    SERVICE_ACCOUNT_DIR as SERVICE_ACCOUNT_DIR,
)
from szal.runners.kubernetes.credentials import (
    Credentials as Credentials,
)
from szal.runners.kubernetes.credentials import (
    CredentialsError as CredentialsError,
)
from szal.runners.kubernetes.credentials import (
    credentials_in_cluster as credentials_in_cluster,
)
from szal.runners.kubernetes.credentials import (
    load_credentials_blocking,
    ssl_context,
)
from szal.spec import BackoffSettings

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]
PropagationPolicy = Literal["Background", "Foreground", "Orphan"]

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


# --- errors -----------------------------------------------------------------


class ApiError(Exception):
    """The API server answered with an error status that retrying cannot fix."""

    def __init__(self, status: int, reason: str, message: str, body: JsonDict | None = None):
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body or {}


class NotFound(ApiError):
    """404: the object (or its namespace) does not exist."""


class AlreadyExists(ApiError):
    """409 AlreadyExists on create: with deterministic names, the work is done."""


class Conflict(ApiError):
    """409 Conflict: a ``resourceVersion`` precondition failed; re-read and re-plan."""


class Invalid(ApiError):
    """422: the object was refused by validation (schema, admission)."""


class Forbidden(ApiError):
    """403: RBAC or an admission quota refused the request."""


class Unauthorized(ApiError):
    """401: the credentials were refused (and renewing them did not help)."""


def _error_for(status: int, payload: JsonDict) -> ApiError:
    reason = str(payload.get("reason") or "")
    message = str(payload.get("message") or payload or "")
    if status == 404:
        return NotFound(status, reason or "NotFound", message, payload)
    if status == 409:
        cls = AlreadyExists if reason == "AlreadyExists" else Conflict
        return cls(status, reason or "Conflict", message, payload)
    if status == 422:
        return Invalid(status, reason or "Invalid", message, payload)
    if status == 403:
        return Forbidden(status, reason or "Forbidden", message, payload)
    if status == 401:
        return Unauthorized(status, reason or "Unauthorized", message, payload)
    return ApiError(status, reason or "Error", message, payload)


# --- credentials ------------------------------------------------------------
# Loaded in szal.runners.kubernetes.credentials (kubeconfigs through a library);
# these names stay importable from here.


def credentials_from_kubeconfig(path: Path | str, context: str | None = None) -> Credentials:
    """One context of a kubeconfig (``path`` may join several files with ``os.pathsep``)."""
    return load_credentials_blocking(path, context)


def load_credentials(kubeconfig: Path | None = None, context: str | None = None) -> Credentials:
    """An explicit kubeconfig, else ``$KUBECONFIG``, else in-cluster, else ``~/.kube/config``."""
    return load_credentials_blocking(kubeconfig, context)


# --- the client -------------------------------------------------------------


REQUEST_BACKOFF: Final = BackoffSettings("Exponential", delay=0.05, max_delay=5.0)
"""The client's default: 0.05 s doubling to 5 s between tries of one request."""


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """How transient failures (429, 5xx, connection errors) are retried."""

    attempts: int = 8
    """Tries in all, including the first."""
    backoff: BackoffSettings = REQUEST_BACKOFF
    """Delay before the next try: 0.05 s doubling to 5 s (a larger Retry-After still wins)."""
    request_timeout: float = 30.0
    """Seconds for one request, connect to last byte."""


@dataclass
class ApiClient:
    """One aiohttp session to the API server; use ``async with`` or :meth:`close`."""

    credentials: Credentials
    retry: RetrySettings = field(default_factory=RetrySettings)
    max_connections: int = 64
    writes: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Write requests sent, by (verb, resource), e.g. ``("create", "pods")``."""
    last_answer_bytes: int = 0
    """Length of the latest successful answer's body: read it right after the
    ``await`` that returned it (no other task runs in between); the reconciler
    learns its run object's size from it without serializing the object."""
    _session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def renew_credentials(self, rejected: Credentials | None = None) -> Credentials:
        """Fresh credentials after ``rejected`` (default: the current ones) was refused."""
        creds = self.credentials
        if creds.refresher is None:
            return creds
        fresh = await creds.refresher(rejected or creds)
        if not fresh.same_tls(creds) and self._session is not None:
            await self._session.close()  # the next request opens one with the new certificate
        self.credentials = fresh
        return fresh

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                ssl=ssl_context(self.credentials), limit=self.max_connections
            )
            self._session = aiohttp.ClientSession(
                base_url=None,
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.retry.request_timeout),
                json_serialize=json.dumps,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        token = self.credentials.read_token()
        if token:
            headers["Authorization"] = f"{self.credentials.scheme} {token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str | None = None,
        count_as: str | None = None,
    ) -> JsonDict:
        """Send one request, retrying transient failures; return the JSON answer.

        ``count_as`` names the resource for the write counter (writes only).
        """
        if self.credentials.expired():
            await self.renew_credentials()
        data = None if body is None else json.dumps(body)
        if data is not None and content_type is None:
            content_type = "application/json"
        if count_as is not None:
            verb = {"POST": "create", "PUT": "update"}.get(method, method.lower())
            self.writes[(verb, count_as)] += 1
        renewed = False
        attempt = 0
        while attempt < self.retry.attempts:
            attempt += 1
            wait: float | None = None
            error: Exception | None = None
            creds = self.credentials
            try:
                async with self._ensure_session().request(
                    method,
                    creds.server + path,
                    data=data,
                    params=params,
                    headers=self._headers(content_type),
                    proxy=creds.proxy,
                ) as response:
                    text = await response.text()
                    payload: JsonDict = {}
                    if text:
                        try:
                            payload = json.loads(text)
                        except ValueError:
                            payload = {"message": text[:500]}
                    if response.status < 400:
                        self.last_answer_bytes = len(text)
                        return payload
                    renew = response.status == 401 and creds.refresher is not None
                    if renew and not renewed:
                        error = _error_for(response.status, payload)  # renewed below, outside
                    elif response.status == 429 or response.status >= 500:
                        retry_after = response.headers.get("Retry-After", "")
                        wait = float(retry_after) if retry_after.isdigit() else None
                        error = _error_for(response.status, payload)
                    else:
                        raise _error_for(response.status, payload)
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                error = exc
            if isinstance(error, Unauthorized):
                # Expired or rotated: new credentials, and this try does not count.
                renewed = True
                attempt -= 1
                await self.renew_credentials(creds)
                continue
            if attempt == self.retry.attempts:
                break
            pause = max(self.retry.backoff.delay_after(attempt), wait or 0.0)
            logger.debug(
                "%s %s failed (%s); retry %d in %.2fs", method, path, error, attempt, pause
            )
            await asyncio.sleep(pause)
        if isinstance(error, ApiError):
            raise error
        raise ApiError(0, "Unreachable", f"{method} {path}: {error}") from error

    @contextlib.asynccontextmanager
    async def stream(
        self,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        read_timeout: float | None = None,
    ) -> AsyncIterator[aiohttp.StreamReader]:
        """GET a streaming answer (a watch, followed pod logs); yield its body.

        Errors are typed as for :meth:`request`; a 401 renews the credentials
        and tries once more. Nothing is retried once the body started.
        """
        if self.credentials.expired():
            await self.renew_credentials()
        timeout = aiohttp.ClientTimeout(total=None, sock_read=read_timeout)
        for renewing in (True, False):
            creds = self.credentials
            async with self._ensure_session().get(
                creds.server + path,
                params=params,
                headers=self._headers(None),
                proxy=creds.proxy,
                timeout=timeout,
            ) as response:
                if response.status < 400:
                    yield response.content
                    return
                text = await response.text()
                try:
                    payload: JsonDict = json.loads(text) if text else {}
                except ValueError:
                    payload = {"message": text[:500]}
                if not (response.status == 401 and creds.refresher and renewing):
                    raise _error_for(response.status, payload)
            await self.renew_credentials(creds)

    # --- typed calls --------------------------------------------------------

    async def get(self, path: str) -> JsonDict:
        return await self.request("GET", path)

    async def get_text(self, path: str) -> str:
        """GET a plain-text answer (``pods/<name>/log``); errors as :meth:`request` (no retries)."""
        session = self._ensure_session()
        async with session.get(
            self.credentials.server + path, headers={**self._headers(None), "Accept": "*/*"}
        ) as response:
            text = await response.text()
            if response.status >= 400:
                try:
                    payload: JsonDict = json.loads(text)
                except ValueError:
                    payload = {"message": text[:500]}
                raise _error_for(response.status, payload)
            return text

    async def list(self, path: str, *, label_selector: str | None = None) -> list[JsonDict]:
        params = {"labelSelector": label_selector} if label_selector else None
        answer = await self.request("GET", path, params=params)
        items: list[JsonDict] = answer.get("items") or []
        return items

    async def create(self, path: str, body: JsonDict, *, resource: str) -> JsonDict:
        return await self.request("POST", path, body=body, count_as=resource)

    async def replace(self, path: str, body: JsonDict, *, resource: str) -> JsonDict:
        """PUT the whole object; a stale ``metadata.resourceVersion`` answers :class:`Conflict`."""
        return await self.request("PUT", path, body=body, count_as=resource)

    async def delete(
        self,
        path: str,
        *,
        resource: str,
        propagation: PropagationPolicy = "Background",
        grace_period: int | None = None,
    ) -> JsonDict:
        options: JsonDict = {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "propagationPolicy": propagation,
        }
        if grace_period is not None:
            options["gracePeriodSeconds"] = grace_period
        return await self.request("DELETE", path, body=options, count_as=resource)

    async def merge_patch(self, path: str, patch: JsonDict, *, resource: str) -> JsonDict:
        return await self.request(
            "PATCH", path, body=patch, content_type=MERGE_PATCH, count_as=resource
        )

    async def json_patch(
        self, path: str, ops: Sequence[Mapping[str, Any]], *, resource: str
    ) -> JsonDict:
        """RFC 6902 patch; a failed ``test`` op answers 422 (:class:`Invalid`)."""
        return await self.request(
            "PATCH", path, body=ops, content_type=JSON_PATCH, count_as=resource
        )


# --- paths ------------------------------------------------------------------
#
# Every API path the operator sends is built here (no "/api..." f-strings
# elsewhere), so the URL layout is written once.


def _object_path(base: str, name: str | None, subresource: str | None) -> str:
    if subresource is not None and name is None:
        raise ValueError(f"a subresource ({subresource}) needs an object name")
    path = f"{base}/{name}" if name else base
    return f"{path}/{subresource}" if subresource else path


def core_path(
    namespace: str, plural: str, name: str | None = None, *, subresource: str | None = None
) -> str:
    """``/api/v1/namespaces/<ns>/<plural>[/<name>[/<subresource>]]``."""
    return _object_path(f"/api/v1/namespaces/{namespace}/{plural}", name, subresource)


def group_path(
    group_version: str,
    namespace: str,
    plural: str,
    name: str | None = None,
    *,
    subresource: str | None = None,
) -> str:
    """``/apis/<group>/<version>/namespaces/<ns>/<plural>[/<name>[/<subresource>]]``."""
    return _object_path(f"/apis/{group_version}/namespaces/{namespace}/{plural}", name, subresource)


def api_group_path(group_version: str) -> str:
    """``/apis/<group>/<version>``: the discovery document listing a group version's resources."""
    return f"/apis/{group_version}"


def cluster_path(group_version: str, plural: str, name: str | None = None) -> str:
    """``/apis/<group>/<version>/<plural>[/<name>]``: a cluster-scoped resource, or a
    namespaced one listed across all namespaces."""
    return _object_path(f"/apis/{group_version}/{plural}", name, None)
