"""Fixtures for rama-tls tests: capture real ClientHellos from real clients on loopback."""

from __future__ import annotations

import socket
import struct
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import ByteStream

from rama_core import Service
from rama_net import TcpListener
from rama_tls import CertificateAuthority
from rama_tls._record import ClientHelloComplete, ClientHelloReader

CaptureFn = Callable[[Callable[[int], object]], bytes]


def _serve_once(listener: socket.socket, out: list[bytes], deadline: float) -> None:
    listener.settimeout(max(0.1, deadline - time.monotonic()))
    try:
        conn, _ = listener.accept()
    except OSError:
        return
    with conn:
        reader = ClientHelloReader()
        data = bytearray()
        while time.monotonic() < deadline:
            conn.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = conn.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
            if isinstance(reader.feed(chunk), ClientHelloComplete):
                break
        out.append(bytes(data))


@pytest.fixture
def capture_client_hello() -> CaptureFn:
    """Run ``client(port)`` against a loopback listener; return the first bytes it sent.

    The listener reads until a whole ClientHello arrived, then closes the
    connection, so every client sees a failed handshake and exits.
    """

    def capture(client: Callable[[int], object]) -> bytes:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        out: list[bytes] = []
        deadline = time.monotonic() + 10
        thread = threading.Thread(target=_serve_once, args=(listener, out, deadline))
        thread.start()
        try:
            client(port)
        finally:
            thread.join(timeout=12)
            listener.close()
        assert out, "client never connected"
        return out[0]

    return capture


def _run_peer(argv: list[str], timeout: float = 10) -> None:
    """Run a peer program, ignoring its (expected) handshake failure."""
    subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def run_peer() -> Iterator[Callable[[list[str]], None]]:
    """``run(argv)``: run a peer program to completion, bounded in time."""
    return _run_peer


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def _pcap_of_client_payloads(payloads: list[bytes], *, dst_port: int = 443) -> bytes:
    """A pcap (Ethernet/IPv4/TCP) with one client-to-server packet per payload.

    Each payload gets its own source port (its own TCP stream), so tshark
    dissects them independently. Lets tshark read bytes captured by a test
    without capture privileges.
    """
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)]
    for n, payload in enumerate(payloads):
        tcp = struct.pack("!HHIIBBHHH", 50000 + n, dst_port, 1, 1, 5 << 4, 0x18, 65535, 0, 0)
        total = 20 + len(tcp) + len(payload)
        ip = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, total, 1, 0x4000, 64, 6, 0, b"\x7f\0\0\1", b"\x7f\0\0\1"
        )
        ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
        frame = b"\0\1\2\3\4\5" + b"\0\1\2\3\4\6" + b"\x08\x00" + ip + tcp + payload
        out.append(struct.pack("<IIII", n, 0, len(frame), len(frame)) + frame)
    return b"".join(out)


def _pcap_of_client_payload(payload: bytes, *, dst_port: int = 443) -> bytes:
    """A one-packet pcap carrying ``payload`` from client to server."""
    return _pcap_of_client_payloads([payload], dst_port=dst_port)


@pytest.fixture
def make_pcap() -> Callable[[bytes], bytes]:
    """``make_pcap(payload)``: a one-packet pcap of client bytes to port 443."""
    return _pcap_of_client_payload


@pytest.fixture
def make_multi_pcap() -> Callable[[list[bytes]], bytes]:
    """``make_multi_pcap(payloads)``: one packet (and TCP stream) per payload, to port 443."""
    return _pcap_of_client_payloads


# -- loopback TLS servers -----------------------------------------------------------------
@pytest.fixture(scope="session")
def ca() -> CertificateAuthority:
    """A throwaway CA for the whole test session."""
    return CertificateAuthority.create("rama-tls test CA")


@pytest.fixture
def ca_file(tmp_path: Path, ca: CertificateAuthority) -> Path:
    """The session CA as a PEM file (for curl --cacert, openssl -CAfile)."""
    path = tmp_path / "ca.pem"
    path.write_bytes(ca.cert_pem())
    return path


ServeFn = Callable[[Service[ByteStream, Any]], AbstractAsyncContextManager[TcpListener]]


@asynccontextmanager
async def _serving(service: Service[ByteStream, Any]) -> AsyncIterator[TcpListener]:
    listener = TcpListener.bind("127.0.0.1:0")
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, service)
        try:
            yield listener
        finally:
            # graceful: stop accepting and let connections drain, but bounded
            listener.close()
            tg.cancel_scope.deadline = anyio.current_time() + 5


@pytest.fixture
def serve_tcp() -> ServeFn:
    """``async with serve_tcp(service) as listener``: a loopback TCP server for the block."""
    return _serving


async def _run(argv: list[str], *, timeout: float = 15, stdin: bytes = b"") -> Completed:
    with anyio.fail_after(timeout):
        proc = await anyio.run_process(argv, input=stdin, check=False)
    return Completed(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


@dataclass(frozen=True)
class Completed:
    """Outcome of a peer program run by :func:`run_async`."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run_async() -> Callable[..., Awaitable[Completed]]:
    """``await run_async(argv, timeout=, stdin=)``: run a peer without blocking the loop."""
    return _run
