"""e2e/cluster/pki.py, the e2e cluster's certificates made with ``cryptography``.

Covers what the API server relies on: the CA is a CA, each leaf is signed by
it with the subject (groups as O, user as CN), extended key usage and SANs
asked for, keys are private files, and the service-account key pair matches.
Deliberately not: a running API server accepting them (e2e/cluster/up.sh
uses them; every e2e test runs on them).
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PKI = Path(__file__).resolve().parents[2] / "e2e" / "cluster" / "pki.py"


def pki(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(PKI), *args], capture_output=True, text=True, check=False
    )


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_ca_and_leaves(tmp_path: Path) -> None:
    assert pki("ca", "--out", str(tmp_path)).returncode == 0
    server = pki(
        "sign", "--out", str(tmp_path), "--ca", str(tmp_path), "apiserver", "/CN=kube-apiserver",
        "server", "365", "IP:127.0.0.1", "DNS:kubernetes.default.svc",
    )  # fmt: skip
    client = pki(
        "sign", "--out", str(tmp_path), "--ca", str(tmp_path), "kubelet",
        "/O=system:nodes/CN=system:node:n1", "client", "30",
    )  # fmt: skip
    assert server.returncode == 0 and client.returncode == 0, (server.stderr, client.stderr)
    ca = load(tmp_path / "ca.crt")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    usages = {
        "apiserver": ExtendedKeyUsageOID.SERVER_AUTH,
        "kubelet": ExtendedKeyUsageOID.CLIENT_AUTH,
    }
    for name, usage in usages.items():
        cert = load(tmp_path / f"{name}.crt")
        cert.verify_directly_issued_by(ca)
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [usage]
        assert (tmp_path / f"{name}.key").stat().st_mode & 0o077 == 0
    kubelet = load(tmp_path / "kubelet.crt").subject
    assert kubelet.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:nodes"
    assert kubelet.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:n1"
    sans = load(tmp_path / "apiserver.crt").extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert sans.value.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert sans.value.get_values_for_type(x509.DNSName) == ["kubernetes.default.svc"]


def test_service_account_key_pair(tmp_path: Path) -> None:
    assert pki("keypair", "--out", str(tmp_path), "sa").returncode == 0
    key = serialization.load_pem_private_key((tmp_path / "sa.key").read_bytes(), password=None)
    public = serialization.load_pem_public_key((tmp_path / "sa.pub").read_bytes())
    assert isinstance(key, rsa.RSAPrivateKey) and isinstance(public, rsa.RSAPublicKey)
    signature = key.sign(b"token", padding.PKCS1v15(), hashes.SHA256())
    public.verify(signature, b"token", padding.PKCS1v15(), hashes.SHA256())


def test_bad_subject_is_refused(tmp_path: Path) -> None:
    assert pki("ca", "--out", str(tmp_path)).returncode == 0
    bad = pki("sign", "--out", str(tmp_path), "--ca", str(tmp_path), "x", "/X=y", "client", "1")
    assert bad.returncode != 0 and "bad subject part" in bad.stderr
