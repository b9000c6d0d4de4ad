"""X.509 for the admission webhook, made with the ``cryptography`` library.

Kubernetes calls admission webhooks over HTTPS only and checks the server
certificate against the ``caBundle`` of the webhook configuration. kopf
can make a self-signed certificate itself, but only through
``certbuilder`` and ``oscrypto``, and oscrypto 1.3.0 fails on OpenSSL 3
("Error detecting the version of libcrypto", wbond/oscrypto#78). So the
certificates are made here, with ``cryptography`` (no openssl command),
and handed to ``kopf.WebhookServer(certfile=..., pkeyfile=...)``, which
re-reads the files when they change.

Two uses:

* **Development** (:func:`ensure_self_signed`): one self-signed
  certificate in a local directory for ``--webhook-host`` (the API server
  on the same host reaches the webhook on 127.0.0.1); kopf puts the
  certificate itself into the ``caBundle`` of the configuration it manages.
* **In a cluster** (:func:`plan_webhook_tls`, used by
  :mod:`szal.runners.kubernetes.certifying`): a CA (10 years) and a
  serving certificate it signs (1 year) for the webhook Service's DNS
  names, kept in a Secret shared by every replica. The function is pure:
  it takes what the Secret holds and ``now`` and says what it should hold,
  and why it changed.

Decisions: ECDSA P-256 keys (small, fast, accepted by the API server's Go
TLS stack); SANs for every host, IP addresses as IP entries (Go ignores the
CommonName); a certificate is renewed 30 days before it expires (the
serving certificate alone while the CA has more than 30 days left, so the
``caBundle`` stays the same); when the CA itself is renewed, the old CA
stays in ``ca.crt`` next to the new one until it expires, so replicas
still serving a certificate of the old CA keep being trusted until they
reload. The CA's key is kept in the Secret as ``ca.key`` (besides the
``kubernetes.io/tls`` keys) so the serving certificate can be renewed
without changing the ``caBundle``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTS: Final = ("127.0.0.1", "localhost")
CERT_NAME: Final = "webhook.crt"
KEY_NAME: Final = "webhook.key"
CA_DAYS: Final = 3650
SERVING_DAYS: Final = 365
RENEW_BEFORE: Final = dt.timedelta(days=30)
_DEV_STILL_VALID: Final = dt.timedelta(days=1)

# Secret keys (type kubernetes.io/tls, plus the CA's key).
CA_CRT: Final = "ca.crt"
CA_KEY: Final = "ca.key"
TLS_CRT: Final = "tls.crt"
TLS_KEY: Final = "tls.key"


class CertificateError(RuntimeError):
    """A certificate could not be made or read."""


@dataclass(frozen=True, slots=True)
class WebhookCertificate:
    """Where the webhook's PEM certificate and private key are."""

    certfile: Path
    pkeyfile: Path


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A PEM certificate and its PEM private key."""

    cert: str
    key: str


@dataclass(frozen=True, slots=True)
class WebhookTLS:
    """What the webhook Secret holds: the CA bundle, the CA's key, the serving pair."""

    ca_bundle: str
    """PEM: the current CA first, then a previous one while it is still valid."""
    ca_key: str
    serving: KeyPair

    def secret_data(self) -> dict[str, str]:
        return {
            CA_CRT: self.ca_bundle,
            CA_KEY: self.ca_key,
            TLS_CRT: self.serving.cert,
            TLS_KEY: self.serving.key,
        }


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _general_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    return [
        x509.IPAddress(ipaddress.ip_address(h)) if _is_ip(h) else x509.DNSName(h) for h in hosts
    ]


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def certificate_builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    now: dt.datetime,
    days: int,
) -> x509.CertificateBuilder:
    """A certificate for ``key``'s public half, valid ``days`` from ``now``, to add
    extensions to and sign (the e2e cluster's e2e/cluster/pki.py uses it too)."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # A minute of slack for clocks a little behind ours.
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=days))
    )


_KEY_USAGES: Final = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)


def key_usage(**allowed: bool) -> x509.KeyUsage:
    """A KeyUsage extension allowing only the usages named (``key_cert_sign=True``)."""
    unknown = set(allowed) - set(_KEY_USAGES)
    if unknown:
        raise ValueError(f"unknown key usages: {sorted(unknown)}")
    return x509.KeyUsage(**{name: allowed.get(name, False) for name in _KEY_USAGES})


def make_ca(
    now: dt.datetime, *, days: int = CA_DAYS, common_name: str = "szal-webhook-ca"
) -> KeyPair:
    """A self-signed CA that can sign serving certificates (and nothing below them)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    cert = (
        certificate_builder(name, name, key, now, days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(_cert_pem(cert), _key_pem(key))


def make_serving(
    ca: KeyPair,
    hosts: Sequence[str],
    now: dt.datetime,
    *,
    days: int = SERVING_DAYS,
    common_name: str | None = None,
) -> KeyPair:
    """A serving certificate for ``hosts`` signed by ``ca``."""
    if not hosts:
        raise ValueError("at least one host is needed for the certificate's SANs")
    ca_cert = x509.load_pem_x509_certificate(ca.cert.encode())
    ca_key = serialization.load_pem_private_key(ca.key.encode(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise CertificateError("the webhook CA key is not an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        certificate_builder(_name(common_name or hosts[0]), ca_cert.subject, key, now, days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(_general_names(hosts)), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return KeyPair(_cert_pem(cert), _key_pem(key))


def make_self_signed(
    hosts: Sequence[str], now: dt.datetime, *, days: int = SERVING_DAYS, common_name: str
) -> KeyPair:
    """One certificate that is its own CA (development: kopf uses it as the caBundle)."""
    if not hosts:
        raise ValueError("at least one host is needed for the certificate's SANs")
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    cert = (
        certificate_builder(name, name, key, now, days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.SubjectAlternativeName(_general_names(hosts)), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(_cert_pem(cert), _key_pem(key))


# --- reading ------------------------------------------------------------------


def load_certificates(pem: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem.encode())


def subject_alt_names(cert: x509.Certificate) -> list[str]:
    """The SANs of ``cert`` as strings (DNS names and IP addresses)."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [
        *ext.get_values_for_type(x509.DNSName),
        *map(str, ext.get_values_for_type(x509.IPAddress)),
    ]


def _expires_within(cert: x509.Certificate, now: dt.datetime, margin: dt.timedelta) -> bool:
    return cert.not_valid_after_utc - margin <= now


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _pair_matches(pair: KeyPair) -> bool:
    cert = x509.load_pem_x509_certificate(pair.cert.encode())
    key = serialization.load_pem_private_key(pair.key.encode(), password=None)
    return bool(cert.public_key() == key.public_key())


def plan_webhook_tls(
    data: Mapping[str, str] | None, hosts: Sequence[str], now: dt.datetime
) -> tuple[WebhookTLS, str | None]:
    """What the webhook Secret should hold, and why it changed (None: keep it as it is).

    ``data`` is the Secret's decoded data (None if there is no Secret).
    """
    if not data or not all(data.get(k) for k in (CA_CRT, CA_KEY, TLS_CRT, TLS_KEY)):
        return _fresh(hosts, now), "missing" if not data else "incomplete"
    try:
        bundle = load_certificates(data[CA_CRT])
        ca = KeyPair(_cert_pem(bundle[0]), data[CA_KEY])
        serving = KeyPair(data[TLS_CRT], data[TLS_KEY])
        serving_cert = x509.load_pem_x509_certificate(serving.cert.encode())
        intact = _pair_matches(ca) and _pair_matches(serving)
    except (ValueError, TypeError, IndexError):
        return _fresh(hosts, now), "unreadable"
    if not intact:
        return _fresh(hosts, now), "a key does not match its certificate"
    if _expires_within(bundle[0], now, RENEW_BEFORE):
        fresh = _fresh(hosts, now)
        # The old CA stays trusted while replicas may still serve its certificate.
        old = _cert_pem(bundle[0]) if bundle[0].not_valid_after_utc > now else ""
        return WebhookTLS(fresh.ca_bundle + old, fresh.ca_key, fresh.serving), "the CA expires soon"
    reason = None
    if _expires_within(serving_cert, now, RENEW_BEFORE):
        reason = "the serving certificate expires soon"
    elif sorted(subject_alt_names(serving_cert)) != sorted(set(hosts)):
        reason = "the serving certificate names other hosts"
    elif not _signed_by(serving_cert, bundle[0]):
        reason = "the serving certificate is not signed by the CA"
    # Previous CAs that have expired leave the bundle.
    kept = [c for c in bundle if c is bundle[0] or c.not_valid_after_utc > now]
    ca_bundle = "".join(_cert_pem(c) for c in kept)
    if reason is not None:
        serving = make_serving(ca, hosts, now)
    elif len(kept) != len(bundle):
        reason = "an old CA expired"
    return WebhookTLS(ca_bundle, data[CA_KEY], serving), reason


def _fresh(hosts: Sequence[str], now: dt.datetime) -> WebhookTLS:
    ca = make_ca(now)
    return WebhookTLS(ca.cert, ca.key, make_serving(ca, hosts, now))


# --- files --------------------------------------------------------------------


def write_pair(
    directory: Path, pair: KeyPair, *, cert_name: str, key_name: str
) -> WebhookCertificate:
    """Write a key pair atomically, the key readable by its owner only.

    The key goes first: kopf restarts its server when the certificate file
    changes, and must then find the matching key.
    """
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / cert_name, directory / key_name
    for path, text, mode in ((key, pair.key, 0o600), (cert, pair.cert, 0o644)):
        tmp = directory / f".{path.name}.tmp"
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        tmp.replace(path)
    return WebhookCertificate(cert, key)


def ensure_self_signed(
    directory: Path,
    *,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    days: int = SERVING_DAYS,
    common_name: str = "szal-admission-webhook",
    now: dt.datetime | None = None,
) -> WebhookCertificate:
    """A self-signed certificate for ``hosts`` in ``directory``, made if missing or stale.

    An existing pair is reused while it has more than a day left and names
    every host, so restarting the operator does not rewrite the caBundle.
    """
    if not hosts:
        raise ValueError("at least one host is needed for the certificate's SANs")
    now = now or dt.datetime.now(dt.UTC)
    cert, key = directory / CERT_NAME, directory / KEY_NAME
    if cert.is_file() and key.is_file():
        try:
            existing = x509.load_pem_x509_certificate(cert.read_bytes())
            valid = not _expires_within(existing, now, _DEV_STILL_VALID) and set(hosts) <= set(
                subject_alt_names(existing)
            )
            valid = valid and _pair_matches(KeyPair(cert.read_text(), key.read_text()))
        except (ValueError, TypeError):
            valid = False
        if valid:
            return WebhookCertificate(cert, key)
    pair = make_self_signed(hosts, now, days=days, common_name=common_name)
    return write_pair(directory, pair, cert_name=CERT_NAME, key_name=KEY_NAME)
