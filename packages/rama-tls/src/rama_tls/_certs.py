"""Certificates with ``cryptography``: a CA, leaf issuance for any host or IP, PEM I/O.

* :class:`CertifiedKey` - a certificate, its private key and the chain to send.
* :class:`CertificateAuthority` - create or load a CA and issue leaf certificates
  (DNS names and IP addresses become the right SAN type).
* :class:`LeafCertificateCache` - bounded LRU of issued leaves, for MITM proxies
  that meet thousands of hosts.
* :func:`self_signed` - a one-off certificate for tests and demos.

Keys default to ECDSA P-256 (well under a millisecond to generate); RSA keys
take tens of milliseconds, so :meth:`LeafCertificateCache.aget` (what the
acceptor's resolver uses) issues in a worker thread and never blocks the
event loop. Leaves carry the extensions strict verifiers require (SAN,
AKI/SKI, key usage, serverAuth).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import anyio
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ._errors import CertificateError
from ._singleflight import SingleFlight

__all__ = [
    "CertificateAuthority",
    "CertifiedKey",
    "KeyType",
    "LeafCertificateCache",
    "PrivateKey",
    "generate_key",
    "self_signed",
]

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
"""Private key types rama-tls issues and loads."""

KeyType = Literal["ec", "rsa"]


def _matches(key: PrivateKey, cert: x509.Certificate) -> bool:
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)


def generate_key(key_type: KeyType = "ec") -> PrivateKey:
    """A new ECDSA P-256 (default) or RSA-2048 private key."""
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass(frozen=True, eq=False)
class CertifiedKey:
    """A certificate with its private key and the intermediate chain to present.

    Compared and hashed by identity, so it can key caches of SSL contexts.
    """

    cert: x509.Certificate
    key: PrivateKey
    chain: tuple[x509.Certificate, ...] = field(default=())

    def cert_pem(self) -> bytes:
        """The leaf certificate as PEM."""
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def chain_pem(self) -> bytes:
        """Leaf followed by the chain, as PEM (what ``ssl.load_cert_chain`` reads)."""
        enc = serialization.Encoding.PEM
        return self.cert_pem() + b"".join(c.public_bytes(enc) for c in self.chain)

    def key_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM."""
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def names(self) -> tuple[str, ...]:
        """DNS names and IP addresses of the subjectAltName extension."""
        try:
            san = self.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        except x509.ExtensionNotFound:
            return ()
        dns = san.value.get_values_for_type(x509.DNSName)
        ips = [str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)]
        return (*dns, *ips)

    def save(self, cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str]) -> None:
        """Write the chain PEM and the key PEM (key file mode 0600)."""
        Path(cert_path).write_bytes(self.chain_pem())
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(self.key_pem())

    @classmethod
    def from_pem(
        cls, cert_pem: bytes, key_pem: bytes, password: bytes | None = None
    ) -> CertifiedKey:
        """Load a chain PEM (leaf first) and a key PEM; the key must match the leaf.

        ``password`` decrypts an encrypted key. Every failure (bad PEM, a
        missing, wrong or needless password, an unsupported key) raises
        :class:`~rama_tls.CertificateError`.
        """
        try:
            certs = x509.load_pem_x509_certificates(cert_pem)
        except ValueError as e:
            raise CertificateError(f"invalid PEM: {e}") from e
        try:
            key = serialization.load_pem_private_key(key_pem, password)
        except TypeError as e:
            # cryptography's way of saying a password is missing, or given for a plain key
            hint = "a password is needed" if password is None else "no password is needed"
            raise CertificateError(f"cannot load the private key ({hint}): {e}") from e
        except (ValueError, UnsupportedAlgorithm) as e:
            if password is not None and b"ENCRYPTED" in key_pem:
                # a wrong password usually fails the padding check ("bad decrypt"), but
                # about once in 256 it decrypts to garbage that fails to parse instead
                raise CertificateError(
                    f"cannot decrypt the private key (wrong password?): {e}"
                ) from e
            raise CertificateError(f"invalid PEM: {e}") from e
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise CertificateError(f"unsupported key type {type(key).__name__}")
        if not _matches(key, certs[0]):
            raise CertificateError("private key does not match the certificate")
        return cls(certs[0], key, tuple(certs[1:]))

    @classmethod
    def load(
        cls,
        cert_path: str | os.PathLike[str],
        key_path: str | os.PathLike[str],
        password: bytes | None = None,
    ) -> CertifiedKey:
        """Read :meth:`save`'d (or any PEM) files."""
        return cls.from_pem(Path(cert_path).read_bytes(), Path(key_path).read_bytes(), password)


