"""JA4 TLS client fingerprint (FoxIO), with its raw and original-order variants.

Follows the FoxIO specification (technical_details/JA4.md):

``JA4 = a_b_c`` where ``a`` is transport (``t`` TCP, ``q`` QUIC, ``d`` DTLS),
two-character version (highest non-GREASE supported_versions entry, else the
hello's legacy version), ``d``/``i`` for SNI present/absent, two-digit counts
of cipher suites and extensions (GREASE excluded, capped at 99) and the first
and last character of the first ALPN value (``00`` if none); ``b`` is the
truncated SHA-256 of the sorted cipher list and ``c`` of the sorted extension
list without SNI and ALPN, followed by ``_`` and the signature algorithms in
wire order. ``JA4_r`` shows the lists instead of hashes; ``JA4_o``/``JA4_ro``
keep wire order and keep SNI and ALPN. Empty lists hash to twelve zeros.

Two corners where implementations disagree, and what rama does:

* ALPN characters (:func:`ja4_alpn_chars`) follow the specification text
  (JA4.md, "ALPN Extension Value", with its examples for ``0x20`` added in
  January 2026): when the first and last bytes of the first protocol are
  ASCII letters or digits they are printed as they are (a one-byte value
  twice), otherwise the first and last characters of the value's hex form are
  (``0xAB`` -> ``ab``, ``0x20 0x61`` -> ``21``, ``0xBA 0xAD`` -> ``bd``).
  FoxIO's reference programs (``python/ja4.py``, ``rust/ja4/src/tls.rs``)
  take the characters from tshark's text rendering and print ``9``/``99``
  for non-ASCII bytes (their ``tls-non-ascii-alpn`` vector reads ``99``), and
  the ``ja4plus`` package prints other printable ASCII bytes as they are,
  ``9`` for bytes from ``0x80`` and ``99`` for control bytes. They all agree
  when both end bytes are ASCII alphanumerics, which covers every registered
  ALPN identifier.
* JA4_o of a hello whose only extensions are SNI and/or ALPN: its ``c`` part
  hashes the original-order list (``0000,0010``) that JA4_ro shows, as
  FoxIO's Rust implementation does. FoxIO's Python implementation and
  ``ja4plus`` print ``000000000000`` there, because they take the zero
  sentinel from the sorted list, which never holds SNI or ALPN. JA4, JA4_r
  and JA4_ro are the same in all three.

The tests pin both corners.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from ._client_hello import ClientHello
from ._extensions import ExtensionType, SupportedVersions
from ._grease import is_grease

__all__ = ["Ja4", "Ja4Transport", "ja4", "ja4_alpn_chars", "ja4_version"]

_VERSIONS = {
    0x0304: "13",
    0x0303: "12",
    0x0302: "11",
    0x0301: "10",
    0x0300: "s3",
    0x0002: "s2",
    0xFEFF: "d1",
    0xFEFD: "d2",
    0xFEFC: "d3",
}
_SNI = ExtensionType.SERVER_NAME
_ALPN = ExtensionType.APPLICATION_LAYER_PROTOCOL_NEGOTIATION


class Ja4Transport(StrEnum):
    """First character of a JA4: the transport the hello travelled on."""

    TCP = "t"
    QUIC = "q"
    DTLS = "d"


@dataclass(frozen=True, slots=True)
class Ja4:
    """The four JA4 renderings of one ClientHello.

    In the shape of :class:`~rama_tls.Fingerprint`: ``text``,
    ``hash`` and ``str()`` are :attr:`ja4` (sorted and hashed), ``raw`` is
    :attr:`ja4_r` (sorted, in clear).
    """

    ja4: str
    """Sorted and hashed: ``t13d1516h2_8daaf6152771_e5627efa2ab1``."""
    ja4_r: str
    """Sorted, raw lists instead of hashes."""
    ja4_o: str
    """Original (wire) order, hashed; SNI and ALPN kept in the extension list."""
    ja4_ro: str
    """Original order, raw."""

    @property
    def text(self) -> str:
        """The canonical fingerprint: :attr:`ja4`."""
        return self.ja4

    @property
    def hash(self) -> str:
        """The hashed form: :attr:`ja4`."""
        return self.ja4

    @property
    def raw(self) -> str:
        """The unhashed form: :attr:`ja4_r`."""
        return self.ja4_r

    def __str__(self) -> str:
        return self.ja4


def _hash12(text: str) -> str:
    if not text:
        return "000000000000"
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:12]


def _hex_list(values: Sequence[int]) -> str:
    return ",".join(f"{v:04x}" for v in values)


def ja4_version(hello: ClientHello) -> str:
    """The two-character version part of a JA4."""
    version = hello.legacy_version
    if hello.find(SupportedVersions) is not None:
        offered = [v for v in hello.supported_versions if not is_grease(v)]
        if offered:
            version = max(offered)
    return _VERSIONS.get(version, "00")


def _is_alnum(byte: int) -> bool:
    return 0x30 <= byte <= 0x39 or 0x41 <= byte <= 0x5A or 0x61 <= byte <= 0x7A


def ja4_alpn_chars(first_alpn: bytes | None) -> str:
    """The two ALPN characters of a JA4 for the first offered protocol.

    ``00`` without a (non-empty) protocol; the first and last bytes when both
    are ASCII letters or digits (``h2``, ``http/1.1`` -> ``h1``, ``h`` ->
    ``hh``); else the first and last characters of the hex form
    (``0xAB 0xCD`` -> ``ad``), as the FoxIO specification says (see the module
    docstring for how other implementations differ).
    """
    if not first_alpn:
        return "00"
    first, last = first_alpn[0], first_alpn[-1]
    if _is_alnum(first) and _is_alnum(last):
        return chr(first) + chr(last)
    hexed = first_alpn.hex()
    return hexed[0] + hexed[-1]


def ja4(hello: ClientHello, transport: Ja4Transport | None = None) -> Ja4:
    """Compute JA4, JA4_r, JA4_o and JA4_ro of a ClientHello.

    ``transport`` defaults to QUIC when the hello carries
    quic_transport_parameters, else TCP.
    """
    if transport is None:
        has_quic = hello.extension(ExtensionType.QUIC_TRANSPORT_PARAMETERS) is not None
        transport = Ja4Transport.QUIC if has_quic else Ja4Transport.TCP
    ciphers = [c for c in hello.cipher_suites if not is_grease(c)]
    exts = [e for e in hello.extension_types if not is_grease(e)]
    sigs = [s for s in hello.signature_algorithms if not is_grease(s)]
    alpn = hello.alpn_protocols
    prefix = (
        f"{transport.value}{ja4_version(hello)}"
        f"{'d' if _SNI in exts else 'i'}"
        f"{min(len(ciphers), 99):02d}{min(len(exts), 99):02d}"
        f"{ja4_alpn_chars(alpn[0] if alpn else None)}"
    )
    sig_part = f"_{_hex_list(sigs)}" if sigs else ""

    sorted_ciphers = _hex_list(sorted(ciphers))
    sorted_exts = _hex_list(sorted(e for e in exts if e not in (_SNI, _ALPN)))
    sorted_c = f"{sorted_exts}{sig_part}" if sorted_exts else ""
    wire_ciphers = _hex_list(ciphers)
    wire_c = f"{_hex_list(exts)}{sig_part}" if exts else ""

    return Ja4(
        ja4=f"{prefix}_{_hash12(sorted_ciphers)}_{_hash12(sorted_c)}",
        ja4_r=f"{prefix}_{sorted_ciphers}_{sorted_exts}{sig_part}",
        ja4_o=f"{prefix}_{_hash12(wire_ciphers)}_{_hash12(wire_c)}",
        ja4_ro=f"{prefix}_{wire_ciphers}_{_hex_list(exts)}{sig_part}",
    )
