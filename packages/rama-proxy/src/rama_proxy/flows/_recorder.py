"""Files for recorded flows: a streaming HAR writer, HAR load/save, and a FlowRecorder
that feeds the store, a JSON-lines file and a HAR file at once (what ``rama serve
proxy --mitm --flows FILE --har FILE`` uses)."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anyio

from ._flow import AnyFlow, BodyCapture, Flow, FlowFormatError
from ._har import _entry, from_har, to_har
from ._store import FlowStore, JsonLinesWriter

__all__ = ["FlowRecorder", "HarWriter", "load_har", "save_har"]

_BIG_LINE = 64 * 1024  # encode and write larger flows in a worker thread


def save_har(
    path: str | os.PathLike[str], flows: Iterable[Flow], *, redact: bool = True, **options: Any
) -> None:
    """Write :func:`to_har` of ``flows`` to ``path`` atomically (mode 0600)."""
    doc = to_har(flows, redact=redact, **options)
    data = json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8")
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_har(path: str | os.PathLike[str]) -> list[Flow]:
    """The flows of a HAR file; a :class:`HarWriter` file cut short (crash) is repaired.

    Entries that were completely written are returned; anything else
    malformed raises :class:`~rama_proxy.flows.FlowFormatError`.
    """
    data = Path(path).read_bytes()
    try:
        return from_har(data)
    except FlowFormatError:
        if not data.startswith(HarWriter.MAGIC):
            raise
    # a HarWriter file without its closing: keep the complete entry lines
    lines = data.split(b"\n")
    kept = [lines[0]]
    for line in lines[1:]:
        body = line.removeprefix(b",")
        if not body.startswith(b"{"):
            break
        try:
            json.loads(body)
        except ValueError:
            break
        kept.append(line)
    return from_har(b"\n".join(kept) + b"\n]}}")


class HarWriter:
    """Writes a HAR file entry by entry, so recording never holds flows in memory.

    Each entry is one line; :meth:`close` writes the closing brackets. A
    file left unclosed by a crash is still read by :func:`load_har`.
    """

    MAGIC = b'{"log":{"version":"1.2",'

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        redact: bool = True,
        decode: bool = True,
        max_decoded: int = 64 << 20,
        creator: tuple[str, str] | None = None,
    ) -> None:
        from .. import __version__

        self.path = Path(path)
        self.redact = redact
        self.decode = decode
        self.max_decoded = max_decoded
        name, version = creator or ("rama", __version__)
        self._f = open(self.path, "wb")  # noqa: SIM115 - closed by close()
        os.chmod(self.path, 0o600)
        creator_json = json.dumps({"name": name, "version": version})
        self._f.write(self.MAGIC + f'"creator":{creator_json},"entries":[\n'.encode())
        self._f.flush()
        self.written = 0
        """Entries written so far."""

    def encode(self, flow: Flow) -> bytes:
        """The line for ``flow`` (with its leading comma after the first)."""
        entry = _entry(flow, self.redact, self.decode, self.max_decoded)
        line = json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return (b"," if self.written else b"") + line + b"\n"

    def write(self, flow: Flow) -> None:
        """Append ``flow`` as an entry."""
        if self._f.closed:
            raise ValueError("the HAR writer is closed")
        self._f.write(self.encode(flow))
        self._f.flush()
        self.written += 1

    async def awrite(self, flow: Flow) -> None:
        """:meth:`write` in a worker thread."""
        await anyio.to_thread.run_sync(self.write, flow)

    def close(self) -> None:
        """Finish the document (idempotent)."""
        if not self._f.closed:
            self._f.write(b"]}}\n")
            self._f.close()

    def __enter__(self) -> HarWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FlowRecorder:
    """Where an interception pipeline reports flows: store, JSON lines, HAR.

    Call :meth:`started` when a request arrives (live viewers see it),
    :meth:`updated` as it progresses (response head, WebSocket messages) and
    :meth:`finished` once it is over: only then is it written to the files
    (one line each). Use :meth:`body_capture` for each body so captures obey
    ``capture_limit``. Large flows are written from a worker thread; the
    event loop is never blocked by big bodies.
    """

    def __init__(
        self,
        store: FlowStore | None = None,
        *,
        jsonl: str | os.PathLike[str] | None = None,
        har: str | os.PathLike[str] | None = None,
        redact_har: bool = True,
        capture_limit: int = 1 << 20,
    ) -> None:
        self.store = store if store is not None else FlowStore()
        self.capture_limit = capture_limit
        self.jsonl = JsonLinesWriter(jsonl) if jsonl is not None else None
        self.har = HarWriter(har, redact=redact_har) if har is not None else None

    def body_capture(self) -> BodyCapture:
        """A :class:`BodyCapture` with this recorder's limit."""
        return BodyCapture(self.capture_limit)

    def started(self, flow: AnyFlow) -> None:
        """A new flow (shown to live viewers right away)."""
        self.store.add(flow)

    def updated(self, flow: AnyFlow) -> None:
        """The flow changed (re-counted in the store, viewers notified)."""
        self.store.update(flow)

    async def finished(self, flow: AnyFlow) -> None:
        """The flow is complete: update the store and append it to the files."""
        self.store.update(flow)
        big = flow.body_bytes > _BIG_LINE
        if self.jsonl is not None:
            if big:
                await self.jsonl.awrite(flow)
            else:
                self.jsonl.write(flow)
        if self.har is not None and isinstance(flow, Flow):
            if big:
                await self.har.awrite(flow)
            else:
                self.har.write(flow)

    def close(self) -> None:
        """Close the files (the HAR gets its closing brackets)."""
        if self.jsonl is not None:
            self.jsonl.close()
        if self.har is not None:
            self.har.close()

    async def __aenter__(self) -> FlowRecorder:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
