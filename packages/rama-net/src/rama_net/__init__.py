"""Addresses, TCP/UDP servers and connectors, DNS, forwarding and stream middleware for rama."""

__version__ = "0.1.0"

__all__: list[str] = []
