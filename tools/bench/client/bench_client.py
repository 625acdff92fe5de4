"""HTTP client benchmark: rama vs httpx, aiohttp and requests against one server on loopback.

``python bench_client.py --http URL --https URL --h2 URL --cafile CA.pem``
(the servers serve ``/small`` and ``/1m``; ``--h2`` speaks h2 over TLS). Each
row: sequential GETs and 50 concurrent GETs of a small and a 1 MiB body, over
HTTP/1.1 in cleartext and TLS, and h2 over TLS. Each client gets the same
number of requests, the median of 5 runs is reported in requests per second
(the clients take turns, round by round), and the ratios rama/other; a
second table gives each client's CPU time per request in this process (less
sensitive than the rates to other load on a shared machine). Where a
client cannot take part the cell is ``-``: aiohttp has no h2, and requests
(urllib3 underneath, synchronous) runs the sequential rows only.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import requests
import requests.adapters

from rama_http.client import HttpClient, Limits
from rama_tls import TlsClientConfig

Fetch = Callable[[str], Awaitable[int]]


async def _run(fetch: Fetch, url: str, total: int, concurrency: int) -> tuple[float, float]:
    """Requests per second, and this process's CPU microseconds per request."""
    await fetch(url)  # warm the pool
    left = total

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await fetch(url)

    start = time.perf_counter()
    cpu = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - start), (time.process_time() - cpu) / total * 1e6


Client = tuple[Fetch, Callable[[], Awaitable[None]]]


async def _rama(cafile: str, h2: bool) -> Client:
    ca = Path(cafile).read_bytes()  # noqa: ASYNC240 - once, before timing
    c = HttpClient(
        tls=TlsClientConfig(ca_pem=ca),
        limits=Limits(max_connections_per_host=50),
        cookies=False,
        http2=h2,
    )

    async def fetch(url: str) -> int:
        r = await c.get(url)
        return len(r.content)

    return fetch, c.aclose


async def _httpx(cafile: str, h2: bool) -> Client:
    c = httpx.AsyncClient(
        verify=ssl.create_default_context(cafile=cafile),
        limits=httpx.Limits(max_connections=50),
        http2=h2,
    )

    async def fetch(url: str) -> int:
        r = await c.get(url)
        return len(r.content)

    return fetch, c.aclose


async def _aiohttp(cafile: str, h2: bool) -> Client:
    import aiohttp  # only the bench installs it

    sslctx = ssl.create_default_context(cafile=cafile)
    s = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=50, ssl=sslctx))

    async def fetch(url: str) -> int:
        async with s.get(url) as r:
            return len(await r.read())

    return fetch, s.close


class _ContextAdapter(requests.adapters.HTTPAdapter):
    """requests with the same SSLContext the other clients get."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self._ctx = ctx
        super().__init__(pool_maxsize=1)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._ctx
        super().init_poolmanager(*args, **kwargs)


async def _requests(cafile: str, h2: bool) -> Client:
    session = requests.Session()
    session.mount("https://", _ContextAdapter(ssl.create_default_context(cafile=cafile)))

    async def fetch(url: str) -> int:
        return len(session.get(url).content)  # blocks the loop: sequential rows only

    async def close() -> None:
        session.close()

    return fetch, close


ROUNDS = 5
"""Runs per client and row (interleaved), the median reported."""

CLIENTS = {"rama": _rama, "httpx": _httpx, "aiohttp": _aiohttp, "requests": _requests}
OTHERS = ("httpx", "aiohttp", "requests")


def _takes_part(name: str, proto: str, conc: int) -> bool:
    if name == "aiohttp":
        return proto != "h2"
    if name == "requests":
        return proto != "h2" and conc == 1
    return True


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--http", required=True)
    p.add_argument("--https", required=True)
    p.add_argument("--h2", required=True)
    p.add_argument("--cafile", required=True)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--only", default="", help="comma-separated protocols (while iterating)")
    a = p.parse_args()
    only = set(filter(None, a.only.split(",")))
    rows = []
    cpu_rows = []
    for proto, base in (("http/1.1", a.http), ("https/1.1", a.https), ("h2", a.h2)):
        if only and proto not in only:
            continue
        for size, path, n_seq, n_conc in (
            ("small", "/small", 400, 1500),
            ("1 MiB", "/1m", 40, 200),
        ):
            for conc, n in ((1, n_seq), (50, n_conc)):
                n = max(10, int(n * a.scale))
                names = [name for name in CLIENTS if _takes_part(name, proto, conc)]
                # interleaved rounds (rama, httpx, aiohttp, rama...): load drift on a
                # shared machine hits every client alike
                made = {name: await CLIENTS[name](a.cafile, proto == "h2") for name in names}
                runs: dict[str, list[float]] = {name: [] for name in names}
                cpus: dict[str, list[float]] = {name: [] for name in names}
                try:
                    for _ in range(ROUNDS):
                        for name, (fetch, _close) in made.items():
                            rate, cpu = await _run(fetch, base + path, n, conc)
                            runs[name].append(rate)
                            cpus[name].append(cpu)
                finally:
                    for _fetch, close in made.values():
                        await close()
                rates = {name: statistics.median(r) for name, r in runs.items()}
                rows.append((proto, size, conc, rates))
                cpu_rows.append(
                    (proto, size, conc, {k: statistics.median(v) for k, v in cpus.items()})
                )
    cols = ("rama", *OTHERS, *(f"vs {o}" for o in OTHERS))
    print(f"{'protocol':<10} {'body':<6} {'conc':>4} " + " ".join(f"{c:>11}" for c in cols))
    for proto, size, conc, r in rows:
        cells = [f"{r[c]:>11.0f}" if c in r else f"{'-':>11}" for c in ("rama", *OTHERS)]
        cells += [f"{r['rama'] / r[o]:>10.2f}x" if o in r else f"{'-':>11}" for o in OTHERS]
        print(f"{proto:<10} {size:<6} {conc:>4} " + " ".join(cells))
    print(f"requests per second, median of {ROUNDS} runs; ratios are rama / other")
    print()
    print(f"{'protocol':<10} {'body':<6} {'conc':>4} " + " ".join(f"{c:>11}" for c in cols))
    for proto, size, conc, r in cpu_rows:
        cells = [f"{r[c]:>11.0f}" if c in r else f"{'-':>11}" for c in ("rama", *OTHERS)]
        cells += [f"{r[o] / r['rama']:>10.2f}x" if o in r else f"{'-':>11}" for o in OTHERS]
        print(f"{proto:<10} {size:<6} {conc:>4} " + " ".join(cells))
    print(
        f"client CPU microseconds per request (this process), median of {ROUNDS} runs; ratios are"
        " other / rama (above 1: rama spends less). Steadier than the rates on a loaded machine."
    )


if __name__ == "__main__":
    asyncio.run(main())
