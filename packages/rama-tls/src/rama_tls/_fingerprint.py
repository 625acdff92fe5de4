"""The one shape every rama fingerprint has.

JA3 and JA4 (here), JA4H and the Akamai h2 fingerprint (``rama_http.fingerprint``)
all return an object with:

- ``text``: the canonical fingerprint, what the format's authors and the
  fingerprint databases call "the" fingerprint; ``str(fp) == fp.text``;
- ``hash``: the hashed form;
- ``raw``: the readable, unhashed form it is computed from.

Where a format has only one of the forms, two of the names give the same
string:

- JA3: ``text`` = ``hash`` = the MD5 of the JA3 string; ``raw`` = the JA3
  string (also ``Ja3.string``);
- JA4: ``text`` = ``hash`` = ``ja4`` (sorted, hashed); ``raw`` = ``ja4_r``;
- JA4H: ``text`` = ``hash`` = the JA4H ``a_b_c_d``; ``raw`` = ``JA4H_r``;
- Akamai h2: ``text`` = ``raw`` = the ``SETTINGS|WINDOW_UPDATE|PRIORITY|PSEUDO_HEADER_ORDER``
  string; ``hash`` = its MD5 (what fingerprint databases key on).

The format-specific names stay (``Ja3.string``; ``Ja4.ja4_o``/``ja4_ro``;
``Ja4hFingerprint.raw_original``; Akamai's parts).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["Fingerprint"]


@runtime_checkable
class Fingerprint(Protocol):
    """What every fingerprint object offers (see the module docstring)."""

    @property
    def text(self) -> str:
        """The canonical fingerprint; also ``str(fp)``."""
        ...

    @property
    def hash(self) -> str:
        """The hashed form."""
        ...

    @property
    def raw(self) -> str:
        """The unhashed form the fingerprint is computed from."""
        ...
