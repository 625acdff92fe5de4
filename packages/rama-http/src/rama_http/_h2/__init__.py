"""HTTP/2 specifics: connection-preface recording and the h2 server connection."""

from ._record import (
    CONNECTION_PREFACE,
    H2Frame,
    H2PrefaceRecord,
    H2PrefaceRecorder,
    H2Priority,
    PseudoHeaderOrder,
)

__all__ = [
    "CONNECTION_PREFACE",
    "H2Frame",
    "H2PrefaceRecord",
    "H2PrefaceRecorder",
    "H2Priority",
    "PseudoHeaderOrder",
]
