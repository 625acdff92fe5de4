"""Bad input to the emulation engine: only typed TLS errors, never a hang or a crash.

A tiny TLS 1.3 server written in the test (X25519, TLS_AES_128_GCM_SHA256,
its own key schedule from the RFC 8446 formulas) produces a valid server
flight for the engine's real ClientHello; each test breaks one thing (a wrong
Finished, a bad signature, a message out of order, an untrusted or
wrong-name chain, garbage). hypothesis mutates records and the plaintext of
every handshake message; the engine must answer with a
:class:`~rama_tls.TlsError` subclass (or keep waiting for more bytes)
and nothing else. A few cases run over loopback through
``emulated_tls_connect``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import ByteStream
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rama_core import service_fn
from rama_tls import (
    CertificateAuthority,
    CertificateVerificationError,
    CertifiedKey,
    ClientHelloComplete,
    PeerClosed,
    TlsError,
    parse_client_hello_records,
    self_signed,
)
from rama_tls._extensions import KeyShare
from rama_tls.emulation import (
    AlertDescription,
    ApplicationData,
    ClientHelloSpec,
    HandshakeComplete,
    TlsAlertReceived,
    TlsBadRecordMac,
    TlsClient,
    TlsDecodeError,
    TlsIllegalParameter,
    TlsProtocolError,
    TlsUnexpectedMessage,
    emulated_tls_connect,
)

PROFILES_PATH = Path(__file__).parents[2] / "rama-ua/src/rama_ua/data/ua_profiles.json"
PROFILES: list[dict[str, Any]] = json.loads(PROFILES_PATH.read_text())
SPEC = ClientHelloSpec.from_profile(PROFILES[40]["tls_client_hello"])  # Firefox
CA = CertificateAuthority.create("bad input CA")
LEAF = CA.issue("localhost")


# -- a tiny TLS 1.3 server ----------------------------------------------------------------------
def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def _expand_label(secret: bytes, label: bytes, context: bytes, length: int) -> bytes:
    full = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + bytes([len(context)]) + context
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = _hmac(secret, block + info + bytes([i]))
        out += block
        i += 1
    return out[:length]


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _msg(mtype: int, body: bytes) -> bytes:
    return bytes([mtype]) + len(body).to_bytes(3, "big") + body


def _v16(b: bytes) -> bytes:
    return len(b).to_bytes(2, "big") + b


def _v24(b: bytes) -> bytes:
    return len(b).to_bytes(3, "big") + b


class Sealer:
    def __init__(self, secret: bytes) -> None:
        self.aead = AESGCM(_expand_label(secret, b"key", b"", 16))
        self.iv = int.from_bytes(_expand_label(secret, b"iv", b"", 12), "big")
        self.seq = 0

    def seal(self, ctype: int, data: bytes) -> bytes:
        nonce = (self.iv ^ self.seq).to_bytes(12, "big")
        self.seq += 1
        header = b"\x17\x03\x03" + (len(data) + 17).to_bytes(2, "big")
        return header + self.aead.encrypt(nonce, data + bytes([ctype]), header)


class TinyServer:
    """Answers one ClientHello with ServerHello + an encrypted flight (each part replaceable)."""

    def __init__(self, hello_record: bytes, leaf: CertifiedKey = LEAF) -> None:
        result = parse_client_hello_records(hello_record)
        assert isinstance(result, ClientHelloComplete)
        hello = result.client_hello
        shares = hello.find(KeyShare)
        assert shares is not None
        peer = next(e.key_exchange for e in shares.entries if e.group == 0x001D)
        key = X25519PrivateKey.generate()
        shared = key.exchange(X25519PublicKey.from_public_bytes(peer))
        exts = (
            b"\x00\x2b\x00\x02\x03\x04"
            + b"\x00\x33"
            + _v16(b"\x00\x1d" + _v16(key.public_key().public_bytes_raw()))
        )
        body = b"\x03\x03" + os.urandom(32) + bytes([len(hello.session_id)]) + hello.session_id
        body += b"\x13\x01\x00" + _v16(exts)
        self.server_hello = _msg(2, body)
        self.transcript = hello.raw + self.server_hello
        zeros = bytes(32)
        early = _hmac(zeros, zeros)
        derived = _expand_label(early, b"derived", _sha(b""), 32)
        hs = _hmac(derived, shared)
        th = _sha(self.transcript)
        self.s_hs = _expand_label(hs, b"s hs traffic", th, 32)
        self.c_hs = _expand_label(hs, b"c hs traffic", th, 32)
        self.hs_secret = hs
        self.sealer = Sealer(self.s_hs)
        self.leaf = leaf

    def encrypted_extensions(self) -> bytes:
        return _msg(8, _v16(b"\x00\x10" + _v16(_v16(b"\x02h2"))))

    def certificate(self) -> bytes:
        der = self.leaf.cert.public_bytes(Encoding.DER)
        return _msg(11, b"\x00" + _v24(_v24(der) + b"\x00\x00"))

    def certificate_verify(self, transcript: bytes, *, corrupt: bool = False) -> bytes:
        content = b" " * 64 + b"TLS 1.3, server CertificateVerify\x00" + _sha(transcript)
        if corrupt:
            content += b"x"
        key = self.leaf.key
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        sig = key.sign(content, ec.ECDSA(hashes.SHA256()))
        return _msg(15, b"\x04\x03" + _v16(sig))

    def finished(self, transcript: bytes, *, corrupt: bool = False) -> bytes:
        fk = _expand_label(self.s_hs, b"finished", b"", 32)
        mac = _hmac(fk, _sha(transcript))
        if corrupt:
            mac = bytes([mac[0] ^ 1]) + mac[1:]
        return _msg(20, mac)

    def messages(self, **corrupt: bool) -> list[bytes]:
        """The plaintext handshake messages of the encrypted flight, in order."""
        ee = self.encrypted_extensions()
        cert = self.certificate()
        t = self.transcript + ee + cert
        cv = self.certificate_verify(t, corrupt=corrupt.get("signature", False))
        fin = self.finished(t + cv, corrupt=corrupt.get("finished", False))
        return [ee, cert, cv, fin]

    def flight(self, messages: list[bytes]) -> bytes:
        return (
            b"\x16\x03\x03"
            + _v16(self.server_hello)
            + b"\x14\x03\x03\x00\x01\x01"
            + b"".join(self.sealer.seal(22, m) for m in messages)
        )


def new_client(*, verify: bool = True, ca: Any = None) -> tuple[TlsClient, TinyServer]:
    client = TlsClient(SPEC, "localhost", verify=verify, ca=ca if ca is not None else CA.cert_pem())
    client.start()
    return client, TinyServer(client.data_to_send())


# -- the tiny server works ------------------------------------------------------------------------
def test_tiny_server_handshake_completes() -> None:
    client, server = new_client()
    events = client.receive_data(server.flight(server.messages()))
    assert any(isinstance(e, HandshakeComplete) for e in events)
    assert client.alpn_protocol == "h2"
    out = client.data_to_send()
    assert out.startswith(b"\x14\x03\x03\x00\x01\x01")  # middlebox CCS, then the Finished
    # the client's Finished verifies with the client handshake key
    ad = b"\x17\x03\x03" + out[6 + 3 : 6 + 5]
    key = AESGCM(_expand_label(server.c_hs, b"key", b"", 16))
    iv = _expand_label(server.c_hs, b"iv", b"", 12)
    inner = key.decrypt(iv, out[6 + 5 :], ad)
    assert inner[0] == 20
    assert inner[-1] == 22


def _client_records(out: bytes, secret: bytes) -> list[bytes]:
    """Decrypt the client's protected records (after its CCS) with ``secret``."""
    assert out.startswith(b"\x14\x03\x03\x00\x01\x01")
    out = out[6:]
    aead = AESGCM(_expand_label(secret, b"key", b"", 16))
    iv = int.from_bytes(_expand_label(secret, b"iv", b"", 12), "big")
    records, seq = [], 0
    while out:
        length = int.from_bytes(out[3:5], "big")
        header, body, out = out[:5], out[5 : 5 + length], out[5 + length :]
        records.append(aead.decrypt((iv ^ seq).to_bytes(12, "big"), body, header))
        seq += 1
    return records


