"""The anyio adapter: :func:`emulated_tls_connect` and :class:`EmulatedTlsStream`.

A thin loop around the sans-IO :class:`~rama_tls.emulation.TlsClient`: it
drives the handshake over any anyio ``ByteStream`` (a rama TCP stream, a
proxy tunnel...) and returns a ``ByteStream`` that behaves like rama's
:class:`~rama_tls.TlsStream`:

* ``extra(TLSAttribute.alpn_protocol)``, ``tls_version``, ``cipher``,
  ``peer_certificate_binary``, ``server_side`` and ``standard_compatible``
  answer as anyio's TLS stream does (``ssl_object`` is absent: there is
  none); the transport's attributes (addresses...) pass through;
* after the handshake, a failure that ends the connection (transport reset,
  bad record MAC, a fatal alert) raises :class:`rama_net.ConnectionLost`;
  close_notify, or an EOF without it, reads as :class:`anyio.EndOfStream`;
* :meth:`EmulatedTlsStream.send_eof` sends close_notify and keeps reading,
  :meth:`EmulatedTlsStream.aclose` sends it without waiting for the reply.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import anyio
from anyio.abc import ByteStream
from anyio.streams.tls import TLSAttribute

from rama_net import ConnectionLost

from .._errors import HandshakeTimeout, PeerClosed, TlsError
from .._info import NegotiatedTls
from ._engine import ApplicationData, CloseNotify, Event, HandshakeComplete, TlsClient
from ._spec import ClientHelloSpec
from ._verify import CaSource

__all__ = ["EmulatedTlsStream", "emulated_tls_connect"]

_READ_SIZE = 262144
_FLUSH_TIMEOUT = 1.0
_TRANSPORT_ERRORS = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


class EmulatedTlsStream(ByteStream):
    """A TLS connection driven by the emulation engine (see the module docstring)."""

    def __init__(self, transport: ByteStream, client: TlsClient) -> None:
        self.transport_stream = transport
        self.client = client
        self._chunks: deque[bytes] = deque()
        self._eof = False
        self._closed = False
        self._send_lock = anyio.Lock()

    # -- introspection ------------------------------------------------------------------
    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        """anyio typed attributes: TLS ones plus the transport's."""
        client = self.client
        return {
            **self.transport_stream.extra_attributes,
            TLSAttribute.alpn_protocol: lambda: client.alpn_protocol,
            TLSAttribute.tls_version: lambda: client.version,
            TLSAttribute.cipher: lambda: (client.cipher_suite, client.version, _bits(client)),
            TLSAttribute.peer_certificate_binary: lambda: (
                client.peer_certificates[0] if client.peer_certificates else None
            ),
            TLSAttribute.server_side: lambda: False,
            TLSAttribute.standard_compatible: lambda: False,
        }

    def negotiated(self) -> NegotiatedTls:
        """What the handshake negotiated, as the connector records it."""
        c = self.client
        return NegotiatedTls(
            side="client",
            version=c.version or "",
            cipher=c.cipher_suite or "",
            alpn=c.alpn_protocol,
            server_name=c.server_name,
            peer_certificate_der=c.peer_certificates[0] if c.peer_certificates else None,
        )

    # -- I/O ------------------------------------------------------------------------------
    def _absorb(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, ApplicationData):
                self._chunks.append(event.data)
            elif isinstance(event, CloseNotify):
                self._eof = True

    async def _flush(self) -> None:
        async with self._send_lock:
            data = self.client.data_to_send()
            if data:
                await self.transport_stream.send(data)

    async def _flush_final(self) -> None:
        """Best effort: push out a queued alert, bounded in time."""
        with anyio.move_on_after(_FLUSH_TIMEOUT, shield=True):
            with contextlib.suppress(Exception):
                await self._flush()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Decrypted bytes; EndOfStream after close_notify or EOF."""
        if self._closed:
            raise anyio.ClosedResourceError
        if max_bytes < 1:
            raise ValueError("max_bytes must be a positive integer")
        chunks = self._chunks
        while not chunks:
            if self.client.has_pending_error:  # detected after the data already returned
                try:
                    self.client.receive_data(b"")
                except TlsError as exc:
                    await self._flush_final()
                    raise ConnectionLost(f"TLS receive failed: {exc}") from exc
            if self._eof:
                raise anyio.EndOfStream
            try:
                data = await self.transport_stream.receive(_READ_SIZE)
            except anyio.EndOfStream:
                self._eof = True
                raise
            except ConnectionLost:
                raise
            except _TRANSPORT_ERRORS as exc:
                raise ConnectionLost(f"TLS receive failed: {exc or type(exc).__name__}") from exc
            try:
                self._absorb(self.client.receive_data(data))
            except TlsError as exc:
                await self._flush_final()
                raise ConnectionLost(f"TLS receive failed: {exc}") from exc
            if self.client.has_data_to_send:  # a KeyUpdate answer
                await self._send_out()
        chunk = chunks.popleft()
        size = len(chunk)
        if size > max_bytes:
            chunks.appendleft(chunk[max_bytes:])
            return chunk[:max_bytes]
        if not chunks or size + len(chunks[0]) > max_bytes:
            return chunk
        parts = [chunk]  # several records' worth fit: one call returns them all
        while chunks and size + len(chunks[0]) <= max_bytes:
            nxt = chunks.popleft()
            parts.append(nxt)
            size += len(nxt)
        return b"".join(parts)

    async def _send_out(self) -> None:
        try:
            await self._flush()
        except ConnectionLost:
            raise
        except _TRANSPORT_ERRORS as exc:
            raise ConnectionLost(f"TLS send failed: {exc or type(exc).__name__}") from exc

    async def send(self, item: bytes) -> None:
        """Encrypt and send ``item``."""
        if self._closed:
            raise anyio.ClosedResourceError
        try:
            self.client.send(item)
        except TlsError as exc:
            raise ConnectionLost(f"TLS send failed: {exc}") from exc
        await self._send_out()

    async def send_eof(self) -> None:
        """Send close_notify; receiving goes on until the server's EOF."""
        self.client.close()
        await self._send_out()

    async def aclose(self) -> None:
        """Send close_notify (without waiting for the reply) and close the transport."""
        if self._closed:
            return
        self._closed = True
        try:
            with contextlib.suppress(TlsError):
                self.client.close()
            await self._flush_final()
        finally:
            with anyio.move_on_after(_FLUSH_TIMEOUT, shield=True) as scope:
                await self.transport_stream.aclose()
            if scope.cancelled_caught:
                await anyio.aclose_forcefully(self.transport_stream)


