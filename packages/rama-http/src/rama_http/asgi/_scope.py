"""Building ASGI scopes from a rama Request and its Context."""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import unquote

from rama_core import Context
from rama_net import SocketInfo
from rama_tls import ClientHello, NegotiatedTls, ja3, ja4

from .._message import Request
from .._version import Version

__all__ = ["http_version", "scope_for", "tls_extension"]

_VERSIONS = {Version.HTTP_11: "1.1", Version.HTTP_2: "2", Version.HTTP_10: "1.0"}
_TLS_VERSIONS = {"TLSv1.3": 0x0304, "TLSv1.2": 0x0303, "TLSv1.1": 0x0302, "TLSv1": 0x0301}
_CIPHER_IDS: dict[str, int] | None = None
_SCHEMES = {
    (True, False): "http",
    (True, True): "https",
    (False, False): "ws",
    (False, True): "wss",
}


def http_version(version: Version) -> str:
    """The ASGI ``http_version`` of a rama Version."""
    v = _VERSIONS.get(version)
    if v is not None:
        return v
    text = str(version)
    return text.split("/", 1)[1] if "/" in text else text


def _cipher_id(name: str) -> int | None:
    global _CIPHER_IDS
    if _CIPHER_IDS is None:
        ids: dict[str, int] = {}
        try:
            for c in ssl.create_default_context().get_ciphers():
                ids[str(c["name"])] = int(c["id"]) & 0xFFFF
        except (ssl.SSLError, KeyError, ValueError):  # pragma: no cover - odd OpenSSL builds
            pass
        _CIPHER_IDS = ids
    return _CIPHER_IDS.get(name)


def tls_extension(ctx: Context) -> dict[str, Any] | None:
    """The ASGI TLS extension for a TLS connection (None on cleartext).

    The spec's fields (``tls_version``, ``cipher_suite``, ``server_cert``,
    ``client_cert_chain``, ``client_cert_name``, ``client_cert_error``) plus
    rama's: the client's fingerprints ``ja4``/``ja4_r``/``ja3`` (from the
    ClientHello the acceptor recorded), ``server_name``, ``alpn_protocol`` and
    the parsed ``client_hello`` (a :class:`rama_tls.ClientHello`).
    """
    negotiated = ctx.get(NegotiatedTls)
    if negotiated is None or negotiated.side != "server":
        return None
    hello = ctx.get(ClientHello)
    chain: list[str] = []
    name: str | None = None
    if negotiated.peer_certificate_der is not None:
        chain.append(ssl.DER_cert_to_PEM_cert(negotiated.peer_certificate_der))
        cert = negotiated.peer_certificate
        if cert is not None:
            name = cert.subject.rfc4514_string()
    ext: dict[str, Any] = {
        "server_cert": None,
        "client_cert_chain": chain,
        "client_cert_name": name,
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(negotiated.version),
        "cipher_suite": _cipher_id(negotiated.cipher),
        "server_name": negotiated.server_name,
        "alpn_protocol": negotiated.alpn,
        "client_hello": hello,
        "ja4": None,
        "ja4_r": None,
        "ja3": None,
    }
    if hello is not None:
        j4 = ja4(hello)
        ext["ja4"] = j4.text
        ext["ja4_r"] = j4.ja4_r
        ext["ja3"] = ja3(hello).hash
    return ext


class _ConnFacts:
    """What every request of one connection shares: addresses, scheme, TLS extension."""

    __slots__ = ("client", "http_scheme", "server", "tls", "ws_scheme")

    def __init__(self, ctx: Context) -> None:
        info = ctx.get(SocketInfo)
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int] | None = None
        if info is not None:
            self.client = (str(info.peer_addr.ip), info.peer_addr.port)
            self.server = (str(info.local_addr.ip), info.local_addr.port)
        self.tls = tls_extension(ctx) if ctx.get(NegotiatedTls) is not None else None
        secure = self.tls is not None
        self.http_scheme = _SCHEMES[(True, secure)]
        self.ws_scheme = _SCHEMES[(False, secure)]


def scope_for(
    kind: str,
    ctx: Context,
    req: Request,
    root_path: str,
    state: dict[str, Any] | None,
) -> dict[str, Any]:
    """The ``http`` or ``websocket`` scope of ``req`` (see the ASGI spec)."""
    target = req.target
    if not target.startswith("/"):
        # absolute-form (a proxy request) or h2 without :path: take the parsed path
        try:
            uri = req.uri
            target = (uri.path or "/") + ("?" + uri.query if uri.query is not None else "")
        except ValueError:
            target = "/"
    q = target.find("?")
    if q < 0:
        raw = target
        query = b""
    else:
        raw = target[:q]
        query = target[q + 1 :].encode("latin-1")
    path = unquote(raw) if "%" in raw else raw
    h = req.headers
    headers = [
        (k.encode("latin-1"), v.encode("latin-1"))
        for k, (_, v) in zip(h._keys, h._items, strict=True)
    ]
    conn = ctx.get(_ConnFacts)
    if conn is None:
        conn = _ConnFacts(ctx)
        # once per connection: kept in the Context the listener made for it (the one
        # holding its SocketInfo); without one, computed per request
        owner: Context | None = ctx
        while owner is not None and SocketInfo not in owner._extensions:
            owner = owner.parent
        if owner is not None:
            owner.insert(conn)
    tls = conn.tls
    if tls is not None:
        tls = dict(tls)  # the app may change its copy
    scheme = conn.http_scheme if kind == "http" else conn.ws_scheme
    scope: dict[str, Any] = {
        "type": kind,
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": http_version(req.version),
        "scheme": scheme,
        "path": root_path + path,
        "raw_path": (root_path + raw).encode("latin-1") if root_path else raw.encode("latin-1"),
        "query_string": query,
        "root_path": root_path,
        "headers": headers,
        "client": conn.client,
        "server": conn.server,
        "extensions": {"tls": tls} if tls is not None else {},
    }
    if kind == "http":
        scope["method"] = req.method
    if state is not None:
        scope["state"] = state.copy()
    return scope
