"""The rama MITM under bench: an HttpProxy handing every CONNECT to a MitmProxy.

Usage: python rama_mitm.py PORT CA_CERT CA_KEY UPSTREAM_CA [--no-record] [--loop uvloop|asyncio]

Records every flow in a FlowRecordingObserver's in-memory store (10,000 flows
kept, bodies captured up to 64 KiB), as mitmdump keeps a flow object per
request; ``--no-record`` runs without an observer, ``--noop-observer`` with one that does
nothing (what observing costs the relay, apart from recording). Prints ``ready`` once listening.
"""

from __future__ import annotations

import argparse

import anyio

from rama_http.server import HttpServer
from rama_net import TcpListener
from rama_proxy import HttpProxy
from rama_proxy.flows import FlowRecorder, FlowStore
from rama_proxy.mitm import FlowRecordingObserver, MitmObserver, MitmProxy
from rama_tls import CertificateAuthority


async def main(args: argparse.Namespace) -> None:
    ca = CertificateAuthority.load(args.ca_cert, args.ca_key)
    observer: MitmObserver | None = None
    if args.noop_observer:
        observer = MitmObserver()
    elif not args.no_record:
        recorder = FlowRecorder(FlowStore(max_flows=10_000), capture_limit=64 * 1024)
        observer = FlowRecordingObserver(recorder)
    async with observer if isinstance(observer, FlowRecordingObserver) else _Null():
        mitm = MitmProxy(ca, upstream_ca=args.upstream_ca, observer=observer)
        proxy = HttpProxy(connect_policy=mitm.connect_policy())
        listener = TcpListener.bind(f"127.0.0.1:{args.port}", backlog=4096)
        print("ready", flush=True)
        await listener.serve(HttpServer(proxy))


class _Null:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("ca_cert")
    p.add_argument("ca_key")
    p.add_argument("upstream_ca")
    p.add_argument("--no-record", action="store_true")
    p.add_argument("--noop-observer", action="store_true", help="an observer that does nothing")
    p.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    a = p.parse_args()
    anyio.run(main, a, backend="asyncio", backend_options={"use_uvloop": a.loop == "uvloop"})
