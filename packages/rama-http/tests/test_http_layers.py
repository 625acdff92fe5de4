"""The HTTP middleware set over a real rama server, driven by httpx and curl."""

from __future__ import annotations

import base64
import gzip
import json
import logging
import re
import subprocess
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import brotli
import httpx
import pytest
import zstandard
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from rama_core import Context, Service, service_fn
from rama_http import Body, Request, Response
from rama_http.layers import (
    AccessLogLayer,
    AuthenticatedUser,
    BasicAuthLayer,
    BearerAuthLayer,
    BodyLimitLayer,
    CatchFailureLayer,
    CompressionLayer,
    CorsLayer,
    HeaderRule,
    HookLayer,
    HttpTelemetryLayer,
    RateLimitLayer,
    RequestDecompressionLayer,
    RequestId,
    RequestIdLayer,
    SetHeadersLayer,
)
from rama_http.server import serve
from rama_http.web import Router
from rama_net import TcpListener

pytestmark = pytest.mark.anyio

TEXT = ("rama compresses text well. " * 200).encode()


@asynccontextmanager
async def running(service: Service[Request, Response]) -> AsyncIterator[httpx.AsyncClient]:
    listener = TcpListener.bind("127.0.0.1:0")
    async with anyio.create_task_group() as tg:
        tg.start_soon(serve, listener, service)
        base = f"http://127.0.0.1:{listener.local_addr.port}"
        async with httpx.AsyncClient(base_url=base) as client:
            yield client
        tg.cancel_scope.cancel()


@service_fn
async def app(ctx: Context, req: Request) -> Response:
    path = req.path
    if path == "/text":
        return Response.from_text(TEXT.decode(), headers=[("ETag", '"v1"')])
    if path == "/small":
        return Response.from_text("tiny")
    if path == "/png":
        return Response.from_bytes(TEXT, content_type="image/png")
    if path == "/echo":
        body = await req.read()
        return Response.from_bytes(
            body, headers=[("X-Seen-Encoding", req.headers.get("content-encoding", "-"))]
        )
    if path == "/boom":
        raise RuntimeError("secret internals")
    if path == "/who":
        user = ctx.get(AuthenticatedUser)
        return Response.from_text(user.name if user else "-")
    if path == "/rid":
        rid = ctx.require(RequestId)
        return Response.from_text(f"{rid.value}|{req.headers.get('x-request-id')}")
    return Response.from_text("ok")


# -- compression ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("accept", "encoding", "decode"),
    [
        ("gzip", "gzip", gzip.decompress),
        ("deflate", "deflate", zlib.decompress),
        ("br", "br", brotli.decompress),
        ("zstd", "zstd", lambda b: zstandard.ZstdDecompressor().decompressobj().decompress(b)),
        ("gzip;q=0.5, br;q=0.9", "br", brotli.decompress),
        (
            "gzip, br, zstd",
            "zstd",
            lambda b: zstandard.ZstdDecompressor().decompressobj().decompress(b),
        ),
        ("*;q=0.1, zstd;q=0", "br", brotli.decompress),
    ],
)
async def test_compression_negotiated(
    accept: str, encoding: str, decode: Callable[[bytes], bytes]
) -> None:
    async with running(CompressionLayer().layer(app)) as c:
        async with c.stream("GET", "/text", headers={"Accept-Encoding": accept}) as r:
            raw = b"".join([chunk async for chunk in r.aiter_raw()])
        assert r.headers["content-encoding"] == encoding
        assert r.headers["vary"] == "Accept-Encoding"
        assert r.headers["etag"] == 'W/"v1"'
        assert decode(raw) == TEXT
        assert len(raw) < len(TEXT) / 5


