"""Status codes and reason phrases."""

from __future__ import annotations

from http import HTTPStatus

__all__ = [
    "NO_BODY_STATUSES",
    "StatusCode",
    "is_client_error",
    "is_informational",
    "is_server_error",
    "reason_phrase",
]

StatusCode = HTTPStatus
"""Named status codes (``StatusCode.NOT_FOUND == 404``); responses hold plain ints."""

NO_BODY_STATUSES: frozenset[int] = frozenset((204, 304))
"""Final statuses whose responses never carry a body (RFC 9110 6.4.1; 1xx aside)."""

_REASONS: dict[int, str] = {s.value: s.phrase for s in HTTPStatus}
_REASONS[418] = "I'm a teapot"


def reason_phrase(status: int) -> str:
    """The standard reason phrase for ``status`` (empty for unknown codes)."""
    return _REASONS.get(status, "")


def is_informational(status: int) -> bool:
    """1xx."""
    return 100 <= status < 200


def is_client_error(status: int) -> bool:
    """4xx."""
    return 400 <= status < 500


def is_server_error(status: int) -> bool:
    """5xx."""
    return 500 <= status < 600
