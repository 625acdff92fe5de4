"""Shared pieces of the MITM tests: CAs, a MITM behind an HttpProxy, curl."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

from rama_proxy import HttpProxy
from rama_proxy.mitm import HttpFlow, MitmConnection, MitmObserver, MitmProxy, WebSocketMessage
from rama_tls import CertificateAuthority, StaticCertResolver, TlsAcceptorConfig

sys.path.insert(0, str(Path(__file__).parent))
from http_proxy_testutil import Recorder, run_proxy

__all__ = ["Events", "curl", "origin_tls", "run_mitm"]


def origin_tls(
    ca: CertificateAuthority, alpn: tuple[str, ...] = ("h2", "http/1.1"), *hosts: str
) -> TlsAcceptorConfig:
    leaf = ca.issue(*(hosts or ("localhost", "127.0.0.1")))
    return TlsAcceptorConfig(resolver=StaticCertResolver(default=leaf), alpn_protocols=alpn)


class Events(MitmObserver):
    """An observer keeping what it is told."""

    def __init__(self) -> None:
        self.connections: list[MitmConnection] = []
        self.finished: list[MitmConnection] = []
        self.flows: list[HttpFlow] = []
        self.requests: list[HttpFlow] = []
        self.ws: list[WebSocketMessage] = []
        self.request_chunks: list[bytes] = []
        self.response_chunks: list[bytes] = []

    def connection_started(self, conn: MitmConnection) -> None:
        self.connections.append(conn)

    def connection_finished(self, conn: MitmConnection) -> None:
        self.finished.append(conn)

    def request(self, flow: HttpFlow) -> None:
        self.requests.append(flow)

    def request_body(self, flow: HttpFlow, chunk: bytes) -> None:
        self.request_chunks.append(chunk)

    def response_body(self, flow: HttpFlow, chunk: bytes) -> None:
        self.response_chunks.append(chunk)

    def flow_finished(self, flow: HttpFlow) -> None:
        self.flows.append(flow)

    def websocket_message(self, flow: HttpFlow, message: WebSocketMessage) -> None:
        self.ws.append(message)

    async def wait(self, attr: str, n: int, timeout: float = 5.0) -> list[Any]:
        with anyio.fail_after(timeout):
            while len(getattr(self, attr)) < n:
                await anyio.sleep(0.01)
        items: list[Any] = getattr(self, attr)
        return items


@asynccontextmanager
async def run_mitm(mitm: MitmProxy, **kw: Any) -> AsyncIterator[tuple[int, Recorder]]:
    """An HttpProxy on 127.0.0.1 handing CONNECTs to ``mitm``; yields (port, records)."""
    async with run_proxy(HttpProxy(connect_policy=mitm.connect_policy(), **kw)) as (p, _, rec):
        yield p, rec


async def curl(*args: str) -> tuple[int, str, str]:
    r = await anyio.run_process(["curl", "-sS", "--max-time", "10", *args], check=False)
    return r.returncode, r.stdout.decode(), r.stderr.decode()
