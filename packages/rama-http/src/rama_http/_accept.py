"""``Accept-Encoding`` with q-values (RFC 9110 §12.5.3), parsed once for every user."""

from __future__ import annotations

__all__ = ["accepted_encodings"]


def accepted_encodings(header: str | None) -> dict[str, float]:
    """Coding (lowercased) -> q-value; codings with ``q=0`` are kept, at 0.0."""
    out: dict[str, float] = {}
    if not header:
        return out
    for item in header.split(","):
        name, _, params = item.strip().partition(";")
        name = name.strip().lower()
        if not name:
            continue
        q = 1.0
        for p in params.split(";"):
            k, _, v = p.strip().partition("=")
            if k.strip().lower() == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
        out[name] = q
    return out
