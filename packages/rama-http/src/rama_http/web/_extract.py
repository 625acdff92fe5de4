"""Handlers as plain async functions whose parameters are extracted by type.

::

    @dataclass
    class NewItem:
        name: str
        price: float

    async def create(shop: int, item: Json[NewItem], token: Annotated[str, Header("x-token")]):
        return 201, {"shop": shop, "name": item.name}

Parameters are filled from their annotation:

- ``Request``, ``Context``, ``Headers``, ``Body`` (the raw body stream): themselves;
- ``Json[T]``, ``Form[T]`` (urlencoded): the body parsed and validated as ``T``
  (a dataclass, TypedDict, dict, list, scalar...); ``bytes``: the whole body;
- ``Query[T]``: the query string as ``T``; ``State[T]``: the router's state;
- ``Annotated[T, Header("name")]``: one header (``list[str]`` for all of them);
- anything else by name: a path parameter if the route has one of that name,
  else a query parameter; converted to the annotation.

Bad input is the client's fault and is answered without calling the handler:
400 for malformed syntax, 413 for a body over the limit, 415 for the wrong
Content-Type, 422 (valid syntax, wrong shape) with an RFC 9457 problem body
naming each field at fault.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import types
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar, get_args, get_origin
from urllib.parse import parse_qsl

from rama_core import Context

from .._body import Body
from .._errors import BodyTooLarge
from .._headers import Headers
from .._message import Request, Response
from ._convert import FieldError, ValidationError, convert
from ._problem import problem_response
from ._respond import into_response

__all__ = [
    "AppState",
    "Form",
    "Handler",
    "Header",
    "Json",
    "PathParams",
    "Query",
    "State",
    "handler",
]

T = TypeVar("T")

DEFAULT_BODY_LIMIT = 1024 * 1024
"""Bytes a ``Json``/``Form``/``bytes`` parameter reads before answering 413."""


class _Marker:
    __slots__ = ()


class _JsonMarker(_Marker):
    def __repr__(self) -> str:
        return "Json"


class _FormMarker(_Marker):
    def __repr__(self) -> str:
        return "Form"


class _QueryMarker(_Marker):
    def __repr__(self) -> str:
        return "Query"


class _StateMarker(_Marker):
    def __repr__(self) -> str:
        return "State"


@dataclass(frozen=True, slots=True)
class Header(_Marker):
    """``Annotated[str, Header("x-token")]``: the named request header."""

    name: str


Json = Annotated[T, _JsonMarker()]
"""``item: Json[Item]``: the JSON body as ``Item`` (415 unless ``application/json``)."""
Form = Annotated[T, _FormMarker()]
"""``login: Form[Login]``: an ``application/x-www-form-urlencoded`` body as ``Login``."""
Query = Annotated[T, _QueryMarker()]
"""``q: Query[Search]``: the query string as ``Search``."""
State = Annotated[T, _StateMarker()]
"""``cfg: State[Config]``: the state object given to the Router."""


class PathParams(dict[str, object]):
    """The matched route's parameters (a Context extension set by the Router)."""


@dataclass(frozen=True, slots=True)
class AppState:
    """The Router's state (a Context extension)."""

    value: object


