"""HTTP client benchmark: rama vs httpx vs aiohttp against one server on loopback.

``python bench_client.py --http URL_BASE --https URL_BASE --cafile CA.pem``
(the server serves ``/small`` and ``/1m``). Each row: sequential GETs and 50
concurrent GETs of a small and a 1 MiB body, HTTP/1.1 in cleartext and over
TLS; each client gets the same number of requests, the median of 3 runs is
reported in requests per second (the clients take turns, round by round), and
the ratios rama/httpx and rama/aiohttp.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from rama_http.client import HttpClient, Limits
from rama_tls import TlsClientConfig

Fetch = Callable[[str], Awaitable[int]]


async def _run(fetch: Fetch, url: str, total: int, concurrency: int) -> float:
    await fetch(url)  # warm the pool
    left = total

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await fetch(url)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - start)


async def _rama(cafile: str) -> tuple[Fetch, Callable[[], Awaitable[None]]]:
    ca = Path(cafile).read_bytes()  # noqa: ASYNC240 - once, before timing
    c = HttpClient(
        tls=TlsClientConfig(ca_pem=ca), limits=Limits(max_connections_per_host=50), cookies=False
    )

    async def fetch(url: str) -> int:
        r = await c.get(url)
        return len(r.content)

    return fetch, c.aclose


async def _httpx(cafile: str) -> tuple[Fetch, Callable[[], Awaitable[None]]]:
    c = httpx.AsyncClient(
        verify=ssl.create_default_context(cafile=cafile), limits=httpx.Limits(max_connections=50)
    )

    async def fetch(url: str) -> int:
        r = await c.get(url)
        return len(r.content)

    return fetch, c.aclose


async def _aiohttp(cafile: str) -> tuple[Fetch, Callable[[], Awaitable[None]]]:
    import aiohttp  # only the bench installs it

    sslctx = ssl.create_default_context(cafile=cafile)
    s = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=50, ssl=sslctx))

    async def fetch(url: str) -> int:
        async with s.get(url) as r:
            return len(await r.read())

    return fetch, s.close


CLIENTS = {"rama": _rama, "httpx": _httpx, "aiohttp": _aiohttp}


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--http", required=True)
    p.add_argument("--https", required=True)
    p.add_argument("--cafile", required=True)
    p.add_argument("--scale", type=float, default=1.0)
    a = p.parse_args()
    rows = []
    for proto, base in (("http/1.1", a.http), ("https/1.1", a.https)):
        for size, path, n_seq, n_conc in (
            ("small", "/small", 400, 1500),
            ("1 MiB", "/1m", 40, 200),
        ):
            for conc, n in ((1, n_seq), (50, n_conc)):
                n = max(10, int(n * a.scale))
                # interleaved rounds (rama, httpx, aiohttp, rama...): load drift on a
                # shared machine hits every client alike
                made = {name: await make(a.cafile) for name, make in CLIENTS.items()}
                runs: dict[str, list[float]] = {name: [] for name in CLIENTS}
                try:
                    for _ in range(3):
                        for name, (fetch, _close) in made.items():
                            runs[name].append(await _run(fetch, base + path, n, conc))
                finally:
                    for _fetch, close in made.values():
                        await close()
                rates = {name: statistics.median(r) for name, r in runs.items()}
                rows.append((proto, size, conc, rates))
    cols = ("rama", "httpx", "aiohttp", "vs httpx", "vs aiohttp")
    print(f"{'protocol':<10} {'body':<6} {'conc':>4} " + " ".join(f"{c:>10}" for c in cols))
    for proto, size, conc, r in rows:
        rates = " ".join(f"{r[c]:>10.0f}" for c in ("rama", "httpx", "aiohttp"))
        ratios = f"{r['rama'] / r['httpx']:>9.2f}x {r['rama'] / r['aiohttp']:>9.2f}x"
        print(f"{proto:<10} {size:<6} {conc:>4} {rates} {ratios}")
    print("requests per second, median of 3 runs; ratios are rama / other")


if __name__ == "__main__":
    asyncio.run(main())
