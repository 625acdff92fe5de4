"""The MITM CA on disk: ``ca.pem`` (what clients trust) and ``ca.key`` (mode 0600).

:class:`CaStore` creates the pair once (refusing to overwrite it unless
forced), loads it as a :class:`rama_tls.CertificateAuthority` for leaf
issuance, describes it (subject, validity, SHA-256 fingerprint, the SPKI hash
Chromium's ``--ignore-certificate-errors-spki-list`` takes) and prints how to
trust it in curl, browsers and the OS stores. The CLI's ``rama ca
init|show|path`` are thin wrappers over it.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import logging
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from rama_tls import CertificateAuthority, KeyType

__all__ = [
    "CaExistsError",
    "CaInfo",
    "CaNotFoundError",
    "CaStore",
    "default_ca_dir",
    "spki_sha256",
]

log = logging.getLogger("rama_proxy.ca")

CERT_NAME = "ca.pem"
KEY_NAME = "ca.key"


class CaExistsError(FileExistsError):
    """``init`` found a CA already there (pass ``force=True`` to replace it)."""


class CaNotFoundError(FileNotFoundError):
    """No CA in the directory yet (create one with ``rama ca init``)."""


def default_ca_dir() -> Path:
    """Where the CA lives unless told otherwise.

    ``$RAMA_CA_DIR`` if set; else ``~/.rama/ca`` if it exists; else
    ``$XDG_DATA_HOME/rama/ca`` when ``XDG_DATA_HOME`` is set; else ``~/.rama/ca``.
    """
    env = os.environ.get("RAMA_CA_DIR")
    if env:
        return Path(env).expanduser()
    home = Path.home() / ".rama" / "ca"
    if home.exists():
        return home
    xdg = os.environ.get("XDG_DATA_HOME")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "rama" / "ca"
    return home


def spki_sha256(cert: x509.Certificate) -> str:
    """Base64 SHA-256 of the certificate's SubjectPublicKeyInfo (Chromium's SPKI hash)."""
    der = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return base64.b64encode(digest.finalize()).decode("ascii")


def _key_description(cert: x509.Certificate) -> str:
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    return type(key).__name__


@dataclass(frozen=True)
class CaInfo:
    """What :meth:`CaStore.show` reports about the CA certificate."""

    subject: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    sha256_fingerprint: str
    spki_sha256: str
    key: str
    cert_path: Path
    key_path: Path

    @property
    def expired(self) -> bool:
        """Whether the CA certificate is outside its validity now."""
        now = dt.datetime.now(dt.UTC)
        return not self.not_before <= now <= self.not_after

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (datetimes as ISO 8601, paths as strings)."""
        return {
            "subject": self.subject,
            "serial": self.serial,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "sha256_fingerprint": self.sha256_fingerprint,
            "spki_sha256": self.spki_sha256,
            "key": self.key,
            "cert_path": str(self.cert_path),
            "key_path": str(self.key_path),
            "expired": self.expired,
        }

    def text(self) -> str:
        """Human-readable lines (what ``rama ca show`` prints)."""
        return "\n".join(
            [
                f"subject:      {self.subject}",
                f"serial:       {self.serial}",
                f"valid from:   {self.not_before.isoformat()}",
                f"valid until:  {self.not_after.isoformat()}"
                + ("  (EXPIRED)" if self.expired else ""),
                f"key:          {self.key}",
                f"SHA-256:      {self.sha256_fingerprint}",
                f"SPKI SHA-256: {self.spki_sha256}",
                f"certificate:  {self.cert_path}",
                f"private key:  {self.key_path}",
            ]
        )


