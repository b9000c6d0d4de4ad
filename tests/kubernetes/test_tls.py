"""Webhook certificates made with ``cryptography`` (``szal.runners.kubernetes.tls``).

Covers: the development self-signed certificate (SANs, private key file,
reused while valid, remade for other hosts); the in-cluster plan for the
webhook Secret in virtual time - a missing or unreadable Secret gets a
fresh CA and serving certificate, a valid one is kept byte for byte, a
serving certificate 30 days before expiry or for other hosts is renewed by
the same CA (the caBundle does not change), a CA 30 days before expiry is
renewed with the old CA kept in the bundle; and that a TLS client trusting
only ``ca.crt`` accepts the serving certificate for the Service's DNS
names (a real handshake through Python's ssl module, which checks the
hostname and the chain as the API server does).

Not covered: the Secret and caBundle I/O (``e2e/test_webhook_certs.py``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from pathlib import Path

import pytest
from cryptography import x509

from szal.runners.kubernetes.certifying import service_hosts
from szal.runners.kubernetes.tls import (
    CA_CRT,
    TLS_CRT,
    TLS_KEY,
    ensure_self_signed,
    load_certificates,
    plan_webhook_tls,
    subject_alt_names,
    write_pair,
)

NOW = dt.datetime(2027, 1, 15, 8, 0, tzinfo=dt.UTC)
HOSTS = service_hosts("szal-webhook", "szal-system")


def _cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def test_service_hosts_are_the_four_service_names() -> None:
    assert HOSTS == (
        "szal-webhook",
        "szal-webhook.szal-system",
        "szal-webhook.szal-system.svc",
        "szal-webhook.szal-system.svc.cluster.local",
    )


def test_self_signed_certificate_is_made_once(tmp_path: Path) -> None:
    cert = ensure_self_signed(tmp_path, hosts=["127.0.0.1", "localhost"])
    assert cert.pkeyfile.stat().st_mode & 0o077 == 0
    parsed = x509.load_pem_x509_certificate(cert.certfile.read_bytes())
    assert sorted(subject_alt_names(parsed)) == ["127.0.0.1", "localhost"]
    before = cert.certfile.read_bytes()
    assert ensure_self_signed(tmp_path, hosts=["127.0.0.1", "localhost"]) == cert
    assert cert.certfile.read_bytes() == before
    ensure_self_signed(tmp_path, hosts=["127.0.0.1", "szal.example"])
    assert cert.certfile.read_bytes() != before
    # Near its end it is remade too.
    later = ensure_self_signed(
        tmp_path, hosts=["127.0.0.1"], now=dt.datetime.now(dt.UTC) + dt.timedelta(days=365)
    )
    assert later.certfile.read_bytes() != before


def test_a_missing_secret_gets_a_ca_and_a_serving_certificate() -> None:
    planned, reason = plan_webhook_tls(None, HOSTS, NOW)
    assert reason == "missing"
    ca = _cert(planned.ca_bundle)
    serving = _cert(planned.serving.cert)
    assert ca.not_valid_after_utc - NOW >= dt.timedelta(days=3650)
    assert dt.timedelta(days=365) <= serving.not_valid_after_utc - NOW < dt.timedelta(days=366)
    assert sorted(subject_alt_names(serving)) == sorted(HOSTS)
    serving.verify_directly_issued_by(ca)
    assert set(planned.secret_data()) == {"ca.crt", "ca.key", "tls.crt", "tls.key"}


def test_a_valid_secret_is_kept_as_it_is() -> None:
    planned, _ = plan_webhook_tls(None, HOSTS, NOW)
    data = planned.secret_data()
    again, reason = plan_webhook_tls(data, HOSTS, NOW + dt.timedelta(days=300))
    assert reason is None
    assert again.secret_data() == data


def test_serving_certificate_is_renewed_30_days_before_expiry_by_the_same_ca() -> None:
    planned, _ = plan_webhook_tls(None, HOSTS, NOW)
    data = planned.secret_data()
    kept, reason = plan_webhook_tls(data, HOSTS, NOW + dt.timedelta(days=334))
    assert reason is None and kept.serving == planned.serving
    renewed, reason = plan_webhook_tls(data, HOSTS, NOW + dt.timedelta(days=336))
    assert reason == "the serving certificate expires soon"
    assert renewed.ca_bundle == planned.ca_bundle  # the caBundle stays
    assert renewed.serving != planned.serving
    _cert(renewed.serving.cert).verify_directly_issued_by(_cert(planned.ca_bundle))


def test_other_hosts_renew_the_serving_certificate() -> None:
    planned, _ = plan_webhook_tls(None, HOSTS, NOW)
    other = service_hosts("szal-webhook", "elsewhere")
    renewed, reason = plan_webhook_tls(planned.secret_data(), other, NOW)
    assert reason == "the serving certificate names other hosts"
    assert sorted(subject_alt_names(_cert(renewed.serving.cert))) == sorted(other)
    assert renewed.ca_bundle == planned.ca_bundle


def test_ca_renewal_keeps_the_old_ca_in_the_bundle_until_it_expires() -> None:
    planned, _ = plan_webhook_tls(None, HOSTS, NOW)
    soon = NOW + dt.timedelta(days=3650 - 29)
    renewed, reason = plan_webhook_tls(planned.secret_data(), HOSTS, soon)
    assert reason == "the CA expires soon"
    bundle = load_certificates(renewed.ca_bundle)
    assert len(bundle) == 2 and bundle[1] == _cert(planned.ca_bundle)
    _cert(renewed.serving.cert).verify_directly_issued_by(bundle[0])
    # Once the old CA has expired it leaves the bundle.
    later = NOW + dt.timedelta(days=3651)
    pruned, reason = plan_webhook_tls(renewed.secret_data(), HOSTS, later)
    assert reason == "an old CA expired"
    assert load_certificates(pruned.ca_bundle) == [bundle[0]]


@pytest.mark.parametrize(
    "damage",
    [{TLS_CRT: "not a certificate"}, {TLS_KEY: ""}, {CA_CRT: "-----BEGIN CERTIFICATE-----\nx"}],
)
def test_a_damaged_secret_is_replaced(damage: dict[str, str]) -> None:
    planned, _ = plan_webhook_tls(None, HOSTS, NOW)
    data = {**planned.secret_data(), **damage}
    fresh, reason = plan_webhook_tls(data, HOSTS, NOW)
    assert reason in {"unreadable", "incomplete"}
    assert fresh.ca_bundle != planned.ca_bundle


def test_mismatched_key_is_replaced() -> None:
    one, _ = plan_webhook_tls(None, HOSTS, NOW)
    two, _ = plan_webhook_tls(None, HOSTS, NOW)
    data = {**one.secret_data(), TLS_KEY: two.serving.key}
    _, reason = plan_webhook_tls(data, HOSTS, NOW)
    assert reason == "a key does not match its certificate"


async def test_a_client_trusting_ca_crt_accepts_the_service_names(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    planned, _ = plan_webhook_tls(None, HOSTS, now)
    files = write_pair(tmp_path, planned.serving, cert_name="tls.crt", key_name="tls.key")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(files.certfile, files.pkeyfile)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"ok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        client_ctx = ssl.create_default_context(cadata=planned.ca_bundle)
        for host in ("szal-webhook.szal-system.svc", "szal-webhook.szal-system.svc.cluster.local"):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ctx, server_hostname=host
            )
            assert await reader.read() == b"ok"
            writer.close()
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ctx, server_hostname="other.szal-system.svc"
            )
    finally:
        server.close()
        await server.wait_closed()
