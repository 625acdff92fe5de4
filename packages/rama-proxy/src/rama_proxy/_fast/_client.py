"""One client connection on the fast path: a state machine on readiness callbacks.

A connection starts in ``HEAD`` (reading a request head). What it serves itself:

- ``GET http://host/...`` (any method, absolute-form, plain http, body framed
  by Content-Length): the request goes to a pooled :class:`Upstream`, the
  response comes back with hop-by-hop fields removed (``FORWARD``);
- ``CONNECT host:port``: the egress is dialled and, once up,
  ``200 Connection established`` opens a :class:`Tunnel` (``TUNNEL``).

Everything else, at the first byte that says so, is handed to the general
stack (:meth:`FastProxy.handoff`) with the bytes read so far: SOCKS, TLS, h2,
HTTP/1.0, chunked request bodies, ``Expect``, upgrades, https targets,
CONNECT to a port not allowed, anything malformed. The general path then
answers exactly as it would have from the first byte.
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING, Any, Final

from rama_http import RemoteProtocolError
from rama_http.client._h1_engine import (
    NEED_DATA,
    BodyData,
    BodyEnd,
    InformationalHead,
    ResponseHead,
    serialize_head,
)
from rama_http.client._transport import IDEMPOTENT_METHODS
from rama_http.server._h1_engine import RequestHead
from rama_net import AddressError, Host, SocketAddress

from .._auth import ProxyUser, parse_basic_credentials
from .._errors import UpstreamFailure, classify_upstream_error
from .._record import ProxyRecord
from .._socks5_codec import (
    UNSPECIFIED_IPV4,
    Socks5Command,
    Socks5Greeting,
    Socks5ReplyCode,
    Socks5Request,
    Socks5ServerProtocol,
    SocksAuthMethod,
    SocksError,
)
from .._socks_server import _target_text, _unmap
from ._dial import Dial, SockAddr
from ._tunnel import Tunnel
from ._upstream import PoolKey, Upstream
from ._wire import (
    connect_established,
    error_response,
    parse_request_head,
    plain_response,
    request_fields,
    response_head,
    text_response,
)

if TYPE_CHECKING:
    from ._engine import FastProxy

__all__ = ["ClientConnection"]

_log = logging.getLogger("rama.proxy.http")
_socks_log = logging.getLogger("rama.proxy.socks")

_CHUNK: Final = 256 * 1024
_MAX_BUFFERED: Final = 256 * 1024
"""Bytes read ahead of the request being served before reading pauses."""
_AGAIN: Final = (BlockingIOError, InterruptedError)
_TOKEN_START: Final = frozenset(
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

HEAD, AUTH, FORWARD, DIAL_TUNNEL, TUNNEL, CLOSED, SOCKS, DIAL_SOCKS = range(8)


class ClientConnection:
    """See the module docs."""

    __slots__ = (
        "auth_value",
        "body_left",
        "buf",
        "deadline",
        "dial",
        "engine",
        "fd",
        "head_sent",
        "keep_alive",
        "opened",
        "out",
        "paused",
        "peer",
        "peer_eof",
        "raw_left",
        "raw_reuse",
        "reading",
        "rechunk",
        "record",
        "replay",
        "req",
        "resolving",
        "resp_buf",
        "resp_bytes",
        "rx",
        "served",
        "sock",
        "sockaddr",
        "socks",
        "state",
        "target",
        "tunnel",
        "tx",
        "up",
        "user",
    )

    def __init__(self, engine: FastProxy, sock: socket.socket, sockaddr: Any) -> None:
        self.engine = engine
        self.sock = sock
        self.sockaddr = sockaddr
        self.fd = sock.fileno()
        self.state = HEAD
        self.buf = b""
        self.out = b""
        self.served = 0
        self.deadline = engine.loop.time() + engine.peek_timeout
        self.reading = True
        self.resolving = False
        self.paused = False  # the upstream's reader, while the client is slow to take
        self.peer_eof = False
        self.keep_alive = True
        self.record: ProxyRecord | None = None
        self.up: Upstream | None = None
        self.dial: Dial | None = None
        self.tunnel: Tunnel | None = None
        self.req: tuple[str, str, list[tuple[str, str]], PoolKey] | None = None
        self.target: tuple[str, int] | None = None
        self.body_left = 0
        self.head_sent = False
        self.rechunk = False
        self.resp_bytes = 0
        self.resp_buf: bytes | None = b""
        self.raw_left = -1
        self.raw_reuse = False
        self.replay = False
        self.auth_value: str | None = None
        self.user: ProxyUser | None = None
        self.socks: Socks5ServerProtocol | None = None
        self.peer: SocketAddress | None = None
        self.opened = 0.0  # loop time the fast path started serving it (0: not yet)
        self.rx = 0
        self.tx = 0
        engine.loop.add_reader(self.fd, self.on_readable)

    # -- client input ----------------------------------------------------------------------
    def on_readable(self) -> None:
        """The loop's reader callback (every entry point is guarded: a bug of ours is
        logged once with its traceback and ends this connection, never the loop)."""
        try:
            self._readable()
        except Exception:
            self.internal_error()

    def internal_error(self) -> None:
        """Our own failure while serving this connection: log it, answer 500 if we can, close."""
        _log.exception("fast path: internal error on a connection from %s", self.peer or "?")
        try:
            if self.record is not None and not self.head_sent and self.state != CLOSED:
                self.record.status = 500
                self._end_record("internal error")
                if not self.out and self.state not in (TUNNEL, SOCKS, DIAL_SOCKS):
                    self.sock.send(error_response(500))
        except Exception:
            pass
        try:
            self.close()
        except Exception:
            _log.exception("fast path: closing after an internal error failed")

    def _readable(self) -> None:
        try:
            data = self.sock.recv(_CHUNK)
        except _AGAIN:
            return
        except OSError:
            self.gone("connection lost")
            return
        if not data:
            self._on_eof()
            return
        self.rx += len(data)
        state = self.state
        if state == HEAD:
            if not self.buf:
                if not self.served and data[0] not in _TOKEN_START:
                    if data[0] == 0x05 and self.engine.socks is not None:
                        self._socks_start(data)
                    else:
                        self.engine.handoff(self, data)  # SOCKS4, TLS, garbage: not ours
                    return
                self.buf = data
            else:
                self.buf += data
            self._on_head_bytes()
            return
        if state == SOCKS:
            self._socks_bytes(data)
            return
        self.buf += data
        if state == FORWARD and self.body_left and self.up is not None:
            self._pump_body()
        if len(self.buf) > _MAX_BUFFERED:
            self.pause_reading()

    def _on_eof(self) -> None:
        self.peer_eof = True
        if self.state == SOCKS:
            self.pause_reading()
            self._socks_bytes(b"")
            return
        if self.state == HEAD or self.state == AUTH:
            if self.buf and self.state == HEAD:
                # a partial head: the general path gives the answer it deserves
                self.engine.handoff(self, self.buf)
                return
            self.close()
            return
        if self.state == FORWARD and self.body_left:
            self.gone("client body incomplete")
            return
        # the request is complete (or a tunnel is being dialled): answer, then close
        self.pause_reading()

    def pause_reading(self) -> None:
        if self.reading and self.state != CLOSED:
            self.reading = False
            self.engine.loop.remove_reader(self.fd)

    def resume_reading(self) -> None:
        if not self.reading and not self.peer_eof and self.state != CLOSED:
            self.reading = True
            self.engine.loop.add_reader(self.fd, self.on_readable)

    def _on_head_bytes(self) -> None:
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > self.engine.limits.max_header_size or b"\n\n" in buf:
                self.engine.handoff(self, buf)
            return
        head = parse_request_head(buf[: end + 4], self.engine.limits)
        if head is None:
            self.engine.handoff(self, buf)
            return
        rest = buf[end + 4 :]
        if head.method == "CONNECT":
            self._connect(head, rest)
        else:
            self._forward(head, rest)

    # -- authentication --------------------------------------------------------------------
    def _authorized(self, head: RequestHead, record: ProxyRecord) -> bool | None:
        """True: go on; False: answered 407; None: the authenticator is asked (in a task)."""
        engine = self.engine
        if engine.authenticator is None:
            return True
        value: str | None = None
        if "proxy-authorization" in head.keys:
            value = head.headers[head.keys.index("proxy-authorization")][1]
        if value is not None and value == self.auth_value and self.user is not None:
            record.user = self.user.name
            return True
        creds = parse_basic_credentials(value) if value is not None else None
        if creds is None:
            self._finish_local(407, "proxy authentication required", auth=True)
            return False
        self.state = AUTH
        engine.handle_spawn(self._authenticate, head, value, creds)
        return None

    async def _authenticate(self, head: RequestHead, value: str, creds: tuple[str, str]) -> None:
        engine = self.engine
        assert engine.authenticator is not None
        assert self.record is not None
        try:
            user = await engine.authenticator.authenticate(
                creds[0], creds[1], peer=self.record.client
            )
        except Exception:
            _log.exception("proxy authenticator failed")
            user = None
            if self.state == AUTH:
                self._finish_local(500, "internal error")
            return
        if self.state != AUTH:
            return  # the client left meanwhile
        self.state = HEAD
        if user is None:
            self._finish_local(407, "proxy authentication required", auth=True)
            return
        self.auth_value, self.user = value, user
        self.record.user = user.name
        rest = self.buf
        self.buf = b""
        if head.method == "CONNECT":
            self._connect(head, rest, authorized=True)
        else:
            self._forward(head, rest, authorized=True)

    # -- forwarding ------------------------------------------------------------------------
    def _forward(self, head: RequestHead, rest: bytes, *, authorized: bool = False) -> None:
        engine = self.engine
        uri = head.uri
        if uri is None or uri.scheme != "http" or not uri.host:
            engine.handoff(self, self.buf)
            return
        host = uri.host.lower()
        port = uri.effective_port or 80
        if not authorized:
            fields = request_fields(head, uri, host)
            if fields is None:
                engine.handoff(self, self.buf)
                return
            self.record = engine.begin_record(self, "http", head.method, None)
            self.buf = rest
            self.body_left = head.content_length or 0
            self.req = (head.method, uri.path_and_query, fields, (host, port))
            self.keep_alive = head.keep_alive and not engine.stopping
            if not self._authorized(head, self.record):
                return  # answered 407, or _authenticate comes back here
        else:
            self.buf = rest
        assert self.record is not None
        self.record.target = head.target
        self.state = FORWARD
        self.served += 1
        up = engine.pool.get((host, port))
        if up is not None:
            self._attach(up, reused=True)
        else:
            self._dial_host(host, port)

    def _attach(self, up: Upstream, *, reused: bool) -> None:
        assert self.req is not None
        assert self.record is not None
        method, target, fields, _ = self.req
        self.up = up
        up.client = self
        self.head_sent = False
        self.rechunk = False
        self.resp_bytes = 0
        self.resp_buf = b""  # the answer is passed on as bytes if it is plain
        self.raw_left = -1
        data = serialize_head(method, target, fields)
        self.replay = reused and not self.body_left and method in IDEMPOTENT_METHODS
        self.deadline = self.engine.loop.time() + self.engine.timeout
        up.write(data)
        if self.up is up and self.body_left and self.buf and self.state == FORWARD:
            self._pump_body()

    def _pump_body(self) -> None:
        up = self.up
        assert up is not None
        assert self.record is not None
        n = min(self.body_left, len(self.buf))
        if not n:
            return
        chunk, self.buf = self.buf[:n], self.buf[n:]
        self.body_left -= n
        self.record.bytes_in += n
        self.deadline = self.engine.loop.time() + self.engine.timeout
        up.write(chunk)

    def upstream_failed(self, exc: BaseException) -> None:
        """The upstream connection broke (a reset, a write that failed)."""
        self._upstream_ended(exc)

    def upstream_data(self, data: bytes) -> None:
        """Bytes (or EOF: ``b""``) from the upstream serving the current request."""
        try:
            self._upstream_data(data)
        except Exception:
            self.internal_error()

    def _upstream_data(self, data: bytes) -> None:
        up = self.up
        assert up is not None
        if not data:
            self._upstream_ended(None)
            return
        self.resp_bytes += len(data)
        if self.raw_left >= 0:
            self._raw_body(data)
        elif self.resp_buf is not None:
            self._raw_head(data)
        else:
            up.parser.feed(data)
            self._relay_response()

    # The plain answer (most of them): its head goes on as bytes with the hop-by-hop
    # lines cut, its Content-Length body as it arrives; anything else is parsed.
    def _raw_head(self, data: bytes) -> None:
        buf = self.resp_buf + data if self.resp_buf else data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > _MAX_BUFFERED:
                self._parse_instead(buf)
            else:
                self.resp_buf = buf
            return
        record = self.record
        assert record is not None
        plan = plain_response(
            buf[: end + 4],
            head_request=record.method == "HEAD",
            close=not self.keep_alive or self.body_left > 0,
        )
        if plan is None:
            self._parse_instead(buf)
            return
        head, length, reuse = plan
        self.resp_buf = None
        self.head_sent = True
        record.status = int(buf[9:12])
        self.raw_reuse = reuse
        body = buf[end + 4 :]
        if len(body) > length:
            self.raw_reuse = False  # bytes after the answer: the connection is not clean
            body = body[:length]
        self.raw_left = length - len(body)
        record.bytes_out += len(body)
        self.deadline = self.engine.loop.time() + self.engine.timeout
        self.send(head + body if body else head)
        if self.state != CLOSED and not self.raw_left:
            self._response_done()

    def _raw_body(self, data: bytes) -> None:
        record = self.record
        assert record is not None
        if len(data) > self.raw_left:
            self.raw_reuse = False
            data = data[: self.raw_left]
        self.raw_left -= len(data)
        record.bytes_out += len(data)
        self.deadline = self.engine.loop.time() + self.engine.timeout
        self.send(data)
        if self.state != CLOSED and not self.raw_left:
            self._response_done()

    def _parse_instead(self, buf: bytes) -> None:
        """Not a plain answer: let the response parser have it from its first byte."""
        up = self.up
        assert up is not None
        assert self.req is not None
        method, target, fields, _ = self.req
        self.resp_buf = None
        up.parser.request(method, target, fields, None)  # (the head went out already)
        if buf:
            up.parser.feed(buf)
        self._relay_response()

    def _upstream_ended(self, exc: BaseException | None) -> None:
        up = self.up
        if up is None:
            return
        if self.resp_bytes == 0 and self.replay:
            # a pooled connection the origin had closed: once more on a fresh one
            up.close()
            self.up = None
            assert self.req is not None
            self._dial_host(*self.req[3])
            return
        if exc is not None:
            if not self.head_sent:
                self._upstream_failure(classify_upstream_error(exc).failure, exc)
            else:
                self.gone("upstream body failed")
            return
        if self.raw_left >= 0:
            self.gone("invalid response from upstream")  # closed inside the body
            return
        if self.resp_buf is not None:
            buf, self.resp_buf = self.resp_buf, None
            self._parse_instead(buf)
            if self.up is not up:
                return
        up.parser.feed_eof()
        self._relay_response()

    def _relay_response(self) -> None:
        up = self.up
        record = self.record
        assert up is not None
        assert record is not None
        parser = up.parser
        out: list[bytes] = []
        done = False
        try:
            while True:
                ev = parser.next_event()
                kind = type(ev)
                if kind is BodyData:
                    data = ev.data  # type: ignore[union-attr]
                    if data:
                        record.bytes_out += len(data)
                        out.append(b"%x\r\n%b\r\n" % (len(data), data) if self.rechunk else data)
                elif kind is ResponseHead:
                    assert isinstance(ev, ResponseHead)
                    chunked = ev.has_body and ev.content_length is None
                    head, self.rechunk = response_head(
                        ev,
                        chunked=chunked,
                        close=not self.keep_alive or self.body_left > 0,
                        head_request=record.method == "HEAD",
                    )
                    out.append(head)
                    self.head_sent = True
                    record.status = ev.status
                elif kind is BodyEnd:
                    if self.rechunk:
                        trailers = ev.trailers  # type: ignore[union-attr]
                        tail = "".join(f"{n}: {v}\r\n" for n, v in trailers or ())
                        out.append(b"0\r\n" + tail.encode("latin-1") + b"\r\n")
                    done = True
                    break
                elif kind is InformationalHead:
                    pass  # interim answers stop here, as in the general path
                else:
                    assert ev is NEED_DATA
                    break
        except RemoteProtocolError as exc:
            if self.head_sent:
                self.gone("invalid response from upstream")
                return
            _log.info(
                "%s %s: invalid response from upstream: %s", record.method, record.target, exc
            )
            self._drop_upstream()
            self._finish_local(502, "invalid response from upstream", error="invalid response")
            return
        if out:
            self.deadline = self.engine.loop.time() + self.engine.timeout
            self.send(out[0] if len(out) == 1 else b"".join(out))
            if self.state == CLOSED:
                return
        if done:
            self._response_done()

    def _response_done(self) -> None:
        up = self.up
        assert up is not None
        self.up = None
        if self.paused:
            self.paused = False
            up.resume()
        if self.raw_left >= 0:
            reuse = self.raw_reuse and not self.body_left
            self.raw_left = -1
        else:
            reuse = up.parser.keep_alive and not up.parser.trailing_data and not self.body_left
        if reuse:
            self.engine.pool.put(up)
        else:
            up.close()
        self._end_record()
        self._next_cycle()

    def _drop_upstream(self) -> None:
        if self.up is not None:
            self.up.close()
            self.up = None
            self.paused = False

    def _end_record(self, error: str | None = None) -> None:
        record, self.record = self.record, None
        if record is not None:
            if error is not None and record.error is None:
                record.error = error
            self.engine.end_record(record)

    def _next_cycle(self) -> None:
        """The answer is out (or queued): next request, or close."""
        if not self.keep_alive or self.body_left or (self.peer_eof and not self.buf):
            if not self.out:
                self.close()
            else:
                self.state = HEAD  # closed when the queued answer is out
            return
        self.state = HEAD
        self.req = None
        self.target = None
        self.deadline = self.engine.loop.time() + self.engine.timeout
        if self.out:
            return  # on_writable continues once the answer is out
        self.resume_reading()
        if self.buf:
            self._on_head_bytes()

    # -- CONNECT ---------------------------------------------------------------------------
    def _connect(self, head: RequestHead, rest: bytes, *, authorized: bool = False) -> None:
        engine = self.engine
        if not authorized:
            target = engine.connect_target(head.target)
            if target is None:
                engine.handoff(self, self.buf)  # bad target or port: the general path answers
                return
            self.target = target
            self.record = engine.begin_record(self, "connect", "CONNECT", None)
            self.buf = rest
            self.keep_alive = head.keep_alive and not engine.stopping
            if not self._authorized(head, self.record):
                return  # answered 407, or _authenticate comes back here
        else:
            self.buf = rest
        target = self.target
        assert target is not None
        assert self.record is not None
        self.record.target = head.target
        self.state = DIAL_TUNNEL
        self.served += 1
        self._dial_host(*target)

    # -- dialling --------------------------------------------------------------------------
    def _dial_host(self, host: str, port: int) -> None:
        addrs = self.engine.addresses(host, port)
        if addrs is None:
            self.engine.resolve(self, host, port)
        else:
            self.dial_addresses(addrs)

    def dial_addresses(self, addrs: list[SockAddr]) -> None:
        """Connect to the first of ``addrs`` that answers."""
        dial = self.dial = Dial(self.engine.loop, addrs, self.engine.connect_timeout, self._dialled)
        self.deadline = dial.deadline
        dial.start()

    def resolve_failed(self, exc: BaseException) -> None:
        """The name of the target did not resolve."""
        if self.state in (FORWARD, DIAL_TUNNEL, DIAL_SOCKS):
            self._upstream_failure(UpstreamFailure.DNS, exc)

    def _dialled(self, sock: socket.socket | None, exc: BaseException | None) -> None:
        try:
            self._on_dialled(sock, exc)
        except Exception:
            if sock is not None and self.tunnel is None and self.up is None:
                sock.close()
            self.internal_error()

    def _on_dialled(self, sock: socket.socket | None, exc: BaseException | None) -> None:
        dial, self.dial = self.dial, None
        record = self.record
        assert record is not None
        if dial is not None and sock is not None and self.state in (DIAL_TUNNEL, DIAL_SOCKS):
            # as the egress records it: the time to a tunnel's target, when reached
            record.connect_time = self.engine.loop.time() - dial.started
        if sock is None:
            assert exc is not None
            failure = classify_upstream_error(exc).failure
            self._upstream_failure(failure, exc)
            return
        engine = self.engine
        if self.state == DIAL_TUNNEL or self.state == DIAL_SOCKS:
            early, self.buf = self.buf, b""
            if self.state == DIAL_TUNNEL:
                record.status = 200
                reply = connect_established()
            else:
                assert self.socks is not None
                try:
                    bound = engine.socket_address(sock.getsockname())
                except (OSError, ValueError):
                    bound = None
                record.status = Socks5ReplyCode.SUCCEEDED
                reply = self.socks.reply(
                    Socks5ReplyCode.SUCCEEDED,
                    _unmap(bound.ip) if bound is not None else UNSPECIFIED_IPV4,
                    bound.port if bound is not None else 0,
                )
                early = self.socks.take_trailing_data() + early
                self.socks = None
            if early:
                # The tunnel reads the client only once ``early`` is upstream: until
                # then, bytes arriving must wait in the kernel, not in our buffer.
                self.pause_reading()
            else:
                self.reading = False  # the tunnel's reader replaces ours on the fd
            self.state = TUNNEL
            self.tunnel = tunnel = Tunnel(
                engine.loop, self.sock, sock, engine.idle_timeout, self._tunnel_ended
            )
            try:
                sent = self.sock.send(reply)
            except _AGAIN:
                sent = 0
            except OSError as exc:
                tunnel.fail(exc)
                return
            tunnel.start(early, reply[sent:])
            return
        assert self.req is not None
        self._attach(Upstream(engine.pool, self.req[3], sock), reused=False)

    def _upstream_failure(self, failure: UpstreamFailure, exc: BaseException) -> None:
        record = self.record
        assert record is not None
        self._drop_upstream()
        if self.state == DIAL_SOCKS:
            _socks_log.info(
                "SOCKS CONNECT to %s failed: %s (%s)", record.target, failure.reason, exc
            )
            self._socks_fail(failure.socks5_reply, failure.reason)
            return
        _log.info("%s %s: %s (%s)", record.method, record.target, failure.reason, exc)
        if self.state == DIAL_TUNNEL:
            self.state = HEAD  # no tunnel: the connection goes on
        self._finish_local(failure.http_status, failure.reason)

    def _tunnel_ended(self, tunnel: Tunnel) -> None:
        record = self.record
        if record is not None:
            record.bytes_in = tunnel.bytes_up
            record.bytes_out = tunnel.bytes_down
            if tunnel.timed_out:
                record.error = "idle timeout"
            elif tunnel.error is not None:
                record.error = "connection lost"
        self._end_record()
        self.state = CLOSED
        self.engine.closed(self)

    # -- SOCKS5 ----------------------------------------------------------------------------
    def _socks_start(self, data: bytes) -> None:
        engine = self.engine
        self.state = SOCKS
        self.deadline = engine.loop.time() + engine.socks_handshake_timeout
        self.socks = Socks5ServerProtocol()
        self._socks_bytes(data)

    def _socks_bytes(self, data: bytes) -> None:
        """Handshake bytes (``b""``: EOF): greeting, then the request."""
        proto = self.socks
        assert proto is not None
        try:
            proto.receive_data(data)
            while self.state == SOCKS:
                event = proto.next_event()
                if event is None:
                    return
                if isinstance(event, Socks5Greeting):
                    method, answer = proto.select_method(event, require_auth=False)
                    self.send(answer)
                    if method == SocksAuthMethod.NO_ACCEPTABLE:
                        _socks_log.debug(
                            "SOCKS5 client %s offers no acceptable method", self.peer or "?"
                        )
                        self._close_when_sent()
                        return
                elif isinstance(event, Socks5Request):
                    self._socks_request(proto, event)
                    return
                else:  # a username/password, never asked for
                    self.close()
                    return
        except SocksError as exc:
            _socks_log.debug("bad SOCKS input from %s: %s", self.peer or "?", exc)
            if exc.response:
                self.send(exc.response)
                if len(exc.response) >= 8:  # a refused request (not a greeting): a record
                    self.record = self.engine.begin_record(self, "socks5", None, None)
                    self.record.status = exc.reply
                    self.record.error = "bad request"
                    self._end_record()
            self._close_when_sent()

    def _socks_request(self, proto: Socks5ServerProtocol, req: Socks5Request) -> None:
        engine = self.engine
        if req.command != Socks5Command.CONNECT:
            engine.handoff_socks(self, proto, req)  # BIND, UDP ASSOCIATE: the general path
            return
        host, port = req.host, req.port
        record = self.record = engine.begin_record(
            self, "socks5", "CONNECT", _target_text(host, port)
        )
        ports = engine.socks_allow_ports
        if ports is not None and port not in ports:
            _socks_log.info("SOCKS CONNECT to %s refused: port not allowed", record.target)
            self._socks_fail(Socks5ReplyCode.NOT_ALLOWED, "port not allowed")
            return
        if isinstance(host, str):
            try:
                Host.parse(host)
            except AddressError:
                _socks_log.debug("SOCKS CONNECT to an invalid host %r", host[:255])
                self._socks_fail(Socks5ReplyCode.HOST_UNREACHABLE, "invalid host")
                return
        self.state = DIAL_SOCKS
        self.served += 1
        self.deadline = engine.loop.time() + engine.connect_timeout
        self._dial_host(str(host), port)

    def _socks_fail(self, code: int, why: str) -> None:
        proto = self.socks
        assert proto is not None
        record = self.record
        if record is not None:
            record.status = code
            record.error = why
        self.send(proto.reply(code))
        if self.state == CLOSED:
            return
        self._end_record()
        self._close_when_sent()

    def _close_when_sent(self) -> None:
        """Close once what is queued for the client is out."""
        self.pause_reading()
        self.keep_alive = False
        if self.state != CLOSED:
            self.state = HEAD
            self._next_cycle()

    # -- answers ---------------------------------------------------------------------------
    def _finish_local(
        self, status: int, text: str, *, auth: bool = False, error: str | None = None
    ) -> None:
        """Answer the current request ourselves (an error) and end its record."""
        record = self.record
        engine = self.engine
        close = self.body_left > 0 or not self.keep_alive
        headers = (("Proxy-Authenticate", engine.realm_header),) if auth else ()
        if record is not None:
            record.status = status
            record.error = error or text
            if status < 500:
                _log.debug("%s %s: %d %s", record.method, record.target, status, text)
        self.send(text_response(status, text, headers, close=close))
        if self.state == CLOSED:
            return
        self._end_record()
        self.state = HEAD
        self._next_cycle()

    def send(self, data: bytes) -> None:
        """Write to the client; a slow client pauses the upstream until it caught up."""
        if self.out:
            self.out += data
            return
        try:
            n = self.sock.send(data)
        except _AGAIN:
            n = 0
        except OSError:
            self.gone("client went away")
            return
        self.tx += n
        if n < len(data):
            self.out = bytes(data[n:])
            self.engine.loop.add_writer(self.fd, self._on_writable)
            if self.up is not None and not self.paused:
                self.paused = True
                self.up.pause()

    def _on_writable(self) -> None:
        try:
            self._writable()
        except Exception:
            self.internal_error()

    def _writable(self) -> None:
        try:
            n = self.sock.send(self.out)
        except _AGAIN:
            return
        except OSError:
            self.gone("client went away")
            return
        self.tx += n
        self.out = self.out[n:]
        if self.out:
            return
        self.engine.loop.remove_writer(self.fd)
        if self.paused and self.up is not None:
            self.paused = False
            self.up.resume()
        if self.state == HEAD and self.up is None:
            self._next_cycle()

    def timed_out(self) -> None:
        """The sweeper found :attr:`deadline` passed."""
        state = self.state
        if self.dial is not None:
            self.dial.expire()  # reports through _dialled
            return
        if state == SOCKS:
            _socks_log.info(
                "SOCKS handshake from %s not done within %gs, closing",
                self.peer or "?",
                self.engine.socks_handshake_timeout,
            )
            self.close()
            return
        if state == HEAD:
            if self.buf:  # a head begun and not finished (else: an idle keep-alive connection)
                self.send(error_response(408))
            self.close()
            return
        if self.resolving:
            self.resolving = False
            self._upstream_failure(UpstreamFailure.TIMEOUT, TimeoutError("resolving timed out"))
            return
        if state == FORWARD:
            if not self.head_sent:
                record = self.record
                if record is not None:
                    _log.info("%s %s: upstream timed out", record.method, record.target)
                self._drop_upstream()
                self._finish_local(504, UpstreamFailure.TIMEOUT.reason)
            else:
                self.gone("upstream timed out")

    def shutdown(self) -> None:
        """The server stops: an idle connection closes now, a busy one after its answer."""
        self.keep_alive = False
        if self.state == HEAD and not self.buf and not self.out:
            self.close()

    # -- the end ---------------------------------------------------------------------------
    def gone(self, why: str) -> None:
        """The client (or the response to it) broke: drop everything now."""
        if self.state == CLOSED:
            return
        if self.tunnel is not None:
            self.tunnel.abort()
            return
        self._end_record(why)
        self.close()

    def close(self) -> None:
        """Close the connection (and whatever upstream it was using)."""
        if self.state == CLOSED:
            return
        if self.tunnel is not None:
            self.tunnel.abort()
            return
        self.state = CLOSED
        if self.dial is not None:
            self.dial.cancel()
            self.dial = None
        self._drop_upstream()
        self._end_record("closed")
        loop = self.engine.loop
        loop.remove_reader(self.fd)
        if self.out:
            loop.remove_writer(self.fd)
        self.sock.close()
        self.engine.closed(self)

    def detach(self) -> socket.socket:
        """Stop watching the socket and give it up (a handoff to the general path)."""
        loop = self.engine.loop
        loop.remove_reader(self.fd)
        if self.out:
            loop.remove_writer(self.fd)
        self.state = CLOSED
        return self.sock
