"""The TLS stream the acceptor and connector hand out: anyio's ``TLSStream``, closed politely.

:class:`TlsStream` is an :class:`anyio.streams.tls.TLSStream` (so it runs on
asyncio and trio over any ``ByteStream``) with three changes that matter to
servers and proxies:

* a failed handshake still sends the alert OpenSSL produced, so the peer
  learns *why* (``unknown ca``, ``certificate required``...) instead of
  seeing a bare reset;
* :meth:`TlsStream.send_eof` sends ``close_notify`` and keeps reading, which
  is how TLS expresses a half-close (a forwarding proxy needs it to pass an
  upstream EOF on to a TLS client);
* :meth:`TlsStream.aclose` sends ``close_notify`` without waiting for the
  peer's answer, so closing never blocks on a silent peer.

An EOF from the peer without ``close_notify`` reads as a plain end of stream
(``standard_compatible=False``): the application protocol (HTTP framing)
detects truncation, as browsers and curl do.

After the handshake, every failure of :meth:`TlsStream.receive`,
:meth:`TlsStream.send` and :meth:`TlsStream.send_eof` that ends the
connection (the transport was reset or broke, OpenSSL rejected a record:
bad MAC, an alert from the peer...) is raised as
:class:`rama_net.ConnectionLost`, the type every rama stream uses, so code
above catches one type whatever the stream is. A clean EOF stays
:class:`anyio.EndOfStream`; using a stream after closing it stays
:class:`anyio.ClosedResourceError`.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable
from typing import TypeVar, TypeVarTuple, Unpack, cast

import anyio
from anyio.abc import ByteStream
from anyio.streams.tls import TLSStream

from rama_net import ConnectionLost

from ._errors import CertificateVerificationError, HandshakeError, PeerClosed

__all__ = ["TlsStream", "wrap_tls"]

R = TypeVar("R")
A = TypeVarTuple("A")

_ALERT_FLUSH_TIMEOUT = 1.0
"""Bound on sending a final alert or close_notify to a peer that does not read."""


class TlsStream(TLSStream):
    """A TLS connection over an anyio ``ByteStream`` (see the module docstring)."""

    _eof_sent: bool = False

    async def _call_sslobject_method(self, func: Callable[[Unpack[A]], R], *args: *A) -> R:
        try:
            return await super()._call_sslobject_method(func, *args)
        except ssl.SSLError:
            await self._flush_final()
            raise

    async def _flush_final(self) -> None:
        """Best effort: push out what OpenSSL queued (an alert, a close_notify)."""
        pending = self._write_bio.read() if self._write_bio.pending else b""
        if not pending:
            return
        with anyio.move_on_after(_ALERT_FLUSH_TIMEOUT, shield=True):
            with contextlib.suppress(Exception):
                await self.transport_stream.send(pending)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Decrypted bytes; :class:`rama_net.ConnectionLost` when the connection fails."""
        try:
            return await super().receive(max_bytes)
        except ConnectionLost:
            raise
        except _LOST as exc:
            raise _lost(exc, "TLS receive failed") from exc

    async def send(self, item: bytes) -> None:
        """Encrypt and send; :class:`rama_net.ConnectionLost` when the connection fails."""
        try:
            await super().send(item)
        except ConnectionLost:
            raise
        except _LOST as exc:
            raise _lost(exc, "TLS send failed") from exc

    async def send_eof(self) -> None:
        """Send ``close_notify``; receiving keeps working until the peer's EOF."""
        if self._eof_sent:
            return
        self._eof_sent = True
        with contextlib.suppress(ssl.SSLWantReadError, ssl.SSLWantWriteError):
            self._ssl_object.unwrap()
        if self._write_bio.pending:
            try:
                await self.transport_stream.send(self._write_bio.read())
            except ConnectionLost:
                raise
            except _LOST as exc:
                raise _lost(exc, "TLS send_eof failed") from exc

    async def aclose(self) -> None:
        """Send ``close_notify`` (without waiting for the reply) and close the transport."""
        try:
            if not self._eof_sent and not self._broken:
                self._eof_sent = True
                with contextlib.suppress(ssl.SSLError, ValueError):
                    self._ssl_object.unwrap()
                await self._flush_final()
        finally:
            with anyio.move_on_after(_ALERT_FLUSH_TIMEOUT, shield=True) as scope:
                await self.transport_stream.aclose()
            if scope.cancelled_caught:
                await anyio.aclose_forcefully(self.transport_stream)


_LOST = (ssl.SSLError, OSError, anyio.BrokenResourceError)
"""What ends an established connection (ConnectionLost is a BrokenResourceError)."""


def _lost(exc: BaseException, what: str) -> ConnectionLost:
    """A :class:`ConnectionLost` for ``exc`` (raise it ``from exc``)."""
    # anyio raises a bare BrokenResourceError from the real cause
    cause = exc.__cause__ if exc.__cause__ is not None and not str(exc) else exc
    return ConnectionLost(f"{what}: {str(cause) or type(cause).__name__}")


async def wrap_tls(
    transport: ByteStream,
    ssl_context: ssl.SSLContext,
    *,
    server_side: bool,
    server_hostname: str | None = None,
) -> TlsStream:
    """Run a handshake over ``transport``; failures become typed rama-tls errors.

    Raises :class:`~rama_tls.CertificateVerificationError` when the
    peer's certificate is rejected and :class:`~rama_tls.HandshakeError`
    for any other failure (protocol mismatch, alert from the peer, peer gone).
    Apply a deadline around the call (the acceptor and connector do).
    """
    try:
        stream = await TlsStream.wrap(
            transport,
            server_side=server_side,
            hostname=server_hostname,
            ssl_context=ssl_context,
            standard_compatible=False,
        )
    except ssl.SSLCertVerificationError as exc:
        raise CertificateVerificationError(
            f"certificate verification failed: {exc.verify_message or exc.reason}",
            verify_code=exc.verify_code or 0,
            verify_message=exc.verify_message or "",
        ) from exc
    except ssl.SSLError as exc:
        raise HandshakeError(f"TLS handshake failed: {exc.reason or exc}") from exc
    except (
        OSError,
        anyio.EndOfStream,
        anyio.BrokenResourceError,
        anyio.ClosedResourceError,
    ) as exc:
        raise PeerClosed("peer went away during the TLS handshake") from exc
    return cast(TlsStream, stream)
