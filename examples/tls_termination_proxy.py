"""TLS termination in front of a plain TCP service.

Run:
    python examples/tls_termination_proxy.py --backend 127.0.0.1:8080 \\
        [--listen 127.0.0.1:8443] [--cert cert.pem --key key.pem] \\
        [--ca-cert ca.pem --ca-key ca.key] [--ca-out ca.pem]

Clients connect with TLS; each connection's ClientHello is captured, a
certificate is chosen for its SNI name (issued on the fly by a local CA unless
``--cert/--key`` are given) and the decrypted bytes are forwarded both ways to
the backend over plain TCP. With the default CA, ``--ca-out`` writes its
certificate so clients can trust it (``curl --cacert ca.pem``). One line per
connection is printed (SNI, TLS version, ALPN, JA4); a failed handshake (a
client that does not speak TLS, a malformed ClientHello, a timeout) is one
INFO line from the ``rama.tls.acceptor`` logger with the client's address
and the reason, on stderr. SIGINT/SIGTERM (or
``--duration``) stop accepting and let open connections finish. Half a pair
(``--cert`` without ``--key``...) or an unreadable certificate is a usage
error (exit status 2).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import anyio
from anyio.abc import ByteStream

from rama_core import Context, Service, Shutdown, service_fn
from rama_net import ConnectionId, ForwardStats, TcpForwarder, TcpListener, TcpServerConfig
from rama_tls import (
    CertificateAuthority,
    CertificateError,
    CertifiedKey,
    ClientHello,
    IssuingCertResolver,
    LeafCertificateCache,
    NegotiatedTls,
    TlsAcceptorConfig,
    TlsAcceptorLayer,
    ja4,
)


def acceptor_config(args: argparse.Namespace) -> TlsAcceptorConfig:
    """One fixed certificate, or leaves issued per SNI name by a (new or loaded) CA."""
    options = {
        "alpn_protocols": tuple(args.alpn),
        "handshake_timeout": args.handshake_timeout,
    }
    if args.cert:
        return TlsAcceptorConfig.single(CertifiedKey.load(args.cert, args.key), **options)
    if args.ca_cert:
        ca = CertificateAuthority.load(args.ca_cert, args.ca_key)
    else:
        ca = CertificateAuthority.create("rama termination proxy CA")
    if args.ca_out:
        Path(args.ca_out).write_bytes(ca.cert_pem())
    cache = LeafCertificateCache(ca, max_size=1024)
    return TlsAcceptorConfig(resolver=IssuingCertResolver(cache), **options)


def build(args: argparse.Namespace) -> Service[ByteStream, None]:
    """TLS acceptor -> log the handshake -> forward to the backend."""
    forwarder = TcpForwarder(args.backend, idle_timeout=args.idle_timeout)

    @service_fn
    async def log_and_forward(ctx: Context, stream: ByteStream) -> None:
        tls = ctx.require(NegotiatedTls)
        hello = ctx.require(ClientHello)
        conn = ctx.get(ConnectionId)
        print(
            f"{conn} sni={tls.server_name} {tls.version} alpn={tls.alpn} ja4={ja4(hello)}",
            flush=True,
        )
        stats: ForwardStats = await forwarder.serve(ctx, stream)
        print(
            f"{conn} done: {stats.left_to_right} bytes up, {stats.right_to_left} down", flush=True
        )

    return TlsAcceptorLayer(acceptor_config(args)).layer(log_and_forward)


async def main(argv: list[str] | None = None) -> None:
    """Parse ``argv``, serve until a signal (or ``--duration``), then shut down gracefully."""
    args = parse_args(argv)
    # handshake failures: INFO, one line each, no traceback (rama-tls README, "Logging")
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("rama.tls").setLevel(logging.INFO)
    try:
        service = build(args)
    except (CertificateError, OSError) as exc:
        parser().error(f"cannot set up TLS: {exc}")
    listener = TcpListener.bind(args.listen)
    print(f"listening on {listener.local_addr} -> {args.backend}", flush=True)
    async with Shutdown(grace=5) as shutdown:
        config = TcpServerConfig(max_connections=args.max_connections, idle_timeout=300)
        # no ctx= needed: the listener joins the enclosing Shutdown
        shutdown.spawn(listener.serve, service, config)
        if args.duration is not None:

            async def stop_later() -> None:
                await anyio.sleep(args.duration)
                shutdown.trigger("duration")

            shutdown.executor.spawn(stop_later, guarded=False)
    assert shutdown.report is not None
    print(f"shutdown: reason={shutdown.report.reason} clean={shutdown.report.clean}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check the command line; a bad one is a usage error (exit status 2)."""
    p = parser()
    args = p.parse_args(argv)
    if bool(args.cert) != bool(args.key):
        p.error("--cert and --key go together: the certificate chain and its private key")
    if bool(args.ca_cert) != bool(args.ca_key):
        p.error("--ca-cert and --ca-key go together: the CA certificate and its private key")
    if args.cert and args.ca_cert:
        p.error(
            "--cert/--key (one certificate) and --ca-cert/--ca-key (issuing) exclude each other"
        )
    if args.cert and args.ca_out:
        p.error("--ca-out writes the issuing CA, which --cert/--key do not use")
    return args


def parser() -> argparse.ArgumentParser:
    """The command line of this example."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backend", required=True, help="plain TCP service, host:port")
    p.add_argument("--listen", default="127.0.0.1:8443", help="host:port (port 0: any)")
    p.add_argument("--cert", help="certificate chain PEM (with --key)")
    p.add_argument("--key", help="private key PEM")
    p.add_argument("--ca-cert", help="issue leaves with this CA (PEM, with --ca-key)")
    p.add_argument("--ca-key", help="the CA's private key (PEM)")
    p.add_argument("--ca-out", help="write the CA certificate here (PEM)")
    p.add_argument("--alpn", action="append", default=[], help="protocol to accept (repeat)")
    p.add_argument("--handshake-timeout", type=float, default=10.0)
    p.add_argument("--idle-timeout", type=float, default=300.0)
    p.add_argument("--max-connections", type=int, default=10_000)
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    return p


if __name__ == "__main__":
    anyio.run(main)
