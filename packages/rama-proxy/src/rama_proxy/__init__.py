"""HTTP(S) forward/CONNECT, SOCKS5, PROXY protocol and MITM proxies for rama."""

__version__ = "0.1.0"

__all__: list[str] = []