def _write_new(path: Path, data: bytes, mode: int, *, replace: bool) -> None:
    """Write ``data`` to ``path`` atomically (a temp file renamed or linked in place).

    Without ``replace`` the final step is ``link``, which fails if ``path``
    exists: two concurrent ``init`` calls cannot both win.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # umask may have narrowed or (for 0644) kept it
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise CaExistsError(f"{path} already exists (use force to replace it)") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


class CaStore:
    """A CA directory holding ``ca.pem`` and ``ca.key``.

    ``directory`` defaults to :func:`default_ca_dir`. A directory :meth:`init`
    creates gets mode 0700; the key is always 0600 and the certificate 0644
    (it is public: clients import it).
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory).expanduser() if directory is not None else default_ca_dir()

    @property
    def cert_path(self) -> Path:
        """``<dir>/ca.pem``: the certificate clients trust."""
        return self.directory / CERT_NAME

    @property
    def key_path(self) -> Path:
        """``<dir>/ca.key``: the private key (never share it)."""
        return self.directory / KEY_NAME

    def exists(self) -> bool:
        """Whether both files are there."""
        return self.cert_path.is_file() and self.key_path.is_file()

    def init(
        self,
        *,
        force: bool = False,
        common_name: str = "rama MITM CA",
        organization: str = "rama",
        valid_days: int = 3650,
        key_type: KeyType = "ec",
    ) -> CertificateAuthority:
        """Create a new CA and write it; returns it.

        Refuses (:class:`CaExistsError`) when ``ca.pem`` or ``ca.key`` already
        exists, unless ``force`` (then both are replaced: clients that trusted
        the old one must import the new one).
        """
        if not force and (self.cert_path.exists() or self.key_path.exists()):
            raise CaExistsError(
                f"a CA already exists in {self.directory} (use force to replace it)"
            )
        try:
            self.directory.mkdir(mode=0o700, parents=True)
        except FileExistsError:
            pass  # an existing directory keeps its mode (it may be shared); the key is 0600
        else:
            os.chmod(self.directory, 0o700)  # whatever the umask
        ca = CertificateAuthority.create(
            common_name, organization=organization, valid_days=valid_days, key_type=key_type
        )
        key_pem = ca.as_certified_key().key_pem()
        _write_new(self.key_path, key_pem, 0o600, replace=force)
        try:
            _write_new(self.cert_path, ca.cert_pem(), 0o644, replace=force)
        except CaExistsError:
            # lost a race for the certificate: remove the key we just wrote
            if self.key_path.read_bytes() == key_pem:
                self.key_path.unlink()
            raise
        log.info("created CA %s in %s", ca.cert.subject.rfc4514_string(), self.directory)
        return ca

    def load(self, password: bytes | None = None) -> CertificateAuthority:
        """The CA from disk (``password`` for an encrypted key).

        Raises :class:`CaNotFoundError` when there is none, and
        :class:`rama_tls.CertificateError` when the files are invalid or do
        not match. A key readable by group or others is loaded with a warning.
        """
        if not self.exists():
            raise CaNotFoundError(f"no CA in {self.directory} (create one with `rama ca init`)")
        mode = stat.S_IMODE(self.key_path.stat().st_mode)
        if mode & 0o077:
            log.warning(
                "CA key %s is readable by others (mode %o); run chmod 600 on it",
                self.key_path,
                mode,
            )
        return CertificateAuthority.load(self.cert_path, self.key_path, password)

    def load_or_init(self, **init_options: Any) -> CertificateAuthority:
        """:meth:`load` the CA, creating it first if the directory has none."""
        if not self.cert_path.exists() and not self.key_path.exists():
            try:
                return self.init(**init_options)
            except CaExistsError:
                pass  # created concurrently: load that one
        return self.load()

    def show(self) -> CaInfo:
        """Subject, validity, fingerprints and paths of the CA certificate (no key needed)."""
        if not self.cert_path.is_file():
            raise CaNotFoundError(f"no CA in {self.directory} (create one with `rama ca init`)")
        cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        fp = cert.fingerprint(hashes.SHA256()).hex().upper()
        return CaInfo(
            subject=cert.subject.rfc4514_string(),
            serial=f"{cert.serial_number:X}",
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            sha256_fingerprint=":".join(fp[i : i + 2] for i in range(0, len(fp), 2)),
            spki_sha256=spki_sha256(cert),
            key=_key_description(cert),
            cert_path=self.cert_path,
            key_path=self.key_path,
        )

    def trust_instructions(self, *, proxy: str = "http://127.0.0.1:8080") -> str:
        """How to make clients trust this CA (curl, browsers, OS stores), as text.

        ``proxy`` is the proxy URL used in the examples.
        """
        info = self.show()
        pem = str(info.cert_path)
        spki = info.spki_sha256
        return f"""\
Trust the rama MITM CA ({info.subject}; SHA-256 {info.sha256_fingerprint})

curl:
  curl --cacert '{pem}' -x {proxy} https://example.com/
  (or export CURL_CA_BUNDLE='{pem}'; Python: SSL_CERT_FILE / REQUESTS_CA_BUNDLE;
   Node.js: NODE_EXTRA_CA_CERTS)

Chromium / Chrome, without importing anything (trusts this CA's key only; the proxy
sends the CA in the chain, which the flag needs):
  chromium --proxy-server={proxy} --user-data-dir=/tmp/rama-chromium \\
    --ignore-certificate-errors-spki-list={spki}

Chromium on Linux (NSS database ~/.pki/nssdb; certutil is in libnss3-tools / nss-tools):
  mkdir -p ~/.pki/nssdb
  [ -f ~/.pki/nssdb/cert9.db ] || certutil -d sql:$HOME/.pki/nssdb -N --empty-password
  certutil -d sql:$HOME/.pki/nssdb -A -t "C,," -n "rama MITM CA" -i '{pem}'

Firefox (per profile): Settings > Privacy & Security > Certificates > View Certificates >
  Authorities > Import '{pem}', or with NSS tools:
  certutil -d sql:<profile directory> -A -t "C,," -n "rama MITM CA" -i '{pem}'
  (or set security.enterprise_roots.enabled to use the OS store)

Debian / Ubuntu system store:
  sudo cp '{pem}' /usr/local/share/ca-certificates/rama-mitm-ca.crt
  sudo update-ca-certificates

Fedora / RHEL:
  sudo cp '{pem}' /etc/pki/ca-trust/source/anchors/rama-mitm-ca.pem && sudo update-ca-trust

macOS system keychain:
  sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain '{pem}'

Windows (administrator prompt; or certutil -user -addstore Root for the current user):
  certutil -addstore -f ROOT "{pem}"

Remove it again when you are done: anyone holding '{info.key_path}' can impersonate
every HTTPS site to the clients that trust it.
"""
