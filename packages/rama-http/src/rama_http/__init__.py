"""HTTP types, HTTP/1.1, h2 and h3 servers and clients for rama."""

__version__ = "0.1.0"

__all__: list[str] = []