@pytest.mark.parametrize(("index", "codepoint"), [(46, b"\x44\xcd"), (30, b"\x44\x69")])
def test_alps_is_answered_with_the_clients_encrypted_extensions(
    index: int, codepoint: bytes
) -> None:
    """Both ALPS code points: Chrome 151 (0x44cd) and Chrome 114 (0x4469)."""
    chrome = ClientHelloSpec.from_profile(PROFILES[index]["tls_client_hello"])
    client = TlsClient(chrome, "localhost", ca=CA.cert_pem())
    client.start()
    server = TinyServer(client.data_to_send())
    alps = codepoint + b"\x00\x00"  # the server's (empty) h2 settings
    ee = _msg(8, _v16(b"\x00\x10" + _v16(_v16(b"\x02h2")) + alps))
    cert = server.certificate()
    t = server.transcript + ee + cert
    cv = server.certificate_verify(t)
    fin = server.finished(t + cv)
    events = client.receive_data(server.flight([ee, cert, cv, fin]))
    assert any(isinstance(e, HandshakeComplete) for e in events)
    first, second = _client_records(client.data_to_send(), server.c_hs)
    assert first == _msg(8, _v16(codepoint + b"\x00\x00")) + b"\x16"  # client EE with ALPS
    assert second[0] == 20  # then its Finished
    fk = _expand_label(server.c_hs, b"finished", b"", 32)
    assert second[4:-1] == _hmac(fk, _sha(t + cv + fin + first[:-1]))


