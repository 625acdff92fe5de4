"""HTTP fingerprints: pure functions of what a client sent."""

from .akamai import AkamaiH2Fingerprint, AkamaiParseError, akamai_h2_fingerprint

__all__ = ["AkamaiH2Fingerprint", "AkamaiParseError", "akamai_h2_fingerprint"]