async def test_compression_skips(require_peer: Callable[[str], str]) -> None:
    async with running(CompressionLayer().layer(app)) as c:
        for path in ("/small", "/png"):
            r = await c.get(path, headers={"Accept-Encoding": "gzip"})
            assert "content-encoding" not in r.headers, path
        r = await c.get("/text", headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in r.headers
        assert r.content == TEXT
        r = await c.head("/text", headers={"Accept-Encoding": "gzip"})
        assert "content-encoding" not in r.headers
        port = c.base_url.port
    curl = require_peer("curl")
    async with running(CompressionLayer().layer(app)) as c:
        port = c.base_url.port
        out = await anyio.to_thread.run_sync(
            lambda: subprocess.run(
                [curl, "-sS", "--compressed", "-D", "-", f"http://127.0.0.1:{port}/text"],
                capture_output=True,
                timeout=10,
                check=True,
            )
        )
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    assert b"Content-Encoding: " in head
    assert body == TEXT


async def test_compression_streams_chunk_by_chunk() -> None:
    gate = anyio.Event()

    @service_fn
    async def sse(ctx: Context, req: Request) -> Response:
        async def events() -> AsyncIterator[bytes]:
            yield b"data: first\n\n"
            await gate.wait()
            yield b"data: second\n\n"

        return Response(
            200, headers=[("Content-Type", "text/event-stream")], body=Body.from_iter(events())
        )

    async with running(CompressionLayer(min_size=0).layer(sse)) as c:
        async with c.stream("GET", "/", headers={"Accept-Encoding": "gzip"}) as r:
            assert r.headers["content-encoding"] == "gzip"
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            got = b""
            async for chunk in r.aiter_raw():
                got += d.decompress(chunk)
                if b"first" in got and not gate.is_set():
                    gate.set()  # the first event arrived before the stream finished
            assert got == b"data: first\n\ndata: second\n\n"


async def test_request_decompression() -> None:
    svc = RequestDecompressionLayer(max_size=100_000).layer(app)
    async with running(svc) as c:
        r = await c.post("/echo", content=gzip.compress(TEXT), headers={"Content-Encoding": "gzip"})
        assert r.content == TEXT
        assert r.headers["x-seen-encoding"] == "-"
        r = await c.post("/echo", content=brotli.compress(TEXT), headers={"Content-Encoding": "br"})
        assert r.content == TEXT
        bomb = gzip.compress(b"\0" * 1_000_000)
        r = await c.post("/echo", content=bomb, headers={"Content-Encoding": "gzip"})
        assert r.status_code == 413
        r = await c.post("/echo", content=b"x", headers={"Content-Encoding": "lzma"})
        assert r.status_code == 415
        r = await c.post("/echo", content=b"not gzip", headers={"Content-Encoding": "gzip"})
        assert r.status_code == 400


# -- CORS ----------------------------------------------------------------------------------------
async def test_cors_preflight_and_simple() -> None:
    policy = CorsLayer(
        allow_origins=["https://a.test"],
        allow_methods=["GET", "PUT"],
        allow_headers=["x-token"],
        expose_headers=["x-total"],
        allow_credentials=True,
        max_age=60,
    )
    async with running(policy.layer(app)) as c:
        pre = {"Origin": "https://a.test", "Access-Control-Request-Method": "PUT"}
        r = await c.options("/x", headers={**pre, "Access-Control-Request-Headers": "X-Token"})
        assert r.status_code == 204
        assert r.headers["access-control-allow-origin"] == "https://a.test"
        assert r.headers["access-control-allow-methods"] == "GET, PUT"
        assert r.headers["access-control-allow-headers"] == "x-token"
        assert r.headers["access-control-allow-credentials"] == "true"
        assert r.headers["access-control-max-age"] == "60"
        r = await c.options("/x", headers={**pre, "Access-Control-Request-Headers": "x-other"})
        assert r.status_code == 403
        r = await c.options("/x", headers={**pre, "Origin": "https://evil.test"})
        assert r.status_code == 403
        r = await c.get("/x", headers={"Origin": "https://a.test"})
        assert r.headers["access-control-allow-origin"] == "https://a.test"
        assert r.headers["access-control-expose-headers"] == "x-total"
        assert r.headers["vary"] == "Origin"
        r = await c.get("/x", headers={"Origin": "https://evil.test"})
        assert "access-control-allow-origin" not in r.headers
        assert (await c.get("/x")).text == "ok"


async def test_cors_wildcard_and_predicate() -> None:
    async with running(CorsLayer().layer(app)) as c:
        r = await c.get("/x", headers={"Origin": "https://any.test"})
        assert r.headers["access-control-allow-origin"] == "*"
    pred = CorsLayer(allow_origins=lambda o: o.endswith(".corp.test"), allow_headers="*")
    async with running(pred.layer(app)) as c:
        pre = {
            "Origin": "https://x.corp.test",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "a, b",
        }
        r = await c.options("/", headers=pre)
        assert r.headers["access-control-allow-headers"] == "a, b"
        assert (
            await c.options("/", headers={**pre, "Origin": "https://x.test"})
        ).status_code == 403


# -- ids, headers, logs --------------------------------------------------------------------------
async def test_request_id_generate_propagate_replace() -> None:
    async with running(RequestIdLayer().layer(app)) as c:
        r = await c.get("/rid")
        rid = r.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", rid)
        assert r.text == f"{rid}|{rid}"
        r = await c.get("/rid", headers={"X-Request-Id": "abc-123"})
        assert r.text == "abc-123|abc-123"
        r = await c.get("/rid", headers={"X-Request-Id": "x" * 200})
        assert r.headers["x-request-id"] != "x" * 200


async def test_set_headers() -> None:
    layer = SetHeadersLayer(
        request=[HeaderRule("X-From-Edge", "1")],
        response=[
            HeaderRule("Server", "rama-test"),
            HeaderRule("X-Frame-Options", "DENY", "if_missing"),
            HeaderRule("Content-Type", mode="remove"),
            HeaderRule("X-Multi", "a", "append"),
            HeaderRule("X-Multi", "b", "append"),
        ],
    )

    @service_fn
    async def show(ctx: Context, req: Request) -> Response:
        return Response.from_text(req.headers.get("x-from-edge", "-"))

    async with running(layer.layer(show)) as c:
        r = await c.get("/")
        assert r.text == "1"
        assert r.headers["server"] == "rama-test"
        assert r.headers["x-frame-options"] == "DENY"
        assert "content-type" not in r.headers
        assert r.headers.get_list("x-multi") == ["a", "b"]
    with pytest.raises(Exception, match="invalid"):
        HeaderRule("X-Bad", "a\r\nb")


async def test_access_log_json_and_combined() -> None:
    lines: list[str] = []
    async with running(AccessLogLayer("json", write=lines.append).layer(app)) as c:
        await c.get("/text?x=1", headers={"User-Agent": "ua/1"})
        await c.get("/small")
    records = [json.loads(line) for line in lines]
    assert records[0]["method"] == "GET"
    assert records[0]["target"] == "/text?x=1"
    assert records[0]["status"] == 200
    assert records[0]["bytes"] == len(TEXT)
    assert records[0]["user_agent"] == "ua/1"
    assert records[0]["client"] == "127.0.0.1"
    assert records[1]["bytes"] == 4
    lines.clear()
    async with running(AccessLogLayer("combined", write=lines.append).layer(app)) as c:
        await c.get("/small", headers={"Referer": "http://r.test/", "User-Agent": 'say "hi"'})
    assert re.fullmatch(
        r'127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] "GET /small HTTP/1\.1" 200 4 '
        r'"http://r\.test/" "say \\"hi\\""',
        lines[0],
    ), lines[0]


async def test_telemetry_span_and_metrics() -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("t")
    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    router = Router()

    @router.get("/items/{id:int}")
    async def item(id: int) -> str:
        return "x" * id

    svc = HttpTelemetryLayer(meter=meter, tracer=tp.get_tracer("t")).layer(router)
    async with running(svc) as c:
        assert (await c.get("/items/5")).text == "xxxxx"
        assert (await c.get("/nope")).status_code == 404
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["GET /items/{id:int}", "GET"]
    assert spans[0].attributes is not None
    assert spans[0].attributes["http.route"] == "/items/{id:int}"
    assert spans[0].attributes["http.response.status_code"] == 200
    assert spans[0].attributes["url.path"] == "/items/5"
    data = reader.get_metrics_data()
    assert data is not None
    metrics = {
        m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    }
    duration = metrics["http.server.request.duration"]
    routes = {dict(p.attributes or {}).get("http.route") for p in duration.data.data_points}
    assert routes == {"/items/{id:int}", None}
    sizes = {
        dict(p.attributes or {}).get("http.route"): p.sum  # type: ignore[attr-defined]
        for p in metrics["http.server.response.body.size"].data.data_points
    }
    assert sizes["/items/{id:int}"] == 5
    active = metrics["http.server.active_requests"].data.data_points
    assert sum(p.value for p in active) == 0  # type: ignore[attr-defined]


# -- auth, limits, failures, rate, hooks ---------------------------------------------------------
async def test_basic_and_bearer_auth() -> None:
    async with running(BasicAuthLayer({"ann": "s3cret"}).layer(app)) as c:
        r = await c.get("/who")
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == 'Basic realm="rama", charset="UTF-8"'
        assert (await c.get("/who", auth=("ann", "wrong"))).status_code == 401
        assert (await c.get("/who", auth=("bob", "s3cret"))).status_code == 401
        assert (await c.get("/who", auth=("ann", "s3cret"))).text == "ann"
        bad = {"Authorization": "Basic !!!"}
        assert (await c.get("/who", headers=bad)).status_code == 401
        nocolon = {"Authorization": "Basic " + base64.b64encode(b"ann").decode()}
        assert (await c.get("/who", headers=nocolon)).status_code == 401
    async with running(BearerAuthLayer(["t0k"]).layer(app)) as c:
        assert (await c.get("/who")).headers["www-authenticate"] == 'Bearer realm="rama"'
        r = await c.get("/who", headers={"Authorization": "Bearer nope"})
        assert 'error="invalid_token"' in r.headers["www-authenticate"]
        assert (await c.get("/who", headers={"Authorization": "Bearer t0k"})).text == "bearer"


async def test_body_limit() -> None:
    async with running(BodyLimitLayer(10).layer(app)) as c:
        assert (await c.post("/echo", content=b"0123456789")).content == b"0123456789"
        assert (await c.post("/echo", content=b"0123456789X")).status_code == 413

        async def chunks() -> AsyncIterator[bytes]:
            yield b"012345"
            yield b"6789X"

        assert (await c.post("/echo", content=chunks())).status_code == 413


async def test_catch_failure(caplog: pytest.LogCaptureFixture) -> None:
    lines: list[str] = []
    svc = AccessLogLayer("json", write=lines.append).layer(CatchFailureLayer().layer(app))
    with caplog.at_level(logging.ERROR, logger="rama.http.handler"):
        async with running(svc) as c:
            r = await c.get("/boom")
    assert r.status_code == 500
    assert "secret" not in r.text
    assert json.loads(lines[0])["status"] == 500  # the outer layer saw the answer
    errors = [rec for rec in caplog.records if rec.name == "rama.http.handler"]
    assert len(errors) == 1
    assert errors[0].exc_info is not None


async def test_rate_limit() -> None:
    async with running(RateLimitLayer(rate=0.5, burst=2).layer(app)) as c:
        assert (await c.get("/")).status_code == 200
        assert (await c.get("/")).status_code == 200
        r = await c.get("/")
        assert r.status_code == 429
        assert r.headers["retry-after"] == "2"


async def test_hooks_rewrite_and_short_circuit() -> None:
    async def on_request(ctx: Context, req: Request) -> Request | Response | None:
        if req.path == "/blocked":
            return Response.error(403)
        if req.path == "/old":
            return Request("GET", "/small", headers=req.headers)
        return None

    async def on_response(ctx: Context, req: Request, resp: Response) -> Response | None:
        resp.headers.set("X-Hooked", req.path)
        return None

    svc = HookLayer(on_request=on_request, on_response=on_response).layer(app)
    async with running(svc) as c:
        assert (await c.get("/blocked")).status_code == 403
        r = await c.get("/old")
        assert r.text == "tiny"
        assert r.headers["x-hooked"] == "/small"
