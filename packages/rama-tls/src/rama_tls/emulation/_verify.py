"""Server certificate chain verification with ``cryptography.x509.verification``.

The trust store is the system's (the bundle the stdlib ``ssl`` module would
load: ``SSL_CERT_FILE`` or OpenSSL's default file and directory) or a given CA
bundle. The name checked is a DNS name, or an IP address when the server
name is an IP literal. Failures raise
:class:`~rama_tls.CertificateVerificationError`.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import os
import re
import ssl
import warnings
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.x509 import DNSName, IPAddress
from cryptography.x509.verification import (
    PolicyBuilder,
    Store,
    VerificationError,
)

from .._errors import CertificateVerificationError

__all__ = ["CaSource", "load_store", "verify_chain"]

CaSource = str | os.PathLike[str] | bytes | Sequence[x509.Certificate] | Store | None
"""A CA bundle: a PEM file path, PEM bytes, certificates, a ready ``Store``, or None (system)."""


@functools.cache
def _system_store() -> Store:
    paths = ssl.get_default_verify_paths()
    certs: list[x509.Certificate] = []
    for file in (paths.cafile, paths.openssl_cafile, "/etc/ssl/certs/ca-certificates.crt"):
        if file and Path(file).is_file():
            certs = _load_pem(Path(file).read_bytes())
            if certs:
                break
    if not certs:
        for directory in (paths.capath, paths.openssl_capath):
            if directory and Path(directory).is_dir():
                for entry in sorted(Path(directory).glob("*.pem")):
                    certs.extend(_load_pem(entry.read_bytes()))
    if not certs:
        raise CertificateVerificationError("no system trust store found (pass ca=...)")
    return Store(certs)


_PEM_BLOCK = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)


def _load_pem(data: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle that parses; the others are skipped.

    A system bundle may hold a certificate that today's ``cryptography`` only
    warns about (a non-positive serial) and a later one rejects: one such
    entry must not make the whole trust store unusable.
    """
    certs: list[x509.Certificate] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for block in _PEM_BLOCK.findall(data):
            try:
                certs.append(x509.load_pem_x509_certificate(block))
            except (ValueError, x509.InvalidVersion):
                continue
    return certs


def load_store(ca: CaSource) -> Store:
    """A trust store from a CA source (see :data:`CaSource`)."""
    if ca is None:
        return _system_store()
    if isinstance(ca, Store):
        return ca
    if isinstance(ca, bytes):
        certs = _load_pem(ca)
    elif isinstance(ca, str | os.PathLike):
        certs = _load_pem(Path(ca).read_bytes())
    else:
        certs = list(ca)
    if not certs:
        raise ValueError("the CA bundle holds no certificate")
    return Store(certs)


def verify_chain(chain_der: Sequence[bytes], server_name: str, store: Store) -> x509.Certificate:
    """Verify the server's chain (leaf first) for ``server_name``; returns the leaf."""
    if not chain_der:
        raise CertificateVerificationError("the server sent no certificate")
    try:
        chain = [x509.load_der_x509_certificate(der) for der in chain_der]
    except (ValueError, x509.InvalidVersion) as exc:
        raise CertificateVerificationError("the server's certificate cannot be parsed") from exc
    name = server_name.strip("[]")
    try:
        subject: DNSName | IPAddress = IPAddress(ipaddress.ip_address(name))
    except ValueError:
        try:
            subject = DNSName(name.rstrip("."))
        except ValueError as exc:
            raise CertificateVerificationError(f"invalid server name {name!r}") from exc
    verifier = (
        PolicyBuilder()
        .store(store)
        .time(datetime.datetime.now(datetime.UTC))
        .build_server_verifier(subject)
    )
    try:
        verifier.verify(chain[0], chain[1:])
    except VerificationError as exc:
        raise CertificateVerificationError(
            f"certificate verification failed: {exc}", verify_message=str(exc)
        ) from exc
    return chain[0]
