"""An echo service that tells TLS clients their JA3 and JA4 fingerprints.

Run:
    python examples/tls_fingerprint_echo.py [--listen 127.0.0.1:9443] [--ca-out ca.pem]
    curl --cacert ca.pem https://localhost:9443/
    openssl s_client -connect 127.0.0.1:9443 -CAfile ca.pem   # then type a line

The acceptor captures each ClientHello before terminating TLS (certificates
are issued per SNI name by a throwaway CA). An HTTP/1.x request gets a JSON
response; any other first line gets the same JSON as one line, followed by an
echo of whatever the client sends next.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import ByteStream

from rama_core import Context, Service, Shutdown, service_fn
from rama_net import SocketInfo, TcpListener, TcpServerConfig
from rama_tls import (
    CertificateAuthority,
    ClientHello,
    ExtensionType,
    IssuingCertResolver,
    LeafCertificateCache,
    NegotiatedTls,
    TlsAcceptorConfig,
    TlsAcceptorLayer,
    ja3,
    ja4,
)

MAX_HEAD = 16 * 1024
READ_TIMEOUT = 10.0
_REQUEST_LINE = re.compile(rb"^[A-Z]+ \S+ HTTP/1\.[01]\r?\n")


def _extension_name(code: int) -> str:
    try:
        return ExtensionType(code).name.lower()
    except ValueError:
        return f"0x{code:04x}"


def report(ctx: Context) -> dict[str, Any]:
    """Everything the handshake revealed about the client, as JSON-ready data."""
    hello = ctx.require(ClientHello)
    tls = ctx.require(NegotiatedTls)
    peer = ctx.get(SocketInfo)
    j3, j4 = ja3(hello), ja4(hello)
    return {
        "peer": str(peer.peer_addr) if peer is not None else None,
        "tls": {
            "version": tls.version,
            "cipher": tls.cipher,
            "alpn": tls.alpn,
            "sni": tls.server_name,
        },
        # every fingerprint has .text (= str(), the canonical one), .hash and .raw
        "ja3": {"text": j3.text, "hash": j3.hash, "raw": j3.raw, "string": j3.string},
        "ja4": {
            "text": j4.text,
            "raw": j4.raw,
            "ja4": j4.ja4,
            "ja4_r": j4.ja4_r,
            "ja4_o": j4.ja4_o,
            "ja4_ro": j4.ja4_ro,
        },
        "client_hello": {
            "cipher_suites": [f"0x{s:04x}" for s in hello.cipher_suites],
            "extensions": [_extension_name(t) for t in hello.extension_types],
            "alpn": [p.decode("ascii", "replace") for p in hello.alpn_protocols],
        },
    }


async def _read_first_line(stream: ByteStream) -> bytes:
    """The client's first bytes up to the end of an HTTP head (or first line), bounded."""
    data = b""
    with anyio.move_on_after(READ_TIMEOUT):
        while len(data) < MAX_HEAD:
            try:
                data += await stream.receive()
            except anyio.EndOfStream:
                break
            if _REQUEST_LINE.match(data):
                if b"\r\n\r\n" in data or b"\n\n" in data:
                    break
            elif b"\n" in data:
                break
    return data


async def fingerprint_echo(ctx: Context, stream: ByteStream, idle_timeout: float) -> None:
    """Answer with the client's fingerprints, then echo (non-HTTP clients) until idle."""
    body = json.dumps(report(ctx), indent=2).encode() + b"\n"
    first = await _read_first_line(stream)
    if _REQUEST_LINE.match(first):
        head = (
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        await stream.send(head.encode() + body)
        return
    await stream.send(json.dumps(report(ctx)).encode() + b"\n")
    if first:
        await stream.send(first)
    while True:
        data = b""
        with anyio.move_on_after(idle_timeout):
            try:
                data = await stream.receive()
            except anyio.EndOfStream:
                return
        if not data:
            return  # idle
        await stream.send(data)


def build(ca: CertificateAuthority, idle_timeout: float = 10.0) -> Service[ByteStream, None]:
    """The acceptor (leaves issued per SNI) in front of the echo service."""
    config = TlsAcceptorConfig(
        resolver=IssuingCertResolver(LeafCertificateCache(ca, max_size=256)),
        alpn_protocols=("http/1.1",),
        handshake_timeout=10,
    )

    @service_fn
    async def echo(ctx: Context, stream: ByteStream) -> None:
        await fingerprint_echo(ctx, stream, idle_timeout)

    return TlsAcceptorLayer(config).layer(echo)


async def main(argv: list[str] | None = None) -> None:
    """Serve until SIGINT/SIGTERM (or ``--duration``), then shut down gracefully."""
    args = parser().parse_args(argv)
    ca = CertificateAuthority.create("rama fingerprint echo CA")
    if args.ca_out:
        Path(args.ca_out).write_bytes(ca.cert_pem())
    listener = TcpListener.bind(args.listen)
    print(f"listening on {listener.local_addr}", flush=True)
    async with Shutdown(grace=5) as shutdown:
        config = TcpServerConfig(max_connections=1000, idle_timeout=60)
        # no ctx= needed: the listener joins the enclosing Shutdown
        shutdown.spawn(listener.serve, build(ca, args.idle_timeout), config)
        if args.duration is not None:

            async def stop_later() -> None:
                await anyio.sleep(args.duration)
                shutdown.trigger("duration")

            shutdown.executor.spawn(stop_later, guarded=False)
    assert shutdown.report is not None
    print(f"shutdown: reason={shutdown.report.reason} clean={shutdown.report.clean}", flush=True)


def parser() -> argparse.ArgumentParser:
    """The command line of this example."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--listen", default="127.0.0.1:9443", help="host:port (port 0: any)")
    p.add_argument("--ca-out", help="write the CA certificate here (PEM)")
    p.add_argument("--idle-timeout", type=float, default=10.0, help="echo: close when idle")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    return p


if __name__ == "__main__":
    anyio.run(main)
