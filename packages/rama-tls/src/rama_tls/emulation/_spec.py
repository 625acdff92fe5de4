"""A declarative, immutable ClientHello and the per-connection hello built from it.

:class:`ClientHelloSpec` holds everything a browser's ClientHello fixes:
record and legacy versions, cipher suites, compression methods, extensions
in wire order with their payloads (as templates), the padding rule and the
Chrome permutation option. :meth:`ClientHelloSpec.prepare` fills in what a
real client makes fresh per connection and keeps every other byte as the
template has it:

* random (32 bytes) and legacy session id (``session_id_length`` bytes);
* the SNI host name (the ``server_name`` argument; omitted for IP literals,
  as browsers do);
* key shares: a new private key per offered group (X25519, P-256, P-384,
  P-521, X25519MLKEM768); shares of groups the engine cannot complete keep
  their length with random bytes;
* GREASE (RFC 8701) the way BoringSSL draws it: one value for cipher suites,
  one for supported_groups and key_share (the same), one for
  supported_versions, and distinct values for the GREASE extensions;
* the ECH GREASE extension (a random config id, a fresh X25519-sized enc and
  a random payload; cipher suite kept; the payload length is drawn from
  BoringSSL's 144/176/208/240 when the template has one of them, as Chrome
  does per connection, else the template's length is kept);
* padding (:class:`PaddingRule`);
* with ``permute_extensions``, a fresh order of the extensions (all but
  GREASE, padding and pre_shared_key, which keep their places), as Chrome
  does since version 110: JA4 sorts extensions so it stays the same, JA3
  changes per connection.

Session resumption is not part of a spec: ``pre_shared_key`` and
``early_data`` are dropped from captured hellos (the engine ignores session
tickets; every connection is a full handshake).
"""

from __future__ import annotations

import ipaddress
import os
import random as _random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from .._client_hello import ClientHello
from .._errors import MalformedClientHello
from .._extensions import ExtensionType, parse_extension
from .._grease import GREASE_VALUES, is_grease
from ._kex import SUPPORTED_GROUPS, KeyExchange, placeholder_share
from ._wire import Reader, u8, u16, vec8, vec16

__all__ = ["ClientHelloSpec", "ExtensionSpec", "PaddingRule", "PreparedHello"]

_T = ExtensionType
_GREASE_LIST = sorted(GREASE_VALUES)
_NOT_PERMUTED = frozenset({_T.PADDING, _T.PRE_SHARED_KEY})
_DROPPED = frozenset({_T.PRE_SHARED_KEY, _T.EARLY_DATA})
_BORINGSSL_ECH_PAYLOADS = (144, 176, 208, 240)
"""GREASE ECH payload lengths BoringSSL (Chrome, Edge) chooses from at random."""
_FILLED = frozenset({_T.SERVER_NAME, _T.PADDING})
"""Extensions whose payload is made per connection from arguments, not from the template."""


class PaddingRule(StrEnum):
    """How the padding extension (21) of a spec is sized per connection."""

    TO_512 = "to_512"
    """Kept wherever the spec has it; its length brings the hello message to 512
    bytes, or is 1 byte when the hello is longer. The fingerprint never changes
    (the default)."""
    BORINGSSL = "boringssl"
    """Present only when the unpadded hello is 256..511 bytes long, padded to 512,
    exactly what BoringSSL (Chrome, Safari's stack) does; the extension list,
    so JA3/JA4, then depends on the host name's length as a browser's does."""
    EXACT = "exact"
    """The template's padding bytes, as they are."""


