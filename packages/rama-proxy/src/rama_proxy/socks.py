"""SOCKS5 (RFC 1928/1929) and SOCKS4/4a.

The sans-IO codecs, the server (:class:`SocksProxy`), the UDP relay and the
client connectors that fill the HTTP client's proxy slot.
"""

from __future__ import annotations

from ._socks4_codec import Socks4Command, Socks4Reply, Socks4ReplyCode, Socks4Request
from ._socks5_codec import (
    Socks5ClientProtocol,
    Socks5Command,
    Socks5ReplyCode,
    Socks5ServerProtocol,
    Socks5UdpDatagram,
    SocksAddressTypeError,
    SocksCommandError,
    SocksError,
    SocksFormatError,
    SocksTruncatedError,
    SocksVersionError,
    decode_udp_datagram,
    encode_udp_datagram,
)
from ._socks_connector import (
    Socks4ProxyConnector,
    Socks5ProxyConnector,
    SocksProxyError,
    socks5_reply_failure,
)
from ._socks_server import SocksProxy
from ._udp_relay import UdpRelay

__all__ = [
    "Socks4Command",
    "Socks4ProxyConnector",
    "Socks4Reply",
    "Socks4ReplyCode",
    "Socks4Request",
    "Socks5ClientProtocol",
    "Socks5Command",
    "Socks5ProxyConnector",
    "Socks5ReplyCode",
    "Socks5ServerProtocol",
    "Socks5UdpDatagram",
    "SocksAddressTypeError",
    "SocksCommandError",
    "SocksError",
    "SocksFormatError",
    "SocksProxy",
    "SocksProxyError",
    "SocksTruncatedError",
    "SocksVersionError",
    "UdpRelay",
    "decode_udp_datagram",
    "encode_udp_datagram",
    "socks5_reply_failure",
]
