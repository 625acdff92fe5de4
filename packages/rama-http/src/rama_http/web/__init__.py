"""rama_http.web: routing, typed handlers and their building blocks.

:class:`Router` maps path patterns (``/users/{id:int}``, ``/static/{*path}``)
and methods to services in a tree; :func:`handler` turns an async function
into a Service whose parameters are extracted by type (``Json[T]``,
``Query[T]``, ``Form[T]``, ``State[T]``, ``Annotated[str, Header("x")]``, path
parameters by name) and whose return value becomes the response.
:class:`ServeDir`/:class:`ServeFile` serve files (validators, ranges,
precompressed siblings); redirects and :class:`HealthService` complete the set.
"""

from ._convert import FieldError, ValidationError, convert
from ._extract import AppState, Form, Handler, Header, Json, PathParams, Query, State, handler
from ._files import ServeDir, ServeFile
from ._health import HealthService
from ._matchers import (
    HeaderMatcher,
    HostMatcher,
    MatchRouter,
    MethodMatcher,
    PathMatcher,
    QueryMatcher,
    TlsMatcher,
    VersionMatcher,
)
from ._problem import problem_response
from ._range import ByteRange, Unsatisfiable, parse_range
from ._redirect import Redirect, RedirectToHost, RedirectToHttps
from ._respond import file_response, into_response
from ._router import MatchedRoute, Router
from ._tree import CONVERTERS, Converter, PatternError, RouteTree

__all__ = [
    "VersionMatcher",
    "TlsMatcher",
    "QueryMatcher",
    "PathMatcher",
    "MethodMatcher",
    "MatchRouter",
    "HostMatcher",
    "HeaderMatcher",
    "CONVERTERS",
    "AppState",
    "ByteRange",
    "Converter",
    "FieldError",
    "Form",
    "Handler",
    "HealthService",
    "Header",
    "Json",
    "MatchedRoute",
    "PathParams",
    "PatternError",
    "Query",
    "Redirect",
    "RedirectToHost",
    "RedirectToHttps",
    "RouteTree",
    "Router",
    "ServeDir",
    "ServeFile",
    "State",
    "Unsatisfiable",
    "ValidationError",
    "convert",
    "file_response",
    "handler",
    "into_response",
    "parse_range",
    "problem_response",
]
