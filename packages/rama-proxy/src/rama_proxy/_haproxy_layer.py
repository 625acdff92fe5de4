"""PROXY protocol over streams: a server layer that reads the header, a client layer that sends it.

Server side, :class:`ProxyProtocolLayer` wraps a stream service (what
:class:`rama_net.TcpListener` serves) and goes first on every connection,
before TLS or HTTP::

    service = ProxyProtocolLayer(trusted=["10.0.0.0/8"]).layer(TlsAcceptorLayer(...).layer(app))
    await TcpListener.bind("0.0.0.0:8443").serve(service)

From a trusted peer it reads a v1 or v2 header (optional by peek, or
required), checks it against the strictness knobs, and puts into the
Context: the header as :class:`~rama_proxy.ProxyProtocolHeader`, the real
client as :class:`rama_net.SocketInfo` (``peer_addr`` is the PROXY source,
``local_addr`` its destination), and the connection's own addresses as
:class:`TransportSocketInfo`. Services above just read
``ctx.get(SocketInfo)``. A bad, slow or refused header closes the connection
within ``header_timeout`` and is logged once; other connections never notice.

Client side, :class:`ProxyProtocolConnectorLayer` wraps a connector
(``Service[Authority, EstablishedConnection]``, e.g. :class:`rama_net.TcpConnector`)
and sends a v1 line or a v2 header (TLVs, CRC32C) right after connecting; the
source is the Context's client (:class:`rama_net.SocketInfo`, as a proxy has
it), or given, or this connection's own address. A proxy sends it upstream by
giving its egress that connector::

    Egress(tcp=ProxyProtocolConnectorLayer(2, crc=True).layer(TcpConnector()))

and the high-level client the same way: ``HttpClient(tcp=...)``.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import anyio
from anyio.abc import ByteStream

from rama_core import Context, Service
from rama_net import (
    Authority,
    EstablishedConnection,
    IpAddress,
    PeekStream,
    RateLimitedLog,
    SocketAddress,
    SocketInfo,
)

from ._haproxy_codec import (
    DEFAULT_MAX_HEADER_SIZE,
    V2_HEADER_LENGTH,
    V2_MAX_LENGTH,
    AddressFamily,
    NeedMoreBytes,
    ProxyCommand,
    ProxyProtocolError,
    ProxyProtocolHeader,
    Tlv,
    TransportProtocol,
    detect_proxy_header,
    encode_v1,
    encode_v2,
    parse_proxy_header,
)

__all__ = [
    "ProxyProtocolConnector",
    "ProxyProtocolConnectorLayer",
    "ProxyProtocolLayer",
    "ProxyProtocolService",
    "TransportSocketInfo",
]

_log = logging.getLogger("rama.proxy.haproxy")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_SHORTEST_HEADER = 15  # "PROXY UNKNOWN\r\n"; a v2 header has at least 16


@dataclass(frozen=True, slots=True)
class TransportSocketInfo:
    """The connection's own endpoints (the load balancer's side) once a PROXY header applied.

    :class:`rama_net.SocketInfo` then holds the real client; this keeps the
    transport peer for logs and for policies about the proxy itself.
    """

    peer_addr: SocketAddress
    local_addr: SocketAddress


class _Untrusted(Exception):
    """An untrusted peer started a PROXY header."""


class _Refused(Exception):
    """A header read ended without a usable header; ``level``/``reason`` say how to log it."""

    def __init__(self, level: int, reason: str) -> None:
        super().__init__(reason)
        self.level = level
        self.reason = reason


def _parse_networks(items: Iterable[str | Network | IpAddress]) -> tuple[Network, ...]:
    networks: list[Network] = []
    for item in items:
        if isinstance(item, ipaddress.IPv4Network | ipaddress.IPv6Network):
            networks.append(item)
        else:
            networks.append(ipaddress.ip_network(item, strict=False))
    return tuple(networks)


def _unmapped(ip: IpAddress) -> IpAddress:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class ProxyProtocolLayer:
    """Reads a PROXY protocol v1/v2 header before the inner stream service runs.

    Knobs (all keyword-only):

    - ``trusted``: CIDRs (``"10.0.0.0/8"``, ``"::1"``) of the peers allowed
      to send a header; None trusts every peer (only behind a firewall that
      lets nothing but the load balancer in). A header from an untrusted peer
      is refused (``untrusted="reject"``: closed, logged at WARNING at most
      every 10 s) or not looked at (``untrusted="ignore"``: the stream goes on
      untouched, the connection's own addresses apply). Untrusted peers may
      always connect without a header.
    - ``require_header``: trusted peers must send one (else: optional, decided
      by peeking at the first bytes; a peer silent for ``header_timeout`` is
      passed on without one, for protocols where the server speaks first).
    - ``header_timeout``: seconds for the whole header (or the peek's decision);
      a peer that starts a header and does not finish it in time is closed.
    - ``max_header_size``: bound on a v2 header (v1 lines are at most 107 bytes).
    - ``verify_checksum`` / ``require_checksum``: check a CRC32C TLV when
      present / refuse v2 headers without one (v1 has none: pair with
      ``versions=(2,)`` to refuse v1).
    - ``allow_local``: accept v2 LOCAL (health checks; the connection's own
      addresses apply). ``allow_unspec``: accept v1 UNKNOWN and v2 UNSPEC.
    - ``versions``: the protocol versions accepted.
    """

    def __init__(
        self,
        *,
        trusted: Iterable[str | Network | IpAddress] | None = None,
        untrusted: Literal["reject", "ignore"] = "reject",
        require_header: bool = False,
        header_timeout: float = 5.0,
        max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
        verify_checksum: bool = True,
        require_checksum: bool = False,
        allow_local: bool = True,
        allow_unspec: bool = True,
        versions: Iterable[int] = (1, 2),
    ) -> None:
        if untrusted not in ("reject", "ignore"):
            raise ValueError(f"untrusted must be 'reject' or 'ignore', not {untrusted!r}")
        if not V2_HEADER_LENGTH <= max_header_size <= V2_MAX_LENGTH:
            raise ValueError(f"max_header_size must be in {V2_HEADER_LENGTH}..{V2_MAX_LENGTH}")
        self.trusted = None if trusted is None else _parse_networks(trusted)
        self.untrusted = untrusted
        self.require_header = require_header
        self.header_timeout = header_timeout
        self.max_header_size = max_header_size
        self.verify_checksum = verify_checksum
        self.require_checksum = require_checksum
        self.allow_local = allow_local
        self.allow_unspec = allow_unspec
        self.versions = frozenset(versions)
        if not self.versions <= {1, 2} or not self.versions:
            raise ValueError("versions must be a non-empty subset of (1, 2)")

    def layer(self, inner: Service[ByteStream, Any]) -> ProxyProtocolService:
        """Wrap a stream service."""
        return ProxyProtocolService(inner, self)


class ProxyProtocolService:
    """The service :class:`ProxyProtocolLayer` makes; see there."""

    def __init__(self, inner: Service[ByteStream, Any], config: ProxyProtocolLayer) -> None:
        self.inner = inner
        self.config = config
        self._untrusted_log = RateLimitedLog(_log, 10.0)

    def is_trusted(self, ip: IpAddress | None) -> bool:
        """Whether a peer at ``ip`` may send a PROXY header."""
        networks = self.config.trusted
        if networks is None:
            return True
        if ip is None:
            return False
        ip = _unmapped(ip)
        return any(ip in net for net in networks)

    async def serve(self, ctx: Context, stream: ByteStream) -> None:
        """Read the header (if any), fill the Context, then serve the inner service."""
        cfg = self.config
        info = ctx.get(SocketInfo)
        peer = info.peer_addr if info is not None else None
        trusted = self.is_trusted(peer.ip if peer is not None else None)
        if not trusted and cfg.untrusted == "ignore":
            await self.inner.serve(ctx, stream)
            return
        try:
            header, rest = await self._read(stream, trusted)
            if header is not None:
                self._check(header)
        except _Untrusted:
            self._untrusted_log.log(
                logging.WARNING, "PROXY header from untrusted peer %s refused", peer
            )
            return
        except _Refused as exc:
            _log.log(exc.level, "%s: %s", peer or "peer", exc.reason)
            return
        except ProxyProtocolError as exc:
            _log.info("%s: bad PROXY header: %s", peer or "peer", exc)
            return
        if header is not None:
            ctx.insert(header)
            if info is not None:
                ctx.insert(TransportSocketInfo(info.peer_addr, info.local_addr))
            src, dst = header.source, header.destination
            if isinstance(src, SocketAddress) and isinstance(dst, SocketAddress):
                ctx.insert(SocketInfo(peer_addr=src, local_addr=dst))
        await self.inner.serve(ctx, PeekStream(stream, rest) if rest else stream)

    def _check(self, header: ProxyProtocolHeader) -> None:
        cfg = self.config
        if header.version not in cfg.versions:
            raise _Refused(logging.INFO, f"PROXY v{header.version} header refused")
        if header.command is ProxyCommand.LOCAL:
            if not cfg.allow_local:
                raise _Refused(logging.INFO, "PROXY v2 LOCAL header refused")
        elif header.family is AddressFamily.UNSPEC and not cfg.allow_unspec:
            raise _Refused(logging.INFO, "PROXY header without addresses (UNKNOWN/UNSPEC) refused")
        if cfg.require_checksum and header.version == 2 and header.crc32c is None:
            raise _Refused(logging.INFO, "PROXY v2 header without the required CRC32C refused")

    async def _read(
        self, stream: ByteStream, trusted: bool
    ) -> tuple[ProxyProtocolHeader | None, bytes]:
        """Receive a header, or decide there is none; returns it and the bytes read past it.

        Reads only what the header still needs at least (the codec's hint),
        so no byte past a header is taken from the stream: the inner service
        gets the stream itself (a zero-copy relay keeps its fast path). Only
        when there is no header do the peeked bytes come back, replayed by a
        :class:`rama_net.PeekStream`.
        """
        cfg = self.config
        required = cfg.require_header and trusted
        buf = bytearray()
        want = _SHORTEST_HEADER
        started = False  # the bytes so far are a header's beginning
        with anyio.move_on_after(cfg.header_timeout) as scope:
            while True:
                try:
                    chunk = await stream.receive(want)
                except anyio.EndOfStream:
                    if started or required:
                        raise _Refused(
                            logging.DEBUG, f"peer closed within its PROXY header ({len(buf)} bytes)"
                        ) from None
                    return None, bytes(buf)
                buf += chunk
                detected = detect_proxy_header(buf)
                if detected is False:
                    if required:
                        raise _Refused(logging.INFO, "connection without the required PROXY header")
                    return None, bytes(buf)
                if detected is None:
                    want = _SHORTEST_HEADER - len(buf)
                    continue
                if not trusted:
                    raise _Untrusted
                started = True
                result = parse_proxy_header(
                    buf,
                    max_header_size=cfg.max_header_size,
                    verify_checksum=cfg.verify_checksum,
                )
                if isinstance(result, NeedMoreBytes):
                    want = result.hint
                    continue
                header, consumed = result
                return header, bytes(buf[consumed:])
        assert scope.cancelled_caught
        if started or buf or required:
            what = "PROXY header" if started or buf else "required PROXY header"
            raise _Refused(
                logging.INFO,
                f"{what} not received within {cfg.header_timeout:g}s ({len(buf)} bytes)",
            )
        # optional and nothing sent: a protocol where the server speaks first
        return None, b""


# -- client side ---------------------------------------------------------------------------------
TlvSource = Sequence[Tlv] | Callable[[Context, Authority], Sequence[Tlv]]


class ProxyProtocolConnectorLayer:
    """Sends a PROXY header on every connection the wrapped connector makes.

    - ``version``: 1 (text line) or 2 (binary, with ``tlvs`` and ``crc``).
    - ``tlvs``: v2 TLVs, fixed or computed per connection from the Context
      and the target (e.g. ``Tlv.authority(target.host)``).
    - ``crc``: add a CRC32C TLV (v2).
    - ``source`` / ``destination``: the addresses to claim. By default the
      Context's :class:`rama_net.SocketInfo` (a proxy's downstream client
      and the address it reached), else this connection's own addresses.
    - ``command``: PROXY, or LOCAL (v2; v1 sends ``UNKNOWN``).
    """

    def __init__(
        self,
        version: int = 2,
        *,
        tlvs: TlvSource = (),
        crc: bool = False,
        source: SocketAddress | None = None,
        destination: SocketAddress | None = None,
        command: ProxyCommand = ProxyCommand.PROXY,
    ) -> None:
        if version not in (1, 2):
            raise ValueError("PROXY protocol version must be 1 or 2")
        self.version = version
        self.tlvs = tlvs
        self.crc = crc
        self.source = source
        self.destination = destination
        self.command = command

    def layer(self, inner: Service[Authority, EstablishedConnection]) -> ProxyProtocolConnector:
        """Wrap a connector."""
        return ProxyProtocolConnector(inner, self)


class ProxyProtocolConnector:
    """The connector :class:`ProxyProtocolConnectorLayer` makes; see there."""

    def __init__(
        self, inner: Service[Authority, EstablishedConnection], config: ProxyProtocolConnectorLayer
    ) -> None:
        self.inner = inner
        self.config = config

    def header_for(self, ctx: Context, target: Authority, conn: EstablishedConnection) -> bytes:
        """The header bytes for this connection."""
        cfg = self.config
        client = ctx.get(SocketInfo)
        src = cfg.source or (client.peer_addr if client is not None else conn.info.local_addr)
        dst = cfg.destination or (client.local_addr if client is not None else conn.info.peer_addr)
        if cfg.version == 1:
            if cfg.command is ProxyCommand.LOCAL:
                return encode_v1(None, None)
            return encode_v1(src, dst)
        tlvs = cfg.tlvs(ctx, target) if callable(cfg.tlvs) else cfg.tlvs
        return encode_v2(
            src,
            dst,
            command=cfg.command,
            protocol=TransportProtocol.STREAM,
            tlvs=tlvs,
            crc=cfg.crc,
        )

    async def serve(self, ctx: Context, req: Authority) -> EstablishedConnection:
        """Connect through the inner connector, then send the header."""
        conn = await self.inner.serve(ctx, req)
        try:
            await conn.stream.send(self.header_for(ctx, req, conn))
        except BaseException:
            with anyio.CancelScope(shield=True):
                await conn.stream.aclose()
            raise
        return conn
