"""Address parsing and formatting, with property-based round trips."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rama_net import (
    AddressError,
    Authority,
    Domain,
    Host,
    SocketAddress,
    default_port,
)

# -- strategies ------------------------------------------------------------------------------
_label = st.from_regex(r"\A[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?\Z", fullmatch=True)
_tld = st.from_regex(r"\A[a-z][a-z0-9]{0,8}\Z", fullmatch=True)
domains = st.builds(
    lambda labels, tld: Domain(".".join([*labels, tld])),
    st.lists(_label, min_size=0, max_size=4),
    _tld,
)
ipv4 = st.ip_addresses(v=4)
ipv6 = st.ip_addresses(v=6)
hosts = st.one_of(domains.map(Host), ipv4.map(Host), ipv6.map(Host))
ports = st.integers(0, 65535)


@given(domains)
def test_domain_round_trips(domain: Domain) -> None:
    assert Domain.parse(str(domain)) == domain


@given(hosts)
def test_host_round_trips(host: Host) -> None:
    assert Host.parse(str(host)) == host
    assert Host.parse(host.bracketed()) == host


@given(hosts, ports)
def test_authority_round_trips(host: Host, port: int) -> None:
    auth = Authority(host, port)
    assert Authority.parse(str(auth)) == auth


@given(st.one_of(ipv4, ipv6), ports)
def test_socket_address_round_trips(ip: ipaddress.IPv4Address, port: int) -> None:
    addr = SocketAddress(ip, port)
    assert SocketAddress.parse(str(addr)) == addr
    assert SocketAddress.from_sockaddr(addr.to_sockaddr()) == addr


@given(st.text(max_size=40))
def test_parsing_arbitrary_text_raises_only_address_error(text: str) -> None:
    for parse in (Host.parse, Authority.parse, SocketAddress.parse, Domain.parse):
        try:
            parse(text)
        except AddressError:
            pass


def test_ipv6_is_bracketed_before_a_port() -> None:
    auth = Authority.parse("[2001:db8::1]:8443")
    assert auth.host.ip == ipaddress.IPv6Address("2001:db8::1")
    assert auth.port == 8443
    assert str(auth) == "[2001:db8::1]:8443"
    assert str(SocketAddress.parse("[::1]:80")) == "[::1]:80"
    assert Host.parse("[::1]").bracketed() == "[::1]"
    assert str(Host.parse("[::1]")) == "::1"


def test_domains_are_lowercased_and_lose_the_trailing_dot() -> None:
    assert Domain.parse("WWW.Example.COM.") == Domain("www.example.com")
    assert Domain.parse("www.example.com").labels == ("www", "example", "com")


def test_unicode_domains_are_idna_encoded() -> None:
    d = Domain.parse("bücher.example")
    assert str(d) == "xn--bcher-kva.example"
    assert d.to_unicode() == "bücher.example"
    assert Authority.parse("bücher.example:443").host.domain == d


def test_subdomains() -> None:
    d = Domain.parse("api.eu.example.com")
    assert d.is_subdomain_of("example.com")
    assert d.is_subdomain_of(Domain("api.eu.example.com"))
    assert not d.is_subdomain_of("ample.com")


def test_default_ports() -> None:
    assert default_port("HTTPS") == 443
    assert default_port("http") == 80
    assert default_port("socks5") == 1080
    assert default_port("gopher") is None
    assert Authority.parse("example.com", default_port=443).port == 443


def test_host_kinds() -> None:
    assert Host.parse("127.0.0.1").is_ip
    assert Host.parse("localhost").is_domain
    assert Host.parse("localhost").ip is None
    assert Host.from_value(ipaddress.IPv4Address("10.0.0.1")).ip is not None
    assert Authority.new("example.com", 80) == Authority.parse("example.com:80")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "example.com",  # no port
        "example.com:",
        "example.com:http",
        "example.com:65536",
        "example.com:-1",
        "::1:80",  # unbracketed IPv6 with a port
        "[::1",
        "[::1]x",
        "[not-ip]:80",
        "exa mple.com:80",
        "-bad.example:80",
        "a..b:80",
        "10.0.0.256:80",
        "x" * 64 + ".com:80",
        "[1.2.3.4]:80",
        "a.com:\u00b2",  # superscript two: str.isdigit() but not a port
        "a.com:\u0668\u0660",  # Arabic-Indic 80
    ],
)
def test_bad_authorities_raise_address_error(text: str) -> None:
    with pytest.raises(AddressError):
        Authority.parse(text)


@pytest.mark.parametrize("text", ["example.com:80", "1.2.3.4", "[::1]", "1.2.3.4:99999"])
def test_bad_socket_addresses(text: str) -> None:
    with pytest.raises(AddressError):
        SocketAddress.parse(text)


def test_address_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="missing port"):
        Authority.parse("example.com")


def test_sockaddr_zone_id_is_dropped() -> None:
    assert SocketAddress.from_sockaddr(("fe80::1%lo", 80, 0, 1)).port == 80