def _san_for(hosts: tuple[str, ...]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host.strip("[]"))))
        except ValueError:
            names.append(x509.DNSName(host.lower().rstrip(".")))
    return x509.SubjectAlternativeName(names)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _subject_key_id(key: PrivateKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key.public_key())


def _leaf_builder(
    hosts: tuple[str, ...], key: PrivateKey, issuer: x509.Name, valid_days: float
) -> x509.CertificateBuilder:
    if not hosts:
        raise CertificateError("a leaf certificate needs at least one host name or IP")
    common_name = hosts[0].strip("[]")[:64]
    now = _now()
    key_usage = x509.KeyUsage(
        digital_signature=True,
        key_encipherment=isinstance(key, rsa.RSAPrivateKey),
        content_commitment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
        # backdated: a client whose clock is a bit behind must still accept it
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=valid_days))
        .add_extension(_san_for(hosts), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage, critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(_subject_key_id(key), critical=False)
    )


def _hash_for(key: PrivateKey) -> hashes.SHA256:
    return hashes.SHA256()


class CertificateAuthority:
    """A CA that signs leaf certificates for any host name or IP address."""

    def __init__(self, cert: x509.Certificate, key: PrivateKey) -> None:
        if not _matches(key, cert):
            raise CertificateError("CA key does not match the CA certificate")
        self.cert = cert
        self.key = key

    @classmethod
    def create(
        cls,
        common_name: str = "rama CA",
        *,
        organization: str = "rama",
        valid_days: int = 3650,
        key_type: KeyType = "ec",
    ) -> CertificateAuthority:
        """Generate a new self-signed root CA."""
        key = generate_key(key_type)
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            ]
        )
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=valid_days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    key_encipherment=False,
                    content_commitment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(_subject_key_id(key), critical=False)
            .sign(key, _hash_for(key))
        )
        return cls(cert, key)

    def issue(self, *hosts: str, valid_days: float = 397, key_type: KeyType = "ec") -> CertifiedKey:
        """Issue a leaf for ``hosts`` (DNS names and/or IPs; the first is the CN).

        Valid from a day ago (for clients whose clock is behind) until
        ``valid_days`` from now (fractions allowed; X.509 keeps whole seconds).

        The returned chain contains the CA certificate, so clients that trust
        the CA can also build the path when only the leaf's issuer is known.
        """
        key = generate_key(key_type)
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key())
        cert = (
            _leaf_builder(tuple(hosts), key, self.cert.subject, valid_days)
            .add_extension(aki, critical=False)
            .sign(self.key, _hash_for(self.key))
        )
        return CertifiedKey(cert, key, (self.cert,))

    def cert_pem(self) -> bytes:
        """The CA certificate as PEM (what clients add to their trust store)."""
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def as_certified_key(self) -> CertifiedKey:
        """The CA certificate and key as a :class:`CertifiedKey`."""
        return CertifiedKey(self.cert, self.key)

    def save(self, cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str]) -> None:
        """Write the CA certificate and key as PEM (key file mode 0600)."""
        self.as_certified_key().save(cert_path, key_path)

    @classmethod
    def load(
        cls,
        cert_path: str | os.PathLike[str],
        key_path: str | os.PathLike[str],
        password: bytes | None = None,
    ) -> CertificateAuthority:
        """Load a CA from PEM files."""
        ck = CertifiedKey.load(cert_path, key_path, password)
        return cls(ck.cert, ck.key)


