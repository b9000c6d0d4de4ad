"""How ``szal operator`` is configured: its settings, and what kopf is told.

:class:`OperatorSettings` is what the CLI (:mod:`szal.cli.operator_cmd`)
builds from the command line, one field per flag; :func:`kopf_settings` and
:func:`connection_info` turn it into kopf's settings and login, for
:class:`~szal.runners.kubernetes.operator.Operator`. Kept apart from the
operator so the CLI and the webhook set-up
(:mod:`szal.runners.kubernetes.webhooks`) read the settings without the
watch handlers.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path

import kopf

from szal.runners.kubernetes.client import Credentials
from szal.runners.kubernetes.credentials import ssl_context
from szal.runners.kubernetes.electing import ElectionSettings
from szal.runners.kubernetes.events import EventSettings
from szal.runners.kubernetes.observing import LABEL_RUN
from szal.runners.kubernetes.runtime import ReconcilerSettings


@dataclass(frozen=True)
class OperatorSettings:
    """How ``szal operator`` runs (each field is a command-line flag)."""

    namespaces: tuple[str, ...] = ()
    """Namespaces to serve; empty with ``clusterwide`` False means the kubeconfig's."""
    clusterwide: bool = False
    """Serve every namespace (needs cluster-wide RBAC)."""
    kubeconfig: Path | None = None
    """Kubeconfig file; default $KUBECONFIG, then in-cluster, then ~/.kube/config."""
    context: str | None = None
    """Kubeconfig context; default its current-context."""
    history_dsn: str | None = None
    """Postgres DSN to mirror run history to; none: no mirror."""
    webhook_port: int | None = None
    """Serve admission webhooks on this port (HTTPS); none: no admission checks."""
    webhook_host: str = "127.0.0.1"
    """Address the API server reaches the webhooks at (and the cert's SAN)."""
    webhook_cert_dir: Path | None = None
    """Development: where the self-signed certificate is kept (made when missing or
    stale). With ``webhook_service``: cert-manager's mounted tls.crt/tls.key, served
    as they are (reloaded when they change)."""
    webhook_service: str | None = None
    """In-cluster mode: the webhook Service's name (certificate SANs); listen on
    0.0.0.0 and manage no webhook configuration. None: development mode."""
    webhook_namespace: str | None = None
    """Namespace of the Service and the Secret; default $POD_NAMESPACE, else the
    credentials' namespace."""
    webhook_secret: str | None = None
    """In-cluster, self-managed: the Secret holding the CA and serving certificate."""
    webhook_configuration: str | None = None
    """In-cluster, self-managed: the ValidatingWebhookConfiguration whose caBundle
    is patched at start and after rotation."""
    webhook_extra_sans: tuple[str, ...] = ()
    """In-cluster, self-managed: more names/addresses for the serving certificate."""
    webhook_cert_check_interval: float = 3600.0
    """Seconds between checks of the webhook Secret (rotation)."""
    leader_election: ElectionSettings | None = None
    """Elect a leader on a Lease (only it reconciles); None: always reconcile.
    An empty namespace means $POD_NAMESPACE, else the first served one."""
    crd_poll_interval: float = 2.0
    """Seconds between checks for the CRDs while the operator waits for them."""
    metrics_port: int | None = None
    """Serve /metrics, /healthz and /readyz on this port; none: off."""
    metrics_host: str = "0.0.0.0"
    """Address of the metrics server."""
    schedules: bool = False
    """Run WorkflowSchedules (:mod:`szal.runners.kubernetes.scheduling`)."""
    events: EventSettings = field(default_factory=EventSettings)
    reconciler: ReconcilerSettings = field(default_factory=ReconcilerSettings)


def kopf_settings(settings: OperatorSettings) -> kopf.OperatorSettings:
    """kopf's settings for this operator (see the module docstring)."""
    ks = kopf.OperatorSettings()
    ks.posting.enabled = False
    ks.peering.standalone = True
    ks.scanning.disabled = True
    ks.watching.label_selectors["v1", "pods"] = LABEL_RUN
    # Watches must notice a dead connection well before a run's deadline.
    ks.watching.server_timeout = 300
    ks.watching.client_timeout = 330
    return ks


@dataclass(frozen=True, kw_only=True)
class _SzalConnectionInfo(kopf.ConnectionInfo):
    """kopf's connection with our TLS context (kopf knows no ``tls-server-name``)."""

    tls: ssl.SSLContext | None = None

    def as_ssl_context(self) -> ssl.SSLContext:
        return self.tls or super().as_ssl_context()


def connection_info(creds: Credentials) -> kopf.ConnectionInfo:
    """The same server, identity, TLS rules and proxy for kopf's watches as for our writes."""
    return _SzalConnectionInfo(
        server=creds.server,
        token=creds.read_token(),
        scheme=creds.scheme if creds.token or creds.token_path else None,
        default_namespace=creds.default_namespace,
        proxy_url=creds.proxy,
        expiration=creds.expires_at,
        tls=ssl_context(creds),
    )
