"""JA3 TLS client fingerprint (Salesforce): a pure function of a :class:`ClientHello`.

The JA3 string is ``version,ciphers,extensions,groups,point_formats``: decimal
values joined with ``-`` in wire order, GREASE values removed; the fingerprint
is its MD5 hex digest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from ._client_hello import ClientHello
from ._grease import is_grease

__all__ = ["Ja3", "ja3"]


@dataclass(frozen=True, slots=True)
class Ja3:
    """A JA3 fingerprint: the full string and its MD5 (the shape of
    :class:`~rama_tls.Fingerprint`: ``text`` and ``str()`` are the MD5,
    ``raw`` the string)."""

    string: str
    """E.g. ``771,4865-4866-...,0-23-65281-...,29-23-24,0`` (also :attr:`raw`)."""
    hash: str
    """Lower-case MD5 hex digest of :attr:`string`: the JA3 fingerprint."""

    @property
    def text(self) -> str:
        """The canonical fingerprint: the MD5 (:attr:`hash`)."""
        return self.hash

    @property
    def raw(self) -> str:
        """The unhashed JA3 string (:attr:`string`)."""
        return self.string

    def __str__(self) -> str:
        return self.hash


def _join(values: Iterable[int]) -> str:
    return "-".join(str(v) for v in values if not is_grease(v))


def ja3(hello: ClientHello) -> Ja3:
    """Compute the JA3 fingerprint of a ClientHello."""
    string = ",".join(
        [
            str(hello.legacy_version),
            _join(hello.cipher_suites),
            _join(hello.extension_types),
            _join(hello.supported_groups),
            # point formats are 8-bit and never GREASE; joined as-is
            "-".join(str(v) for v in hello.ec_point_formats),
        ]
    )
    # MD5 is what JA3 defines; it is an identifier here, not a security boundary.
    digest = hashlib.md5(string.encode("ascii"), usedforsecurity=False).hexdigest()
    return Ja3(string, digest)
