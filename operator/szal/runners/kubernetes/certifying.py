"""Webhook certificates the operator manages itself, in a Secret every replica shares.

In-cluster webhook mode (``--webhook-service NAME --webhook-secret SECRET
--webhook-configuration VWC``): the API server reaches the webhook through
a Service, so it needs a certificate for the Service's DNS names and the
CA in the ValidatingWebhookConfiguration's ``caBundle``. With nothing else
installed (no cert-manager) the operator does it:

1. Read the Secret (type ``kubernetes.io/tls``; keys ``ca.crt``,
   ``tls.crt``, ``tls.key``, plus ``ca.key``). :func:`~szal.runners.
   kubernetes.tls.plan_webhook_tls` says whether it is fine or what it
   should hold instead (missing, unreadable, 30 days before expiry, other
   hosts).
2. Write it: create when missing, else update with the ``resourceVersion``
   read. A replica that loses the race (409) re-reads and adopts what the
   winner wrote, so all replicas converge on one Secret and one CA.
3. Write ``tls.crt``/``tls.key`` to a private directory that kopf's
   webhook server serves; kopf restarts the server when the files change
   (it polls them), which is how a rotation reaches the serving socket.
4. Patch the CA bundle into every webhook of the named configuration
   (JSON patch, one ``test`` op per webhook name so a concurrent edit of
   the list fails instead of patching the wrong entry), only where it
   differs.

Steps 1-4 run at start (before kopf serves) and then every
``check_interval`` (an hour): a replica picks up a Secret another one
rotated, and rotates it itself when due. Every replica does this, leader
or not, since all of them serve the webhook.

The operator never creates or deletes the webhook configuration (the
chart or kustomize owns it). With cert-manager (``--webhook-cert-dir``)
none of this runs: the mounted files are served as they are.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from szal.runners.kubernetes.client import (
    AlreadyExists,
    ApiClient,
    ApiError,
    Conflict,
    NotFound,
    cluster_path,
    core_path,
)
from szal.runners.kubernetes.tls import (
    TLS_CRT,
    TLS_KEY,
    WebhookCertificate,
    WebhookTLS,
    plan_webhook_tls,
    write_pair,
)

logger = logging.getLogger(__name__)

SECRET_TYPE: Final = "kubernetes.io/tls"
ADMISSION_API: Final = "admissionregistration.k8s.io/v1"
_WRITE_TRIES: Final = 5


def service_hosts(service: str, namespace: str) -> tuple[str, ...]:
    """The names a Service is reached by, as the serving certificate's SANs."""
    return (
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    )


@dataclass(frozen=True, slots=True)
class CertificateSettings:
    """Where the certificates live and which configuration trusts them."""

    service: str
    """The webhook Service's name (the certificate's SANs)."""
    namespace: str
    """Namespace of the Service and of the Secret."""
    secret: str
    """Name of the Secret holding the CA and the serving certificate."""
    configuration: str | None
    """ValidatingWebhookConfiguration whose caBundle is patched; None: none."""
    directory: Path
    """Private directory the served tls.crt/tls.key are written to."""
    check_interval: float = 3600.0
    """Seconds between checks of the Secret (rotation, another replica's rotation)."""
    extra_hosts: tuple[str, ...] = ()
    """More SANs (``--webhook-extra-san``: a url clientConfig's host)."""


