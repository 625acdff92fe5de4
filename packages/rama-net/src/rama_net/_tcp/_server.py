"""TCP listener: bind, accept, and serve a stream service per connection.

Each connection runs in its own task with a forked Context holding
:class:`SocketInfo` and :class:`ConnectionId`. A failing or slow connection
never stalls the accept loop; limits (max connections, idle timeout) have
defaults; shutdown stops accepting and lets connections drain within the
rama_core Shutdown's grace period.

Shutdown timers, one precedence: ``Shutdown(grace=G)`` is the overall cap
(guarded work is cancelled G seconds after the trigger);
:attr:`TcpServerConfig.drain_timeout` bounds how long a listener waits for its
connections once it stops accepting (None: up to G); the effective bound is the
smallest that applies.
"""

from __future__ import annotations

import dataclasses
import errno
import itertools
import logging
import math
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
from anyio.abc import ByteStream, TaskGroup
from anyio.lowlevel import checkpoint

from rama_core import Context, RamaError, Service, Shutdown, format_error_chain

from .._address import Authority, Host, SocketAddress
from .._errors import BindError, ConnectionLost
from .._metrics import TransportMetrics, transport_metrics
from .._peek import PeekStream
from .._ratelimit import RateLimitedLog
from .._stream import ProtocolStream, TrackedStream, wrap_socket

__all__ = [
    "ConnectionId",
    "ConnectionTakeover",
    "SocketInfo",
    "TakeoverHandle",
    "TcpListener",
    "TcpServerConfig",
    "default_max_connections",
]

_log = logging.getLogger("rama.net.tcp")

# What Linux accept(2) reports for a connection that failed while queued: the
# listener itself is fine and should take the next one.
_PENDING_NETWORK_ERRORS = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNABORTED",
        "EPROTO",
        "ENETDOWN",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "ENONET",
        "EHOSTUNREACH",
        "EOPNOTSUPP",
        "ENETUNREACH",
        "ECONNRESET",
        "ETIMEDOUT",
    )
    if hasattr(errno, name)
)
_ids = itertools.count(1)
_FD_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# fds a process keeps for itself (stdio, logs, the listening sockets, DNS, ...)
_FD_RESERVE = 64
_FDS_PER_CONNECTION = 2  # the accepted socket and one upstream