@dataclass(frozen=True, slots=True)
class ExtensionSpec:
    """One extension of a spec: its type and its payload template."""

    type: int
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class ClientHelloSpec:
    """A ClientHello as data (see the module docstring); ``build`` makes the bytes.

    Construct it with :meth:`from_profile` (a ``tls_client_hello`` entry of
    rama-ua's profiles), :meth:`from_client_hello` (a parsed hello: "send what
    this client sent") or directly.
    """

    cipher_suites: tuple[int, ...]
    extensions: tuple[ExtensionSpec, ...]
    compression_methods: tuple[int, ...] = (0,)
    legacy_version: int = 0x0303
    record_version: int = 0x0301
    session_id_length: int = 32
    permute_extensions: bool = False
    padding: PaddingRule = PaddingRule.TO_512
    _index: dict[int, bytes] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not self.cipher_suites:
            raise ValueError("a ClientHello needs at least one cipher suite")
        if not self.compression_methods:
            raise ValueError("a ClientHello needs at least one compression method")
        if not 0 <= self.session_id_length <= 32:
            raise ValueError("session_id_length must be in 0..32")
        index: dict[int, bytes] = {}
        for ext in self.extensions:
            if ext.type in index:
                raise ValueError(f"extension 0x{ext.type:04x} appears twice")
            if not 0 <= ext.type <= 0xFFFF:
                raise ValueError(f"extension type {ext.type} is not a 16-bit value")
            if ext.type not in _FILLED:
                try:  # the engine reads these templates: reject what rama's parser rejects
                    parse_extension(ext.type, ext.data)
                except MalformedClientHello as exc:
                    raise ValueError(f"extension 0x{ext.type:04x}: {exc}") from exc
            index[ext.type] = ext.data
        object.__setattr__(self, "_index", index)

    # -- construction -----------------------------------------------------------------
    @classmethod
    def from_profile(
        cls, tls_client_hello: Mapping[str, Any], *, permute_extensions: bool | None = None
    ) -> ClientHelloSpec:
        """A spec from a profile's ``tls_client_hello`` object (rama-ua's JSON).

        ``permute_extensions`` defaults to on for profiles whose hello carries
        ECH GREASE and ALPS (Chrome and Edge since version 110 permute); pass
        it explicitly to choose.
        """
        try:
            extensions = tuple(_profile_extension(e) for e in tls_client_hello["extensions"])
            suites = tuple(int(s) for s in tls_client_hello["cipher_suites"])
            compression = tuple(int(c) for c in tls_client_hello.get("compression_algorithms", [0]))
            version = int(tls_client_hello.get("protocol_version", 0x0303))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a tls_client_hello profile: {exc!r}") from exc
        if permute_extensions is None:
            types = {e.type for e in extensions}
            permute_extensions = _T.ENCRYPTED_CLIENT_HELLO in types and bool(
                types & {_T.APPLICATION_SETTINGS, _T.APPLICATION_SETTINGS_OLD}
            )
        return cls(
            cipher_suites=suites,
            extensions=extensions,
            compression_methods=compression or (0,),
            legacy_version=version,
            permute_extensions=permute_extensions,
        )

    @classmethod
    def from_client_hello(
        cls, hello: ClientHello, *, permute_extensions: bool = False
    ) -> ClientHelloSpec:
        """A spec that sends what ``hello`` (a parsed :class:`rama_tls.ClientHello`) sent.

        Its extensions are kept in order with their bytes as templates;
        pre_shared_key and early_data (resumption) are dropped.
        """
        return cls(
            cipher_suites=hello.cipher_suites,
            extensions=tuple(
                ExtensionSpec(e.type, e.data) for e in hello.extensions if e.type not in _DROPPED
            ),
            compression_methods=hello.compression_methods,
            legacy_version=hello.legacy_version,
            record_version=hello.record_version or 0x0301,
            session_id_length=len(hello.session_id),
            permute_extensions=permute_extensions,
        )

    def replace(self, **changes: Any) -> ClientHelloSpec:
        """A copy with some fields changed (``spec.replace(permute_extensions=False)``)."""
        return replace(self, **changes)

    def with_alpn(self, protocols: Sequence[bytes | str]) -> ClientHelloSpec:
        """A copy offering these ALPN protocols in place of the spec's (same position).

        JA4's ALPN characters follow the first protocol; an empty sequence
        removes the extension (and with it the ALPS one, which needs ALPN).
        """
        encoded = [p.encode("ascii") if isinstance(p, str) else bytes(p) for p in protocols]
        alpn = _T.APPLICATION_LAYER_PROTOCOL_NEGOTIATION
        alps = (_T.APPLICATION_SETTINGS, _T.APPLICATION_SETTINGS_OLD)
        if not encoded:
            kept = tuple(e for e in self.extensions if e.type != alpn and e.type not in alps)
            return replace(self, extensions=kept)
        data = vec16(b"".join(vec8(p) for p in encoded))
        exts = list(self.extensions)
        for i, e in enumerate(exts):
            if e.type == alpn:
                exts[i] = ExtensionSpec(alpn, data)
                break
        else:
            exts.append(ExtensionSpec(alpn, data))
        return replace(self, extensions=tuple(exts))

    # -- what the spec offers (read by the engine) ------------------------------------
    def extension_data(self, ext_type: int) -> bytes | None:
        """The payload template of an extension, if the spec has it."""
        return self._index.get(ext_type)

    def has_extension(self, ext_type: int) -> bool:
        """Whether the spec sends this extension."""
        return ext_type in self._index

    @property
    def supported_versions(self) -> tuple[int, ...]:
        """Versions offered (GREASE excluded); legacy_version alone without the extension."""
        data = self._index.get(_T.SUPPORTED_VERSIONS)
        if data is None:
            return (self.legacy_version,)
        r = Reader(data, "supported_versions")
        lst = Reader(r.vec8())
        versions = [lst.u16() for _ in range(lst.remaining // 2)]
        return tuple(v for v in versions if not is_grease(v))

    @property
    def key_share_groups(self) -> tuple[int, ...]:
        """Groups of the key shares sent in the first hello (GREASE excluded)."""
        return tuple(
            g for g, _ in _key_share_template(self._index.get(_T.KEY_SHARE)) if not is_grease(g)
        )

    @property
    def supported_groups(self) -> tuple[int, ...]:
        """supported_groups offered (GREASE excluded)."""
        return tuple(v for v in _u16_list(self._index.get(_T.SUPPORTED_GROUPS)) if not is_grease(v))

    @property
    def signature_algorithms(self) -> tuple[int, ...]:
        """signature_algorithms offered (GREASE excluded)."""
        return tuple(
            v for v in _u16_list(self._index.get(_T.SIGNATURE_ALGORITHMS)) if not is_grease(v)
        )

    @property
    def alpn_protocols(self) -> tuple[bytes, ...]:
        """ALPN protocols offered, in preference order."""
        data = self._index.get(_T.APPLICATION_LAYER_PROTOCOL_NEGOTIATION)
        if data is None:
            return ()
        lst = Reader(Reader(data).vec16())
        out = []
        while not lst.at_end():
            out.append(lst.vec8())
        return tuple(out)

    @property
    def compress_certificate_algorithms(self) -> tuple[int, ...]:
        """compress_certificate algorithms offered (1 zlib, 2 brotli, 3 zstd)."""
        data = self._index.get(_T.COMPRESS_CERTIFICATE)
        if data is None:
            return ()
        lst = Reader(Reader(data).vec8())
        return tuple(lst.u16() for _ in range(lst.remaining // 2))

    # -- building ---------------------------------------------------------------------
    def build(self, server_name: str | None = None) -> bytes:
        """The bytes of a complete ClientHello record, as a fresh connection sends it.

        ``server_name`` goes into SNI; with None or an IP literal the hello has
        no SNI extension (as browsers do for IP addresses), which changes JA4's
        ``d``/``i`` and extension count.
        """
        return self.prepare(server_name).record

    def template_record(self) -> bytes:
        """The templates serialized as they are, in spec order: zero random, a 32-byte
        zero session id, the template's SNI, key shares, GREASE values and padding.

        For a spec made from a profile this is the hello the browser sent (up to
        random and session id): its JA3/JA4 are the profile's fingerprints.
        """
        suites = b"".join(u16(s) for s in self.cipher_suites)
        block = b"".join(u16(e.type) + vec16(e.data) for e in self.extensions)
        body = (
            u16(self.legacy_version)
            + bytes(32)
            + vec8(bytes(self.session_id_length))
            + vec16(suites)
            + vec8(bytes(self.compression_methods))
            + vec16(block)
        )
        return _records(b"\x01" + len(body).to_bytes(3, "big") + body, self.record_version)

    def prepare(self, server_name: str | None = None) -> PreparedHello:
        """A fresh per-connection hello: its bytes and the private keys of its shares."""
        return PreparedHello(self, server_name)


class PreparedHello:
    """One connection's ClientHello: ``message``/``record`` bytes and the key shares' keys.

    :meth:`retry` builds the second hello after a HelloRetryRequest (same
    random, session id, GREASE and order; a key share for the requested group;
    the server's cookie).
    """

    def __init__(self, spec: ClientHelloSpec, server_name: str | None) -> None:
        self.spec = spec
        self.server_name = server_name
        self.random = os.urandom(32)
        self.session_id = os.urandom(spec.session_id_length)
        self.keys: dict[int, KeyExchange] = {}
        rng = _random.SystemRandom()
        g = {slot: rng.choice(_GREASE_LIST) for slot in ("cipher", "group", "version")}
        ext_grease = [rng.choice(_GREASE_LIST)]
        for _ in range(sum(1 for e in spec.extensions if is_grease(e.type)) - 1):
            ext_grease.append(rng.choice([v for v in _GREASE_LIST if v not in ext_grease]))
        self._grease = g
        self._ext_grease = ext_grease
        order = list(range(len(spec.extensions)))
        if spec.permute_extensions:
            movable = [
                i
                for i, e in enumerate(spec.extensions)
                if not is_grease(e.type) and e.type not in _NOT_PERMUTED
            ]
            shuffled = movable[:]
            rng.shuffle(shuffled)
            for slot, i in zip(movable, shuffled, strict=True):
                order[slot] = i
        self._order = order
        self._ech_config_id = rng.randrange(256)
        self._ech_payload_len = rng.choice(_BORINGSSL_ECH_PAYLOADS)
        self.message = self._message(None, None)
        self.record = _records(self.message, spec.record_version)

    def retry(self, group: int, cookie: bytes | None) -> bytes:
        """The second ClientHello message for a HelloRetryRequest selecting ``group``."""
        self.keys = {}
        self.message = self._message(group, cookie)
        self.record = _records(self.message, 0x0303)
        return self.message

    # -- serialization ----------------------------------------------------------------
    def _message(self, retry_group: int | None, cookie: bytes | None) -> bytes:
        spec = self.spec
        g = self._grease
        suites = b"".join(u16(g["cipher"] if is_grease(s) else s) for s in spec.cipher_suites)
        head = (
            u16(spec.legacy_version)
            + self.random
            + vec8(self.session_id)
            + vec16(suites)
            + vec8(bytes(spec.compression_methods))
        )
        parts: list[tuple[int, bytes]] = []
        grease_i = 0
        pad_at: int | None = None
        for i in self._order:
            ext = spec.extensions[i]
            ext_type = ext.type
            if is_grease(ext_type):
                ext_type = self._ext_grease[grease_i]
                grease_i += 1
                parts.append((ext_type, ext.data))
                continue
            if ext_type == _T.PADDING:
                pad_at = len(parts)
                parts.append((ext_type, ext.data))
                continue
            data = self._fill(ext_type, ext.data, retry_group)
            if data is None:
                continue
            parts.append((ext_type, data))
            if ext_type == _T.KEY_SHARE and cookie is not None:
                parts.append((_T.COOKIE, vec16(cookie)))
        if pad_at is not None and spec.padding is not PaddingRule.EXACT:
            others = sum(4 + len(d) for j, (_, d) in enumerate(parts) if j != pad_at)
            unpadded = 4 + len(head) + 2 + others  # handshake header + body without padding
            pad_len = _padding_length(unpadded, spec.padding)
            if pad_len is None:
                del parts[pad_at]
            else:
                parts[pad_at] = (_T.PADDING, bytes(pad_len))
        block = b"".join(u16(t) + vec16(d) for t, d in parts)
        body = head + vec16(block)
        return b"\x01" + len(body).to_bytes(3, "big") + body

    def _fill(self, ext_type: int, data: bytes, retry_group: int | None) -> bytes | None:
        g = self._grease
        if ext_type == _T.SERVER_NAME:
            name = self.server_name
            if not name or _is_ip(name):
                return None
            host = name.rstrip(".").encode("idna")
            return vec16(b"\x00" + vec16(host))
        if ext_type == _T.KEY_SHARE:
            entries = b""
            for group, key in _key_share_template(data):
                if is_grease(group):
                    if retry_group is None:  # the retried hello has one share (RFC 8446 4.1.2)
                        entries += u16(g["group"]) + vec16(key)
                elif retry_group is None or group == retry_group:
                    entries += u16(group) + vec16(self._share(group, len(key)))
            if retry_group is not None and retry_group not in self.keys:
                entries += u16(retry_group) + vec16(self._share(retry_group, 0))
            return vec16(entries)
        if ext_type in (_T.SUPPORTED_GROUPS, _T.SUPPORTED_VERSIONS):
            return _regrease(
                data, g["group" if ext_type == _T.SUPPORTED_GROUPS else "version"], ext_type
            )
        if ext_type == _T.ENCRYPTED_CLIENT_HELLO and data[:1] == b"\x00":
            r = Reader(data, "encrypted_client_hello")
            r.u8()
            suite = r.take(4)
            r.u8()
            enc = r.vec16()
            payload = r.vec16()
            fresh_enc = os.urandom(len(enc)) if retry_group is None else b""
            return (
                b"\x00"
                + suite
                + u8(self._ech_config_id)
                + vec16(fresh_enc)
                + vec16(os.urandom(self._ech_length(len(payload))))
            )
        return data

    def _ech_length(self, template: int) -> int:
        """BoringSSL draws its GREASE ECH payload length per connection (128 + 32k bytes
        plus the 16-byte tag); other templates keep their length."""
        return self._ech_payload_len if template in _BORINGSSL_ECH_PAYLOADS else template

    def _share(self, group: int, length: int) -> bytes:
        if group in SUPPORTED_GROUPS:
            key = KeyExchange(group)
            self.keys[group] = key
            return key.public
        return placeholder_share(group, length)


# -- helpers ------------------------------------------------------------------------------
def _records(message: bytes, record_version: int) -> bytes:
    out = bytearray()
    for i in range(0, len(message), 1 << 14):
        chunk = message[i : i + (1 << 14)]
        out += b"\x16" + u16(record_version) + vec16(chunk)
    return bytes(out)


def _padding_length(unpadded: int, rule: PaddingRule) -> int | None:
    """Padding data length for a hello of ``unpadded`` bytes (header included)."""
    if 0xFF < unpadded < 0x200:
        pad = 0x200 - unpadded
        return pad - 4 if pad >= 5 else 1
    if rule is PaddingRule.BORINGSSL:
        return None
    if unpadded <= 0xFF:
        return 0x200 - unpadded - 4
    return 1


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def _u16_list(data: bytes | None) -> list[int]:
    if data is None:
        return []
    lst = Reader(Reader(data).vec16())
    return [lst.u16() for _ in range(lst.remaining // 2)]


def _key_share_template(data: bytes | None) -> list[tuple[int, bytes]]:
    if data is None:
        return []
    lst = Reader(Reader(data, "key_share").vec16(), "key_share")
    out = []
    while not lst.at_end():
        group = lst.u16()
        out.append((group, lst.vec16()))
    return out


def _regrease(data: bytes, value: int, ext_type: int) -> bytes:
    """Replace GREASE entries of a u16 list (vec16 groups, vec8 versions) with ``value``."""
    r = Reader(data)
    lst = r.vec16() if ext_type == _T.SUPPORTED_GROUPS else r.vec8()
    items = [int.from_bytes(lst[i : i + 2], "big") for i in range(0, len(lst) - 1, 2)]
    if not any(is_grease(v) for v in items):
        return data
    body = b"".join(u16(value if is_grease(v) else v) for v in items)
    return vec16(body) if ext_type == _T.SUPPORTED_GROUPS else vec8(body)


def _u16s(values: Sequence[Any]) -> bytes:
    return b"".join(u16(int(v)) for v in values)


def _profile_extension(entry: Mapping[str, Any]) -> ExtensionSpec:
    """One extension of rama-ua's profile JSON as an :class:`ExtensionSpec`."""
    if len(entry) != 1:
        raise ValueError(f"extension entry must have one key: {sorted(entry)}")
    ((kind, value),) = entry.items()
    if kind == "Opaque":
        return ExtensionSpec(int(value["id"]), bytes(value["data"]))
    if kind == "ServerName":
        host = str(value).encode("idna")
        return ExtensionSpec(_T.SERVER_NAME, vec16(b"\x00" + vec16(host)))
    if kind == "SupportedGroups":
        return ExtensionSpec(_T.SUPPORTED_GROUPS, vec16(_u16s(value)))
    if kind == "ECPointFormats":
        return ExtensionSpec(_T.EC_POINT_FORMATS, vec8(bytes(value)))
    if kind == "ApplicationLayerProtocolNegotiation":
        return ExtensionSpec(
            _T.APPLICATION_LAYER_PROTOCOL_NEGOTIATION,
            vec16(b"".join(vec8(bytes(p)) for p in value)),
        )
    if kind == "SignatureAlgorithms":
        return ExtensionSpec(_T.SIGNATURE_ALGORITHMS, vec16(_u16s(value)))
    if kind == "SupportedVersions":
        return ExtensionSpec(_T.SUPPORTED_VERSIONS, vec8(_u16s(value)))
    if kind == "CertificateCompression":
        return ExtensionSpec(_T.COMPRESS_CERTIFICATE, vec8(_u16s(value)))
    if kind == "DelegatedCredentials":
        return ExtensionSpec(_T.DELEGATED_CREDENTIALS, vec16(_u16s(value)))
    if kind == "RecordSizeLimit":
        return ExtensionSpec(_T.RECORD_SIZE_LIMIT, u16(int(value)))
    if kind == "ApplicationSettings":
        code = (
            _T.APPLICATION_SETTINGS if value.get("new_codepoint") else _T.APPLICATION_SETTINGS_OLD
        )
        return ExtensionSpec(code, vec16(b"".join(vec8(bytes(p)) for p in value["protocols"])))
    if kind == "EncryptedClientHello":
        if "Outer" in value:
            o = value["Outer"]
            suite = o["cipher_suite"]
            data = (
                b"\x00"
                + u16(int(suite["kdf_id"]))
                + u16(int(suite["aead_id"]))
                + u8(int(o["config_id"]))
                + vec16(bytes(o["enc"]))
                + vec16(bytes(o["payload"]))
            )
            return ExtensionSpec(_T.ENCRYPTED_CLIENT_HELLO, data)
        return ExtensionSpec(_T.ENCRYPTED_CLIENT_HELLO, b"\x01")
    raise ValueError(f"unknown extension kind {kind!r}")
