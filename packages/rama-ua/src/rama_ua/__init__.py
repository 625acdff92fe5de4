"""User-agent parsing, browser profiles and HTTP/TLS emulation for rama."""

__version__ = "0.1.0"

__all__: list[str] = []
