"""Serving the admission webhooks: where the server listens and whose certificate it shows.

:class:`~szal.runners.kubernetes.operator.Operator` calls
:func:`configure_webhooks` once, before kopf starts, when a webhook port or
Service is given. It registers the handlers of
:mod:`szal.runners.kubernetes.admission` and sets kopf's webhook server for
one of three set-ups (docs/operator.md, "Admission"):

* **development** (no ``--webhook-service``): a self-signed certificate for
  ``--webhook-host`` (:mod:`szal.runners.kubernetes.tls`), and kopf manages
  the webhook configuration;
* **in a cluster, self-managed** (``--webhook-secret``): the operator's own
  CA and serving certificate in a Secret
  (:class:`~szal.runners.kubernetes.certifying.CertificateManager`, returned
  so the operator starts and stops its rotation);
* **in a cluster, cert-manager** (``--webhook-cert-dir``): the mounted files,
  served as they are.

In a cluster the server listens on 0.0.0.0 and kopf manages no webhook
configuration (the installer ships it).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import kopf

from szal.runners.kubernetes import admission, dryrunning, tls
from szal.runners.kubernetes.certifying import CertificateManager, CertificateSettings
from szal.runners.kubernetes.client import ApiClient, Credentials
from szal.runners.kubernetes.settings import OperatorSettings


def configure_webhooks(
    settings: OperatorSettings,
    registry: kopf.OperatorRegistry,
    kopf_settings: kopf.OperatorSettings,
    client: ApiClient,
    credentials: Credentials,
) -> CertificateManager | None:
    """Register the admission handlers and configure kopf's webhook server.

    Returns the certificate manager to start, in the self-managed set-up.
    """
    admission.register_admission(
        registry,
        fetch_workflow=admission.fetcher_from_client(client),
        dry_run=dryrunning.dry_run_from_client(client),
    )
    if settings.webhook_service is not None:
        return _configure_in_cluster(settings, kopf_settings, client, credentials)
    assert settings.webhook_port is not None
    cert_dir = settings.webhook_cert_dir or Path(tempfile.gettempdir(), "szal-webhook-certs")
    cert = tls.ensure_self_signed(cert_dir, hosts=(settings.webhook_host,))
    admission.configure_admission(
        kopf_settings,
        certfile=str(cert.certfile),
        pkeyfile=str(cert.pkeyfile),
        port=settings.webhook_port,
        addr=settings.webhook_host,
    )
    return None


def _configure_in_cluster(
    settings: OperatorSettings,
    kopf_settings: kopf.OperatorSettings,
    client: ApiClient,
    credentials: Credentials,
) -> CertificateManager | None:
    service = settings.webhook_service
    assert service is not None
    port = settings.webhook_port or admission.DEFAULT_PORT
    namespace = (
        settings.webhook_namespace
        or os.environ.get("POD_NAMESPACE")
        or credentials.default_namespace
        or "default"
    )
    certificates: CertificateManager | None = None
    if settings.webhook_cert_dir is not None:
        # cert-manager: serve the mounted files; kopf re-reads them when they change.
        files = tls.WebhookCertificate(
            settings.webhook_cert_dir / tls.TLS_CRT, settings.webhook_cert_dir / tls.TLS_KEY
        )
    elif settings.webhook_secret is not None:
        certificates = CertificateManager(
            client,
            CertificateSettings(
                service=service,
                namespace=namespace,
                secret=settings.webhook_secret,
                configuration=settings.webhook_configuration,
                directory=Path(tempfile.mkdtemp(prefix="szal-webhook-")),
                check_interval=settings.webhook_cert_check_interval,
                extra_hosts=settings.webhook_extra_sans,
            ),
        )
        files = certificates.files
    else:
        raise ValueError(
            "--webhook-service needs --webhook-secret (self-managed certificates)"
            " or --webhook-cert-dir (cert-manager)"
        )
    admission.configure_admission(
        kopf_settings,
        certfile=str(files.certfile),
        pkeyfile=str(files.pkeyfile),
        port=port,
        addr="0.0.0.0",
        host=f"{service}.{namespace}.svc",
        managed=None,
        file_check_interval=10.0,
    )
    return certificates