def default_max_connections() -> int:
    """The default connection limit: what RLIMIT_NOFILE allows, at most 10,000.

    Counts two fds per connection (the accepted socket and one upstream) and
    keeps 64 for the process. A zero-copy relay needs up to 8 per connection
    (2 sockets, 2 duplicates, 2 pipes while data flows both ways; see
    :mod:`rama_net._forward`): it falls back to copying when fds run out, but
    set ``max_connections`` (or raise the limit, ``ulimit -n``) for it.
    """
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):  # no rlimits on this platform
        return 10_000
    if soft == resource.RLIM_INFINITY:
        return 10_000
    return max(16, min(10_000, (soft - _FD_RESERVE) // _FDS_PER_CONNECTION))


@dataclass(frozen=True, slots=True)
class SocketInfo:
    """Both ends of an accepted (or dialled) connection, put into the Context."""

    peer_addr: SocketAddress
    local_addr: SocketAddress


@dataclass(frozen=True, slots=True)
class ConnectionId:
    """A process-unique number for a connection, for logs and correlation."""

    value: int

    def __str__(self) -> str:
        return f"conn-{self.value}"


@dataclass(frozen=True)
class TcpServerConfig:
    """Limits of a TCP server."""

    max_connections: int | None = dataclasses.field(default_factory=default_max_connections)
    """Accepting pauses while this many connections are open (None: unlimited).
    Default: :func:`default_max_connections` (RLIMIT_NOFILE / 2, at most 10,000)."""
    idle_timeout: float | None = 300.0
    """Close a connection after this many seconds without bytes either way."""
    read_timeout: float | None = None
    """Close a connection after this many seconds without a byte from the peer."""
    metrics: TransportMetrics | None = None
    """Where to record transport metrics (default: the process-wide instruments)."""
    fast_streams: bool = True
    """Use the Protocol-backed stream on asyncio (see rama_net._stream)."""
    drain_timeout: float | None = None
    """After :meth:`TcpListener.close` (or a shutdown's trigger), seconds open
    connections get to finish before they are cancelled. None: wait for them,
    up to the Shutdown's grace when there is one (forever without). With a
    Shutdown the smaller of the two applies."""


_ACCEPT_BATCH = 64
"""Connections taken per readiness wakeup at most (then other tasks get a turn)."""


class _Slots:
    """Counts open connections; accept loops wait while the limit is reached."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.open = 0
        self._freed: anyio.Event | None = None

    async def acquire(self) -> None:
        while self.limit is not None and self.open >= self.limit:
            if self._freed is None:
                self._freed = anyio.Event()
            await self._freed.wait()
        self.open += 1

    def try_acquire(self) -> bool:
        """Take a slot if one is free, without waiting."""
        if self.limit is not None and self.open >= self.limit:
            return False
        self.open += 1
        return True

    def release(self) -> None:
        self.open -= 1
        freed, self._freed = self._freed, None
        if freed is not None:
            freed.set()

    async def wait_empty(self) -> None:
        # Slots are taken before accept() and released when a connection ends, so
        # this also covers connections accepted but not yet started.
        while self.open > 0:
            if self._freed is None:
                self._freed = anyio.Event()
            await self._freed.wait()


class TakeoverHandle:
    """What a :class:`ConnectionTakeover` gets from the listener that serves it.

    Every socket the takeover took holds one of the listener's connection
    slots until the takeover calls :meth:`release` (it closed the socket) or
    :meth:`adopt` (the listener serves it from then on, as if it had never
    been taken).
    """

    def __init__(
        self,
        listener: TcpListener,
        service: Service[ByteStream, Any],
        ctx: Context,
        cfg: TcpServerConfig,
        slots: _Slots,
        conns: TaskGroup,
    ) -> None:
        self._listener = listener
        self._service = service
        self.context = ctx
        """The listener's root Context."""
        self.config = cfg
        """The listener's limits."""
        self._slots = slots
        self._conns = conns

    def release(self) -> None:
        """A taken connection has ended: free its slot."""
        self._slots.release()

    def adopt(
        self,
        sock: socket.socket,
        prefix: bytes = b"",
        *,
        service: Service[ByteStream, Any] | None = None,
    ) -> None:
        """Serve ``sock`` with the listener's service; ``prefix`` is what was read from it.

        The service sees ``prefix`` first (through a :class:`~rama_net.PeekStream`),
        then the rest of the connection. ``service`` replaces the listener's
        (for a connection the takeover has already spoken with). The socket
        must no longer be watched by the event loop. Its slot goes with it.
        """
        guard = self.context.executor.guard("tcp-connection")
        self._conns.start_soon(
            self._listener._handle,
            sock,
            service or self._service,
            self.context,
            self.config,
            self._slots,
            guard,
            prefix,
        )

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Run ``fn(*args)`` in the listener's connection task group.

        Such tasks are cancelled at the drain bound, with the connections."""
        self._conns.start_soon(fn, *args)


class ConnectionTakeover(Protocol):
    """Takes accepted sockets over before the listener starts a task for them.

    For a callback-driven fast path on asyncio (rama-proxy's forward proxy):
    :meth:`take` is called, synchronously, for every accepted socket; returning
    True makes the socket the takeover's (see :class:`TakeoverHandle` for the
    slot it holds), False serves it the usual way. :meth:`stop` is called when
    the listener stops accepting (close idle connections, finish busy ones);
    :meth:`abort` when the drain bound is reached (close everything).
    """

    def start(self, handle: TakeoverHandle) -> None:
        """The listener starts serving; ``handle`` stays valid until it returns."""
        ...

    def take(self, sock: socket.socket, peer: Any) -> bool:
        """Take ``sock`` (a connected, accepted socket; ``peer`` is the address
        ``accept()`` gave) or leave it to the listener."""
        ...

    def stop(self) -> None:
        """Accepting stopped: close idle connections, let busy ones finish."""
        ...

    def abort(self) -> None:
        """The drain bound was reached: close every connection still open."""
        ...


def _bind_one(family: int, addr: tuple[Any, ...], backlog: int, reuse_port: bool) -> socket.socket:
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        raise BindError(str(SocketAddress.from_sockaddr(addr)), exc) from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(addr)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise BindError(str(SocketAddress.from_sockaddr(addr)), exc) from exc
    return sock


def _bind_all(infos: list[Any], port: int, backlog: int, reuse_port: bool) -> list[socket.socket]:
    sockets: list[socket.socket] = []
    seen: set[tuple[int, str]] = set()
    try:
        for family, _, _, _, sockaddr in infos:
            key = (family, str(sockaddr[0]))
            if key in seen:
                continue
            seen.add(key)
            # with port 0 and several addresses, reuse the first pick everywhere
            addr = (sockaddr[0], port or (sockets[0].getsockname()[1] if sockets else 0))
            addr = (*addr, *sockaddr[2:])
            sockets.append(_bind_one(family, addr, backlog, reuse_port))
    except OSError:
        for s in sockets:
            s.close()
        raise
    return sockets


class _ThreadlessEvent:
    """An event usable before any event loop runs (bind() is synchronous)."""

    def __init__(self) -> None:
        self._flag = False
        self._event: anyio.Event | None = None

    def set(self) -> None:
        self._flag = True
        if self._event is not None:
            self._event.set()

    async def wait(self) -> None:
        if self._flag:
            return
        if self._event is None:
            self._event = anyio.Event()
        await self._event.wait()


class TcpListener:
    """One or more bound, listening TCP sockets and the loop that serves them."""

    def __init__(self, sockets: list[socket.socket]) -> None:
        if not sockets:
            raise ValueError("a listener needs at least one socket")
        self.sockets = sockets
        # kept after close, for logs and for tests asserting on what was bound
        self._local_addrs = [SocketAddress.from_sockaddr(s.getsockname()) for s in sockets]
        self._closed = False
        self._stop: anyio.Event | None = None
        self._sockets_closed = _ThreadlessEvent()
        self._scopes: dict[int, tuple[anyio.CancelScope, Any]] = {}
        self._serving = False
        self._accept_warning = RateLimitedLog(_log, 10.0)

    @classmethod
    def bind(
        cls,
        address: str | SocketAddress | Authority | tuple[str, int],
        *,
        backlog: int = 1024,
        reuse_port: bool = False,
    ) -> TcpListener:
        """Bind ``host:port`` (port 0 picks a free one; a name binds every address of it).

        ``reuse_port`` sets SO_REUSEPORT so several worker processes can share
        the port. Failures raise :class:`~rama_net.BindError` (an ``OSError``
        naming the address, e.g. ``cannot bind 127.0.0.1:80: [Errno 13]
        Permission denied``). Use the listener as ``async with`` to have its
        sockets closed on exit, whatever happened to :meth:`serve`.
        """
        if isinstance(address, tuple):
            host, port = Host.parse(address[0]), address[1]
        elif isinstance(address, SocketAddress):
            host, port = Host(address.ip), address.port
        elif isinstance(address, Authority):
            host, port = address.host, address.port
        else:
            auth = Authority.parse(address)
            host, port = auth.host, auth.port
        try:
            infos = socket.getaddrinfo(
                str(host), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        except OSError as exc:
            raise BindError(str(Authority(host, port)), exc) from exc
        # With port 0 and several addresses the port picked for the first may be
        # taken on another family: pick again a few times.
        for attempt in range(8):
            try:
                return cls(_bind_all(infos, port, backlog, reuse_port))
            except OSError as exc:
                if port != 0 or exc.errno != errno.EADDRINUSE or attempt == 7:
                    raise
        raise AssertionError("unreachable")

    @property
    def local_addrs(self) -> list[SocketAddress]:
        """Every bound address (port 0 resolved to the real port)."""
        return list(self._local_addrs)

    @property
    def local_addr(self) -> SocketAddress:
        """The first bound address."""
        return self.local_addrs[0]

    @property
    def open_connections(self) -> int:
        """Connections currently being served."""
        return len(self._scopes)

    def close(self) -> None:
        """Stop accepting; open connections keep running (graceful drain)."""
        self._closed = True
        if self._stop is not None:
            # serve() closes the sockets once its accept loops have stopped
            # watching them: closing a watched fd confuses the event loop.
            self._stop.set()
        else:
            self._close_sockets()

    def _close_sockets(self) -> None:
        for s in self.sockets:
            s.close()
        self._sockets_closed.set()

    @property
    def closed(self) -> bool:
        """Whether the listener stopped accepting (its sockets are or will soon be closed)."""
        return self._closed

    async def aclose(self) -> None:
        """Stop accepting and wait until the listening sockets are closed.

        Unlike :meth:`close`, a connect attempt after this returns is refused.
        Open connections keep running (graceful drain).
        """
        self.close()
        await self._sockets_closed.wait()

    async def __aenter__(self) -> TcpListener:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Stop accepting and close the listening sockets (a connect is then refused)."""
        self.close()
        if not self._serving:
            self._close_sockets()
            return
        # serve() runs elsewhere: it closes the sockets as soon as its accept
        # loops have stopped; wait for that briefly even when we are cancelled
        with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
            await self._sockets_closed.wait()

    async def serve(
        self,
        service: Service[ByteStream, Any],
        config: TcpServerConfig | None = None,
        *,
        ctx: Context | None = None,
        takeover: ConnectionTakeover | None = None,
    ) -> None:
        """Serve connections until :meth:`close` or the context's shutdown.

        Without ``ctx`` the root Context comes from the enclosing
        ``async with Shutdown()`` (:meth:`rama_core.Shutdown.current`), so a
        server started in that block joins the shutdown; outside of one it is
        a plain ``Context()``. Returns once accepting has stopped and every
        connection has finished or was cancelled (after ``drain_timeout`` or
        the Shutdown's grace, whichever ends first). The listening sockets are
        closed when this returns, also when it is cancelled. A ``takeover``
        (see :class:`ConnectionTakeover`) gets each accepted socket first.
        """
        if ctx is None:
            current = Shutdown.current()
            ctx = current.context() if current is not None else Context()
        cfg = config or TcpServerConfig()
        if self._closed:
            self._close_sockets()
            return
        self._stop = anyio.Event()
        self._serving = True
        try:
            await self._serve(service, ctx, cfg, takeover)
        finally:
            self._serving = False
            self._closed = True
            # the accept loops have stopped watching the sockets by now
            self._close_sockets()

    async def _serve(
        self,
        service: Service[ByteStream, Any],
        ctx: Context,
        cfg: TcpServerConfig,
        takeover: ConnectionTakeover | None,
    ) -> None:
        assert self._stop is not None
        slots = _Slots(cfg.max_connections)
        async with anyio.create_task_group() as conns:
            if takeover is not None:
                takeover.start(TakeoverHandle(self, service, ctx, cfg, slots, conns))
            async with anyio.create_task_group() as loops:
                for sock in self.sockets:
                    loops.start_soon(
                        self._accept_loop, sock, service, ctx, cfg, slots, conns, takeover
                    )
                if cfg.idle_timeout is not None or cfg.read_timeout is not None:
                    conns.start_soon(
                        self._sweep_idle, cfg.idle_timeout, cfg.read_timeout, name="idle-sweeper"
                    )
                await _first_of(self._stop.wait, ctx.executor.wait_shutdown)
                loops.cancel_scope.cancel()
            self._closed = True
            self._close_sockets()
            if takeover is not None:
                takeover.stop()
            _log.debug("listener closed; draining %d connections", self.open_connections)
            # let connections drain (within drain_timeout and the shutdown's
            # grace, whichever ends first), then stop the sweeper
            shutdown = ctx.executor.shutdown
            with anyio.CancelScope(deadline=_drain_deadline(cfg.drain_timeout, shutdown)):
                if shutdown is not None and not shutdown.is_triggered:
                    # closed by hand; a shutdown triggered meanwhile still caps the drain
                    await _first_of(slots.wait_empty, lambda: _until_grace(shutdown))
                else:
                    await slots.wait_empty()
            if slots.open:
                _log.warning(
                    "drain bound reached: cancelling %d connections on %s",
                    slots.open,
                    self._local_addrs[0],
                )
            if takeover is not None:
                takeover.abort()
            conns.cancel_scope.cancel()

    async def _accept_loop(
        self,
        sock: socket.socket,
        service: Service[ByteStream, Any],
        ctx: Context,
        cfg: TcpServerConfig,
        slots: _Slots,
        conns: TaskGroup,
        takeover: ConnectionTakeover | None,
    ) -> None:
        while True:
            await slots.acquire()
            try:
                await anyio.wait_readable(sock)
            except BaseException:
                slots.release()  # cancelled while waiting: the slot was never used
                raise
            # Take every connection already queued (as slots allow) before waiting
            # again: one readiness wait per burst, not per connection.
            for _ in range(_ACCEPT_BATCH):
                try:
                    conn, peer = sock.accept()
                except BlockingIOError:
                    slots.release()
                    break
                except OSError as exc:
                    slots.release()
                    if exc.errno in _FD_ERRORS:
                        # out of fds: retry every 100 ms, say so at most every 10 s
                        self._accept_warning.log(
                            logging.WARNING,
                            "accept on %s failed (%s); backing off (%d connections open)",
                            SocketAddress.from_sockaddr(sock.getsockname()),
                            exc,
                            slots.open,
                        )
                        await anyio.sleep(0.1)
                        break
                    if exc.errno in _PENDING_NETWORK_ERRORS:
                        # accept(2): errors of the aborted connection, not of the listener
                        _log.debug("accept: connection dropped before it was taken (%s)", exc)
                        if not slots.try_acquire():
                            break
                        continue
                    raise
                if takeover is None or not takeover.take(conn, peer):
                    guard = ctx.executor.guard("tcp-connection")
                    conns.start_soon(self._handle, conn, service, ctx, cfg, slots, guard)
                if not slots.try_acquire():
                    break
            else:
                slots.release()  # the batch is done; the slot taken for the next one is unused
                await checkpoint()

    async def _handle(
        self,
        conn: socket.socket,
        service: Service[ByteStream, Any],
        parent: Context,
        cfg: TcpServerConfig,
        slots: _Slots,
        guard: Any,
        prefix: bytes = b"",
    ) -> None:
        conn_id = ConnectionId(next(_ids))
        stream: ProtocolStream | TrackedStream | None = None
        metrics = cfg.metrics or transport_metrics()
        metrics.connection_opened("tcp")
        started = anyio.current_time()
        with guard, anyio.CancelScope() as scope:
            try:
                info = SocketInfo(
                    peer_addr=SocketAddress.from_sockaddr(conn.getpeername()),
                    local_addr=SocketAddress.from_sockaddr(conn.getsockname()),
                )
                stream = await wrap_socket(conn, fast=cfg.fast_streams)
                metrics.track("tcp", stream)
                self._scopes[conn_id.value] = (scope, stream)
                ctx = parent.fork()
                ctx.insert(info)
                ctx.insert(conn_id)
                await service.serve(ctx, PeekStream(stream, prefix) if prefix else stream)
            except (ConnectionLost, anyio.EndOfStream) as exc:
                _log.debug("%s: peer went away (%s)", conn_id, exc or type(exc).__name__)
            except RamaError as exc:
                _log.debug("%s: %s", conn_id, format_error_chain(exc))
            except TimeoutError as exc:  # (an OSError too: before the clause below)
                # an expected event (a service's own timeout), not a bug: no traceback
                _log.info("%s: timed out: %s", conn_id, exc or "TimeoutError")
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                # another library's stream (anyio's TLSStream, a raw socket) failing
                _log.debug("%s: connection failed: %r", conn_id, exc)
            except Exception:
                _log.exception("%s: service failed", conn_id)
            finally:
                self._scopes.pop(conn_id.value, None)
                slots.release()
                with anyio.CancelScope(shield=True):
                    if stream is not None:
                        await stream.aclose()
                    else:
                        conn.close()
                metrics.connection_closed(
                    "tcp",
                    anyio.current_time() - started,
                    stream.bytes_received if stream is not None else 0,
                    stream.bytes_sent if stream is not None else 0,
                    stream=stream,
                )

    async def _sweep_idle(self, idle_timeout: float | None, read_timeout: float | None) -> None:
        shortest = min(t for t in (idle_timeout, read_timeout) if t is not None)
        period = min(max(shortest / 4, 0.01), 1.0)
        while True:
            await anyio.sleep(period)
            now = anyio.current_time()
            for scope, stream in list(self._scopes.values()):
                if (idle_timeout is not None and stream.last_activity < now - idle_timeout) or (
                    read_timeout is not None and stream.last_received < now - read_timeout
                ):
                    scope.cancel()


def _drain_deadline(drain_timeout: float | None, shutdown: Shutdown | None) -> float:
    """The absolute time (anyio's clock) at which a drain starting now ends."""
    deadline = math.inf if drain_timeout is None else anyio.current_time() + drain_timeout
    if shutdown is not None:
        deadline = min(deadline, shutdown.grace_deadline)
    return deadline


async def _until_grace(shutdown: Shutdown) -> None:
    await shutdown.wait_triggered()
    if math.isinf(shutdown.grace_deadline):
        await anyio.sleep_forever()
    await anyio.sleep_until(shutdown.grace_deadline)


async def _first_of(*waits: Callable[[], Any]) -> None:
    async with anyio.create_task_group() as tg:

        async def run(fn: Callable[[], Any]) -> None:
            await fn()
            tg.cancel_scope.cancel()

        for fn in waits:
            tg.start_soon(run, fn)
