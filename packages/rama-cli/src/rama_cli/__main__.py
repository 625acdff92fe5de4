"""The ``rama`` command.

``rama serve proxy`` (what ``make run`` starts) is the HTTP/HTTPS/SOCKS5
forward proxy of rama-proxy; each command lives in its own module
(``_serve_proxy``). ``rama --version`` reports the installed rama
distributions. The other servers (echo, ip, fp, fs, discard) arrive with
their packages and say so until then.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys

from . import _serve_proxy

__all__ = ["build_parser", "main"]

_DISTRIBUTIONS = (
    "rama-core",
    "rama-net",
    "rama-tls",
    "rama-http",
    "rama-proxy",
    "rama-ua",
    "rama-fp",
    "rama-cli",
    "rama",
)

_NOT_YET = ("echo", "ip", "fp", "fs", "discard")


def _versions() -> list[str]:
    lines = []
    for dist in _DISTRIBUTIONS:
        try:
            lines.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return lines


def _not_available(args: argparse.Namespace) -> int:
    print(
        f"rama serve {args.kind}: not available in this version yet "
        "(rama serve proxy is; see rama serve proxy -h)",
        file=sys.stderr,
    )
    return 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``rama`` command."""
    parser = argparse.ArgumentParser(prog="rama", description="rama network services toolkit")
    parser.add_argument("--version", action="store_true", help="print installed rama packages")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run a server (rama serve proxy -h)")
    kinds = serve.add_subparsers(dest="kind", metavar="KIND", required=True)
    _serve_proxy.add_parser(kinds)
    for kind in _NOT_YET:
        kinds.add_parser(kind, help="not available yet").set_defaults(run=_not_available)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rama`` console script."""
    args = build_parser().parse_args(argv)
    if args.version or args.command is None:
        print("\n".join(_versions()))
        return 0
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
