"""Request targets and URIs: origin-, absolute-, authority- and asterisk-form.

RFC 9112 section 3.2 lists four forms of request target. :class:`Uri` parses
any of them and keeps which one it was, so a proxy can tell ``GET
http://a/b`` (absolute-form) from ``GET /b`` (origin-form) and ``CONNECT
a:443`` (authority-form).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, replace

from ._errors import InvalidUri

__all__ = ["Uri", "UriForm", "default_port"]

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*\Z")
_BAD = re.compile(r"[\x00-\x20\x7f]")
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def default_port(scheme: str | None) -> int | None:
    """80 for http/ws, 443 for https/wss, else None."""
    return _DEFAULT_PORTS.get((scheme or "").lower())


class UriForm(enum.Enum):
    """Which request-target form a Uri was written in."""

    ORIGIN = "origin"
    ABSOLUTE = "absolute"
    AUTHORITY = "authority"
    ASTERISK = "asterisk"


def _split_authority(auth: str) -> tuple[str | None, str, int | None]:
    userinfo: str | None = None
    if "@" in auth:
        userinfo, _, auth = auth.rpartition("@")
    if auth.startswith("["):
        end = auth.find("]")
        if end < 0:
            raise InvalidUri(f"unterminated IPv6 literal in {auth!r}")
        host = auth[1:end]
        rest = auth[end + 1 :]
        if rest and not rest.startswith(":"):
            raise InvalidUri(f"junk after IPv6 literal in {auth!r}")
        port_s = rest[1:] if rest else ""
    else:
        host, sep, port_s = auth.partition(":")
        if sep and ":" in port_s:
            raise InvalidUri(f"invalid authority {auth!r}")
    port: int | None = None
    if port_s:
        if not (port_s.isascii() and port_s.isdigit()) or len(port_s) > 5 or int(port_s) > 65535:
            raise InvalidUri(f"invalid port in {auth!r}")
        port = int(port_s)
    return userinfo, host, port


_PARSED_MAX = 1024


@dataclass(frozen=True, slots=True)
class Uri:
    """A parsed request target or URI.

    ``path`` is never empty for origin/absolute forms (``/`` at least);
    ``query`` excludes the ``?`` and is None when absent.
    """

    scheme: str | None = None
    host: str | None = None
    port: int | None = None
    path: str = "/"
    query: str | None = None
    userinfo: str | None = None
    form: UriForm = UriForm.ORIGIN

    @classmethod
    def parse(cls, target: str | bytes, *, method: str | None = None) -> Uri:
        """Parse a request target; ``method="CONNECT"`` expects authority-form."""
        if isinstance(target, bytes | bytearray):
            target = bytes(target).decode("latin-1")
        if not target or _BAD.search(target):
            raise InvalidUri(f"invalid request target {target!r}")
        if target[0] == "/":
            path, sep, query = target.partition("?")
            return cls(path=path, query=query if sep else None)
        # A proxy sees the same absolute URLs and CONNECT authorities again and
        # again; a Uri is immutable, so a parse is shared (bounded, then dropped).
        key = (target, method == "CONNECT")
        uri = _PARSED.get(key)
        if uri is None:
            uri = cls._parse_other(target, method)
            if len(_PARSED) >= _PARSED_MAX:
                _PARSED.clear()
            _PARSED[key] = uri
        return uri

    @classmethod
    def _parse_other(cls, target: str, method: str | None) -> Uri:
        if target == "*":
            return cls(path="*", form=UriForm.ASTERISK)
        if method == "CONNECT" or "://" not in target:
            if "/" in target or "?" in target or "#" in target:
                raise InvalidUri(f"invalid authority-form target {target!r}")
            userinfo, host, port = _split_authority(target)
            if not host or port is None:
                raise InvalidUri(f"authority-form needs host:port, got {target!r}")
            return cls(host=host, port=port, path="", form=UriForm.AUTHORITY, userinfo=userinfo)
        scheme, _, rest = target.partition("://")
        if not _SCHEME.match(scheme):
            raise InvalidUri(f"invalid scheme in {target!r}")
        rest = rest.split("#", 1)[0]
        cut = len(rest)
        for ch in "/?":
            i = rest.find(ch)
            if 0 <= i < cut:
                cut = i
        auth, rest = rest[:cut], rest[cut:]
        userinfo, host, port = _split_authority(auth)
        if not host:
            raise InvalidUri(f"missing host in {target!r}")
        path, sep, query = rest.partition("?")
        return cls(
            scheme=scheme.lower(),
            host=host,
            port=port,
            path=path or "/",
            query=query if sep else None,
            userinfo=userinfo,
            form=UriForm.ABSOLUTE,
        )

    @classmethod
    def from_parts(
        cls,
        *,
        scheme: str | None,
        authority: str | None,
        path_and_query: str,
    ) -> Uri:
        """Build from h2/h3 pseudo-headers (``:scheme``, ``:authority``, ``:path``)."""
        if path_and_query == "*":
            return cls(path="*", form=UriForm.ASTERISK)
        path, sep, query = path_and_query.partition("?")
        if authority is None:
            return cls(scheme=scheme, path=path or "/", query=query if sep else None)
        userinfo, host, port = _split_authority(authority)
        if scheme is None and not path_and_query:
            return cls(host=host, port=port, path="", form=UriForm.AUTHORITY)
        return cls(
            scheme=scheme,
            host=host,
            port=port,
            path=path or "/",
            query=query if sep else None,
            userinfo=userinfo,
            form=UriForm.ABSOLUTE,
        )

    # -- derived ------------------------------------------------------------------------
    @property
    def authority(self) -> str | None:
        """``host[:port]`` (IPv6 hosts bracketed), without userinfo; None without a host."""
        if self.host is None:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    @property
    def effective_port(self) -> int | None:
        """The explicit port, else the scheme's default."""
        return self.port if self.port is not None else default_port(self.scheme)

    @property
    def path_and_query(self) -> str:
        """``/path?query`` as in an origin-form target."""
        if self.form is UriForm.AUTHORITY:
            return ""
        return self.path if self.query is None else f"{self.path}?{self.query}"

    def with_(self, **changes: object) -> Uri:
        """A copy with some fields replaced."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def to_origin_form(self) -> Uri:
        """Drop scheme and authority (what a proxy sends upstream)."""
        return Uri(path=self.path, query=self.query)

    def __str__(self) -> str:
        if self.form is UriForm.ASTERISK:
            return "*"
        if self.form is UriForm.AUTHORITY:
            return self.authority or ""
        if self.host is None:
            return self.path_and_query
        scheme = f"{self.scheme}://" if self.scheme else "//"
        user = f"{self.userinfo}@" if self.userinfo else ""
        return f"{scheme}{user}{self.authority}{self.path_and_query}"


_PARSED: dict[tuple[str, bool], Uri] = {}