def self_signed(*hosts: str, valid_days: int = 30, key_type: KeyType = "ec") -> CertifiedKey:
    """A self-signed leaf for ``hosts`` (default ``localhost``, 127.0.0.1, ::1)."""
    hosts = hosts or ("localhost", "127.0.0.1", "::1")
    key = generate_key(key_type)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0].strip("[]")[:64])])
    cert = _leaf_builder(tuple(hosts), key, name, valid_days).sign(key, _hash_for(key))
    return CertifiedKey(cert, key)


class LeafCertificateCache:
    """Issues one leaf per host on first use and keeps the ``max_size`` most recent.

    Host names are case-folded; IP literals are normalized, so ``::1`` and
    ``[0:0::1]`` share an entry. From async code use :meth:`aget`: the key
    generation and signing run in a worker thread, and concurrent calls for
    the same new host share one issuance. The cache belongs to one event loop.

    A cached leaf is only handed out while it is valid with room to spare:
    once fewer than ``renew_before`` remain until its ``not_valid_after`` (or
    before its ``not_valid_before``, after a clock step back) it is replaced
    by a fresh one. ``renew_before`` defaults to a day, or a quarter of the
    validity for leaves shorter than four days, and must be shorter than the
    validity.
    """

    def __init__(
        self,
        ca: CertificateAuthority,
        *,
        max_size: int = 1024,
        valid_days: float = 397,
        key_type: KeyType = "ec",
        renew_before: dt.timedelta | None = None,
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        validity = dt.timedelta(days=valid_days)
        if renew_before is None:
            renew_before = min(dt.timedelta(days=1), validity / 4)
        if not dt.timedelta(0) <= renew_before < validity:
            raise ValueError("renew_before must be at least 0 and shorter than valid_days")
        self.ca = ca
        self.max_size = max_size
        self.valid_days = valid_days
        self.renew_before = renew_before
        """Re-issue a cached leaf once less than this remains of its validity."""
        self.key_type: KeyType = key_type
        self._entries: OrderedDict[str, CertifiedKey] = OrderedDict()
        self._issuing: SingleFlight[str, CertifiedKey] = SingleFlight()
        self.issued = 0
        """How many certificates were issued (cache misses) so far."""

    @staticmethod
    def normalize(host: str) -> str:
        """The cache key of a host: lower-cased name or canonical IP text."""
        try:
            return str(ipaddress.ip_address(host.strip("[]")))
        except ValueError:
            return host.lower().rstrip(".")

    def get(self, host: str) -> CertifiedKey:
        """The cached leaf for ``host``, issuing it if needed (blocking: see :meth:`aget`)."""
        key = self.normalize(host)
        entry = self._lookup(key)
        if entry is None:
            entry = self._store(key, self._issue(key))
        return entry

    async def aget(self, host: str) -> CertifiedKey:
        """The cached leaf for ``host``; a miss is issued in a worker thread.

        Concurrent calls for the same uncached host wait for a single issuance
        and all get the same :class:`CertifiedKey`.
        """
        key = self.normalize(host)
        entry = self._lookup(key)
        if entry is not None:
            return entry

        async def issue() -> CertifiedKey:
            # a runner cancelled after its thread finished may have stored it already
            done = self._lookup(key)
            if done is not None:
                return done
            return self._store(key, await anyio.to_thread.run_sync(self._issue, key))

        return await self._issuing.run(key, issue)

    def _issue(self, key: str) -> CertifiedKey:
        return self.ca.issue(key, valid_days=self.valid_days, key_type=self.key_type)

    def _lookup(self, key: str) -> CertifiedKey | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if not self._fresh(entry):
            del self._entries[key]  # expired, about to, or not yet valid: issue a new one
            return None
        self._entries.move_to_end(key)
        return entry

    def _fresh(self, entry: CertifiedKey) -> bool:
        cert, now = entry.cert, _now()
        return cert.not_valid_before_utc <= now < cert.not_valid_after_utc - self.renew_before

    def _store(self, key: str, entry: CertifiedKey) -> CertifiedKey:
        self.issued += 1
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_size:
            self._entries.popitem(last=False)
        return entry

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, host: object) -> bool:
        """Whether a leaf for ``host`` is cached and still fresh (see ``renew_before``)."""
        if not isinstance(host, str):
            return False
        entry = self._entries.get(self.normalize(host))
        return entry is not None and self._fresh(entry)
