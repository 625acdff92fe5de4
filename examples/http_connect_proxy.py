"""An HTTP forward + CONNECT proxy with proxy authentication and username labels.

Run:
    python examples/http_connect_proxy.py [--listen 127.0.0.1:8080] \\
        [--user john:secret]... [--proxy-db proxies.csv] [--allow-connect-ports 443,8443]

then:
    curl -x http://john:secret@127.0.0.1:8080 http://example.com/
    curl -p -x http://john-country-us-residential:secret@127.0.0.1:8080 https://example.com/

Clients authenticate with ``Proxy-Authorization: Basic`` (a missing or wrong
one gets ``407`` and ``Proxy-Authenticate``); the credentials never go
upstream. The username may carry labels after the user's name
(``john-country-us-residential-session-abc``): they authenticate ``john`` and
become the :class:`~rama_proxy.ProxyFilter` that picks the upstream proxy from
the ``--proxy-db`` CSV/JSON file (reloaded when it changes). Without a DB,
requests go direct and the labels are only shown. One line per request is
printed: the user, the labels, the method and target, and the status.
SIGINT/SIGTERM stop accepting and let tunnels in flight finish.
"""

from __future__ import annotations

import argparse
import logging
from contextlib import AsyncExitStack

import anyio

from rama_core import Context, Service, Shutdown, service_fn
from rama_http import Request, Response
from rama_http.server import serve
from rama_net import SocketAddress
from rama_proxy import (
    Egress,
    HttpProxy,
    ProxyAuthenticator,
    ProxyDbFile,
    ProxyDbSelector,
    ProxyUser,
    StaticCredentials,
    UpstreamSelector,
    UsernameLabelParser,
)


def show_each_request(proxy: Service[Request, Response]) -> Service[Request, Response]:
    """Wrap the proxy: after it answered, print who asked for what (labels included)."""

    @service_fn
    async def shown(ctx: Context, req: Request) -> Response:
        resp = await proxy.serve(ctx, req)
        user = ctx.get(ProxyUser)  # the proxy put it in the Context when auth succeeded
        who = f"{user.name} labels=[{user.filter.describe()}]" if user else "-"
        target = req.uri.authority if req.method == "CONNECT" else req.uri
        print(f"{who} {req.method} {target} -> {resp.status}", flush=True)
        return resp

    return shown


def user_pass(text: str) -> tuple[str, str]:
    """``USER:PASS`` from the command line."""
    user, sep, password = text.partition(":")
    if not sep or not user:
        raise argparse.ArgumentTypeError(f"expected USER:PASS, not {text!r}")
    return user, password


async def main(args: argparse.Namespace) -> None:
    """Build the proxy and serve it until SIGINT/SIGTERM."""
    async with AsyncExitStack() as stack:
        selector: UpstreamSelector | None = None
        if args.proxy_db:
            db = await stack.enter_async_context(ProxyDbFile(args.proxy_db))  # hot reload
            selector = ProxyDbSelector(db, mode="random")
        users = dict(args.user or [("john", "secret")])
        authenticator = ProxyAuthenticator(
            StaticCredentials(users), username_parser=UsernameLabelParser(strict=True)
        )
        proxy = HttpProxy(
            egress=Egress(selector=selector),
            authenticator=authenticator,
            allow_connect_ports=args.allow_connect_ports,
        )
        stack.push_async_callback(proxy.aclose)

        def listening(addr: SocketAddress) -> None:
            print(f"listening on {addr}", flush=True)

        async with Shutdown(grace=5):
            await serve(args.listen, show_each_request(proxy), on_listening=listening)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", default="127.0.0.1:8080", help="host:port (port 0: any)")
    p.add_argument(
        "--user", type=user_pass, action="append", help="USER:PASS (default john:secret)"
    )
    p.add_argument("--proxy-db", help="CSV or JSON upstream proxy DB; labels pick from it")
    p.add_argument(
        "--allow-connect-ports",
        type=lambda s: [int(x) for x in s.split(",")],
        help="ports CONNECT may reach, e.g. 443,8443 (default: any)",
    )
    p.add_argument("--backend", default="asyncio", choices=("asyncio", "trio"))
    return p.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    arguments = parse_args()
    anyio.run(main, arguments, backend=arguments.backend)