def _bits(client: TlsClient) -> int:
    name = client.cipher_suite or ""
    return 128 if "128" in name else 256


async def emulated_tls_connect(
    stream: ByteStream,
    *,
    server_name: str | None,
    spec: ClientHelloSpec,
    verify: bool = True,
    ca: CaSource = None,
    handshake_timeout: float | None = None,
) -> EmulatedTlsStream:
    """Run a TLS client handshake over ``stream`` sending ``spec``'s ClientHello.

    ``server_name`` goes into SNI (not for IP literals) and is what the
    certificate must match. ``verify`` (default on) checks the chain against
    ``ca`` (PEM path or bytes, certificates; None: the system store);
    ``verify=False`` is for tests and MITM upstreams. Raises
    :class:`~rama_tls.CertificateVerificationError`,
    :class:`~rama_tls.emulation.TlsProtocolError` (the server broke the
    protocol; the alert was sent), :class:`~rama_tls.emulation.TlsAlertReceived`,
    :class:`~rama_tls.PeerClosed` (the server went away) or
    :class:`~rama_tls.HandshakeTimeout`. On failure ``stream`` is left
    open (the caller owns it), as with :func:`rama_tls.tls_connect`.
    """
    client = TlsClient(spec, server_name, verify=verify, ca=ca)
    tls = EmulatedTlsStream(stream, client)
    try:
        with anyio.fail_after(handshake_timeout):
            await _handshake(tls)
    except TimeoutError as exc:
        raise HandshakeTimeout(handshake_timeout or 0) from exc
    return tls


async def _handshake(tls: EmulatedTlsStream) -> None:
    client, transport = tls.client, tls.transport_stream
    client.start()
    try:
        await transport.send(client.data_to_send())
        done = False
        while not done:
            data = await transport.receive(_READ_SIZE)
            try:
                events = client.receive_data(data)
            except TlsError:
                await tls._flush_final()
                raise
            tls._absorb(events)
            # not client.handshake_complete: a failure right behind the server's Finished
            # (in the same read) is raised by the first receive, after the data before it
            done = any(isinstance(e, HandshakeComplete) for e in events)
            out = client.data_to_send()
            if out:
                await transport.send(out)
    except (anyio.EndOfStream, *_TRANSPORT_ERRORS) as exc:
        raise PeerClosed("the server went away during the TLS handshake") from exc