def test_certificate_request_is_answered_with_an_empty_certificate() -> None:
    client, server = new_client()
    ee = server.encrypted_extensions()
    cr = _msg(13, b"\x01\x07" + _v16(b"\x00\x0d\x00\x04\x00\x02\x04\x03"))
    cert = server.certificate()
    t = server.transcript + ee + cr + cert
    cv = server.certificate_verify(t)
    fin = server.finished(t + cv)
    client.receive_data(server.flight([ee, cr, cert, cv, fin]))
    first, second = _client_records(client.data_to_send(), server.c_hs)
    assert first == _msg(11, b"\x01\x07\x00\x00\x00") + b"\x16"  # context echoed, no cert
    assert second[0] == 20


def test_each_byte_of_the_flight_arriving_alone() -> None:
    client, server = new_client()
    events = []
    for b in server.flight(server.messages()):
        events += client.receive_data(bytes([b]))
    assert any(isinstance(e, HandshakeComplete) for e in events)


# -- typed errors for a broken server ----------------------------------------------------------
def _alert_sent(client: TlsClient) -> bool:
    return bool(client.data_to_send())


def test_wrong_finished() -> None:
    client, server = new_client()
    with pytest.raises(TlsProtocolError, match="Finished") as info:
        client.receive_data(server.flight(server.messages(finished=True)))
    assert info.value.alert == AlertDescription.DECRYPT_ERROR
    assert _alert_sent(client)
    with pytest.raises(TlsProtocolError):
        client.receive_data(b"\x17\x03\x03\x00\x00")  # a failed connection stays failed


def test_bad_signature() -> None:
    client, server = new_client()
    with pytest.raises(TlsProtocolError, match="signature") as info:
        client.receive_data(server.flight(server.messages(signature=True)))
    assert info.value.alert == AlertDescription.DECRYPT_ERROR


def test_unexpected_message_order() -> None:
    client, server = new_client()
    ee, _cert, _cv, fin = server.messages()
    with pytest.raises(TlsUnexpectedMessage):
        client.receive_data(server.flight([ee, fin]))


