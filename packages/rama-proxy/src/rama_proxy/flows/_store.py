"""A bounded in-memory flow store with live subscribers, and a JSON-lines writer/reader."""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._flow import AnyFlow, CapturedBody, Flow, FlowFormatError, WebSocketMessage, flow_from_json

__all__ = [
    "FlowEvent",
    "FlowStore",
    "FlowSubscription",
    "JsonLinesWriter",
    "SubscriberLagged",
    "read_jsonl",
]


class SubscriberLagged(Exception):
    """A subscriber fell more than its buffer behind; its subscription was ended."""


@dataclass(frozen=True)
class FlowEvent:
    """A change in the store: a flow was ``added``, ``updated`` or ``evicted``,
    or got a WebSocket ``message`` (the event's ``message``)."""

    kind: Literal["added", "updated", "evicted", "message"]
    flow: AnyFlow
    message: WebSocketMessage | None = None


class FlowSubscription:
    """Events of a :class:`FlowStore` for one live viewer; iterate with ``async for``.

    A viewer that falls ``buffer`` events behind is cut off: iteration raises
    :class:`SubscriberLagged` after the buffered events (a stalled viewer
    never slows the proxy or grows memory). Close it with :meth:`close` or
    use it as an ``async with`` block.
    """

    def __init__(self, store: FlowStore, buffer: int) -> None:
        send, recv = anyio.create_memory_object_stream[FlowEvent](buffer)
        self._store = store
        self._send: MemoryObjectSendStream[FlowEvent] = send
        self._recv: MemoryObjectReceiveStream[FlowEvent] = recv
        self.lagged = False

    def _offer(self, event: FlowEvent) -> None:
        if self.lagged:
            return
        try:
            self._send.send_nowait(event)
        except anyio.WouldBlock:
            self.lagged = True
            self._send.close()
            self._store._subscribers.discard(self)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            self._store._subscribers.discard(self)

    def close(self) -> None:
        """Stop receiving events."""
        self._store._subscribers.discard(self)
        self._send.close()
        self._recv.close()

    async def __aenter__(self) -> FlowSubscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __aiter__(self) -> AsyncIterator[FlowEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[FlowEvent]:
        while True:
            try:
                event = await self._recv.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                if self.lagged:
                    raise SubscriberLagged("the flow viewer fell behind") from None
                return
            yield event


class FlowStore:
    """The most recent flows, bounded by count and by captured body bytes.

    Adding a flow evicts the oldest ones until at most ``max_flows`` remain
    and their captured bodies (request, response, WebSocket payloads) total at
    most ``max_body_bytes``. A single flow larger than ``max_body_bytes`` on its
    own keeps its metadata but has its captured bodies dropped (marked
    truncated), so memory stays bounded whatever the traffic.

    WebSocket messages go through :meth:`add_websocket_message` (O(1), at most
    ``max_websocket_messages`` kept per flow).

    Live viewers :meth:`subscribe` (optionally replaying what is stored);
    events are delivered without blocking the caller. Belongs to one event
    loop; all methods except iteration are synchronous and cheap.
    """

    def __init__(
        self,
        *,
        max_flows: int = 10_000,
        max_body_bytes: int = 256 << 20,
        max_websocket_messages: int = 10_000,
    ) -> None:
        if max_flows < 1:
            raise ValueError("max_flows must be at least 1")
        if max_websocket_messages < 0:
            raise ValueError("max_websocket_messages must be >= 0")
        self.max_websocket_messages = max_websocket_messages
        if max_body_bytes < 0:
            raise ValueError("max_body_bytes must be >= 0")
        self.max_flows = max_flows
        self.max_body_bytes = max_body_bytes
        self._flows: OrderedDict[str, AnyFlow] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self.body_bytes = 0
        """Captured body bytes currently held."""
        self.evicted = 0
        """How many flows were evicted so far."""
        self._subscribers: set[FlowSubscription] = set()

    def __len__(self) -> int:
        return len(self._flows)

    def __iter__(self) -> Iterator[AnyFlow]:
        """Stored flows, oldest first (a snapshot: safe to mutate the store meanwhile)."""
        return iter(list(self._flows.values()))

    def __contains__(self, flow_id: object) -> bool:
        return flow_id in self._flows

    def get(self, flow_id: str) -> AnyFlow | None:
        """The stored flow with this id, if it is still there."""
        return self._flows.get(flow_id)

    def flows(self) -> list[AnyFlow]:
        """Stored flows, oldest first."""
        return list(self._flows.values())

    def http_flows(self) -> list[Flow]:
        """Stored HTTP flows (no tunnels), oldest first: what :func:`to_har` takes."""
        return [f for f in self._flows.values() if isinstance(f, Flow)]

    def add(self, flow: AnyFlow) -> None:
        """Store ``flow`` (again: same as :meth:`update`) and evict what exceeds the limits."""
        if flow.id in self._flows:
            self.update(flow)
            return
        self._flows[flow.id] = flow
        self._account(flow)
        self._publish(FlowEvent("added", flow))
        self._evict(keep=flow.id)

    def update(self, flow: AnyFlow) -> None:
        """Re-count ``flow`` after it changed (response arrived, WebSocket message added)."""
        if flow.id not in self._flows:
            self.add(flow)
            return
        self._account(flow)
        self._publish(FlowEvent("updated", flow))
        self._evict(keep=flow.id)

    def add_websocket_message(self, flow: Flow, message: WebSocketMessage) -> bool:
        """Attach ``message`` to ``flow`` in O(1) and tell viewers (a ``message`` event).

        A flow keeps at most ``max_websocket_messages``; later ones are only
        counted in ``flow.websocket_dropped`` (returns False). A flow that is
        not (or no longer) stored still gets the message, uncounted.
        """
        if len(flow.websocket) >= self.max_websocket_messages:
            flow.websocket_dropped += 1
            return False
        flow.websocket.append(message)
        if flow.id not in self._flows:
            return True
        n = len(message.payload)
        self._sizes[flow.id] += n
        self.body_bytes += n
        self._publish(FlowEvent("message", flow, message))
        if self.body_bytes > self.max_body_bytes:
            self._evict(keep=flow.id)
        return True

    def clear(self) -> None:
        """Drop every stored flow (subscribers get no events for it)."""
        self._flows.clear()
        self._sizes.clear()
        self.body_bytes = 0

    def subscribe(self, *, replay: bool = False, buffer: int = 1024) -> FlowSubscription:
        """Live events from now on; with ``replay`` first an ``added`` per stored flow.

        Replayed flows beyond ``buffer`` end the subscription as lagged, so
        ask for a buffer at least as large as the store when replaying.
        """
        if buffer < 1:
            raise ValueError("buffer must be at least 1")
        sub = FlowSubscription(self, buffer)
        self._subscribers.add(sub)
        if replay:
            for flow in list(self._flows.values()):
                sub._offer(FlowEvent("added", flow))
        return sub

    # -- internals -----------------------------------------------------------------------
    def _account(self, flow: AnyFlow) -> None:
        size = flow.body_bytes
        self.body_bytes += size - self._sizes.get(flow.id, 0)
        self._sizes[flow.id] = size

    def _publish(self, event: FlowEvent) -> None:
        for sub in list(self._subscribers):
            sub._offer(event)

    def _evict(self, keep: str) -> None:
        flow = self._flows[keep]
        if self._sizes[keep] > self.max_body_bytes and isinstance(flow, Flow):
            _strip_bodies(flow)  # alone over the budget: keep its metadata only
            self._account(flow)
        while len(self._flows) > 1 and (
            len(self._flows) > self.max_flows or self.body_bytes > self.max_body_bytes
        ):
            it = iter(self._flows)
            oldest = next(it)
            if oldest == keep:  # an updated old flow: it stays, the next oldest goes
                oldest = next(it)
            self._drop(oldest)

    def _drop(self, flow_id: str) -> None:
        flow = self._flows.pop(flow_id)
        self.body_bytes -= self._sizes.pop(flow_id, 0)
        self.evicted += 1
        self._publish(FlowEvent("evicted", flow))


def _strip_bodies(flow: Flow) -> None:
    req = flow.request.body
    flow.request.body = CapturedBody(b"", req.size, req.size > 0)
    if flow.response is not None:
        resp = flow.response.body
        flow.response.body = CapturedBody(b"", resp.size, resp.size > 0)
    for m in flow.websocket:
        if m.payload:
            m.payload = b""
            m.truncated = True


class JsonLinesWriter:
    """Appends flows to a file, one JSON object per line (bodies base64).

    Each flow is encoded first and written with a single ``write`` on a file
    opened with ``O_APPEND``, so a reader tailing the file (or several writers
    on one file) only ever sees whole lines, and a crash loses at most the
    line being written (which :func:`read_jsonl` skips). ``fsync=True`` also
    syncs each line to disk. Use :meth:`write` from threads or sync code and
    :meth:`awrite` from async code (it runs in a worker thread).

    Lines hold flows as recorded, credentials included (nothing is
    redacted): a new file is created with mode 0600.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.written = 0
        """Flows written so far."""

    @staticmethod
    def encode(flow: AnyFlow) -> bytes:
        """The line for ``flow`` (compact JSON, ASCII only, newline-terminated)."""
        return json.dumps(flow.to_json(), separators=(",", ":")).encode("ascii") + b"\n"

    def write(self, flow: AnyFlow) -> None:
        """Append ``flow`` as one line."""
        if self._fd is None:
            raise ValueError("the writer is closed")
        line = self.encode(flow)
        view = memoryview(line)
        while view:  # regular files write everything at once; loop for odd file systems
            n = os.write(self._fd, view)
            view = view[n:]
        if self.fsync:
            os.fsync(self._fd)
        self.written += 1

    async def awrite(self, flow: AnyFlow) -> None:
        """:meth:`write` in a worker thread."""
        await anyio.to_thread.run_sync(self.write, flow)

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> JsonLinesWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_jsonl(source: str | os.PathLike[str] | Iterable[bytes | str]) -> Iterator[AnyFlow]:
    """Flows from a JSON-lines file (or any iterable of lines), in order.

    Blank lines are skipped, and so is a last line without its newline (a
    write in progress or cut short by a crash). Any other malformed line
    raises :class:`~rama_proxy.flows.FlowFormatError` naming its line number.
    """
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as f:
            yield from _parse_lines(f)
    else:
        yield from _parse_lines(source)


def _parse_lines(lines: Iterable[bytes | str]) -> Iterator[AnyFlow]:
    it = iter(lines)
    pending = next(it, None)
    number = 0
    while pending is not None:
        number += 1
        raw, pending = pending, next(it, None)
        line = raw.encode() if isinstance(raw, str) else raw
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError as e:
            if pending is None and not line.endswith(b"\n"):
                return  # unterminated last line: an append in progress or cut short
            raise FlowFormatError(f"line {number}: invalid JSON") from e
        try:
            yield flow_from_json(doc)
        except FlowFormatError as e:
            raise FlowFormatError(f"line {number}: {e}") from None
