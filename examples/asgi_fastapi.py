"""A FastAPI app served by rama's HTTP server through ``rama_http.asgi.AsgiService``.

Run:  python examples/asgi_fastapi.py [--listen 127.0.0.1:0] [--tls] [--backend asyncio|trio]

It prints ``listening on HOST:PORT`` once it accepts connections, then serves
HTTP/1.1 and h2 (prior knowledge on cleartext; ALPN with ``--tls``, on a
self-signed certificate) until SIGINT or SIGTERM. Shutdown is graceful: the
listener drains, then the app's lifespan shutdown runs; it prints
``stopped (REASON)``.

Routes:

- ``GET /``: a greeting with the HTTP version, from the lifespan state;
- ``GET /items/{item_id}?q=...``: typed path and query parameters (422 when not an int);
- ``POST /items``: a Pydantic body (``{"name": ..., "price": ...}``) -> 201, or 422;
- ``GET /stream?n=N``: N lines, streamed;
- ``GET /whoami``: the client's address and, over TLS, its JA4 fingerprint
  (``scope["extensions"]["tls"]``);
- ``WS /ws``: echoes text messages back, upper-cased.

    curl http://127.0.0.1:PORT/items/3?q=x
    curl --http2-prior-knowledge http://127.0.0.1:PORT/
    python examples/asgi_fastapi.py --tls & curl -k https://127.0.0.1:PORT/whoami
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from rama_core import Shutdown
from rama_http.asgi import AsgiService
from rama_http.server import serve
from rama_net import TcpListener
from rama_tls import StaticCertResolver, TlsAcceptorConfig, self_signed

__all__ = ["Item", "build_app", "main", "run"]


class Item(BaseModel):
    """The body of ``POST /items``."""

    name: str
    price: float


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    """Startup and shutdown: the yielded dict is every request's ``request.state``."""
    yield {"greeting": "hello from FastAPI on rama", "items": []}


def build_app() -> FastAPI:
    """The FastAPI application (plain FastAPI: nothing rama-specific in it)."""
    app = FastAPI(title="rama asgi example", lifespan=lifespan)

    @app.get("/")
    async def index(request: Request) -> dict[str, str]:
        return {"message": request.state.greeting, "http_version": request.scope["http_version"]}

    @app.get("/items/{item_id}")
    async def get_item(item_id: int, q: str | None = None) -> dict[str, Any]:
        return {"item_id": item_id, "q": q}

    @app.post("/items", status_code=201)
    async def create_item(item: Item, request: Request) -> dict[str, Any]:
        items: list[Item] = request.state.items
        items.append(item)
        return {"id": len(items), "name": item.name, "price": item.price}

    @app.get("/stream")
    async def stream(n: int = 3) -> StreamingResponse:
        async def lines() -> AsyncIterator[bytes]:
            for i in range(min(n, 10_000)):
                yield f"line {i}\n".encode()
                await anyio.sleep(0)

        return StreamingResponse(lines(), media_type="text/plain")

    @app.get("/whoami")
    async def whoami(request: Request) -> dict[str, Any]:
        tls = request.scope.get("extensions", {}).get("tls")
        client = request.client
        return {
            "client": client.host if client is not None else None,
            "scheme": request.url.scheme,
            "ja4": tls["ja4"] if tls else None,
        }

    @app.websocket("/ws")
    async def ws_echo(ws: WebSocket) -> None:
        await ws.accept()
        try:
            while True:
                await ws.send_text((await ws.receive_text()).upper())
        except WebSocketDisconnect:
            pass

    return app


async def run(listen: str, use_tls: bool, grace: float) -> None:
    """Serve until a signal asks to stop."""
    listener = TcpListener.bind(listen)
    tls = None
    if use_tls:
        tls = TlsAcceptorConfig(resolver=StaticCertResolver(default=self_signed("localhost")))
    async with AsgiService(build_app()) as service:  # lifespan startup; shutdown on exit
        async with Shutdown(grace=grace) as shutdown:
            # serve() joins the Shutdown: on a signal it drains, then returns
            shutdown.spawn(partial(serve, listener, service, tls=tls), name="http")
            print(f"listening on {listener.local_addr}", flush=True)
    print(f"stopped ({shutdown.outcome})", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description="FastAPI on rama (rama-http example)")
    parser.add_argument("--listen", default="127.0.0.1:0", help="host:port (port 0: any)")
    parser.add_argument("--tls", action="store_true", help="TLS with a self-signed certificate")
    parser.add_argument("--grace", type=float, default=5.0, help="drain seconds on shutdown")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args(argv)
    anyio.run(run, args.listen, args.tls, args.grace, backend=args.backend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