def test_untrusted_chain() -> None:
    client, server = new_client(ca=CertificateAuthority.create("another CA").cert_pem())
    with pytest.raises(CertificateVerificationError):
        client.receive_data(server.flight(server.messages()))
    assert _alert_sent(client)


def test_wrong_host_name() -> None:
    client = TlsClient(SPEC, "other.example", ca=CA.cert_pem())
    client.start()
    server = TinyServer(client.data_to_send())
    with pytest.raises(CertificateVerificationError):
        client.receive_data(server.flight(server.messages()))


def test_self_signed_passes_only_without_verification() -> None:
    leaf = self_signed("localhost")
    c = TlsClient(SPEC, "localhost", verify=False)
    c.start()
    s = TinyServer(c.data_to_send(), leaf)
    assert any(isinstance(e, HandshakeComplete) for e in c.receive_data(s.flight(s.messages())))
    v = TlsClient(SPEC, "localhost", ca=CA.cert_pem())
    v.start()
    s2 = TinyServer(v.data_to_send(), leaf)
    with pytest.raises(CertificateVerificationError):
        v.receive_data(s2.flight(s2.messages()))


def test_garbage_instead_of_tls() -> None:
    client, _ = new_client()
    with pytest.raises(TlsUnexpectedMessage, match="not TLS"):
        client.receive_data(b"HTTP/1.1 400 Bad Request\r\n\r\n")


def test_fatal_alert_from_server() -> None:
    client, _ = new_client()
    with pytest.raises(TlsAlertReceived) as info:
        client.receive_data(b"\x15\x03\x03\x00\x02\x02\x28")
    assert info.value.description == AlertDescription.HANDSHAKE_FAILURE


def test_tampered_record() -> None:
    client, server = new_client()
    flight = bytearray(server.flight(server.messages()))
    flight[-5] ^= 0x40
    with pytest.raises(TlsBadRecordMac):
        client.receive_data(bytes(flight))


def test_server_picks_what_was_not_offered() -> None:
    client, server = new_client()
    sh = bytearray(server.server_hello)
    at = sh.index(b"\x13\x01\x00")
    sh[at : at + 2] = b"\x13\x05"  # TLS_AES_128_CCM_8_SHA256, never offered
    with pytest.raises(TlsIllegalParameter):
        client.receive_data(b"\x16\x03\x03" + _v16(bytes(sh)))


def test_application_data_and_close_after_handshake() -> None:
    client, server = new_client()
    messages = server.messages()
    client.receive_data(server.flight(messages))
    t = server.transcript + b"".join(messages)
    s_ap = _expand_label(
        _hmac(_expand_label(server.hs_secret, b"derived", _sha(b""), 32), bytes(32)),
        b"s ap traffic",
        _sha(t),
        32,
    )
    app = Sealer(s_ap)
    events = client.receive_data(app.seal(23, b"hello") + app.seal(21, b"\x01\x00"))
    assert events[0] == ApplicationData(b"hello")
    assert len(events) == 2
    with pytest.raises(TlsUnexpectedMessage):
        client.receive_data(app.seal(23, b"after close_notify"))


# -- hypothesis -------------------------------------------------------------------------------
TYPED = (TlsError,)


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000))
def test_random_bytes_only_typed_errors(data: bytes) -> None:
    client, _ = new_client()
    try:
        client.receive_data(data)
    except TYPED:
        pass


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.sampled_from([20, 21, 22, 23, 24]), st.binary(max_size=400)), max_size=6)
)
def test_random_records_only_typed_errors(records: list[tuple[int, bytes]]) -> None:
    client, _ = new_client()
    data = b"".join(bytes([t, 3, 3]) + _v16(body) for t, body in records)
    try:
        client.receive_data(data)
    except TYPED:
        pass


