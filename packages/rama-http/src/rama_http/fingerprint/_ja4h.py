"""JA4H: the FoxIO HTTP client fingerprint of one request.

JA4H is four parts joined by ``_`` (FoxIO JA4+ specification, JA4H):

- **a**: method (first two letters, lower case), version (``10``, ``11``,
  ``20``, ``30``), ``c``/``n`` for a Cookie header, ``r``/``n`` for a Referer
  header, the number of other header fields (two digits, at most 99) and the
  first Accept-Language tag (dashes removed, lower case, four characters padded
  with ``0``; ``0000`` without one);
- **b**: the first 12 hex digits of SHA-256 over the names of those other
  fields, in the order and casing sent, joined by ``,``;
- **c**: the same hash over the cookie names sorted;
- **d**: the same hash over the ``name=value`` cookie pairs sorted by name.

Parts c and d are ``000000000000`` without cookies. The raw forms show the
hashed strings: ``JA4H_r`` (cookies sorted, :attr:`Ja4hFingerprint.raw`) and
``JA4H_ro`` (cookies in sent order, :attr:`Ja4hFingerprint.raw_original`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._version import Version

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .._message import Request

__all__ = ["Ja4hFingerprint", "ja4h"]

_ZERO = "000000000000"
_VERSIONS = {
    Version.HTTP_09: "09",
    Version.HTTP_10: "10",
    Version.HTTP_11: "11",
    Version.HTTP_2: "20",
    Version.HTTP_3: "30",
}


def _hash12(items: Iterable[str]) -> str:
    return hashlib.sha256(",".join(items).encode("utf-8", "surrogateescape")).hexdigest()[:12]


def _language(value: str | None) -> str:
    if not value:
        return "0000"
    first = value.replace("-", "").replace(";", ",").lower().split(",")[0].strip()[:4]
    return first + "0" * (4 - len(first))


def _cookie_pairs(values: Iterable[str]) -> list[tuple[str, str]]:
    """``(name, "name=value")`` per cookie, in sent order, across every Cookie field."""
    pairs: list[tuple[str, str]] = []
    for value in values:
        for part in value.split(";"):
            part = part.strip()
            if part:
                pairs.append((part.split("=", 1)[0].strip(), part))
    return pairs


@dataclass(frozen=True, slots=True)
class Ja4hFingerprint:
    """The JA4H of a request, with its raw inputs (see module docs).

    In the shape of :class:`rama_tls.Fingerprint`: ``text``,
    ``hash`` and ``str()`` are the JA4H ``a_b_c_d``, ``raw`` is ``JA4H_r``.
    """

    method: str
    """The request method as sent."""
    version: str
    """Two-digit version code: ``10``, ``11``, ``20``, ``30``."""
    has_cookie: bool
    has_referer: bool
    header_names: tuple[str, ...]
    """Field names other than Cookie and Referer, in order and casing sent."""
    language: str
    """The four-character Accept-Language code."""
    cookies: tuple[tuple[str, str], ...]
    """``(name, "name=value")`` per cookie, in the order sent."""

    @classmethod
    def from_request(cls, request: Request) -> Ja4hFingerprint:
        """Fingerprint a received request (any HTTP version)."""
        return cls.from_parts(request.method, request.version, request.headers)

    @classmethod
    def from_parts(
        cls, method: str, version: Version | str, headers: Iterable[tuple[str, str]]
    ) -> Ja4hFingerprint:
        """Fingerprint a method, a version and ``(name, value)`` fields in sent order."""
        if isinstance(version, str):
            version = Version.parse(version)
        names: list[str] = []
        cookie_values: list[str] = []
        has_cookie = has_referer = False
        language: str | None = None
        for name, value in headers:
            key = name.lower()
            if not name or name.startswith(":"):
                continue  # h2/h3 pseudo-headers are not header fields
            if key == "cookie":
                has_cookie = True
                cookie_values.append(value)
                continue
            if key == "referer":
                has_referer = True
                continue
            if key == "accept-language" and language is None:
                language = value
            names.append(name)
        return cls(
            method=method,
            version=_VERSIONS.get(version, "11"),
            has_cookie=has_cookie,
            has_referer=has_referer,
            header_names=tuple(names),
            language=_language(language),
            cookies=tuple(_cookie_pairs(cookie_values)),
        )

    # -- the four parts ------------------------------------------------------------------
    @property
    def a(self) -> str:
        """Part a: method, version, cookie and referer flags, field count, language."""
        return (
            f"{self.method.lower()[:2]}{self.version}"
            f"{'c' if self.has_cookie else 'n'}{'r' if self.has_referer else 'n'}"
            f"{min(len(self.header_names), 99):02d}{self.language}"
        )

    @property
    def b(self) -> str:
        """Part b: truncated SHA-256 of the field names in sent order."""
        return _hash12(self.header_names)

    def _sorted_cookies(self) -> list[tuple[str, str]]:
        return sorted(self.cookies, key=lambda p: p[0])

    @property
    def c(self) -> str:
        """Part c: truncated SHA-256 of the sorted cookie names (zeros without cookies)."""
        if not self.cookies:
            return _ZERO
        return _hash12(n for n, _ in self._sorted_cookies())

    @property
    def d(self) -> str:
        """Part d: truncated SHA-256 of the cookie pairs sorted by name (zeros without)."""
        if not self.cookies:
            return _ZERO
        return _hash12(p for _, p in self._sorted_cookies())

    @property
    def text(self) -> str:
        """The JA4H string ``a_b_c_d``: the canonical fingerprint."""
        return f"{self.a}_{self.b}_{self.c}_{self.d}"

    @property
    def hash(self) -> str:
        """The hashed form: the same as :attr:`text`."""
        return self.text

    def _raw(self, cookies: list[tuple[str, str]]) -> str:
        out = f"{self.a}_{','.join(self.header_names)}_"
        if cookies:
            out += f"{','.join(n for n, _ in cookies)}_{','.join(p for _, p in cookies)}"
        return out

    @property
    def raw(self) -> str:
        """``JA4H_r``: the hashed inputs in clear, cookies sorted by name."""
        return self._raw(self._sorted_cookies())

    @property
    def raw_original(self) -> str:
        """``JA4H_ro``: the hashed inputs in clear, cookies in the order sent."""
        return self._raw(list(self.cookies))

    def __str__(self) -> str:
        return self.text


def ja4h(request: Request) -> Ja4hFingerprint:
    """The JA4H fingerprint of ``request`` (``str()`` / ``.text``: the JA4H string)."""
    return Ja4hFingerprint.from_request(request)
