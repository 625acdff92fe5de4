"""The interception logic of one connection as a sans-IO state machine.

:class:`InterceptionLayer` takes events (what was read, what the policy
said, how the upstream handshake went) and answers the next command for the
I/O driver (:class:`~rama_proxy.mitm.MitmProxy`) to carry out. It decides
the sniffing, the ALPN offered on each side, the leaf's names and every
failure path, without sockets or clocks, so it is tested with playbooks of
events and expected commands.

One command per event::

    start()                         -> ReadMore
    FirstBytes(tls)                 -> ReadClientHello
    FirstBytes(http | other)        -> AskPolicy(hello=None)
    HelloParsed(hello)              -> AskPolicy(hello)
    HelloFailed(reason)             -> Close
    PolicyDecided(reject)           -> Close
    PolicyDecided(pass | not HTTP)  -> Tunnel
    PolicyDecided(intercept, http)  -> ServePlainHttp
    PolicyDecided(intercept, tls)   -> ConnectUpstream(server_name, alpn)
    UpstreamReady(alpn, cert)       -> AcceptClient(hosts, alpn)
    UpstreamFailed(reason)          -> AcceptClient(hosts, alpn)  (for the 502 page)
    ClientAccepted(alpn)            -> ServeHttp | ServeFailure(reason)
    ClientFailed(reason)            -> Close
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from cryptography import x509

from rama_tls import ClientHello

from ._flow import ConnectionMode
from ._plan import HTTP_ALPN, Sniffed, client_alpn, leaf_hosts, sniff, upstream_alpn
from ._policy import MitmDecision, PassThrough, RejectConnection

__all__ = [
    "AcceptClient",
    "AskPolicy",
    "ClientAccepted",
    "ClientFailed",
    "Close",
    "Command",
    "ConnectUpstream",
    "Event",
    "FirstBytes",
    "HelloFailed",
    "HelloParsed",
    "InterceptionLayer",
    "PolicyDecided",
    "ReadClientHello",
    "ReadMore",
    "ServeFailure",
    "ServeHttp",
    "ServePlainHttp",
    "Tunnel",
    "UpstreamFailed",
    "UpstreamReady",
]


# -- events ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FirstBytes:
    """Everything peeked so far; ``final`` when no more will come (EOF, timeout, limit)."""

    data: bytes
    final: bool = False


@dataclass(frozen=True, slots=True)
class HelloParsed:
    hello: ClientHello


@dataclass(frozen=True, slots=True)
class HelloFailed:
    reason: str


@dataclass(frozen=True, slots=True)
class PolicyDecided:
    decision: MitmDecision


@dataclass(frozen=True, slots=True)
class UpstreamReady:
    """The upstream TLS is up: what it chose in ALPN and its certificate."""

    alpn: str | None
    certificate: x509.Certificate | None = None


@dataclass(frozen=True, slots=True)
class UpstreamFailed:
    reason: str


@dataclass(frozen=True, slots=True)
class ClientAccepted:
    alpn: str | None


@dataclass(frozen=True, slots=True)
class ClientFailed:
    reason: str


Event: TypeAlias = (
    FirstBytes
    | HelloParsed
    | HelloFailed
    | PolicyDecided
    | UpstreamReady
    | UpstreamFailed
    | ClientAccepted
    | ClientFailed
)


# -- commands -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ReadMore:
    """Peek more of the first bytes (then send :class:`FirstBytes`)."""


@dataclass(frozen=True, slots=True)
class ReadClientHello:
    """Peek the whole ClientHello (then :class:`HelloParsed` / :class:`HelloFailed`)."""


@dataclass(frozen=True, slots=True)
class AskPolicy:
    hello: ClientHello | None


@dataclass(frozen=True, slots=True)
class Tunnel:
    """Forward bytes both ways untouched (the peeked ones first)."""

    mode: ConnectionMode


@dataclass(frozen=True, slots=True)
class ServePlainHttp:
    """Relay the cleartext HTTP/1.x in the tunnel through the hooks."""


@dataclass(frozen=True, slots=True)
class ConnectUpstream:
    """Open the upstream and handshake, offering ``alpn`` (the client's hello if mirroring)."""

    server_name: str
    alpn: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AcceptClient:
    """Terminate the client's TLS with a leaf for ``hosts``, offering ``alpn``."""

    hosts: tuple[str, ...]
    alpn: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ServeHttp:
    """Serve the decrypted client (``alpn`` picks h1/h2) through the relay."""

    alpn: str | None


@dataclass(frozen=True, slots=True)
class ServeFailure:
    """Answer every request with a 502 page naming ``reason``."""

    reason: str


@dataclass(frozen=True, slots=True)
class Close:
    mode: ConnectionMode
    error: str | None = None


Command: TypeAlias = (
    ReadMore
    | ReadClientHello
    | AskPolicy
    | Tunnel
    | ServePlainHttp
    | ConnectUpstream
    | AcceptClient
    | ServeHttp
    | ServeFailure
    | Close
)


class LayerError(Exception):
    """An event that makes no sense in the current state (a driver bug)."""


class InterceptionLayer:
    """The decisions for one tunnelled connection to ``target_host`` (see the module)."""

    def __init__(self, target_host: str, *, translate: bool = False) -> None:
        self.target_host = target_host.strip("[]")
        self.translate = translate
        """Let each side negotiate its own HTTP version (h1 <-> h2 translated by the relay)."""
        self.state = "start"
        self.kind: Sniffed | None = None
        self.hello: ClientHello | None = None
        self.offered: tuple[str, ...] = ()
        self.upstream_alpn: str | None = None
        self.failure: str | None = None

    def start(self) -> Command:
        """The first command."""
        self._expect("start")
        self.state = "sniff"
        return ReadMore()

    def _expect(self, *states: str) -> None:
        if self.state not in states:
            raise LayerError(f"event in state {self.state!r}, expected {states}")

    def handle(self, event: Event) -> Command:
        """The next command after ``event``."""
        if isinstance(event, FirstBytes):
            self._expect("sniff")
            kind = sniff(event.data)
            if kind is None:
                if not event.final:
                    return ReadMore()
                if not event.data:
                    self.state = "done"
                    return Close("error", "no data")
                kind = Sniffed.OTHER
            self.kind = kind
            if kind is Sniffed.TLS:
                self.state = "hello"
                return ReadClientHello()
            self.state = "policy"
            return AskPolicy(None)
        if isinstance(event, HelloParsed):
            self._expect("hello")
            self.hello = event.hello
            self.offered = tuple(p.decode("latin-1") for p in event.hello.alpn_protocols)
            self.state = "policy"
            return AskPolicy(event.hello)
        if isinstance(event, HelloFailed):
            self._expect("hello")
            self.state = "done"
            return Close("error", event.reason)
        if isinstance(event, PolicyDecided):
            self._expect("policy")
            decision = event.decision
            if isinstance(decision, RejectConnection):
                self.state = "done"
                return Close("reject", decision.reason)
            if isinstance(decision, PassThrough) or self.kind is Sniffed.OTHER:
                self.state = "done"
                return Tunnel("pass_through" if isinstance(decision, PassThrough) else "raw")
            if self.kind is Sniffed.HTTP:
                self.state = "done"
                return ServePlainHttp()
            assert self.hello is not None
            self.state = "upstream"
            # translating: the server picks from both versions; else from the client's
            offer = HTTP_ALPN if self.translate else upstream_alpn(self.offered)
            return ConnectUpstream(self.hello.server_name or self.target_host, offer)
        if isinstance(event, UpstreamReady):
            self._expect("upstream")
            self.upstream_alpn = event.alpn
            self.state = "client"
            if self.translate:
                # the client's own preference, whatever the server chose
                to_client = upstream_alpn(self.offered)
            else:
                to_client = client_alpn(event.alpn, self.offered)
            return AcceptClient(self._hosts(event.certificate), to_client)
        if isinstance(event, UpstreamFailed):
            self._expect("upstream")
            self.failure = event.reason
            self.state = "client"
            # the client still gets a handshake, to read the 502 page
            if "http/1.1" in self.offered:
                alpn: tuple[str, ...] = ("http/1.1",)
            elif "h2" in self.offered:
                alpn = ("h2",)
            else:
                alpn = ()
            return AcceptClient(self._hosts(None), alpn)
        if isinstance(event, ClientAccepted):
            self._expect("client")
            self.state = "done"
            if self.failure is not None:
                return ServeFailure(self.failure)
            return ServeHttp(event.alpn)
        if isinstance(event, ClientFailed):
            self._expect("client")
            self.state = "done"
            return Close("intercept", event.reason)
        raise LayerError(f"unknown event {event!r}")

    def _hosts(self, certificate: x509.Certificate | None) -> tuple[str, ...]:
        sni = self.hello.server_name if self.hello is not None else None
        return leaf_hosts(sni, self.target_host, certificate)