@settings(max_examples=250, deadline=3000, suppress_health_check=[HealthCheck.too_slow])
@given(
    index=st.integers(0, 3),
    position=st.integers(0, 10_000),
    value=st.integers(0, 255),
    cut=st.booleans(),
    extra=st.binary(max_size=8),
)
def test_mutated_handshake_messages_only_typed_errors(
    index: int, position: int, value: int, cut: bool, extra: bytes
) -> None:
    """Mutate the plaintext of one encrypted handshake message, then seal it properly."""
    client, server = new_client(verify=False)
    messages = server.messages()
    m = bytearray(messages[index])
    position %= len(m)
    if cut:
        del m[position:]
        m += extra
    else:
        m[position] = value
    messages[index] = bytes(m)
    try:
        client.receive_data(server.flight(messages))
    except TYPED:
        pass


@settings(max_examples=100, deadline=3000, suppress_health_check=[HealthCheck.too_slow])
@given(position=st.integers(0, 10_000), value=st.integers(0, 255))
def test_mutated_server_hello_only_typed_errors(position: int, value: int) -> None:
    client, server = new_client(verify=False)
    sh = bytearray(server.server_hello)
    sh[position % len(sh)] = value
    try:
        client.receive_data(b"\x16\x03\x03" + _v16(bytes(sh)))
    except TYPED:
        pass


def test_decode_errors_are_typed() -> None:
    client, server = new_client()
    ee = _msg(8, b"\x00\x05\x00\x10")  # extensions block shorter than it says
    with pytest.raises(TlsDecodeError):
        client.receive_data(server.flight([ee]))


# -- over loopback ---------------------------------------------------------------------------
async def _malicious(stream: ByteStream, kind: str) -> None:
    data = b""
    while True:
        data += await stream.receive()
        result = parse_client_hello_records(data)
        if isinstance(result, ClientHelloComplete):
            break
    server = TinyServer(data[: result.consumed])
    if kind == "garbage":
        await stream.send(b"\x00garbage that is not TLS at all")
    elif kind == "finished":
        await stream.send(server.flight(server.messages(finished=True)))
    elif kind == "close":
        pass
    with anyio.move_on_after(2):
        try:
            await stream.receive()  # the client's alert, or its close
        except Exception:
            pass
    await stream.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("kind", "error"),
    [("garbage", TlsUnexpectedMessage), ("finished", TlsProtocolError), ("close", PeerClosed)],
)
async def test_malicious_server_over_loopback(
    kind: str, error: type[Exception], serve_tcp: Any
) -> None:
    @service_fn
    async def handler(ctx: Any, stream: ByteStream) -> None:
        await _malicious(stream, kind)

    async with serve_tcp(handler) as listener:
        with anyio.fail_after(10):
            tcp = await anyio.connect_tcp("127.0.0.1", listener.local_addr.port)
            with pytest.raises(error):
                await emulated_tls_connect(
                    tcp, server_name="localhost", spec=SPEC, ca=CA.cert_pem()
                )
            await tcp.aclose()


@pytest.mark.anyio
async def test_silent_server_times_out(serve_tcp: Any) -> None:
    from rama_tls import HandshakeTimeout

    @service_fn
    async def silent(ctx: Any, stream: ByteStream) -> None:
        await anyio.sleep(5)

    async with serve_tcp(silent) as listener:
        tcp = await anyio.connect_tcp("127.0.0.1", listener.local_addr.port)
        with pytest.raises(HandshakeTimeout):
            await emulated_tls_connect(
                tcp, server_name="localhost", spec=SPEC, ca=CA.cert_pem(), handshake_timeout=0.3
            )
        await tcp.aclose()


def _app_sealer(server: TinyServer, messages: list[bytes]) -> Sealer:
    t = server.transcript + b"".join(messages)
    master = _hmac(_expand_label(server.hs_secret, b"derived", _sha(b""), 32), bytes(32))
    return Sealer(_expand_label(master, b"s ap traffic", _sha(t), 32))


