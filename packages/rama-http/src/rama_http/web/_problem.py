"""RFC 9457 problem responses for input the handler could not take."""

from __future__ import annotations

import json
from collections.abc import Sequence

from .._message import Response
from .._status import reason_phrase
from ._convert import FieldError

__all__ = ["problem_response"]


def problem_response(
    status: int,
    detail: str,
    errors: Sequence[FieldError] = (),
    *,
    headers: list[tuple[str, str]] | None = None,
) -> Response:
    """``application/problem+json`` with the status, a detail and the fields at fault."""
    doc: dict[str, object] = {
        "type": "about:blank",
        "title": reason_phrase(status),
        "status": status,
        "detail": detail,
    }
    if errors:
        doc["errors"] = [e.to_json() for e in errors]
    body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    resp = Response(status, headers=[("Content-Type", "application/problem+json")], body=body)
    for name, value in headers or ():
        resp.headers.add(name, value)
    return resp
