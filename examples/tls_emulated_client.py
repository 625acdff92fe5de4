"""A TLS client that sends a real browser's ClientHello, checked by a rama echo server.

Run:
    python examples/tls_emulated_client.py                      # Chrome, local echo server
    python examples/tls_emulated_client.py --profile firefox --profile safari --profile edge
    python examples/tls_emulated_client.py --connect example.com:443 --profile chrome
    python examples/tls_emulated_client.py --connect localhost:8443 --ca ca.pem

Each profile comes from rama-ua's shipped browser profiles (``tls_client_hello``).
Without ``--connect`` the example starts a local rama TLS server (the acceptor
captures each ClientHello; a throwaway CA issues its certificate), connects
to it with :func:`rama_tls.emulation.emulated_tls_connect`, sends an HTTP/1.1
request and prints the JA4 the server saw next to the profile's own JA4
(computed from the profile's hello as the browser sent it). The exit status
is 0 when every JA4 matches. With ``--connect`` it fetches ``/`` from a real
server (certificate verified against the system store, or ``--ca``) and prints
the status line and what was negotiated.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from typing import Any

import anyio
from anyio.abc import ByteStream

from rama_core import Context, service_fn
from rama_net import TcpListener
from rama_tls import (
    CertificateAuthority,
    ClientHello,
    ClientHelloComplete,
    IssuingCertResolver,
    LeafCertificateCache,
    TlsAcceptorConfig,
    TlsAcceptorLayer,
    ja4,
    parse_client_hello_records,
)
from rama_tls.emulation import ClientHelloSpec, emulated_tls_connect

BROWSERS = ("chrome", "firefox", "safari", "edge")


def load_profiles() -> list[dict[str, Any]]:
    """rama-ua's shipped browser profiles."""
    text = resources.files("rama_ua").joinpath("data/ua_profiles.json").read_text()
    profiles: list[dict[str, Any]] = json.loads(text)
    return profiles


def pick(profiles: list[dict[str, Any]], name: str) -> tuple[int, dict[str, Any]]:
    """A profile by index, or the last (newest) one of a browser."""
    if name.isdigit():
        return int(name), profiles[int(name)]
    matches = [
        (i, p)
        for i, p in enumerate(profiles)
        if p["source_info"].get("browser_name", "").lower() == name.lower()
    ]
    if not matches:
        raise SystemExit(f"no profile for browser {name!r}")
    return matches[-1]


def profile_ja4(spec: ClientHelloSpec) -> str:
    """The JA4 of the profile's hello as the browser sent it."""
    result = parse_client_hello_records(spec.template_record())
    assert isinstance(result, ClientHelloComplete)
    return ja4(result.client_hello).ja4


async def fetch(stream: ByteStream, host: str) -> bytes:
    """Send GET / over HTTP/1.1 and read the whole response."""
    await stream.send(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    data = b""
    try:
        while len(data) < 1 << 20:
            data += await stream.receive()
    except anyio.EndOfStream:
        pass
    return data


@service_fn
async def echo_ja4(ctx: Context, stream: ByteStream) -> None:
    """Answer any request with the JA4 of the ClientHello the acceptor captured."""
    seen = ja4(ctx.require(ClientHello)).ja4
    with anyio.move_on_after(5):
        await stream.receive()
    body = f"{seen}\n".encode()
    await stream.send(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n"
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
    )


async def check_locally(names: list[str]) -> bool:
    """Connect with each profile to a local rama echo server; print and compare JA4s."""
    profiles = load_profiles()
    ca = CertificateAuthority.create("rama emulated client example CA")
    config = TlsAcceptorConfig(
        resolver=IssuingCertResolver(LeafCertificateCache(ca, max_size=16)),
        alpn_protocols=("http/1.1",),
        handshake_timeout=10,
    )
    listener = TcpListener.bind("127.0.0.1:0")
    ok = True
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, TlsAcceptorLayer(config).layer(echo_ja4))
        for name in names:
            index, profile = pick(profiles, name)
            spec = ClientHelloSpec.from_profile(profile["tls_client_hello"])
            tcp = await anyio.connect_tcp("127.0.0.1", listener.local_addr.port)
            with anyio.fail_after(15):
                tls = await emulated_tls_connect(
                    tcp, server_name="localhost", spec=spec, ca=ca.cert_pem()
                )
                response = await fetch(tls, "localhost")
                await tls.aclose()
            seen = response.rsplit(b"\r\n\r\n", 1)[-1].decode().strip()
            expected = profile_ja4(spec)
            info = profile["source_info"]
            match = seen == expected
            ok = ok and match
            print(f"profile #{index}: {info.get('browser_name')} {info.get('os', '')}".rstrip())
            print(f"  user agent:     {profile['uastr']}")
            print(f"  negotiated:     {tls.client.version} {tls.client.cipher_suite}")
            print(f"  profile JA4:    {expected}")
            print(f"  server saw JA4: {seen}")
            print(f"  match: {'yes' if match else 'NO'}", flush=True)
        listener.close()
        tg.cancel_scope.cancel()
    return ok


async def connect_remote(target: str, names: list[str], ca: str | None) -> bool:
    """Fetch / from a real server with each profile (certificate verified)."""
    host, _, port = target.rpartition(":")
    profiles = load_profiles()
    for name in names:
        index, profile = pick(profiles, name)
        spec = ClientHelloSpec.from_profile(profile["tls_client_hello"]).with_alpn(["http/1.1"])
        with anyio.fail_after(20):
            tcp = await anyio.connect_tcp(host, int(port))
            tls = await emulated_tls_connect(tcp, server_name=host, spec=spec, ca=ca)
            response = await fetch(tls, host)
            await tls.aclose()
        status = response.split(b"\r\n", 1)[0].decode(errors="replace")
        print(f"profile #{index} {name}: {tls.client.version} {tls.client.cipher_suite}: {status}")
    return True


def parser() -> argparse.ArgumentParser:
    """The command line of this example."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--profile",
        action="append",
        help=f"browser ({', '.join(BROWSERS)}) or profile index; repeatable (default chrome)",
    )
    p.add_argument("--connect", help="host:port of a real server instead of the local one")
    p.add_argument("--ca", help="--connect: trust this CA bundle (PEM) instead of the system's")
    return p


async def main(argv: list[str] | None = None) -> int:
    """Run the example; the exit status tells whether every JA4 matched."""
    args = parser().parse_args(argv)
    names = args.profile or ["chrome"]
    if args.connect:
        ok = await connect_remote(args.connect, names, args.ca)
    else:
        ok = await check_locally(names)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(anyio.run(main))
