"""Micro-benchmark: a server-role h2 engine answering N "hello" request streams.

Both engines get the same client bytes (prior-knowledge preface, SETTINGS, then
batches of ``--batch`` GET requests, like ``h2load -m10``), and for each
request queue HEADERS + DATA("hello", END_STREAM); the bytes to send are taken
once per batch, as a server writes once per read. Ours (rama_http._h2._engine)
and h2.connection.H2Connection run in the same process, interleaved, and the
median of ``--rounds`` runs is reported.

    .venv/bin/python tools/bench/h2_engine_micro.py [-n 20000] [--rounds 3] [--vary] [--profile]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import h2.config
import h2.connection
import h2.events

from rama_http._h2._engine import H2Engine
from rama_http._h2._events import RequestReceived

REQUEST = [
    (b":method", b"GET"),
    (b":path", b"/"),
    (b":scheme", b"http"),
    (b":authority", b"127.0.0.1:8080"),
    (b"accept", b"*/*"),
    (b"accept-encoding", b"gzip, deflate"),
    (b"user-agent", b"h2load nghttp2/1.59.0"),
]
RESPONSE = [
    (b":status", b"200"),
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", b"5"),
    (b"server", b"rama"),
]
BODY = b"hello"


def client_chunks(n: int, batch: int, *, vary: bool = False) -> list[bytes]:
    """The bytes an h2 client sends for ``n`` requests, one chunk per batch.

    With ``vary`` every request has its own path, so no two header blocks are
    the same (no decoder block cache hits, as with real browsing traffic).
    """
    client = H2Engine(client=True, settings=[(2, 0), (4, 1 << 20)], initial_window_update=1 << 30)
    client.initiate_connection()
    chunks = [client.data_to_send()]
    sid = 1
    for start in range(0, n, batch):
        for _ in range(min(batch, n - start)):
            if vary:
                req = [*REQUEST[:1], (b":path", b"/item/%d?q=%d" % (sid, sid * 7)), *REQUEST[2:]]
                client.send_headers(sid, req, end_stream=True)
            else:
                client.send_headers(sid, REQUEST, end_stream=True)
            sid += 2
        chunks.append(client.data_to_send())
        # Forget the streams (the benchmark never reads the responses).
        client._streams.clear()
        client._local_open = 0
    return chunks


def run_ours(chunks: list[bytes]) -> int:
    """Serve every request with the rama engine; return the response bytes written."""
    conn = H2Engine(client=False, settings=[(3, 100), (4, 1 << 20)])
    conn.initiate_connection()
    written = len(conn.data_to_send())
    send_headers = conn.send_headers
    send_data = conn.send_data
    for chunk in chunks:
        for ev in conn.receive_data(chunk):
            if type(ev) is RequestReceived:
                sid = ev.stream_id
                send_headers(sid, RESPONSE)
                send_data(sid, BODY, end_stream=True)
        written += len(conn.data_to_send())
    return written


def run_h2(chunks: list[bytes]) -> int:
    """The same with the h2 library."""
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding=None)
    )
    conn.local_settings.max_concurrent_streams = 100
    conn.initiate_connection()
    written = len(conn.data_to_send())
    for chunk in chunks:
        for ev in conn.receive_data(chunk):
            if isinstance(ev, h2.events.RequestReceived):
                sid = ev.stream_id
                conn.send_headers(sid, RESPONSE)
                conn.send_data(sid, BODY, end_stream=True)
        written += len(conn.data_to_send())
    return written


def timed(fn: Callable[[list[bytes]], int], chunks: list[bytes]) -> float:
    t0 = time.perf_counter()
    fn(chunks)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=20000, help="requests per run")
    ap.add_argument("--batch", type=int, default=10, help="requests per read")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--vary", action="store_true", help="a different :path per request")
    ap.add_argument("--profile", action="store_true", help="pyinstrument our engine")
    args = ap.parse_args()
    chunks = client_chunks(args.n, args.batch, vary=args.vary)
    if args.profile:
        from pyinstrument import Profiler

        with Profiler() as prof:
            run_ours(chunks)
        prof.print()
        return
    run_ours(chunks[: len(chunks) // 10])
    run_h2(chunks[: len(chunks) // 10])
    ours: list[float] = []
    ref: list[float] = []
    for _ in range(args.rounds):
        ours.append(timed(run_ours, chunks))
        ref.append(timed(run_h2, chunks))
    o, r = statistics.median(ours), statistics.median(ref)
    kind = "distinct paths" if args.vary else "identical requests"
    print(f"{args.n} {kind} per run, batch {args.batch}, rounds {args.rounds} (medians)")
    print(f"rama engine : {args.n / o:10.0f} req/s  ({o * 1e6 / args.n:6.1f} us/req)")
    print(f"h2 library  : {args.n / r:10.0f} req/s  ({r * 1e6 / args.n:6.1f} us/req)")
    print(f"speed-up    : {r / o:.1f}x")


if __name__ == "__main__":
    main()
