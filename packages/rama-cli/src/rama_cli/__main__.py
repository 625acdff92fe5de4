"""The ``rama`` command.

Subcommands arrive with the packages that implement them; today it reports
the installed rama distributions. ``rama serve proxy`` (what ``make run``
starts) lands with the rama-proxy work and says so until then.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys

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


def _versions() -> list[str]:
    lines = []
    for dist in _DISTRIBUTIONS:
        try:
            lines.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return lines


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``rama`` command."""
    parser = argparse.ArgumentParser(prog="rama", description="rama network services toolkit")
    parser.add_argument("--version", action="store_true", help="print installed rama packages")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run a server")
    serve.add_argument("kind", help="what to serve (proxy, echo, ip, fp, fs, discard)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rama`` console script."""
    args = build_parser().parse_args(argv)
    if args.version or args.command is None:
        print("\n".join(_versions()))
        return 0
    print(
        f"rama serve {args.kind}: not available in this version yet "
        "(the servers arrive with rama-proxy and rama-cli)",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
