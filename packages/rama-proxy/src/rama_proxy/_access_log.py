"""The JSON-lines access log: one line per proxied request or tunnel.

An :class:`AccessLog` is a :class:`~rama_proxy.ProxyObserver`: register it in
the Context (``ctx.insert(ProxyObservers(AccessLog("-")))``) and every
finished :class:`~rama_proxy.ProxyRecord` becomes one JSON object on its own
line::

    {"ts":1764633600.123,"protocol":"connect","client":"127.0.0.1:51234","user":"john",
     "method":"CONNECT","target":"example.com:443","upstream":null,"status":200,
     "bytes_in":517,"bytes_out":4711,"duration":0.25,"connect_time":0.01,"error":null}

Each line is written with one ``write`` call and flushed at once, so lines of
several worker processes appending to the same file never interleave (the
file is opened with ``O_APPEND``), and a ``tail -f`` sees each record when it
ends. Values are JSON-escaped (ASCII only): a client's bytes cannot forge a
line. A failing write (disk full, closed pipe) is logged (rate-limited) and
never reaches the proxy.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from typing import IO

from rama_net import RateLimitedLog

from ._record import ProxyRecord

__all__ = ["AccessLog"]

_log = logging.getLogger("rama.proxy.access_log")


class AccessLog:
    """A :class:`~rama_proxy.ProxyObserver` writing one JSON line per finished record.

    ``target`` is ``"-"`` (standard output), a path (opened for appending,
    created if missing) or an open text stream (not closed by :meth:`close`).
    """

    def __init__(self, target: str | os.PathLike[str] | IO[str] = "-") -> None:
        self._owned = False
        if isinstance(target, str | os.PathLike):
            if str(target) == "-":
                self._out: IO[str] = sys.stdout
                self.name = "-"
            else:
                self._out = open(target, "a", encoding="ascii", buffering=1)  # noqa: SIM115
                self._owned = True
                self.name = os.fspath(target)
        else:
            self._out = target
            self.name = getattr(target, "name", repr(target))
        self._lock = threading.Lock()
        self._errors = RateLimitedLog(_log, 10.0)
        self._encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True)

    def started(self, record: ProxyRecord) -> None:
        """Nothing is logged when a request begins."""

    def finished(self, record: ProxyRecord) -> None:
        """Write ``record`` as one line and flush it."""
        line = self._encoder.encode(record.to_json()) + "\n"
        try:
            with self._lock:
                self._out.write(line)
                self._out.flush()
        except (OSError, ValueError) as exc:  # ValueError: a closed file
            self._errors.log(logging.WARNING, "access log %s: write failed: %s", self.name, exc)

    def close(self) -> None:
        """Close the file if this log opened it (a stream passed in is left open)."""
        if self._owned and not self._out.closed:
            self._out.close()

    def __repr__(self) -> str:
        return f"AccessLog({self.name!r})"
