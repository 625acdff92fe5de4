"""Proxy authentication shared by the HTTP proxy (Basic) and SOCKS5 (RFC 1929).

An :class:`ProxyAuthenticator` splits the username into the user and its labels
(a :class:`UsernameParser`; rama-proxy's label parser is one), checks the
credentials with a pluggable :class:`CredentialChecker`, logs failures with the
peer address (rate-limited) and throttles a peer that keeps failing. The result,
a :class:`ProxyUser`, goes into the Context; credentials never go upstream.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import anyio

from rama_net import RateLimitedLog, SocketAddress

from ._filter import ProxyFilter

__all__ = [
    "CredentialChecker",
    "PlainUsername",
    "ProxyAuthenticator",
    "ProxyUser",
    "StaticCredentials",
    "UsernameParser",
    "parse_basic_credentials",
]

_log = logging.getLogger("rama.proxy.auth")


@dataclass(frozen=True, slots=True)
class ProxyUser:
    """An authenticated proxy user (a Context extension)."""

    name: str
    """The user the credentials were checked for (labels removed)."""
    username: str
    """The username as the client sent it (with its labels)."""
    filter: ProxyFilter = field(default_factory=ProxyFilter)
    """What the labels ask of the upstream proxy."""


class CredentialChecker(Protocol):
    """Checks a user's password (a database, a file, a remote service...)."""

    async def check(self, user: str, password: str) -> bool:
        """Whether ``password`` is right for ``user``; compare in constant time."""
        ...


class UsernameParser(Protocol):
    """Splits a sent username into the user and an upstream filter."""

    def parse(self, username: str) -> tuple[str, ProxyFilter]:
        """``(user, filter)``; raise ``ValueError`` for a username that must be refused."""
        ...


class PlainUsername:
    """No labels: the whole username is the user."""

    def parse(self, username: str) -> tuple[str, ProxyFilter]:
        """``(username, empty filter)``."""
        return username, ProxyFilter()


class StaticCredentials:
    """Users and passwords known in advance (``--auth USER:PASS``)."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = {u.encode(): p.encode() for u, p in users.items()}

    @classmethod
    def parse(cls, pairs: list[str]) -> StaticCredentials:
        """From ``["user:pass", ...]``; a pair without ``:`` raises ``ValueError``."""
        users: dict[str, str] = {}
        for pair in pairs:
            user, sep, password = pair.partition(":")
            if not sep or not user:
                raise ValueError(f"expected USER:PASS, got {pair!r}")
            users[user] = password
        return cls(users)

    async def check(self, user: str, password: str) -> bool:
        """Constant time in the password (and the same work for an unknown user)."""
        expected = self._users.get(user.encode())
        given = password.encode()
        if expected is None:
            hmac.compare_digest(given, given)
            return False
        return hmac.compare_digest(given, expected)


def parse_basic_credentials(value: str | bytes) -> tuple[str, str] | None:
    """``Basic <base64 user:pass>`` -> ``(user, pass)``; None when malformed."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


class ProxyAuthenticator:
    """Username parsing + credential check + failure logging and throttling."""

    def __init__(
        self,
        checker: CredentialChecker,
        *,
        username_parser: UsernameParser | None = None,
        realm: str = "rama",
        max_failures: int = 20,
        failure_window: float = 60.0,
        log_interval: float = 10.0,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self.checker = checker
        self.on_failure = on_failure
        """Called with the failure reason (``throttled``, ``bad_username``,
        ``wrong_credentials``) on every refusal, e.g. by the proxy metrics."""
        self.username_parser: UsernameParser = username_parser or PlainUsername()
        self.realm = realm
        """Sent in ``Proxy-Authenticate: Basic realm="..."``."""
        self.max_failures = max_failures
        """Failures per peer IP within ``failure_window`` after which it is refused unchecked."""
        self.failure_window = failure_window
        self._failures: dict[str, tuple[float, int]] = {}
        self._failure_log = RateLimitedLog(_log, log_interval)

    async def authenticate(
        self, username: str, password: str, *, peer: SocketAddress | None = None
    ) -> ProxyUser | None:
        """The user, or None when refused (the failure is logged and counted)."""
        key = str(peer.ip) if peer is not None else "-"
        now = anyio.current_time()
        window_start, count = self._failures.get(key, (now, 0))
        if now - window_start > self.failure_window:
            window_start, count = now, 0
            self._failures.pop(key, None)
        if count >= self.max_failures:
            self._fail(key, window_start, count, username, peer, "throttled", "throttled")
            return None
        try:
            user, proxy_filter = self.username_parser.parse(username)
        except ValueError as exc:
            self._fail(
                key, window_start, count, username, peer, f"bad username: {exc}", "bad_username"
            )
            return None
        if not await self.checker.check(user, password):
            self._fail(
                key, window_start, count, username, peer, "wrong credentials", "wrong_credentials"
            )
            return None
        return ProxyUser(user, username, proxy_filter)

    def _fail(
        self,
        key: str,
        window_start: float,
        count: int,
        username: str,
        peer: SocketAddress | None,
        why: str,
        reason: str,
    ) -> None:
        if self.on_failure is not None:
            try:
                self.on_failure(reason)
            except Exception:
                _log.exception("on_failure hook %r failed", self.on_failure)
        if len(self._failures) > 65536:  # bound the memory a scan of many IPs can take
            self._failures.clear()
        self._failures[key] = (window_start, count + 1)
        self._failure_log.log(
            logging.WARNING,
            "proxy authentication failed for %r from %s: %s",
            username[:64],
            peer if peer is not None else "?",
            why,
        )