class _Reject(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


Extractor = Callable[[Context, Request], Awaitable[Any]]


def _reject(status: int, detail: str, errors: list[FieldError] | None = None) -> _Reject:
    return _Reject(problem_response(status, detail, errors or ()))


def _content_type(req: Request) -> str:
    return (req.headers.get("content-type") or "").split(";", 1)[0].strip().lower()


async def _read_body(req: Request, limit: int) -> bytes:
    try:
        return await req.body.read(limit)
    except BodyTooLarge:
        raise _reject(413, f"the body is larger than {limit} bytes") from None


def _validated(value: Any, tp: Any, *, lax: bool, where: str, detail: str) -> Any:
    try:
        return convert(value, tp, lax=lax, field=where)
    except ValidationError as e:
        raise _reject(422, detail, e.errors) from None


def _query_mapping(req: Request, tp: Any) -> dict[str, Any]:
    pairs = parse_qsl(req.query or "", keep_blank_values=True)
    return _pairs_to_mapping(pairs, tp)


def _pairs_to_mapping(pairs: list[tuple[str, str]], tp: Any) -> dict[str, Any]:
    """Repeated keys become lists where the target field is a sequence."""
    hints: dict[str, Any] = {}
    with contextlib.suppress(TypeError):
        hints = typing.get_type_hints(tp)
    out: dict[str, Any] = {}
    for key, value in pairs:
        if _is_sequence(hints.get(key)):
            out.setdefault(key, []).append(value)
        else:
            out[key] = value
    return out


def _is_sequence(tp: Any) -> bool:
    if tp is None:
        return False
    origin = get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return any(_is_sequence(a) for a in get_args(tp) if a is not type(None))
    return origin in (list, set, frozenset, tuple) or tp in (list, set, frozenset, tuple)


def _build_extractor(
    name: str, annotation: Any, default: Any, body_limit: int
) -> tuple[Extractor, bool]:
    """The extractor of one parameter and whether it consumes the body."""
    marker: _Marker | None = None
    inner = annotation
    if get_origin(annotation) is Annotated:
        inner, *extras = get_args(annotation)
        marker = next((x for x in extras if isinstance(x, _Marker)), None)
    has_default = default is not inspect.Parameter.empty

    if marker is None:
        if inner is Request:
            return _const_req, False
        if inner is Context:
            return _const_ctx, False
        if inner is Headers:
            return _headers, False
        if inner is Body:
            return _raw_body, True
        if inner is bytes:

            async def whole_body(ctx: Context, req: Request) -> bytes:
                return await _read_body(req, body_limit)

            return whole_body, True
        return _by_name(name, inner, default, has_default), False

    if isinstance(marker, _JsonMarker):

        async def json_body(ctx: Context, req: Request) -> Any:
            ctype = _content_type(req)
            if ctype != "application/json" and not ctype.endswith("+json"):
                raise _reject(415, "expected Content-Type: application/json")
            data = await _read_body(req, body_limit)
            try:
                doc = json.loads(data)
            except (ValueError, UnicodeDecodeError) as e:
                raise _reject(400, f"malformed JSON body: {e}") from None
            return _validated(doc, inner, lax=False, where="body", detail="invalid JSON body")

        return json_body, True
    if isinstance(marker, _FormMarker):

        async def form_body(ctx: Context, req: Request) -> Any:
            if _content_type(req) != "application/x-www-form-urlencoded":
                raise _reject(415, "expected Content-Type: application/x-www-form-urlencoded")
            data = await _read_body(req, body_limit)
            try:
                pairs = parse_qsl(
                    data.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(data)
                )
            except (ValueError, UnicodeDecodeError) as e:
                raise _reject(400, f"malformed form body: {e}") from None
            doc = _pairs_to_mapping(pairs, inner)
            return _validated(doc, inner, lax=True, where="form", detail="invalid form")

        return form_body, True
    if isinstance(marker, _QueryMarker):

        async def query(ctx: Context, req: Request) -> Any:
            doc = _query_mapping(req, inner)
            return _validated(doc, inner, lax=True, where="query", detail="invalid query")

        return query, False
    if isinstance(marker, _StateMarker):

        async def state(ctx: Context, req: Request) -> Any:
            app = ctx.get(AppState)
            if app is None:
                raise LookupError(f"parameter {name!r} wants State but the Router has none")
            return app.value

        return state, False
    if isinstance(marker, Header):
        header_name = marker.name
        want_all = _is_sequence(inner)

        async def header(ctx: Context, req: Request) -> Any:
            values = req.headers.get_all(header_name)
            if not values:
                if has_default:
                    return default
                raise _reject(
                    422,
                    f"missing header {header_name}",
                    [FieldError(f"header.{header_name}", "field required")],
                )
            raw: Any = values if want_all else values[-1]
            return _validated(
                raw, inner, lax=True, where=f"header.{header_name}", detail="invalid header"
            )

        return header, False
    raise TypeError(f"unsupported marker {marker!r} on parameter {name!r}")


async def _const_req(ctx: Context, req: Request) -> Request:
    return req


async def _const_ctx(ctx: Context, req: Request) -> Context:
    return ctx


async def _headers(ctx: Context, req: Request) -> Headers:
    return req.headers


async def _raw_body(ctx: Context, req: Request) -> Body:
    return req.body


def _by_name(name: str, tp: Any, default: Any, has_default: bool) -> Extractor:
    many = _is_sequence(tp)

    async def by_name(ctx: Context, req: Request) -> Any:
        params = ctx.get(PathParams)
        if params is not None and name in params:
            return _validated(
                params[name], tp, lax=True, where=f"path.{name}", detail="invalid path parameter"
            )
        values = [v for k, v in parse_qsl(req.query or "", keep_blank_values=True) if k == name]
        if not values:
            if has_default:
                return default
            raise _reject(
                422,
                f"missing query parameter {name}",
                [FieldError(f"query.{name}", "field required")],
            )
        raw: Any = values if many else values[-1]
        return _validated(raw, tp, lax=True, where=f"query.{name}", detail="invalid query")

    return by_name


class Handler:
    """A Service calling an async function with extracted parameters (see module docs)."""

    __slots__ = ("_extractors", "_fn", "_names", "body_limit")

    def __init__(self, fn: Callable[..., Awaitable[Any]], *, body_limit: int = DEFAULT_BODY_LIMIT):
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"handler {fn!r} must be an async function")
        self._fn = fn
        self.body_limit = body_limit
        hints = typing.get_type_hints(fn, include_extras=True)
        sig = inspect.signature(fn)
        extractors: list[Extractor] = []
        names: list[str] = []
        body_users: list[str] = []
        for pname, param in sig.parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise TypeError(f"handler {fn.__qualname__}: *args/**kwargs are not extractable")
            annotation = hints.get(pname, str)
            ext, uses_body = _build_extractor(pname, annotation, param.default, body_limit)
            if uses_body:
                body_users.append(pname)
            extractors.append(ext)
            names.append(pname)
        if len(body_users) > 1:
            raise TypeError(
                f"handler {fn.__qualname__}: only one parameter may read the body ({body_users})"
            )
        self._extractors = tuple(extractors)
        self._names = tuple(names)

    async def serve(self, ctx: Context, req: Request) -> Response:
        """Extract, call, convert the return value; a bad request never reaches the function."""
        kwargs: dict[str, Any] = {}
        try:
            for name, ext in zip(self._names, self._extractors, strict=True):
                kwargs[name] = await ext(ctx, req)
        except _Reject as r:
            return r.response
        return into_response(await self._fn(**kwargs))

    def __repr__(self) -> str:
        return f"Handler({self._fn.__qualname__})"


def handler(
    fn: Callable[..., Awaitable[Any]] | None = None, *, body_limit: int = DEFAULT_BODY_LIMIT
) -> Any:
    """Wrap an async function as a :class:`Handler` (usable as ``@handler`` or ``handler(fn)``)."""
    if fn is None:
        return lambda f: Handler(f, body_limit=body_limit)
    return Handler(fn, body_limit=body_limit)
