"""The Akamai HTTP/2 fingerprint (Shuster and Bar, Black Hat EU 2017).

Four parts of how a client opens an h2 connection, joined by ``|``::

    SETTINGS|WINDOW_UPDATE|PRIORITY|PSEUDO_HEADER_ORDER
    1:65536;2:0;4:6291456;6:262144|15663105|0|m,a,s,p      (Chrome)

- SETTINGS: the first SETTINGS frame's ``id:value`` pairs in wire order, ``;``-joined.
- WINDOW_UPDATE: the connection-level increment sent before the first
  request, ``00`` when none was sent (the paper's notation, kept by rama
  (Rust) and fingerprint services; ``0`` is read the same way).
- PRIORITY: each PRIORITY frame as ``stream:exclusive:depends_on:weight``
  (weight 1..256), ``,``-joined, ``0`` when none was sent.
- PSEUDO_HEADER_ORDER: the first request's pseudo-headers as letters
  (``m`` method, ``a`` authority, ``s`` scheme, ``p`` path), ``,``-joined.
  Other pseudo-headers (RFC 8441's ``:protocol``) are not part of the format
  and are left out.

Fingerprint services publish the MD5 of that text as its hash
(:attr:`AkamaiH2Fingerprint.hash`). Everything here is a pure function of an
:class:`~rama_http.H2PrefaceRecord` or of the text form.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from rama_core import RamaError

from .._h2._record import H2PrefaceRecord, H2Priority

__all__ = ["AkamaiH2Fingerprint", "AkamaiParseError", "akamai_h2_fingerprint"]

_LETTERS = {":method": "m", ":authority": "a", ":scheme": "s", ":path": "p"}
_NAMES = {v: k for k, v in _LETTERS.items()}


class AkamaiParseError(RamaError, ValueError):
    """A string is not a well-formed Akamai h2 fingerprint."""


@dataclass(frozen=True, slots=True)
class AkamaiH2Fingerprint:
    """The four parts of an Akamai h2 fingerprint; ``str()`` gives the canonical text.

    In the shape of :class:`rama_tls.Fingerprint`: ``text`` and
    ``str()`` are the ``S|WU|P|PH`` string, which is also ``raw`` (the format
    has no other clear form); ``hash`` is its MD5.
    """

    settings: tuple[tuple[int, int], ...]
    window_update: int
    priorities: tuple[H2Priority, ...]
    pseudo_header_order: tuple[str, ...]
    """Pseudo-header names (``":method"``, ...) of the first request, in wire order."""

    @classmethod
    def from_record(cls, record: H2PrefaceRecord) -> AkamaiH2Fingerprint:
        """Compute the fingerprint of what an h2 server recorded for one connection."""
        return cls(
            settings=tuple(record.settings),
            window_update=record.window_update or 0,
            priorities=tuple(record.priorities),
            pseudo_header_order=tuple(n for n in record.pseudo_header_order if n in _LETTERS),
        )

    @classmethod
    def parse(cls, text: str) -> AkamaiH2Fingerprint:
        """Parse the text form (as published by fingerprint services)."""
        parts = text.strip().split("|")
        if len(parts) != 4:
            raise AkamaiParseError(f"expected 4 '|'-separated parts, got {len(parts)}: {text!r}")
        s_part, wu_part, p_part, h_part = parts
        try:
            settings = tuple(
                (int(k), int(v)) for k, v in (pair.split(":") for pair in s_part.split(";") if pair)
            )
            window_update = int(wu_part)
            priorities: tuple[H2Priority, ...] = ()
            if p_part != "0":
                items = [tuple(int(x) for x in item.split(":")) for item in p_part.split(",")]
                priorities = tuple(
                    H2Priority(stream_id=s, exclusive=bool(e), depends_on=d, weight=w)
                    for s, e, d, w in items
                )
            order = tuple(_NAMES[c] for c in h_part.split(",") if c)
        except (ValueError, KeyError) as e:
            raise AkamaiParseError(f"malformed Akamai h2 fingerprint {text!r}") from e
        return cls(settings, window_update, priorities, order)

    @property
    def text(self) -> str:
        """The canonical ``SETTINGS|WINDOW_UPDATE|PRIORITY|PSEUDO_HEADER_ORDER`` string."""
        settings = ";".join(f"{k}:{v}" for k, v in self.settings)
        priorities = (
            ",".join(
                f"{p.stream_id}:{int(p.exclusive)}:{p.depends_on}:{p.weight}"
                for p in self.priorities
            )
            or "0"
        )
        order = ",".join(_LETTERS[n] for n in self.pseudo_header_order)
        window = str(self.window_update) if self.window_update else "00"
        return f"{settings}|{window}|{priorities}|{order}"

    @property
    def raw(self) -> str:
        """The unhashed form: the same as :attr:`text`."""
        return self.text

    @property
    def hash(self) -> str:
        """MD5 hex digest of :attr:`text`, the form fingerprint databases key on."""
        return hashlib.md5(self.text.encode(), usedforsecurity=False).hexdigest()

    def __str__(self) -> str:
        return self.text


def akamai_h2_fingerprint(record: H2PrefaceRecord) -> AkamaiH2Fingerprint:
    """The Akamai h2 fingerprint of a recorded connection preface (``str()``: its text)."""
    return AkamaiH2Fingerprint.from_record(record)
