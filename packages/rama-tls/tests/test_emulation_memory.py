"""The sans-IO engine against OpenSSL in memory: pyOpenSSL (cryptography's OpenSSL) with BIOs.

No sockets: both state machines exchange bytes directly, so TLS 1.2 corners
(no extended master secret, a HelloRequest, session tickets) and fuzzing of
the plaintext TLS 1.2 server flight run fast and deterministically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from OpenSSL import SSL

from rama_tls import CertificateAuthority, TlsError
from rama_tls.emulation import ApplicationData, ClientHelloSpec, TlsClient

PROFILES_PATH = Path(__file__).parents[2] / "rama-ua/src/rama_ua/data/ua_profiles.json"
PROFILES: list[dict[str, Any]] = json.loads(PROFILES_PATH.read_text())
CHROME = ClientHelloSpec.from_profile(PROFILES[46]["tls_client_hello"])
FIREFOX = ClientHelloSpec.from_profile(PROFILES[40]["tls_client_hello"])
CA = CertificateAuthority.create("memory CA")
EC_LEAF = CA.issue("localhost")
RSA_LEAF = CA.issue("localhost", key_type="rsa")
SSL_OP_NO_EXTENDED_MASTER_SECRET = 1  # OpenSSL 3: SSL_OP_BIT(0)


def server_context(*, tls12: bool, rsa: bool = False, options: int = 0) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_METHOD)
    leaf = RSA_LEAF if rsa else EC_LEAF
    ctx.use_certificate(leaf.cert)
    ctx.use_privatekey(leaf.key)
    if tls12:
        ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
    if options:
        ctx.set_options(options)
    return ctx


def _pump_server(server: SSL.Connection, data: bytes) -> bytes:
    if data:
        server.bio_write(data)
    try:
        server.do_handshake()
    except SSL.WantReadError:
        pass
    out = b""
    while True:
        try:
            out += server.bio_read(65536)
        except SSL.WantReadError:
            return out


def handshake(spec: ClientHelloSpec, ctx: SSL.Context) -> tuple[TlsClient, SSL.Connection]:
    client = TlsClient(spec, "localhost", ca=CA.cert_pem())
    server = SSL.Connection(ctx, None)
    server.set_accept_state()
    client.start()
    to_server = client.data_to_send()
    for _ in range(10):
        to_client = _pump_server(server, to_server)
        client.receive_data(to_client)
        to_server = client.data_to_send()
        if client.handshake_complete:
            client.receive_data(_pump_server(server, to_server))  # tickets, if any
            break
    assert client.handshake_complete
    return client, server


def exchange(client: TlsClient, server: SSL.Connection) -> None:
    client.send(b"ping")
    server.bio_write(client.data_to_send())
    assert server.recv(100) == b"ping"
    server.send(b"pong")
    events = client.receive_data(server.bio_read(65536))
    assert ApplicationData(b"pong") in events


@pytest.mark.parametrize("spec", [CHROME, FIREFOX], ids=["chrome", "firefox"])
@pytest.mark.parametrize("ems", [True, False], ids=["ems", "no-ems"])
@pytest.mark.parametrize("rsa", [False, True], ids=["ecdsa", "rsa"])
def test_tls12_with_and_without_extended_master_secret(
    spec: ClientHelloSpec, ems: bool, rsa: bool
) -> None:
    ctx = server_context(
        tls12=True, rsa=rsa, options=0 if ems else SSL_OP_NO_EXTENDED_MASTER_SECRET
    )
    client, server = handshake(spec, ctx)
    assert client.version == "TLSv1.2"
    assert client.extended_master_secret is ems
    assert server.get_protocol_version_name() == "TLSv1.2"
    exchange(client, server)


def test_tls12_hello_request_is_declined_with_no_renegotiation() -> None:
    """A HelloRequest gets the no_renegotiation warning (OpenSSL then gives up)."""
    client, server = handshake(CHROME, server_context(tls12=True))
    assert server.renegotiate()
    server.do_handshake()
    events = client.receive_data(server.bio_read(65536))  # the HelloRequest
    assert events == []
    server.bio_write(client.data_to_send())
    with pytest.raises(SSL.Error, match="no renegotiation"):
        server.recv(100)


def test_tls13_in_memory_with_post_quantum_share() -> None:
    client, server = handshake(CHROME, server_context(tls12=False))
    assert client.version == "TLSv1.3"
    assert client.group == 0x11EC
    exchange(client, server)


def test_close_notify_reaches_openssl() -> None:
    client, server = handshake(FIREFOX, server_context(tls12=False))
    client.close()
    server.bio_write(client.data_to_send())
    with pytest.raises(SSL.ZeroReturnError):
        server.recv(100)


# -- fuzzing the plaintext TLS 1.2 server flight and the TLS 1.3 one -------------------------
def _first_flight(spec: ClientHelloSpec, ctx: SSL.Context) -> tuple[TlsClient, bytes]:
    client = TlsClient(spec, "localhost", ca=CA.cert_pem())
    server = SSL.Connection(ctx, None)
    server.set_accept_state()
    client.start()
    return client, _pump_server(server, client.data_to_send())


TLS12 = server_context(tls12=True)
TLS13 = server_context(tls12=False)


@settings(max_examples=200, deadline=3000, suppress_health_check=[HealthCheck.too_slow])
@given(
    tls12=st.booleans(),
    position=st.integers(0, 100_000),
    value=st.integers(0, 255),
    truncate=st.booleans(),
)
def test_mutated_openssl_flight_only_typed_errors(
    tls12: bool, position: int, value: int, truncate: bool
) -> None:
    client, flight = _first_flight(FIREFOX, TLS12 if tls12 else TLS13)
    data = bytearray(flight)
    position %= len(data)
    if truncate:
        del data[position:]
    else:
        data[position] = value
    try:
        client.receive_data(bytes(data))
    except TlsError:
        pass
