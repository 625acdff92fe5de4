"""A WebSocket echo server (HTTP/1.1 Upgrade and h2 extended CONNECT) with a test page.

Run:  python examples/websocket_echo.py [--listen 127.0.0.1:0]

It prints ``listening on HOST:PORT``, then serves until SIGINT or SIGTERM.
``GET /`` is a small page that talks to ``/ws``; ``/ws`` echoes every text and
binary message, answers ``stats`` with the counts so far as JSON, and closes
with code 4000 on ``bye``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import anyio

from rama_core import Shutdown
from rama_http import Response
from rama_http.server import HttpServer
from rama_http.web import Router
from rama_http.ws import WebSocket, WebSocketConfig, WebSocketUpgrade
from rama_net import TcpListener

__all__ = ["build", "echo", "main"]

PAGE = """<!doctype html><meta charset=utf-8><title>rama ws echo</title>
<pre id=log></pre><script>
const ws = new WebSocket(location.origin.replace("http", "ws") + "/ws");
ws.onopen = () => ws.send("hello from the page");
ws.onmessage = (e) => { document.getElementById("log").textContent += e.data + "\\n"; };
</script>
"""


async def echo(ws: WebSocket) -> None:
    """Echo messages; ``stats`` reports counts, ``bye`` closes with 4000."""
    texts = binaries = 0
    async for message in ws:
        if message == "bye":
            await ws.close(4000, "bye")
            return
        if message == "stats":
            await ws.send(json.dumps({"text": texts, "binary": binaries}))
            continue
        if isinstance(message, str):
            texts += 1
        else:
            binaries += 1
        await ws.send(message)


def build() -> Router:
    """``/`` (the page) and ``/ws`` (the echo)."""
    router = Router()

    @router.get("/")
    async def page() -> Response:
        return Response.from_text(PAGE, content_type="text/html; charset=utf-8")

    upgrade = WebSocketUpgrade(echo, config=WebSocketConfig(max_message_size=4 << 20))
    router.route("/ws", upgrade, methods=["GET", "CONNECT"])
    return router


async def run(listen: str) -> None:
    """Serve until a signal asks to stop."""
    listener = TcpListener.bind(listen)
    async with Shutdown(grace=2.0) as shutdown:
        shutdown.spawn(listener.serve, HttpServer(build()))
        print(f"listening on {listener.local_addr}", flush=True)
    print(f"stopped ({shutdown.outcome})", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description="WebSocket echo (rama-http example)")
    parser.add_argument("--listen", default="127.0.0.1:0", help="host:port (port 0: any)")
    args = parser.parse_args(argv)
    anyio.run(run, args.listen)
    return 0


if __name__ == "__main__":
    sys.exit(main())
