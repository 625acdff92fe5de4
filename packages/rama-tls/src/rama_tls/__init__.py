"""TLS acceptor/connector, ClientHello capture, JA3/JA4 and certificate issuance for rama."""

__version__ = "0.1.0"

__all__: list[str] = []
