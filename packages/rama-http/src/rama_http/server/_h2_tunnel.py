"""h2 tunnels: a CONNECT (or RFC 8441 extended CONNECT) stream answered 2xx.

The stream becomes a byte stream for the response's ``on_upgrade`` callback
(:class:`~rama_http._h2._inbound.H2StreamIO`): what the client sends in DATA
is read from it (window returned as it is read, no body read timeout), what
the callback sends goes out as DATA within the peer's windows, and its EOF is
END_STREAM. A stream the peer reset is not the callback's fault.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from rama_net import ConnectionLost

from .._h2._inbound import H2StreamIO
from .._message import Response
from ._h2_output import LOST
from ._h2_stream import H2ServerStream, StreamGone

if TYPE_CHECKING:
    from ._h2_response import H2ResponseWriter

__all__ = ["ExtendedConnectProtocol", "run_tunnel"]

_CANCEL = 0x8


class ExtendedConnectProtocol(str):
    """The ``:protocol`` of an RFC 8441 extended CONNECT (``websocket``, ...).

    A per-request Context extension.
    """

    __slots__ = ()


async def run_tunnel(writer: H2ResponseWriter, st: H2ServerStream, resp: Response) -> None:
    """Run ``resp.on_upgrade`` over ``st`` (its 2xx head is already queued)."""

    async def send(data: bytes, end: bool) -> None:
        try:
            await writer.send_data(st, data, end=end)
        except StreamGone as e:
            raise ConnectionLost(f"h2 stream {st.id} is gone") from e

    conn = writer._c
    io = H2StreamIO(st.body, send, lambda: conn._reset(st, _CANCEL))
    assert resp.on_upgrade is not None
    try:
        await resp.on_upgrade(io)
    except (*LOST, anyio.ClosedResourceError):
        if writer.open(st):
            raise
        raise StreamGone from None  # the stream was reset: not the owner's fault
    finally:
        if not io._eof_sent and writer.open(st):
            await io.send_eof()
