"""The `rama` command: HTTP client, proxy and echo servers, probes."""

__version__ = "0.1.0"

__all__: list[str] = []
