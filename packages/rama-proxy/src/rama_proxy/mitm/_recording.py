"""Recording what the MITM sees as flow records: :class:`FlowRecordingObserver`.

A :class:`~rama_proxy.mitm.MitmObserver` that turns the MITM's events into
:mod:`rama_proxy.flows` records and hands them to a
:class:`~rama_proxy.flows.FlowRecorder` (the in-memory store, and optionally
a JSON-lines file and a streaming HAR file)::

    recorder = FlowRecorder(jsonl="flows.jsonl", har="session.har")
    async with FlowRecordingObserver(recorder) as observer:
        mitm = MitmProxy(ca, observer=observer)
        ...                                   # serve; on exit the files are closed

- each intercepted (or plain-HTTP) exchange becomes a
  :class:`~rama_proxy.flows.Flow`: heads as relayed (after the hooks), body
  bytes captured up to the recorder's ``capture_limit`` (sizes always real),
  both TLS sides, client and server addresses (HAR ``serverIPAddress``), the
  upstream connection's id (HAR ``connection``), and timings mapped to HAR's
  phases (``connect``/``ssl`` of the connection the MITM opened, on the
  first exchange only, as browsers report reused connections; ``blocked``
  until the request went upstream; ``send``, ``wait`` until the response
  head, ``receive`` until its last byte);
- a WebSocket's messages are attached to its flow (HAR
  ``_webSocketMessages``, payloads capped like bodies); the flow is written
  when the WebSocket closes;
- a tunnel that was not intercepted (pass-through host, non-HTTP bytes), a
  refused connection, and an intercepted one that failed before any request
  (untrusted server certificate...) become a :class:`~rama_proxy.flows.TunnelFlow`.

Observer calls stay cheap on the event loop: finished flows are queued to a
writer task (``async with observer`` runs it; without it they are written
inline), and flows with large captures are encoded in a worker thread.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import time
from dataclasses import dataclass, field
from types import TracebackType

import anyio
from anyio.abc import ByteStream, TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

from rama_http import UpgradeHandler, reason_phrase
from rama_net import SocketAddress
from rama_tls import NegotiatedTls

from ..flows import (
    AnyFlow,
    BodyCapture,
    CapturedBody,
    Flow,
    FlowRecorder,
    FlowStore,
    HttpRequestRecord,
    HttpResponseRecord,
    TimingRecord,
    TlsRecord,
    TunnelFlow,
)
from ..flows import WebSocketMessage as WebSocketRecord
from ._flow import HttpFlow, MitmConnection, MitmObserver, WebSocketMessage

__all__ = ["FlowRecordingObserver"]

_log = logging.getLogger("rama.proxy.mitm")

_TUNNEL_MODES = frozenset({"pass_through", "raw", "reject", "error"})


def _addr(addr: SocketAddress | None) -> tuple[str, int] | None:
    return None if addr is None else (str(addr.ip), addr.port)


def _tls(nt: NegotiatedTls | None, sni: str | None) -> TlsRecord | None:
    if nt is None:
        return None
    return TlsRecord(sni=nt.server_name or sni, alpn=nt.alpn, version=nt.version, cipher=nt.cipher)


def _span(start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    return max(end - start, 0.0)


@dataclass(eq=False)
class _Conn:
    id: str
    flows: set[HttpFlow] = field(default_factory=set)
    timed: bool = False
    """Whether an exchange already carries the connect/ssl timings."""
    exchanges: int = 0
    # what every exchange of the connection shares, made once
    client_addr: tuple[str, int] | None = None
    server_addr: tuple[str, int] | None = None
    client_tls: TlsRecord | None = None
    server_tls: TlsRecord | None = None

    def fill(self, conn: MitmConnection) -> None:
        if self.client_addr is None:
            self.client_addr = _addr(conn.client)
        if self.server_addr is None:
            self.server_addr = _addr(conn.upstream_addr)
        if self.client_tls is None:
            self.client_tls = _tls(conn.client_tls, conn.server_name)
        if self.server_tls is None:
            self.server_tls = _tls(conn.upstream_tls, conn.server_name)


@dataclass(eq=False)
class _Pending:
    flow: HttpFlow
    record: Flow
    conn: _Conn
    request_body: BodyCapture
    response_body: BodyCapture
    last_request_chunk: float | None = None
    upgraded: bool = False
    """The response took over the connection (WebSocket): written when it ends."""
    exchange_done: bool = False


class FlowRecordingObserver(MitmObserver):
    """A :class:`~rama_proxy.mitm.MitmObserver` that records flows through a FlowRecorder.

    Give it a :class:`~rama_proxy.flows.FlowRecorder`, or the recorder's
    arguments (``store``, ``jsonl``, ``har``, ``redact_har``,
    ``capture_limit``) to make one. ``record_tunnels=False`` leaves
    connections that carried no HTTP exchange out. Use it as ``async with``
    (a writer task writes the files off the observer calls; on exit pending
    flows are written and the recorder is closed) or call :meth:`aclose`.
    """

    def __init__(
        self,
        recorder: FlowRecorder | None = None,
        *,
        store: FlowStore | None = None,
        jsonl: str | os.PathLike[str] | None = None,
        har: str | os.PathLike[str] | None = None,
        redact_har: bool = True,
        capture_limit: int = 1 << 20,
        record_tunnels: bool = True,
        queue_size: int = 4096,
    ) -> None:
        if recorder is None:
            recorder = FlowRecorder(
                store, jsonl=jsonl, har=har, redact_har=redact_har, capture_limit=capture_limit
            )
        elif store is not None or jsonl is not None or har is not None:
            raise TypeError("pass either a recorder or its store/jsonl/har, not both")
        self.recorder = recorder
        self.record_tunnels = record_tunnels
        self.queue_size = queue_size
        self.recorded = 0
        """Flows (HTTP and tunnels) handed to the recorder as finished."""
        self.write_errors = 0
        """Flows that could not be written to the files (logged once each at ERROR)."""
        self._conns: dict[MitmConnection, _Conn] = {}
        self._pending: dict[HttpFlow, _Pending] = {}
        self._queue: MemoryObjectSendStream[AnyFlow] | None = None
        self._tg: TaskGroup | None = None
        self._closed = False
        self._stopped = False
        self.dropped = 0
        """Flows that finished after :meth:`aclose` (not recorded)."""
        self._id_prefix = secrets.token_hex(8) + "-"
        """Flow ids: unique across recordings (a random prefix), cheap (a counter)."""
        self._clock_offset = time.time() - anyio.current_time() if _in_loop() else None

    @property
    def store(self) -> FlowStore:
        """The recorder's in-memory store (live viewers subscribe here)."""
        return self.recorder.store

    # -- lifecycle -------------------------------------------------------------------------------
    async def __aenter__(self) -> FlowRecordingObserver:
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        try:
            await tg.start(self._writer)
        except BaseException:
            await tg.__aexit__(None, None, None)
            self._tg = None
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        try:
            await self.aclose()
        finally:
            tg, self._tg = self._tg, None
            if tg is not None:
                await tg.__aexit__(exc_type, exc, tb)
        return None

    async def _writer(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        send, recv = anyio.create_memory_object_stream[AnyFlow](self.queue_size)
        self._queue = send
        self._writer_done = anyio.Event()
        task_status.started()
        try:
            async with recv:
                async for flow in recv:
                    try:
                        await self.recorder.finished(flow)
                    except Exception:
                        self.write_errors += 1
                        _log.exception("cannot write a recorded flow")
        finally:
            self._writer_done.set()

    async def aclose(self) -> None:
        """Write the flows still open (WebSockets, cut exchanges), drain the writer,
        close the recorder's files (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for pending in list(self._pending.values()):
            if not pending.exchange_done:
                self._settle(pending.flow, pending)
            if pending.record.error is None and not pending.upgraded:
                pending.record.error = "unfinished when the recording stopped"
            self._finish(pending)
        queue, self._queue = self._queue, None
        if queue is not None:
            with anyio.CancelScope(shield=True):
                queue.close()
                await self._writer_done.wait()  # it ends once it has drained the queue
        self._stopped = True
        self.recorder.close()

    # -- time ------------------------------------------------------------------------------------
    def _wall(self, t: float) -> float:
        if self._clock_offset is None:
            self._clock_offset = time.time() - anyio.current_time()
        wall = t + self._clock_offset
        return wall if math.isfinite(wall) and wall > 0 else time.time()

    # -- connections -----------------------------------------------------------------------------
    def connection_started(self, conn: MitmConnection) -> None:
        """Start tracking ``conn``."""
        self._conns[conn] = _Conn(str(conn.id))

    def connection_finished(self, conn: MitmConnection) -> None:
        """Close the connection's open flows; record it as a tunnel if it carried no HTTP."""
        state = self._conns.pop(conn, None)
        if state is None:
            state = _Conn(str(conn.id))
        for flow in list(state.flows):
            pending = self._pending.get(flow)
            if pending is not None:
                if not pending.exchange_done:
                    self._settle(flow, pending)
                if pending.record.error is None and not pending.upgraded:
                    pending.record.error = conn.error or "connection closed"
                self._finish(pending)
        if not self.record_tunnels or self._closed:
            return
        if conn.mode in _TUNNEL_MODES or (state.exchanges == 0 and conn.error is not None):
            tunnel = TunnelFlow(
                target=(str(conn.target.host).strip("[]"), conn.target.port),
                started_at=self._wall(conn.started),
                duration=conn.duration,
                bytes_up=conn.bytes_from_client,
                bytes_down=conn.bytes_from_server,
                client_addr=_addr(conn.client),
                server_addr=_addr(conn.upstream_addr),
                sni=conn.server_name,
                error=conn.error or ("rejected" if conn.mode == "reject" else None),
            )
            self.recorder.started(tunnel)
            self._submit(tunnel)

    # -- HTTP exchanges --------------------------------------------------------------------------
    def _get(self, flow: HttpFlow) -> _Pending:
        pending = self._pending.get(flow)
        if pending is not None:
            return pending
        conn = flow.connection
        state = self._conns.get(conn)
        if state is None:  # connection_started was not seen (observer added late)
            state = self._conns[conn] = _Conn(str(conn.id))
        state.exchanges += 1
        state.fill(conn)
        req = flow.request
        record = Flow(
            request=HttpRequestRecord(
                req.method, flow.url, req.version.value, req.headers.items(), CapturedBody()
            ),
            started_at=self._wall(flow.started),
            client_addr=state.client_addr,
            server_addr=state.server_addr,
            client_tls=state.client_tls,
            server_tls=state.server_tls,
            connection=state.id,
            id=f"{self._id_prefix}{flow.id:x}",
        )
        capture = self.recorder.capture_limit
        pending = _Pending(flow, record, state, BodyCapture(capture), BodyCapture(capture))
        self._pending[flow] = pending
        state.flows.add(flow)
        if not self._closed:
            self.recorder.started(record)
        return pending

    def request(self, flow: HttpFlow) -> None:
        """The request head as it goes upstream (after the hooks)."""
        pending = self._pending.get(flow)
        if pending is None:
            self._get(flow)  # made from the request as it is now
            return
        req = flow.request
        record = pending.record.request
        record.method = req.method
        record.url = flow.url
        record.http_version = req.version.value
        record.headers = req.headers.items()
        if pending.record.server_addr is None:
            pending.record.server_addr = _addr(flow.connection.upstream_addr)

    def request_body(self, flow: HttpFlow, chunk: bytes) -> None:
        """Capture a request body chunk (bounded)."""
        pending = self._pending.get(flow) or self._get(flow)
        pending.request_body.feed(chunk)
        pending.last_request_chunk = anyio.current_time()

    def response(self, flow: HttpFlow) -> None:
        """The response head as it goes to the client (after the hooks)."""
        pending = self._get(flow)
        resp = flow.response
        if resp is None:
            return
        pending.record.response = HttpResponseRecord(
            resp.status,
            resp.reason or reason_phrase(resp.status),
            resp.version.value,
            resp.headers.items(),
        )
        if resp.on_upgrade is not None:
            pending.upgraded = True
            resp.on_upgrade = _UpgradeWatcher(self, flow, resp.on_upgrade)
        if not self._closed:
            self.recorder.updated(pending.record)

    def response_body(self, flow: HttpFlow, chunk: bytes) -> None:
        """Capture a response body chunk (bounded)."""
        pending = self._pending.get(flow) or self._get(flow)
        pending.response_body.feed(chunk)

    def flow_finished(self, flow: HttpFlow) -> None:
        """Timings, bodies and error; written now unless it became a WebSocket."""
        pending = self._get(flow)
        pending.exchange_done = True
        self._settle(flow, pending)
        if pending.upgraded:
            if not self._closed:
                self.recorder.updated(pending.record)
            return  # written when the WebSocket closes (or the connection ends)
        self._finish(pending)

    def websocket_message(self, flow: HttpFlow, message: WebSocketMessage) -> None:
        """Attach a relayed message (payload capped like bodies) to the flow."""
        pending = self._pending.get(flow)
        if pending is None:
            return  # its flow was already written (the recording stopped)
        content = message.content
        payload = content.encode("utf-8") if isinstance(content, str) else bytes(content)
        limit = self.recorder.capture_limit
        size = len(payload)
        kept = payload if size <= limit else payload[:limit]
        self.store.add_websocket_message(
            pending.record,
            WebSocketRecord(
                "send" if message.from_client else "receive",
                isinstance(content, str),
                kept,
                self._wall(message.timestamp),
                size,
                size > len(kept),
            ),
        )

    def _websocket_closed(self, flow: HttpFlow) -> None:
        pending = self._pending.get(flow)
        if pending is not None:
            if not pending.exchange_done:
                self._settle(flow, pending)
            self._finish(pending)

    # -- internals -------------------------------------------------------------------------------
    def _settle(self, flow: HttpFlow, pending: _Pending) -> None:
        """Fill in what is known once the exchange is over."""
        record = pending.record
        conn = flow.connection
        record.request.body = pending.request_body.result()
        req_trailers = flow.request.body.trailers
        if req_trailers is not None:
            record.request.trailers = req_trailers.items()
        resp = flow.response
        if record.response is None and resp is not None:
            record.response = HttpResponseRecord(
                resp.status,
                resp.reason or reason_phrase(resp.status),
                resp.version.value,
                resp.headers.items(),
            )
        if record.response is not None:
            record.response.body = pending.response_body.result()
            if resp is not None and resp.body.trailers is not None:
                record.response.trailers = resp.body.trailers.items()
        record.error = flow.error
        if record.server_addr is None:
            record.server_addr = _addr(conn.upstream_addr)
        record.client_tls = record.client_tls or _tls(conn.client_tls, conn.server_name)
        record.server_tls = record.server_tls or _tls(conn.upstream_tls, conn.server_name)
        # timings: HAR phases
        connect = ssl = None
        if (
            not pending.conn.timed
            and flow.request_sent is not None
            and conn.upstream_dial_started is not None
        ):
            pending.conn.timed = True
            connect = _span(conn.upstream_dial_started, conn.upstream_connected)
            ssl = _span(conn.upstream_connected, conn.upstream_tls_done)
        sent = pending.last_request_chunk or flow.request_sent
        first_byte = flow.response_started
        end = flow.finished if flow.finished is not None else anyio.current_time()
        record.timings = TimingRecord(
            blocked=_span(flow.started, flow.request_sent),
            connect=connect,
            ssl=ssl,
            send=_span(flow.request_sent, sent) if flow.request_sent is not None else 0.0,
            wait=_span(sent if sent is not None else flow.started, first_byte),
            receive=_span(first_byte, end),
        )

    def _finish(self, pending: _Pending) -> None:
        if self._pending.pop(pending.flow, None) is None:
            return  # already written
        pending.conn.flows.discard(pending.flow)
        self._submit(pending.record)

    def _submit(self, flow: AnyFlow) -> None:
        if self._stopped:
            self.dropped += 1
            return
        self.recorded += 1
        rec = self.recorder
        if rec.jsonl is None and rec.har is None:
            rec.store.update(flow)  # no files: nothing to hand to the writer
            return
        queue = self._queue
        if queue is not None:
            try:
                queue.send_nowait(flow)
                return
            except anyio.WouldBlock:
                pass  # the writer is behind: write this one inline (never drop a record)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass
        self._write_inline(flow)

    def _write_inline(self, flow: AnyFlow) -> None:
        rec = self.recorder
        rec.store.update(flow)
        try:
            if rec.jsonl is not None:
                rec.jsonl.write(flow)
            if rec.har is not None and isinstance(flow, Flow):
                rec.har.write(flow)
        except Exception:
            self.write_errors += 1
            _log.exception("cannot write a recorded flow")


class _UpgradeWatcher:
    """Wraps a response's upgrade handler: the flow is written when it returns."""

    __slots__ = ("flow", "handler", "observer")

    def __init__(
        self, observer: FlowRecordingObserver, flow: HttpFlow, handler: UpgradeHandler
    ) -> None:
        self.observer = observer
        self.flow = flow
        self.handler = handler

    async def __call__(self, stream: ByteStream) -> None:
        try:
            await self.handler(stream)
        finally:
            self.observer._websocket_closed(self.flow)


def _in_loop() -> bool:
    try:
        anyio.current_time()
    except Exception:
        return False
    return True
