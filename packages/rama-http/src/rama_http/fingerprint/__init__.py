"""HTTP fingerprints: pure functions of what a client sent."""

from ._akamai import AkamaiH2Fingerprint, AkamaiParseError, akamai_h2_fingerprint
from ._ja4h import Ja4hFingerprint, ja4h

__all__ = [
    "AkamaiH2Fingerprint",
    "AkamaiParseError",
    "Ja4hFingerprint",
    "akamai_h2_fingerprint",
    "ja4h",
]
