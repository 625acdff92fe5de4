"""The ASGI hello app uvicorn and hypercorn serve in tools/bench/bench_http.sh."""

__all__ = ["app"]


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    """Answer every HTTP request with a 5-byte text/plain ``hello``."""
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"5")],
        }
    )
    await send({"type": "http.response.body", "body": b"hello"})