@pytest.mark.anyio
@pytest.mark.parametrize("ending", ["tampered", "eof", "close_notify", "alert"])
async def test_after_the_handshake_over_loopback(ending: str, serve_tcp: Any) -> None:
    """Failures after the handshake are ConnectionLost; EOF and close_notify end the stream."""
    from rama_net import ConnectionLost

    @service_fn
    async def handler(ctx: Any, stream: ByteStream) -> None:
        data = b""
        while True:
            data += await stream.receive()
            result = parse_client_hello_records(data)
            if isinstance(result, ClientHelloComplete):
                break
        server = TinyServer(data[: result.consumed])
        messages = server.messages()
        app = _app_sealer(server, messages)
        await stream.send(server.flight(messages) + app.seal(23, b"first"))
        if ending == "tampered":
            record = bytearray(app.seal(23, b"second"))
            record[-1] ^= 1
            await stream.send(bytes(record))
        elif ending == "close_notify":
            await stream.send(app.seal(21, b"\x01\x00"))
        elif ending == "alert":
            await stream.send(app.seal(21, b"\x02\x50"))  # internal_error
        with anyio.move_on_after(1):
            try:
                await stream.receive()
            except Exception:
                pass
        await stream.aclose()

    async with serve_tcp(handler) as listener:
        with anyio.fail_after(10):
            tcp = await anyio.connect_tcp("127.0.0.1", listener.local_addr.port)
            tls = await emulated_tls_connect(
                tcp, server_name="localhost", spec=SPEC, ca=CA.cert_pem()
            )
            assert await tls.receive() == b"first"
            if ending in ("tampered", "alert"):
                with pytest.raises(ConnectionLost):
                    await tls.receive()
            else:
                with pytest.raises(anyio.EndOfStream):
                    await tls.receive()
                await tls.send(b"half-closed: sending still works")
            await tls.aclose()


def test_data_before_a_fatal_alert_is_delivered_first() -> None:
    client, server = new_client()
    messages = server.messages()
    client.receive_data(server.flight(messages))
    app = _app_sealer(server, messages)
    events = client.receive_data(app.seal(23, b"data") + app.seal(21, b"\x02\x50"))
    assert events == [ApplicationData(b"data")]
    assert client.has_pending_error
    with pytest.raises(TlsAlertReceived):
        client.receive_data(b"")
    with pytest.raises(TlsProtocolError):
        client.receive_data(b"")


def test_system_store_is_the_default_trust() -> None:
    """Without ca=, the system's roots are loaded; the test CA is not among them."""
    client = TlsClient(SPEC, "localhost")
    client.start()
    server = TinyServer(client.data_to_send())
    with pytest.raises(CertificateVerificationError):
        client.receive_data(server.flight(server.messages()))


def test_verification_needs_a_name() -> None:
    from rama_tls import MissingServerNameError

    with pytest.raises(MissingServerNameError):
        TlsClient(SPEC, None)
    TlsClient(SPEC, None, verify=False).start()  # opting out is explicit


@pytest.mark.anyio
async def test_stream_after_aclose(serve_tcp: Any) -> None:
    @service_fn
    async def handler(ctx: Any, stream: ByteStream) -> None:
        data = b""
        while True:
            data += await stream.receive()
            result = parse_client_hello_records(data)
            if isinstance(result, ClientHelloComplete):
                break
        server = TinyServer(data[: result.consumed])
        messages = server.messages()
        await stream.send(server.flight(messages) + _app_sealer(server, messages).seal(23, b"x"))
        with anyio.move_on_after(1):
            try:
                await stream.receive()
            except Exception:
                pass

    async with serve_tcp(handler) as listener:
        with anyio.fail_after(10):
            tcp = await anyio.connect_tcp("127.0.0.1", listener.local_addr.port)
            tls = await emulated_tls_connect(
                tcp, server_name="localhost", spec=SPEC, ca=CA.cert_pem()
            )
            with pytest.raises(ValueError, match="max_bytes"):
                await tls.receive(0)
            await tls.aclose()
            with pytest.raises(anyio.ClosedResourceError):
                await tls.receive()  # even with the server's byte buffered
            with pytest.raises(anyio.ClosedResourceError):
                await tls.send(b"late")
            await tls.aclose()  # twice is fine
