"""Helpers to load a :class:`CertifiedKey` into an ``ssl.SSLContext``.

The stdlib can only load certificate chains from files, so the PEM goes
through a private temporary file (mode 0600) that is removed right away.
"""

from __future__ import annotations

import os
import ssl
import tempfile

from ._certs import CertifiedKey

__all__ = ["load_certified_key"]


def load_certified_key(ctx: ssl.SSLContext, ck: CertifiedKey) -> None:
    """``ctx.load_cert_chain`` from an in-memory :class:`CertifiedKey`."""
    fd, path = tempfile.mkstemp(prefix="rama-tls-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(ck.chain_pem() + ck.key_pem())
        ctx.load_cert_chain(path)
    finally:
        os.unlink(path)
