"""A small JSON API with rama's router and typed handlers.

Run:  python examples/web_router.py [--listen 127.0.0.1:0]

It prints ``listening on HOST:PORT``, then serves until SIGINT or SIGTERM.

Routes:

- ``GET /``: a greeting from the app state;
- ``GET /items`` and ``GET /items?tag=x&limit=2``: the items, filtered (typed query);
- ``POST /items``: a JSON item (``{"name": ..., "price": ...}``) -> 201, or 422 naming the field;
- ``GET /items/{id:int}``: one item or 404;
- ``DELETE /items/{id:int}`` with ``X-Token: secret``: 204;
- ``/api/v1/...``: the same routes (and store) nested under a prefix.

What it shows: handlers are plain async functions; their parameters are
extracted by type (``Json[T]``, ``Query[T]``, ``State[T]``, a ``Header``, a
path parameter by name) and what they return becomes the response.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Annotated, NotRequired, TypedDict

import anyio

from rama_core import Shutdown
from rama_http import Response
from rama_http.server import HttpServer
from rama_http.web import Header, Json, Query, Router, State
from rama_net import TcpListener

__all__ = ["build_router", "item_routes", "main"]


@dataclass
class NewItem:
    """The body of ``POST /items``."""

    name: str
    price: float
    tags: list[str] = field(default_factory=list)


@dataclass
class Item(NewItem):
    """A stored item."""

    id: int = 0


class ItemQuery(TypedDict):
    """The query of ``GET /items``."""

    tag: NotRequired[str]
    limit: NotRequired[int]


@dataclass
class Store:
    """The app state: items in memory."""

    greeting: str
    items: dict[int, Item] = field(default_factory=dict)
    last_id: int = 0


def build_router(store: Store) -> Router:
    """The routes (see module docs), also nested under ``/api/v1``."""
    root = item_routes(store)
    root.nest("/api/v1", item_routes(store))
    return root


def item_routes(store: Store) -> Router:
    """The item API over ``store``."""
    items = Router(state=store)

    @items.get("/")
    async def index(store: State[Store]) -> str:
        return f"{store.greeting}\n"

    @items.get("/items")
    async def list_items(store: State[Store], q: Query[ItemQuery]) -> list[dict[str, object]]:
        found = [i for i in store.items.values() if "tag" not in q or q["tag"] in i.tags]
        return [asdict(i) for i in found[: q.get("limit", len(found))]]

    @items.post("/items")
    async def create(store: State[Store], new: Json[NewItem]) -> tuple[int, Item]:
        store.last_id += 1
        item = Item(new.name, new.price, new.tags, id=store.last_id)
        store.items[item.id] = item
        return 201, item

    @items.get("/items/{id:int}")
    async def one(store: State[Store], id: int) -> Item | Response:
        item = store.items.get(id)
        return item if item is not None else Response.from_json({"error": "no such item"}, 404)

    @items.delete("/items/{id:int}")
    async def remove(
        store: State[Store], id: int, token: Annotated[str, Header("x-token")]
    ) -> Response | None:
        if token != "secret":
            return Response.from_json({"error": "bad token"}, 403)
        store.items.pop(id, None)
        return None

    return items


async def run(listen: str) -> None:
    """Serve until a signal asks to stop."""
    listener = TcpListener.bind(listen)
    router = build_router(Store("hello from rama"))
    async with Shutdown(grace=2.0) as shutdown:
        shutdown.spawn(listener.serve, HttpServer(router))
        print(f"listening on {listener.local_addr}", flush=True)
    print(f"stopped ({shutdown.outcome})", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description="JSON API with rama's router")
    parser.add_argument("--listen", default="127.0.0.1:0", help="host:port (port 0: any)")
    args = parser.parse_args(argv)
    anyio.run(run, args.listen)
    return 0


if __name__ == "__main__":
    sys.exit(main())
