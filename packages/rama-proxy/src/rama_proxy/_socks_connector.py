"""Client-side SOCKS connectors for the HTTP client's (and the Egress') proxy slot.

- :class:`Socks5ProxyConnector`: ``socks5://`` resolves the target locally and
  sends an IP; ``socks5h://`` sends the domain for the proxy to resolve;
  ``user:pass@`` in the URL is sent as RFC 1929 username/password.
- :class:`Socks4ProxyConnector`: ``socks4://`` (local resolution, IPv4 only) and
  ``socks4a://`` (the proxy resolves); the URL's username is the SOCKS4 user id.

A refusal raises :class:`SocksProxyError`: a
:class:`~rama_http.client.ProxyError` for the HTTP client and an
:class:`~rama_proxy.UpstreamError` whose
:class:`~rama_proxy.UpstreamFailure` is the cause the SOCKS reply named
(refused, host/network unreachable, TTL expired, not allowed), so a proxy
chain answers its own client with the real cause.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import unquote

import anyio
from anyio.abc import ByteStream

from rama_core import Context
from rama_http.client import ProxyError, ProxyRequest
from rama_net import (
    DnsError,
    Host,
    IpAddress,
    PeekStream,
    Resolver,
    default_resolver,
    resolve_host,
)

from ._egress import redact_proxy_url
from ._errors import UpstreamError, UpstreamFailure
from ._socks4_codec import Socks4Command, Socks4Request, parse_socks4_reply
from ._socks5_codec import (
    Socks5Address,
    Socks5AuthResult,
    Socks5ClientProtocol,
    Socks5ClientState,
    Socks5Command,
    Socks5MethodSelected,
    Socks5Reply,
    SocksAuthMethod,
    SocksError,
)

__all__ = [
    "Socks4ProxyConnector",
    "Socks5ProxyConnector",
    "SocksProxyError",
    "socks5_reply_failure",
]

_REPLY_FAILURES = {
    0x01: UpstreamFailure.PROXY,
    0x02: UpstreamFailure.NOT_ALLOWED,
    0x03: UpstreamFailure.NETWORK_UNREACHABLE,
    0x04: UpstreamFailure.HOST_UNREACHABLE,
    0x05: UpstreamFailure.REFUSED,
    0x06: UpstreamFailure.TTL_EXPIRED,
}

_REPLY_TEXT = {
    0x01: "general SOCKS server failure",
    0x02: "connection not allowed by ruleset",
    0x03: "network unreachable",
    0x04: "host unreachable",
    0x05: "connection refused",
    0x06: "TTL expired",
    0x07: "command not supported",
    0x08: "address type not supported",
}

_IO_ERRORS = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


def socks5_reply_failure(code: int) -> UpstreamFailure:
    """The :class:`UpstreamFailure` a SOCKS5 REP code names (PROXY for the rest)."""
    return _REPLY_FAILURES.get(code, UpstreamFailure.PROXY)


class SocksProxyError(ProxyError, UpstreamError):
    """An upstream SOCKS proxy refused the tunnel (or broke its protocol)."""

    def __init__(
        self,
        failure: UpstreamFailure,
        message: str,
        *,
        upstream: str | None = None,
        reply: int | None = None,
    ) -> None:
        UpstreamError.__init__(self, failure, message, upstream=upstream)
        self.status = failure.http_status
        self.reply = reply
        """The SOCKS reply code, when the proxy answered one."""


def _credentials(req: ProxyRequest) -> tuple[bytes, bytes] | None:
    userinfo = req.proxy.uri.userinfo
    if not userinfo:
        return None
    user, _, password = userinfo.partition(":")
    return unquote(user).encode("utf-8"), unquote(password).encode("utf-8")


async def _receive(stream: ByteStream) -> bytes:
    try:
        return await stream.receive()
    except anyio.EndOfStream:
        return b""


class _Base:
    _version = "SOCKS"

    def __init__(
        self, *, resolver: Resolver | None = None, handshake_timeout: float = 10.0
    ) -> None:
        self.resolver = resolver
        """For the schemes that resolve locally (default: rama-net's resolver)."""
        self.handshake_timeout = handshake_timeout
        """Bound on the whole SOCKS exchange with the proxy."""

    async def _resolve(self, host: Host, label: str, *, ipv4_only: bool = False) -> IpAddress:
        try:
            addresses = await resolve_host(self.resolver or default_resolver(), host)
        except DnsError as exc:
            raise SocksProxyError(
                UpstreamFailure.DNS, f"cannot resolve {host}: {exc}", upstream=label
            ) from exc
        if ipv4_only:
            v4 = [a for a in addresses if isinstance(a, ipaddress.IPv4Address)]
            if not v4:
                raise SocksProxyError(
                    UpstreamFailure.DNS, f"{host} has no IPv4 address for SOCKS4", upstream=label
                )
            return v4[0]
        return addresses[0]

    async def serve(self, ctx: Context, req: ProxyRequest) -> ByteStream:
        """Tunnel to ``req.target`` through the SOCKS proxy on ``req.stream``."""
        label = redact_proxy_url(req.proxy.url)
        try:
            with anyio.fail_after(self.handshake_timeout):
                return await self._handshake(req, label)
        except TimeoutError as exc:
            if isinstance(exc, UpstreamError):
                raise
            raise SocksProxyError(
                UpstreamFailure.TIMEOUT,
                f"{self._version} proxy {label} did not answer",
                upstream=label,
            ) from exc

    async def _handshake(self, req: ProxyRequest, label: str) -> ByteStream:
        raise NotImplementedError


class Socks5ProxyConnector(_Base):
    """``socks5://`` (local DNS) and ``socks5h://`` (proxy DNS), with RFC 1929 auth."""

    _version = "SOCKS5"

    async def _handshake(self, req: ProxyRequest, label: str) -> ByteStream:
        scheme = (req.proxy.uri.scheme or "socks5").lower()
        target = req.target
        host: Socks5Address
        if target.host.ip is not None:
            host = target.host.ip
        elif scheme == "socks5":
            host = await self._resolve(target.host, label)
        else:
            host = str(target.host)
        creds = _credentials(req)
        proto = Socks5ClientProtocol(
            username=creds[0] if creds else None, password=creds[1] if creds else None
        )
        stream = req.stream
        try:
            await stream.send(proto.greeting())
            while True:
                event = proto.next_event()
                if event is None:
                    proto.receive_data(await _receive(stream))
                    continue
                if isinstance(event, Socks5MethodSelected):
                    if proto.state is Socks5ClientState.AUTH_NEEDED:
                        await stream.send(proto.auth_request())
                    elif proto.state is Socks5ClientState.READY:
                        await stream.send(proto.request(Socks5Command.CONNECT, host, target.port))
                    else:
                        why = (
                            "asks for credentials, none in the proxy URL"
                            if event.method == SocksAuthMethod.USERNAME_PASSWORD
                            else "accepts none of the offered authentication methods"
                        )
                        raise SocksProxyError(
                            UpstreamFailure.PROXY, f"SOCKS5 proxy {label} {why}", upstream=label
                        )
                elif isinstance(event, Socks5AuthResult):
                    if not event.ok:
                        raise SocksProxyError(
                            UpstreamFailure.PROXY,
                            f"SOCKS5 proxy {label} refused the credentials",
                            upstream=label,
                        )
                    await stream.send(proto.request(Socks5Command.CONNECT, host, target.port))
                else:
                    assert isinstance(event, Socks5Reply)
                    if not event.ok:
                        raise SocksProxyError(
                            socks5_reply_failure(event.code),
                            f"SOCKS5 proxy {label} could not reach {target}: "
                            f"{_REPLY_TEXT.get(event.code, f'reply 0x{event.code:02x}')}",
                            upstream=label,
                            reply=event.code,
                        )
                    break
        except SocksError as exc:
            raise SocksProxyError(
                UpstreamFailure.PROXY, f"SOCKS5 proxy {label}: {exc}", upstream=label
            ) from exc
        except _IO_ERRORS as exc:
            raise SocksProxyError(
                UpstreamFailure.PROXY, f"SOCKS5 proxy {label} connection failed", upstream=label
            ) from exc
        early = proto.take_trailing_data()
        return PeekStream(stream, early) if early else stream


class Socks4ProxyConnector(_Base):
    """``socks4://`` (local DNS, IPv4 only) and ``socks4a://`` (proxy DNS)."""

    _version = "SOCKS4"

    async def _handshake(self, req: ProxyRequest, label: str) -> ByteStream:
        scheme = (req.proxy.uri.scheme or "socks4").lower()
        target = req.target
        creds = _credentials(req)
        userid = creds[0] if creds else b""
        ip = target.host.ip
        domain: str | None = None
        if ip is None:
            if scheme == "socks4a":
                domain = str(target.host)
                ip = ipaddress.IPv4Address(1)
            else:
                ip = await self._resolve(target.host, label, ipv4_only=True)
        if not isinstance(ip, ipaddress.IPv4Address):
            if ip.ipv4_mapped is None:
                raise SocksProxyError(
                    UpstreamFailure.PROXY, "SOCKS4 cannot reach an IPv6 target", upstream=label
                )
            ip = ip.ipv4_mapped
        stream = req.stream
        try:
            await stream.send(
                Socks4Request(Socks4Command.CONNECT, target.port, ip, userid, domain).encode()
            )
            buf = b""
            while True:
                parsed = parse_socks4_reply(buf)
                if parsed is not None:
                    break
                data = await _receive(stream)
                if not data:
                    raise SocksProxyError(
                        UpstreamFailure.PROXY,
                        f"SOCKS4 proxy {label} closed during the handshake",
                        upstream=label,
                    )
                buf += data
        except SocksError as exc:
            raise SocksProxyError(
                UpstreamFailure.PROXY, f"SOCKS4 proxy {label}: {exc}", upstream=label
            ) from exc
        except _IO_ERRORS as exc:
            raise SocksProxyError(
                UpstreamFailure.PROXY, f"SOCKS4 proxy {label} connection failed", upstream=label
            ) from exc
        reply, used = parsed
        if not reply.ok:
            raise SocksProxyError(
                UpstreamFailure.PROXY,
                f"SOCKS4 proxy {label} rejected the request to {target} (code {reply.code})",
                upstream=label,
                reply=reply.code,
            )
        early = buf[used:]
        return PeekStream(stream, early) if early else stream
