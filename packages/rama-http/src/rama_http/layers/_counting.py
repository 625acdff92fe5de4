"""A response body that reports its size and outcome once it has been sent."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from .._body import Body

__all__ = ["counted_body"]

Done = Callable[[int, BaseException | None], None]


def counted_body(body: Body, done: Done) -> Body:
    """``body`` re-streamed, calling ``done(bytes_sent, error)`` exactly once at its end.

    A body already in memory is reported at once (its size is known and the
    server sends it in one write).
    """
    now = body.bytes_now()
    if now is not None:
        done(len(now), None)
        return body
    return Body.from_iter(_counting(body, done), length=body.length, trailers=body.trailers)


async def _counting(body: Body, done: Done) -> AsyncIterator[bytes]:
    sent = 0
    error: BaseException | None = None
    try:
        async for chunk in body:
            sent += len(chunk)
            yield chunk
    except BaseException as e:
        error = e
        raise
    finally:
        done(sent, error)
        await body.aclose()
