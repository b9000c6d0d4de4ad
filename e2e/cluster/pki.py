"""The e2e cluster's certificates, made with ``cryptography`` (no openssl command).

``up.sh`` calls it for the control plane's PKI (a CA, the API server's
serving certificate, client certificates for the admin, the API server
towards kubelets and the front proxy, the service-account signing key);
``node-up.sh`` for the real node's kubelet client certificate. The operator's
own webhook certificates are made the same way, by
``szal.runners.kubernetes.tls``, whose certificate builder this uses.

Usage (each command writes ``NAME.key`` / ``NAME.crt`` or ``NAME.pub`` in ``--out``):

    pki.py ca --out DIR
    pki.py sign --out DIR --ca DIR NAME SUBJECT {server,client} DAYS [SAN ...]
    pki.py keypair --out DIR NAME

``SUBJECT`` is written like openssl's ``-subj`` (``/O=system:masters/CN=admin``);
a SAN is ``IP:127.0.0.1`` or ``DNS:kubernetes``.

Decisions: RSA 2048 keys in PKCS#8 PEM and SHA-256 signatures, as the
openssl commands this replaces made them; key files are created 0600; every
leaf certificate has ``CA:FALSE``, a critical key usage (digital signature,
key encipherment) and one extended key usage; subject and authority key
identifiers are set, so a chain is unambiguous. Runs on the project's
virtualenv (``make install``), where ``szal`` and ``cryptography`` are.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from szal.runners.kubernetes.tls import certificate_builder, key_usage

_ATTRIBUTES = {
    "CN": NameOID.COMMON_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
}
_USAGES = {"server": ExtendedKeyUsageOID.SERVER_AUTH, "client": ExtendedKeyUsageOID.CLIENT_AUTH}


def parse_subject(text: str) -> x509.Name:
    """``/O=system:nodes/CN=system:node:n1`` as an X.509 name, in the order written."""
    parts = [p for p in text.split("/") if p]
    attributes = []
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep or key not in _ATTRIBUTES or not value:
            raise SystemExit(f"pki.py: bad subject part {part!r} in {text!r} (use CN=, O=, OU=)")
        attributes.append(x509.NameAttribute(_ATTRIBUTES[key], value))
    return x509.Name(attributes)


def parse_san(text: str) -> x509.GeneralName:
    kind, _, value = text.partition(":")
    if kind == "IP":
        return x509.IPAddress(ipaddress.ip_address(value))
    if kind == "DNS" and value:
        return x509.DNSName(value)
    raise SystemExit(f"pki.py: bad subject alternative name {text!r} (use IP:... or DNS:...)")


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)


def write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def make_ca(out: Path) -> None:
    key = new_key()
    name = parse_subject("/CN=szal-e2e-ca")
    cert = (
        certificate_builder(name, name, key, _now(), 3650)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    write_key(out / "ca.key", key)
    write_cert(out / "ca.crt", cert)


def sign(
    out: Path, ca_dir: Path, name: str, subject: str, usage: str, days: int, sans: list[str]
) -> None:
    ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), password=None)
    if not isinstance(ca_key, rsa.RSAPrivateKey):
        raise SystemExit(f"pki.py: {ca_dir / 'ca.key'} is not an RSA key")
    key = new_key()
    builder = (
        certificate_builder(parse_subject(subject), ca_cert.subject, key, _now(), days)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=False)
        .add_extension(key_usage(digital_signature=True, key_encipherment=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([_USAGES[usage]]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([parse_san(s) for s in sans]), critical=False
        )
    write_key(out / f"{name}.key", key)
    write_cert(out / f"{name}.crt", builder.sign(ca_key, hashes.SHA256()))


def keypair(out: Path, name: str) -> None:
    key = new_key()
    write_key(out / f"{name}.key", key)
    (out / f"{name}.pub").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pki.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    ca = commands.add_parser("ca", help="a self-signed CA: ca.key, ca.crt")
    ca.add_argument("--out", type=Path, required=True)
    leaf = commands.add_parser("sign", help="a key and a certificate signed by --ca")
    leaf.add_argument("--out", type=Path, required=True)
    leaf.add_argument("--ca", type=Path, required=True, help="directory with ca.crt and ca.key")
    leaf.add_argument("name")
    leaf.add_argument("subject")
    leaf.add_argument("usage", choices=sorted(_USAGES))
    leaf.add_argument("days", type=int)
    leaf.add_argument("sans", nargs="*")
    pair = commands.add_parser("keypair", help="a key and its public key: NAME.key, NAME.pub")
    pair.add_argument("--out", type=Path, required=True)
    pair.add_argument("name")
    args = parser.parse_args(argv)
    if args.command == "ca":
        make_ca(args.out)
    elif args.command == "sign":
        sign(args.out, args.ca, args.name, args.subject, args.usage, args.days, args.sans)
    else:
        keypair(args.out, args.name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
