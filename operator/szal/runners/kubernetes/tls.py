"""A self-signed TLS certificate for the admission webhook, made with the openssl CLI.

Kubernetes calls admission webhooks over HTTPS only, and checks the server
certificate against the ``caBundle`` of the webhook configuration. kopf can
make a self-signed certificate itself, but only through ``certbuilder`` and
``oscrypto``, and oscrypto 1.3.0 fails on OpenSSL 3 ("Error detecting the
version of libcrypto", wbond/oscrypto#78). So :func:`ensure_self_signed`
runs ``openssl req -x509`` once and hands the files to
``kopf.WebhookServer(certfile=..., pkeyfile=...)``; kopf then puts the
certificate itself into the ``caBundle`` (a self-signed certificate is its
own CA) and re-reads the files when they change.

This is for development and the test cluster, where the API server is a
host process that reaches the webhook on 127.0.0.1. In production the
certificate comes from cert-manager and the API server reaches the webhook
through a Service (docs/operator.md, "Admission"); nothing here is used.

Decisions: an ECDSA P-256 key (small, fast, accepted by the API server's Go
TLS stack); SANs for every given host, IP addresses as ``IP:`` entries
(Go ignores the CommonName); an existing pair is reused while it has more
than a day left, so restarting the operator does not rewrite the webhook's
caBundle each time.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

DEFAULT_HOSTS: Final = ("127.0.0.1", "localhost")
CERT_NAME: Final = "webhook.crt"
KEY_NAME: Final = "webhook.key"
_STILL_VALID_SECONDS: Final = 24 * 3600


class CertificateError(RuntimeError):
    """The certificate could not be made (no openssl, or openssl failed)."""


@dataclass(frozen=True, slots=True)
class WebhookCertificate:
    """Where the webhook's PEM certificate and private key are."""

    certfile: Path
    pkeyfile: Path


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def subject_alt_names(hosts: Sequence[str]) -> str:
    """The ``subjectAltName`` value for ``hosts``: ``IP:`` for addresses, ``DNS:`` else."""
    return ",".join(f"IP:{h}" if _is_ip(h) else f"DNS:{h}" for h in hosts)


def _openssl() -> str:
    found = shutil.which("openssl")
    if found is None:
        raise CertificateError("the openssl command is needed to make the webhook certificate")
    return found


def _still_valid(cert: Path, hosts: Sequence[str]) -> bool:
    check = subprocess.run(
        [_openssl(), "x509", "-in", str(cert), "-noout", "-checkend", str(_STILL_VALID_SECONDS)],
        capture_output=True,
        text=True,
        check=False,
    )
    if check.returncode != 0:
        return False
    text = subprocess.run(
        [_openssl(), "x509", "-in", str(cert), "-noout", "-ext", "subjectAltName"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    # openssl prints SANs as "IP Address:127.0.0.1, DNS:localhost".
    return all((f"IP Address:{h}" if _is_ip(h) else f"DNS:{h}") in text for h in hosts)


def ensure_self_signed(
    directory: Path,
    *,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    days: int = 365,
    common_name: str = "szal-admission-webhook",
) -> WebhookCertificate:
    """A self-signed certificate for ``hosts`` in ``directory``, made if missing or stale.

    The key file is created readable by its owner only.
    """
    if not hosts:
        raise ValueError("at least one host is needed for the certificate's SANs")
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / CERT_NAME, directory / KEY_NAME
    if cert.is_file() and key.is_file() and _still_valid(cert, hosts):
        return WebhookCertificate(cert, key)
    tmp_key = directory / f".{KEY_NAME}.tmp"
    tmp_cert = directory / f".{CERT_NAME}.tmp"
    tmp_key.unlink(missing_ok=True)
    tmp_key.touch(mode=0o600)
    proc = subprocess.run(
        [
            _openssl(),
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(tmp_key),
            "-out",
            str(tmp_cert),
            "-days",
            str(days),
            "-subj",
            f"/CN={common_name}",
            "-addext",
            f"subjectAltName={subject_alt_names(hosts)}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        tmp_key.unlink(missing_ok=True)
        tmp_cert.unlink(missing_ok=True)
        raise CertificateError(f"openssl req failed ({proc.returncode}): {proc.stderr.strip()}")
    # Key first: kopf re-reads the pair when the certificate changes.
    tmp_key.replace(key)
    tmp_cert.replace(cert)
    return WebhookCertificate(cert, key)
