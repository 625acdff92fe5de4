"""Router and typed handlers over a real rama server, driven by httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import Annotated, Literal, NotRequired, TypedDict

import anyio
import httpx
import pytest

from rama_core import Context, service_fn
from rama_http import Request, Response
from rama_http.server import serve
from rama_http.web import (
    Form,
    Header,
    Json,
    MatchedRoute,
    PathParams,
    Query,
    Router,
    State,
    handler,
)
from rama_net import TcpListener

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def running(router: Router) -> AsyncIterator[httpx.AsyncClient]:
    listener = TcpListener.bind("127.0.0.1:0")
    port = listener.local_addr.port
    async with anyio.create_task_group() as tg:
        tg.start_soon(serve, listener, router)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            yield client
        tg.cancel_scope.cancel()


class Color(Enum):
    RED = "red"
    BLUE = "blue"


@dataclass
class Item:
    name: str
    price: float
    tags: list[str] = field(default_factory=list)
    color: Color = Color.RED


class Search(TypedDict):
    q: str
    limit: NotRequired[int]
    sort: NotRequired[Literal["asc", "desc"]]


@dataclass
class Login:
    user: str
    remember: bool = False


@dataclass
class Config:
    greeting: str


def build() -> Router:
    router = Router(state=Config("hello"))

    @router.get("/users/{id:int}")
    async def user(id: int, ctx: Context) -> dict[str, object]:
        route = ctx.require(MatchedRoute)
        return {"id": id, "route": route.pattern, "params": dict(ctx.require(PathParams))}

    @router.get("/greet/{name}")
    async def greet(name: str, cfg: State[Config], times: int = 1) -> str:
        return f"{cfg.greeting} {name}" * times

    @router.post("/shops/{shop:int}/items")
    async def create(
        shop: int, item: Json[Item], token: Annotated[str, Header("x-token")]
    ) -> tuple[int, dict[str, object]]:
        return 201, {"shop": shop, "name": item.name, "tags": item.tags, "color": item.color.value}

    @router.get("/search")
    async def search(q: Query[Search]) -> dict[str, object]:
        return dict(q)

    @router.post("/login")
    async def login(form: Form[Login]) -> dict[str, object]:
        return {"user": form.user, "remember": form.remember}

    @router.put("/raw")
    async def raw(body: bytes, req: Request) -> bytes:
        return req.method.encode() + b":" + body

    @router.get("/stream")
    async def stream() -> AsyncIterator[bytes]:
        async def gen() -> AsyncIterator[bytes]:
            for i in range(3):
                yield f"chunk{i};".encode()

        return gen()

    @router.delete("/things/{id}")
    async def remove(id: str) -> None:
        return None

    @router.get("/ids")
    async def ids(id: list[int]) -> list[int]:
        return id

    @router.get("/opt")
    async def opt(n: int | None = None) -> dict[str, int | None]:
        return {"n": n}

    api = Router()

    @api.get("/")
    async def api_root() -> str:
        return "api root"

    @api.get("/v/{x}")
    async def api_v(x: str) -> str:
        return f"v={x}"

    @service_fn
    async def api_fallback(ctx: Context, req: Request) -> Response:
        return Response.from_text(f"api fallback {req.path}", 404)

    api.fallback(api_fallback)
    router.nest("/api", api)
    return router


async def test_path_params_typed_and_route_recorded() -> None:
    async with running(build()) as c:
        r = await c.get("/users/42")
        assert r.status_code == 200
        assert r.json() == {"id": 42, "route": "/users/{id:int}", "params": {"id": 42}}
        assert (await c.get("/users/abc")).status_code == 404


async def test_state_and_query_scalar_with_default() -> None:
    async with running(build()) as c:
        assert (await c.get("/greet/bob")).text == "hello bob"
        assert (await c.get("/greet/bob?times=2")).text == "hello bobhello bob"
        r = await c.get("/greet/bob?times=x")
        assert r.status_code == 422
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["errors"] == [{"field": "query.times", "message": "must be an integer"}]


async def test_json_body_header_and_201() -> None:
    async with running(build()) as c:
        r = await c.post(
            "/shops/7/items",
            json={"name": "pen", "price": 1, "tags": ["a"], "color": "blue"},
            headers={"x-token": "t"},
        )
        assert r.status_code == 201
        assert r.json() == {"shop": 7, "name": "pen", "tags": ["a"], "color": "blue"}


async def test_json_errors_400_415_422() -> None:
    async with running(build()) as c:
        h = {"x-token": "t"}
        r = await c.post(
            "/shops/7/items", content=b"{bad", headers={**h, "content-type": "application/json"}
        )
        assert r.status_code == 400
        assert "malformed JSON" in r.json()["detail"]
        r = await c.post("/shops/7/items", content=b"name=x", headers=h)
        assert r.status_code == 415
        r = await c.post("/shops/7/items", json={"name": 3, "tags": [1], "extra": 0}, headers=h)
        assert r.status_code == 422
        fields = {e["field"]: e["message"] for e in r.json()["errors"]}
        assert fields == {
            "body.name": "must be a string",
            "body.price": "field required",
            "body.tags[0]": "must be a string",
            "body.extra": "unknown field",
        }
        r = await c.post("/shops/7/items", json={"name": "pen", "price": 1})
        assert r.status_code == 422
        assert r.json()["errors"] == [{"field": "header.x-token", "message": "field required"}]


async def test_typed_query_typeddict() -> None:
    async with running(build()) as c:
        r = await c.get("/search", params={"q": "x", "limit": "5", "sort": "asc"})
        assert r.json() == {"q": "x", "limit": 5, "sort": "asc"}
        r = await c.get("/search", params={"limit": "5", "sort": "up"})
        assert r.status_code == 422
        fields = {e["field"] for e in r.json()["errors"]}
        assert fields == {"query.q", "query.sort"}


async def test_form_body() -> None:
    async with running(build()) as c:
        r = await c.post("/login", data={"user": "ann", "remember": "on"})
        assert r.json() == {"user": "ann", "remember": True}
        r = await c.post("/login", json={"user": "ann"})
        assert r.status_code == 415


async def test_raw_body_stream_none_lists_and_optional() -> None:
    async with running(build()) as c:
        assert (await c.put("/raw", content=b"abc")).content == b"PUT:abc"
        assert (await c.get("/stream")).content == b"chunk0;chunk1;chunk2;"
        r = await c.delete("/things/1")
        assert r.status_code == 204
        assert (await c.get("/ids?id=1&id=2&id=3")).json() == [1, 2, 3]
        assert (await c.get("/opt")).json() == {"n": None}
        assert (await c.get("/opt?n=4")).json() == {"n": 4}


async def test_405_allow_head_and_options() -> None:
    async with running(build()) as c:
        r = await c.post("/users/1")
        assert r.status_code == 405
        assert r.headers["allow"] == "GET, HEAD, OPTIONS"
        r = await c.head("/users/1")
        assert r.status_code == 200
        assert r.content == b""
        assert int(r.headers["content-length"]) > 0
        r = await c.options("/users/1")
        assert r.status_code == 204
        assert r.headers["allow"] == "GET, HEAD, OPTIONS"


async def test_nesting_and_fallbacks() -> None:
    async with running(build()) as c:
        assert (await c.get("/api")).text == "api root"
        assert (await c.get("/api/v/9")).text == "v=9"
        r = await c.get("/api/nothing/here")
        assert r.status_code == 404
        assert r.text == "api fallback /api/nothing/here"
        r = await c.get("/nowhere")
        assert r.status_code == 404
        assert r.json()["title"] == "Not Found"


async def test_body_limit_413() -> None:
    router = Router()

    async def up(body: bytes) -> str:
        return str(len(body))

    router.route("/small", handler(up, body_limit=4), methods=["POST"])
    async with running(router) as c:
        assert (await c.post("/small", content=b"1234")).text == "4"
        assert (await c.post("/small", content=b"12345")).status_code == 413


def test_registration_errors() -> None:
    router = Router()

    async def two_bodies(a: bytes, b: Json[Item]) -> None: ...

    with pytest.raises(TypeError, match="only one parameter"):
        router.route("/x", two_bodies)

    def sync(a: int) -> None: ...

    with pytest.raises(TypeError, match="async"):
        router.route("/y", sync)  # type: ignore[arg-type]

    async def ok() -> str:
        return ""

    router.route("/z", ok, methods=["GET"])
    with pytest.raises(ValueError, match="already registered"):
        router.route("/z", ok, methods=["get"])
