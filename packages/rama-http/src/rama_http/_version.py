"""HTTP protocol versions."""

from __future__ import annotations

import enum

__all__ = ["Version"]


class Version(enum.Enum):
    """An HTTP version; ``str(v)`` is the wire form (``HTTP/1.1``)."""

    HTTP_09 = "HTTP/0.9"
    HTTP_10 = "HTTP/1.0"
    HTTP_11 = "HTTP/1.1"
    HTTP_2 = "HTTP/2"
    HTTP_3 = "HTTP/3"

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parse ``HTTP/1.1``, ``1.1``, ``HTTP/2.0``, ``h2``, ``h3`` and similar."""
        t = text.strip().upper()
        if t.startswith("HTTP/"):
            t = t[5:]
        t = {"2.0": "2", "3.0": "3", "H2": "2", "H3": "3", "H2C": "2"}.get(t, t)
        for v in cls:
            if v.value[5:] == t:
                return v
        raise ValueError(f"unknown HTTP version {text!r}")

    @property
    def alpn(self) -> str | None:
        """The ALPN protocol id (``http/1.1``, ``h2``, ``h3``), if it has one."""
        return {"HTTP/1.0": "http/1.0", "HTTP/1.1": "http/1.1", "HTTP/2": "h2", "HTTP/3": "h3"}.get(
            self.value
        )

    @property
    def is_http1(self) -> bool:
        """HTTP/0.9, 1.0 or 1.1."""
        return self.value.startswith("HTTP/1") or self is Version.HTTP_09

    def __str__(self) -> str:
        return self.value
