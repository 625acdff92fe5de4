"""SOCKS5 / SOCKS4(a) sans-IO codecs: every message, any split of the input, fuzzing."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rama_proxy._socks4_codec import (
    Socks4Command,
    Socks4Reply,
    Socks4Request,
    parse_socks4_reply,
    parse_socks4_request,
)
from rama_proxy._socks5_codec import (
    Socks5Address,
    Socks5AuthRequest,
    Socks5ClientProtocol,
    Socks5ClientState,
    Socks5Command,
    Socks5Greeting,
    Socks5Reply,
    Socks5Request,
    Socks5ServerProtocol,
    Socks5ServerState,
    Socks5UdpDatagram,
    SocksAddressTypeError,
    SocksCommandError,
    SocksError,
    SocksFormatError,
    SocksTruncatedError,
    SocksVersionError,
    decode_udp_datagram,
    encode_address,
    encode_udp_datagram,
    parse_auth_request,
    parse_greeting,
    parse_reply,
    parse_request,
)

ipv4 = st.builds(ipaddress.IPv4Address, st.integers(0, 2**32 - 1))
ipv6 = st.builds(ipaddress.IPv6Address, st.integers(0, 2**128 - 1))
domains = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-", min_size=1, max_size=255)
addresses: st.SearchStrategy[Socks5Address] = st.one_of(ipv4, ipv6, domains)
ports = st.integers(0, 65535)


def _splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks, last = [], 0
    for p in points:
        chunks.append(data[last:p])
        last = p
    chunks.append(data[last:])
    return [c for c in chunks if c]


# -- examples -------------------------------------------------------------------------


def test_greeting_zero_methods_is_refused_with_ff() -> None:
    with pytest.raises(SocksFormatError) as info:
        parse_greeting(b"\x05\x00")
    assert info.value.response == b"\x05\xff"


def test_greeting_with_255_methods() -> None:
    data = b"\x05\xff" + bytes(range(255))
    assert parse_greeting(data[:-1]) is None
    parsed = parse_greeting(data)
    assert parsed is not None
    assert len(parsed[0].methods) == 255
    assert parsed[1] == 257
    server = Socks5ServerProtocol()
    server.receive_data(b"\x05\xff" + bytes(range(1, 256)))
    greeting = server.next_event()
    assert isinstance(greeting, Socks5Greeting)
    method, answer = server.select_method(greeting, require_auth=False)
    assert (method, answer) == (0xFF, b"\x05\xff")
    assert server.state is Socks5ServerState.CLOSED


def test_wrong_version() -> None:
    with pytest.raises(SocksVersionError):
        parse_greeting(b"\x04\x01\x00")
    with pytest.raises(SocksVersionError) as info:
        parse_request(b"\x04\x01\x00\x01")
    assert info.value.response is not None
    assert info.value.response[1] == 0x01
    with pytest.raises(SocksVersionError) as info:
        parse_auth_request(b"\x05\x01a\x01b")
    assert info.value.response == b"\x01\xff"


def test_unknown_address_type_replies_08() -> None:
    with pytest.raises(SocksAddressTypeError) as info:
        parse_request(b"\x05\x01\x00\x09")
    assert info.value.reply == 0x08
    assert info.value.response == b"\x05\x08\x00\x01\x00\x00\x00\x00\x00\x00"


def test_unknown_command_replies_07() -> None:
    with pytest.raises(SocksCommandError) as info:
        parse_request(b"\x05\x09\x00\x01\x7f\x00\x00\x01\x00\x50")
    assert info.value.reply == 0x07
    assert info.value.response is not None
    assert info.value.response[1] == 0x07


def test_domain_edges() -> None:
    name = "a" * 255
    req = Socks5Request(Socks5Command.CONNECT, name, 80).encode()
    assert req[4] == 255
    parsed = parse_request(req)
    assert parsed is not None
    assert parsed[0].host == name
    assert parsed[1] == len(req)
    with pytest.raises(ValueError, match="bytes"):
        encode_address("a" * 256, 80)
    with pytest.raises(ValueError, match="bytes"):
        encode_address("", 80)
    with pytest.raises(SocksFormatError):
        parse_request(b"\x05\x01\x00\x03\x00\x00\x50")
    # non-UTF-8 bytes in a domain: a typed error, host unreachable
    with pytest.raises(SocksFormatError) as info:
        parse_request(b"\x05\x01\x00\x03\x02\xff\xfe\x00\x50")
    assert info.value.reply == 0x04


def test_truncated_request_at_eof() -> None:
    server = Socks5ServerProtocol()
    server.receive_data(b"\x05\x01\x00")
    assert isinstance(server.next_event(), Socks5Greeting)
    server.select_method(Socks5Greeting((0,)), require_auth=False)
    server.receive_data(b"\x05\x01\x00\x01\x7f\x00")
    assert server.next_event() is None
    server.receive_data(b"")
    with pytest.raises(SocksTruncatedError):
        server.next_event()
    assert server.state is Socks5ServerState.CLOSED


def test_server_buffer_is_bounded() -> None:
    server = Socks5ServerProtocol(max_buffer=100)
    with pytest.raises(SocksFormatError):
        server.receive_data(b"\x05" * 101)


def test_full_exchange_with_auth_and_pipelined_payload() -> None:
    client = Socks5ClientProtocol(username=b"john", password=b"pw")
    server = Socks5ServerProtocol()
    server.receive_data(client.greeting())
    greeting = server.next_event()
    assert isinstance(greeting, Socks5Greeting)
    method, answer = server.select_method(greeting, require_auth=True)
    assert method == 0x02
    client.receive_data(answer)
    client.next_event()
    assert client.state is Socks5ClientState.AUTH_NEEDED
    server.receive_data(client.auth_request())
    auth = server.next_event()
    assert auth == Socks5AuthRequest(b"john", b"pw")
    client.receive_data(server.auth_result(True))
    client.next_event()
    assert client.state is Socks5ClientState.READY
    server.receive_data(client.request(Socks5Command.CONNECT, "example.com", 443) + b"GET /")
    req = server.next_event()
    assert req == Socks5Request(Socks5Command.CONNECT, "example.com", 443)
    assert server.take_trailing_data() == b"GET /"
    client.receive_data(server.reply(0, ipaddress.IPv6Address("::1"), 1234) + b"HTTP")
    reply = client.next_event()
    assert reply == Socks5Reply(0, ipaddress.IPv6Address("::1"), 1234)
    assert client.state is Socks5ClientState.ESTABLISHED
    assert client.take_trailing_data() == b"HTTP"


def test_client_refusals() -> None:
    client = Socks5ClientProtocol()
    client.greeting()
    client.receive_data(b"\x05\xff")
    client.next_event()
    assert client.state is Socks5ClientState.CLOSED
    client = Socks5ClientProtocol()
    client.greeting()
    client.receive_data(b"\x05\x02")  # user/pass asked, none configured
    client.next_event()
    assert client.state is Socks5ClientState.CLOSED
    client = Socks5ClientProtocol(username=b"u", password=b"p")
    client.greeting()
    client.receive_data(b"\x05\x02")
    client.next_event()
    client.auth_request()
    client.receive_data(b"\x01\x01")
    client.next_event()
    assert client.state is Socks5ClientState.CLOSED
    client = Socks5ClientProtocol()
    client.greeting()
    client.receive_data(b"\x05")
    client.receive_data(b"")
    with pytest.raises(SocksTruncatedError):
        client.next_event()


def test_bind_second_reply() -> None:
    server = Socks5ServerProtocol()
    server.receive_data(b"\x05\x01\x00" + Socks5Request(Socks5Command.BIND, "0.0.0.0", 0).encode())
    greeting = server.next_event()
    assert isinstance(greeting, Socks5Greeting)
    server.select_method(greeting, require_auth=False)
    assert isinstance(server.next_event(), Socks5Request)
    first = server.reply(0, ipaddress.IPv4Address("127.0.0.1"), 5000)
    second = server.reply(0, ipaddress.IPv4Address("127.0.0.2"), 6000)
    client = Socks5ClientProtocol()
    client.greeting()
    client.receive_data(b"\x05\x00")
    client.next_event()
    client.request(Socks5Command.BIND, ipaddress.IPv4Address(0), 0)
    client.receive_data(first + second)
    assert client.next_event() == Socks5Reply(0, ipaddress.IPv4Address("127.0.0.1"), 5000)
    assert client.next_event() == Socks5Reply(0, ipaddress.IPv4Address("127.0.0.2"), 6000)
    assert client.next_event() is None


def test_udp_datagram() -> None:
    dgram = Socks5UdpDatagram(ipaddress.IPv4Address("10.0.0.1"), 53, b"query")
    assert encode_udp_datagram(dgram) == b"\x00\x00\x00\x01\x0a\x00\x00\x01\x00\x35query"
    assert decode_udp_datagram(encode_udp_datagram(dgram)) == dgram
    with pytest.raises(SocksTruncatedError):
        decode_udp_datagram(b"\x00\x00\x00\x01\x0a")
    with pytest.raises(SocksFormatError):
        decode_udp_datagram(b"\x01\x00\x00\x01\x0a\x00\x00\x01\x00\x35")
    with pytest.raises(SocksAddressTypeError):
        decode_udp_datagram(b"\x00\x00\x00\x07\x0a\x00\x00\x01\x00\x35")


def test_socks4_and_4a() -> None:
    req = Socks4Request(Socks4Command.CONNECT, 80, ipaddress.IPv4Address("1.2.3.4"), b"bob")
    data = req.encode()
    assert data == b"\x04\x01\x00\x50\x01\x02\x03\x04bob\x00"
    assert parse_socks4_request(data) == (req, len(data))
    req4a = Socks4Request(Socks4Command.CONNECT, 443, ipaddress.IPv4Address(1), b"", "example.com")
    data = req4a.encode()
    assert data.endswith(b"\x00example.com\x00")
    parsed = parse_socks4_request(data)
    assert parsed is not None
    assert parsed[0].host == "example.com"
    assert parse_socks4_request(data[:-1]) is None
    with pytest.raises(SocksTruncatedError):
        parse_socks4_request(data[:-1], eof=True)
    with pytest.raises(SocksFormatError) as info:
        parse_socks4_request(b"\x04\x01\x00\x50\x01\x02\x03\x04" + b"x" * 300)
    assert info.value.response == b"\x00\x5b\x00\x00\x00\x00\x00\x00"
    with pytest.raises(SocksCommandError):
        parse_socks4_request(b"\x04\x03")
    with pytest.raises(SocksVersionError):
        parse_socks4_request(b"\x05\x01")
    reply = Socks4Reply(90, 8080, ipaddress.IPv4Address("127.0.0.1"))
    assert parse_socks4_reply(reply.encode()) == (reply, 8)
    assert parse_socks4_reply(reply.encode()[:7]) is None


# -- properties -----------------------------------------------------------------------


@given(
    methods=st.lists(st.integers(0, 255), min_size=1, max_size=255),
    cmd=st.sampled_from(list(Socks5Command)),
    host=addresses,
    port=ports,
    user=st.binary(max_size=255),
    password=st.binary(max_size=255),
    auth=st.booleans(),
    cuts=st.lists(st.integers(0, 2000), max_size=8),
)
def test_server_handshake_any_split(
    methods: list[int],
    cmd: Socks5Command,
    host: Socks5Address,
    port: int,
    user: bytes,
    password: bytes,
    auth: bool,
    cuts: list[int],
) -> None:
    if auth and 2 not in methods:
        methods = [*methods[:254], 2]
    if not auth and 0 not in methods:
        methods = [*methods[:254], 0]
    wire = Socks5Greeting(tuple(methods)).encode()
    if auth:
        wire += Socks5AuthRequest(user, password).encode()
    wire += Socks5Request(cmd, host, port).encode() + b"tail"
    server = Socks5ServerProtocol()
    events = []
    for chunk in _splits(wire, cuts):
        server.receive_data(chunk)
        while (event := server.next_event()) is not None:
            events.append(event)
            if isinstance(event, Socks5Greeting):
                server.select_method(event, require_auth=auth)
            elif isinstance(event, Socks5AuthRequest):
                server.auth_result(True)
    assert events[0] == Socks5Greeting(tuple(methods))
    if auth:
        assert events[1] == Socks5AuthRequest(user, password)
    assert events[-1] == Socks5Request(cmd, host, port)
    assert server.trailing_data == b"tail"


@given(code=st.integers(0, 255), host=addresses, port=ports, cuts=st.lists(st.integers(0, 300)))
def test_reply_round_trip_any_split(
    code: int, host: Socks5Address, port: int, cuts: list[int]
) -> None:
    wire = Socks5Reply(code, host, port).encode()
    client = Socks5ClientProtocol()
    client.greeting()
    client.receive_data(b"\x05\x00")
    client.next_event()
    client.request(Socks5Command.CONNECT, "x", 1)
    got = None
    for chunk in _splits(wire, cuts):
        client.receive_data(chunk)
        got = got or client.next_event()
    assert got == Socks5Reply(code, host, port)


@given(host=addresses, port=ports, data=st.binary(max_size=100), frag=st.integers(0, 255))
def test_udp_round_trip(host: Socks5Address, port: int, data: bytes, frag: int) -> None:
    dgram = Socks5UdpDatagram(host, port, data, frag)
    assert decode_udp_datagram(encode_udp_datagram(dgram)) == dgram


@given(
    cmd=st.sampled_from(list(Socks4Command)),
    port=ports,
    ip=ipv4,
    userid=st.binary(max_size=255).filter(lambda b: b"\x00" not in b),
    domain=st.none() | domains,
    cuts=st.lists(st.integers(0, 600), max_size=6),
)
def test_socks4_round_trip_any_split(
    cmd: Socks4Command,
    port: int,
    ip: ipaddress.IPv4Address,
    userid: bytes,
    domain: str | None,
    cuts: list[int],
) -> None:
    if domain is None and ip.packed[:3] == b"\x00\x00\x00" and ip.packed[3] != 0:
        ip = ipaddress.IPv4Address("1.2.3.4")
    req = Socks4Request(
        cmd, port, ip if domain is None else ipaddress.IPv4Address(1), userid, domain
    )
    wire = req.encode()
    buf = b""
    result = None
    for chunk in _splits(wire, cuts):
        buf += chunk
        result = parse_socks4_request(buf)
        if result is not None:
            break
    assert result == (req, len(wire))


@given(data=st.binary(max_size=600), cuts=st.lists(st.integers(0, 600), max_size=6))
def test_server_fuzz_only_typed_errors(data: bytes, cuts: list[int]) -> None:
    server = Socks5ServerProtocol(max_buffer=512)
    try:
        for chunk in [*_splits(data, cuts), b""]:
            server.receive_data(chunk)
            while (event := server.next_event()) is not None:
                if isinstance(event, Socks5Greeting):
                    server.select_method(event, require_auth=bool(data and data[-1] & 1))
                elif isinstance(event, Socks5AuthRequest):
                    server.auth_result(True)
                else:
                    break
            if server.state in (Socks5ServerState.REPLYING, Socks5ServerState.CLOSED):
                break
    except SocksError as exc:
        assert exc.response is None or isinstance(exc.response, bytes)


@given(data=st.binary(max_size=400), auth=st.booleans())
def test_client_fuzz_only_typed_errors(data: bytes, auth: bool) -> None:
    client = Socks5ClientProtocol(username=b"u" if auth else None, password=b"p")
    client.greeting()
    try:
        client.receive_data(data)
        client.receive_data(b"")
        for _ in range(4):
            client.next_event()
            if client.state is Socks5ClientState.AUTH_NEEDED:
                client.auth_request()
            elif client.state is Socks5ClientState.READY:
                client.request(Socks5Command.CONNECT, "example.com", 80)
    except SocksError:
        pass


@given(data=st.binary(max_size=600))
def test_parsers_fuzz_only_typed_errors(data: bytes) -> None:
    for parse in (parse_greeting, parse_request, parse_reply, parse_auth_request):
        try:
            parse(data)
        except SocksError:
            pass
    for eof in (False, True):
        try:
            parse_socks4_request(data, eof=eof)
        except SocksError:
            pass
    try:
        parse_socks4_reply(data)
    except SocksError:
        pass
    try:
        decode_udp_datagram(data)
    except SocksError:
        pass
