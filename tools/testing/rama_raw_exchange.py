"""One raw exchange with a server over loopback TCP, for tests that check bytes.

:func:`exchange` sends a request (whole, or cut at given offsets with a short
pause between the pieces), optionally half-closes, and reads until the server
closes, within a bound. :func:`normalize_date` blanks every ``Date`` value so
two answers sent at different seconds compare equal.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import anyio

__all__ = ["exchange", "normalize_date"]

_DATE = re.compile(rb"(?im)^(date: )[^\r\n]*")


async def exchange(
    port: int,
    data: bytes,
    *,
    eof: bool = False,
    bound: float = 5.0,
    cuts: Sequence[int] = (),
    host: str = "127.0.0.1",
) -> bytes:
    """Send ``data`` (in pieces at ``cuts``), read until the server closes; fails past ``bound``."""
    out = b""
    with anyio.fail_after(bound):
        async with await anyio.connect_tcp(host, port) as s:
            last = 0
            for c in [*sorted(set(cuts)), len(data)]:
                if c > last:
                    await s.send(data[last:c])
                    if c < len(data):
                        await anyio.sleep(0.001)
                    last = c
            if eof:
                await s.send_eof()
            try:
                async for chunk in s:
                    out += chunk
            except anyio.BrokenResourceError:
                pass
    return out


def normalize_date(data: bytes) -> bytes:
    """``data`` with every Date field's value replaced by ``<date>``."""
    return _DATE.sub(rb"\1<date>", data)
