"""Flow records, the flow store, and exports (JSON lines, HAR 1.2, curl).

A :class:`Flow` is one HTTP exchange as the proxy saw it (headers in order
with their casing, captured bodies, timings, addresses, TLS on both sides,
WebSocket messages); a :class:`TunnelFlow` is a raw tunnel (bytes each way,
duration). A :class:`FlowStore` keeps the most recent ones within a count and
a body-bytes budget and feeds live viewers; :class:`JsonLinesWriter` appends
them to a file that :func:`read_jsonl` reads back. A :class:`FlowRecorder` is
what an interception pipeline reports to: the store, a JSON-lines file and a
streaming :class:`HarWriter` at once.

Exports: :func:`to_har` / :func:`from_har` (HAR 1.2, credentials redacted by
default, validated against :func:`har_schema`), :func:`replay_har` (send a
HAR's requests again with a rama ``HttpClient``), and :func:`to_curl` (a
curl command line that sends the exact same request).
"""

from ._curl import to_curl
from ._flow import (
    Address,
    AnyFlow,
    BodyCapture,
    CapturedBody,
    Flow,
    FlowFormatError,
    HttpRequestRecord,
    HttpResponseRecord,
    TimingRecord,
    TlsRecord,
    TunnelFlow,
    WebSocketMessage,
    flow_from_json,
)
from ._har import (
    REDACTED,
    SENSITIVE_HEADERS,
    decode_content,
    from_har,
    har_schema,
    replay_har,
    to_har,
)
from ._recorder import FlowRecorder, HarWriter, load_har, save_har
from ._store import (
    FlowEvent,
    FlowStore,
    FlowSubscription,
    JsonLinesWriter,
    SubscriberLagged,
    read_jsonl,
)

__all__ = [
    "REDACTED",
    "SENSITIVE_HEADERS",
    "Address",
    "AnyFlow",
    "BodyCapture",
    "CapturedBody",
    "Flow",
    "FlowEvent",
    "FlowFormatError",
    "FlowRecorder",
    "FlowStore",
    "FlowSubscription",
    "HarWriter",
    "HttpRequestRecord",
    "HttpResponseRecord",
    "JsonLinesWriter",
    "SubscriberLagged",
    "TimingRecord",
    "TlsRecord",
    "TunnelFlow",
    "WebSocketMessage",
    "decode_content",
    "flow_from_json",
    "from_har",
    "har_schema",
    "load_har",
    "read_jsonl",
    "replay_har",
    "save_har",
    "to_curl",
    "to_har",
]