def _decode(secret: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            out[key] = base64.b64decode(value).decode()
        except (ValueError, UnicodeDecodeError):
            out[key] = ""
    return out


def _encode(data: dict[str, str]) -> dict[str, str]:
    return {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}


class CertificateManager:
    """Keeps the webhook Secret, the served files and the caBundle in step."""

    def __init__(
        self,
        client: ApiClient,
        settings: CertificateSettings,
        *,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.client = client
        self.settings = settings
        self.clock = clock
        self.hosts = service_hosts(settings.service, settings.namespace) + tuple(
            h
            for h in settings.extra_hosts
            if h not in service_hosts(settings.service, settings.namespace)
        )
        self.current: WebhookTLS | None = None
        self.rotations = 0
        """Secret writes by this replica (creation included)."""
        self._task: asyncio.Task[None] | None = None

    @property
    def files(self) -> WebhookCertificate:
        d = self.settings.directory
        return WebhookCertificate(d / TLS_CRT, d / TLS_KEY)

    def _secret_path(self, named: bool = True) -> str:
        s = self.settings
        return core_path(s.namespace, "secrets", s.secret if named else None)

    # --- one check ------------------------------------------------------------

    async def ensure(self) -> WebhookTLS:
        """Make the Secret valid (or adopt another replica's), serve it, patch the caBundle."""
        tls = await self._ensure_secret()
        if self.current is None or self.current.serving != tls.serving:
            write_pair(self.settings.directory, tls.serving, cert_name=TLS_CRT, key_name=TLS_KEY)
        self.current = tls
        if self.settings.configuration:
            await self.patch_ca_bundle(tls.ca_bundle)
        return tls

    async def _ensure_secret(self) -> WebhookTLS:
        s = self.settings
        for _ in range(_WRITE_TRIES):
            try:
                secret: dict[str, Any] | None = await self.client.get(self._secret_path())
            except NotFound:
                secret = None
            if secret is not None and secret.get("type", SECRET_TYPE) != SECRET_TYPE:
                raise ApiError(
                    0,
                    "WrongType",
                    f"Secret {s.namespace}/{s.secret} has type {secret.get('type')!r}, not"
                    f" {SECRET_TYPE!r}; delete it or name another with --webhook-secret",
                )
            planned, reason = plan_webhook_tls(
                _decode(secret) if secret else None, self.hosts, self.clock()
            )
            if reason is None:
                return planned
            logger.info("webhook Secret %s/%s: writing it (%s)", s.namespace, s.secret, reason)
            try:
                if secret is None:
                    body = {
                        "apiVersion": "v1",
                        "kind": "Secret",
                        "type": SECRET_TYPE,
                        "metadata": {
                            "name": s.secret,
                            "namespace": s.namespace,
                            "labels": {"app.kubernetes.io/managed-by": "szal-operator"},
                        },
                        "data": _encode(planned.secret_data()),
                    }
                    await self.client.create(self._secret_path(False), body, resource="secrets")
                else:
                    # Keep what others put on it (labels, annotations, extra keys).
                    secret["data"] = {
                        **(secret.get("data") or {}),
                        **_encode(planned.secret_data()),
                    }
                    secret["type"] = SECRET_TYPE
                    await self.client.replace(self._secret_path(), secret, resource="secrets")
            except (AlreadyExists, Conflict):
                logger.info(
                    "webhook Secret %s/%s: another replica wrote it; re-reading",
                    s.namespace,
                    s.secret,
                )
                continue
            self.rotations += 1
            return planned
        raise ApiError(0, "Conflict", f"Secret {s.namespace}/{s.secret} kept changing under us")

    async def patch_ca_bundle(self, bundle: str) -> int:
        """Set ``caBundle`` on every webhook of the configuration; return how many changed."""
        name = self.settings.configuration
        path = cluster_path(ADMISSION_API, "validatingwebhookconfigurations", name)
        try:
            config = await self.client.get(path)
        except NotFound:
            logger.warning(
                "ValidatingWebhookConfiguration %s does not exist (yet); its caBundle is set"
                " at the next check",
                name,
            )
            return 0
        wanted = base64.b64encode(bundle.encode()).decode()
        ops: list[dict[str, Any]] = []
        for index, webhook in enumerate(config.get("webhooks") or []):
            if (webhook.get("clientConfig") or {}).get("caBundle") == wanted:
                continue
            ops.append({"op": "test", "path": f"/webhooks/{index}/name", "value": webhook["name"]})
            ops.append(
                {"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": wanted}
            )
        if ops:
            await self.client.json_patch(path, ops, resource="validatingwebhookconfigurations")
            logger.info("caBundle of %d webhook(s) in %s updated", len(ops) // 2, name)
        return len(ops) // 2

    # --- periodically ---------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="szal-webhook-certificates")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.check_interval)
            try:
                await self.ensure()
            except (ApiError, OSError) as error:
                logger.warning("checking the webhook certificate failed: %s", error)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
