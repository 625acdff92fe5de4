"""HTTP Basic and Bearer authentication (RFC 7617, RFC 6750) in front of a service."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from rama_core import Context, Service

from .._message import Request, Response

__all__ = ["AuthenticatedUser", "BasicAuth", "BasicAuthLayer", "BearerAuth", "BearerAuthLayer"]

HttpService = Service[Request, Response]
PasswordCheck = Callable[[str, str], Awaitable[bool]]
TokenCheck = Callable[[str], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class AuthenticatedUser:
    """Who the request authenticated as (a Context extension)."""

    name: str
    scheme: str


def _constant_time_lookup(table: Mapping[str, str], key: str, secret: str) -> bool:
    expected = table.get(key)
    given = secret.encode()
    if expected is None:
        hmac.compare_digest(given, given)
        return False
    return hmac.compare_digest(given, expected.encode())


class BasicAuth:
    """401 with ``WWW-Authenticate: Basic`` unless the credentials check."""

    __slots__ = ("check", "inner", "realm")

    def __init__(self, inner: HttpService, check: PasswordCheck, realm: str) -> None:
        self.inner = inner
        self.check = check
        self.realm = realm

    def _challenge(self) -> Response:
        realm = self.realm.replace('"', "")
        return Response(
            401,
            headers=[("WWW-Authenticate", f'Basic realm="{realm}", charset="UTF-8"')],
            body=b"authentication required\n",
        )

    async def serve(self, ctx: Context, req: Request) -> Response:
        """Check, then serve."""
        header = req.headers.get("authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic" or not token:
            return self._challenge()
        try:
            user, sep, password = (
                base64.b64decode(token.strip(), validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            return self._challenge()
        if not sep or not await self.check(user, password):
            return self._challenge()
        ctx.insert(AuthenticatedUser(user, "basic"))
        return await self.inner.serve(ctx, req)


class BasicAuthLayer:
    """``BasicAuthLayer({"ann": "secret"})`` or ``BasicAuthLayer(check=async_fn)``."""

    __slots__ = ("check", "realm")

    def __init__(
        self,
        users: Mapping[str, str] | None = None,
        *,
        check: PasswordCheck | None = None,
        realm: str = "rama",
    ) -> None:
        if (users is None) == (check is None):
            raise ValueError("give either users or check")
        if users is not None:
            table = dict(users)

            async def by_table(user: str, password: str) -> bool:
                return _constant_time_lookup(table, user, password)

            check = by_table
        assert check is not None
        self.check = check
        self.realm = realm

    def layer(self, inner: HttpService) -> BasicAuth:
        """Wrap ``inner``."""
        return BasicAuth(inner, self.check, self.realm)


class BearerAuth:
    """401 with ``WWW-Authenticate: Bearer`` unless the token checks."""

    __slots__ = ("check", "inner", "realm")

    def __init__(self, inner: HttpService, check: TokenCheck, realm: str) -> None:
        self.inner = inner
        self.check = check
        self.realm = realm

    async def serve(self, ctx: Context, req: Request) -> Response:
        """Check, then serve."""
        header = req.headers.get("authorization") or ""
        scheme, _, token = header.partition(" ")
        realm = self.realm.replace('"', "")
        if scheme.lower() != "bearer" or not token.strip():
            return Response(
                401,
                headers=[("WWW-Authenticate", f'Bearer realm="{realm}"')],
                body=b"token required\n",
            )
        subject = await self.check(token.strip())
        if subject is None:
            return Response(
                401,
                headers=[("WWW-Authenticate", f'Bearer realm="{realm}", error="invalid_token"')],
                body=b"invalid token\n",
            )
        ctx.insert(AuthenticatedUser(subject, "bearer"))
        return await self.inner.serve(ctx, req)


class BearerAuthLayer:
    """``BearerAuthLayer(["token1"])`` or ``BearerAuthLayer(check=async_fn)`` (token -> subject)."""

    __slots__ = ("check", "realm")

    def __init__(
        self,
        tokens: Iterable[str] | None = None,
        *,
        check: TokenCheck | None = None,
        realm: str = "rama",
    ) -> None:
        if (tokens is None) == (check is None):
            raise ValueError("give either tokens or check")
        if tokens is not None:
            known = [t.encode() for t in tokens]

            async def by_list(token: str) -> str | None:
                given = token.encode()
                ok = False
                for k in known:  # compare with all: the time does not tell which matched
                    ok |= hmac.compare_digest(given, k)
                return "bearer" if ok else None

            check = by_list
        assert check is not None
        self.check = check
        self.realm = realm

    def layer(self, inner: HttpService) -> BearerAuth:
        """Wrap ``inner``."""
        return BearerAuth(inner, self.check, self.realm)
