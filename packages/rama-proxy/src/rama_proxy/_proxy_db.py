"""The upstream proxy DB: records loaded from CSV or JSON, matched against a :class:`ProxyFilter`.

CSV columns, in this order (a header row naming them is optional and may
reorder them; ``credential`` may be left out)::

    id,tcp,udp,http,https,socks5,socks5h,datacenter,residential,mobile,address,pool_id,continent,country,state,city,carrier,asn[,credential]

Booleans are ``true``/``1`` (also ``yes``) or empty/``false``/``0``/``null``/``nil``
(also ``no``), case-insensitive. ``address`` is ``host:port`` or a proxy URL
``scheme://[user:pass@]host[:port]`` (the scheme then is the only one used, and
its column must be true). ``credential`` is ``user:pass`` (or ``user``), sent to
the upstream proxy only. Empty lines and lines starting with ``#`` are skipped.
JSON is a list of objects with the same keys (or ``{"proxies": [...]}``),
booleans as JSON booleans or the strings above.

Matching: OR within a field, AND across fields; ``*`` in the filter accepts
any value (an unset one too), ``*`` in a record matches any filter value;
string comparisons are case-insensitive. A record also has to support what the
request needs: ``tcp`` plus a usable scheme for a CONNECT, ``udp`` plus
``socks5``/``socks5h`` for a UDP associate.

Loading validates every row and raises :class:`ProxyDbError` naming the row
and the column. :class:`ProxyDbFile` reloads the file when it changes (mtime
poll, atomic swap; a bad file keeps the previous DB and logs the error).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import os
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import anyio

from rama_net import AddressError, Authority

from ._filter import ProxyFilter
from ._labels import normalize_asn

__all__ = [
    "CSV_COLUMNS",
    "PROXY_SCHEMES",
    "ProxyDb",
    "ProxyDbError",
    "ProxyDbFile",
    "ProxyDbSource",
    "Transport",
    "UpstreamProxy",
]

_log = logging.getLogger("rama.proxy.db")

CSV_COLUMNS = (
    "id",
    "tcp",
    "udp",
    "http",
    "https",
    "socks5",
    "socks5h",
    "datacenter",
    "residential",
    "mobile",
    "address",
    "pool_id",
    "continent",
    "country",
    "state",
    "city",
    "carrier",
    "asn",
    "credential",
)
"""The record columns, in CSV order (``credential`` optional)."""

PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")
"""The upstream proxy protocols a record can support (one boolean column each)."""

_BOOL_COLUMNS = frozenset(
    ("tcp", "udp", "http", "https", "socks5", "socks5h", "datacenter", "residential", "mobile")
)
_TRUE = frozenset(("true", "1", "yes"))
_FALSE = frozenset(("", "false", "0", "null", "nil", "no"))
_DEFAULT_PORTS = {"http": 80, "https": 443, "socks5": 1080, "socks5h": 1080}
_UDP_SCHEMES = frozenset(("socks5", "socks5h"))
_MATCH_FIELDS = ("id", "pool_id", "continent", "country", "state", "city", "carrier", "asn")
_FILTER_OF = dict(
    zip(
        _MATCH_FIELDS,
        ("id", "pool", "continent", "country", "state", "city", "carrier", "asn"),
        strict=True,
    )
)
_BAD_CREDENTIAL_CHARS = frozenset("/?#@ \t\r\n")

Transport = Literal["tcp", "udp"]
"""What the request tunnels: a TCP stream (CONNECT) or UDP datagrams (SOCKS5 UDP ASSOCIATE)."""


class ProxyDbError(ValueError):
    """A proxy DB file or row is invalid; the message names the source, row and column."""

    def __init__(
        self, message: str, *, source: str = "", row: int | None = None, column: str | None = None
    ) -> None:
        where = source
        if row is not None:
            where += f"{':' if where else ''}row {row}"
        if column is not None:
            where += f" column {column!r}"
        super().__init__(f"{where}: {message}" if where else message)
        self.source = source
        self.row = row
        """1-based line (CSV) or list index + 1 (JSON)."""
        self.column = column


@dataclass(frozen=True, slots=True)
class UpstreamProxy:
    """One upstream proxy of the DB."""

    id: str
    address: str
    """``host:port`` or a proxy URL (its credentials, if any, moved to :attr:`credential`)."""
    tcp: bool = True
    udp: bool = False
    http: bool = False
    https: bool = False
    socks5: bool = False
    socks5h: bool = False
    datacenter: bool = False
    residential: bool = False
    mobile: bool = False
    pool_id: str | None = None
    continent: str | None = None
    country: str | None = None
    state: str | None = None
    city: str | None = None
    carrier: str | None = None
    asn: str | None = None
    credential: str | None = field(default=None, repr=False)
    """``user:pass`` for the upstream proxy (never logged, never sent to the target)."""
    authority: Authority = field(init=False, compare=False, repr=False)
    """Where to dial (parsed from :attr:`address`)."""
    scheme: str | None = field(init=False, compare=False)
    """The scheme the address names, if it is a URL; then the only one used."""
    schemes: tuple[str, ...] = field(init=False, compare=False, repr=False)
    """The proxy protocols this record supports, in :data:`PROXY_SCHEMES` order."""
    _url_tail: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        scheme, authority, credential = _parse_address(self.address)
        if scheme is not None and not getattr(self, scheme):
            raise ValueError(f"address uses {scheme}:// but the {scheme} column is false")
        if credential is not None:
            if self.credential is not None:
                raise ValueError("credentials both in the address and the credential column")
            object.__setattr__(self, "credential", credential)
            host_part = self.address.strip().rpartition("@")[2]
            object.__setattr__(self, "address", f"{scheme}://{host_part}")
        object.__setattr__(self, "authority", authority)
        object.__setattr__(self, "scheme", scheme)
        schemes = (scheme,) if scheme else tuple(s for s in PROXY_SCHEMES if getattr(self, s))
        object.__setattr__(self, "schemes", schemes)
        if self.credential is not None:
            _check_credential(self.credential)
        userinfo = f"{self.credential}@" if self.credential else ""
        object.__setattr__(self, "_url_tail", f"://{userinfo}{authority}")

    def supports(self, transport: Transport, scheme: str) -> bool:
        """Whether a request over ``transport`` may go through this record with ``scheme``."""
        if scheme not in self.schemes:
            return False
        if transport == "udp":
            return self.udp and scheme in _UDP_SCHEMES
        return self.tcp

    def url(self, scheme: str) -> str:
        """The proxy URL for ``scheme`` with the credential as userinfo."""
        return scheme + self._url_tail

    def to_row(self) -> dict[str, Any]:
        """The record as a JSON object (the form :meth:`ProxyDb.from_json` reads)."""
        row: dict[str, Any] = {name: getattr(self, name) for name in CSV_COLUMNS}
        row["address"] = self.address
        if self.credential is None:
            del row["credential"]
        return row


def _check_credential(value: str) -> None:
    if not value or not value.isprintable() or any(c in _BAD_CREDENTIAL_CHARS for c in value):
        raise ValueError("credential must be user[:pass] without spaces, '/', '?', '#' or '@'")


def _parse_address(address: str) -> tuple[str | None, Authority, str | None]:
    text = address.strip()
    if not text:
        raise ValueError("empty address")
    scheme: str | None = None
    credential: str | None = None
    if "://" in text:
        scheme_text, _, text = text.partition("://")
        scheme = scheme_text.lower()
        if scheme not in _DEFAULT_PORTS:
            raise ValueError(
                f"unsupported proxy scheme {scheme_text!r} (use {', '.join(PROXY_SCHEMES)})"
            )
        text = text.removesuffix("/")
        if any(c in text for c in "/?#"):
            raise ValueError("a proxy URL has no path, query or fragment")
        if "@" in text:
            credential, _, text = text.rpartition("@")
    try:
        if scheme is not None:
            authority = Authority.parse(text, default_port=_DEFAULT_PORTS[scheme])
        else:
            authority = Authority.parse(text)
    except AddressError as e:
        raise ValueError(f"invalid address {address!r}: {e}") from None
    return scheme, authority, credential


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        v = value.strip().lower()
        if v in _TRUE:
            return True
        if v in _FALSE:
            return False
    raise ValueError(f"expected a boolean (true/1 or empty/false/0/null/nil), got {value!r}")


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"expected a string, got {value!r}")
    v = str(value).strip()
    if not v:
        return None
    if not v.isprintable():
        raise ValueError("unprintable characters")
    return v


def _record(fields: Mapping[str, object], *, source: str, row: int) -> UpstreamProxy:
    for name in fields:
        if name not in CSV_COLUMNS:
            raise ProxyDbError(
                f"unknown column (known: {', '.join(CSV_COLUMNS)})",
                source=source,
                row=row,
                column=name,
            )
    values: dict[str, Any] = {}
    for name in CSV_COLUMNS:
        raw = fields.get(name)
        try:
            if name in _BOOL_COLUMNS:
                values[name] = _bool(raw)
            else:
                values[name] = _text(raw)
        except ValueError as e:
            raise ProxyDbError(str(e), source=source, row=row, column=name) from None
    for name in ("id", "address"):
        if values[name] is None:
            raise ProxyDbError("required", source=source, row=row, column=name)
    if not (values["tcp"] or values["udp"]):
        raise ProxyDbError("the proxy supports neither tcp nor udp", source=source, row=row)
    if not any(values[s] for s in PROXY_SCHEMES):
        raise ProxyDbError(
            f"the proxy supports no protocol ({', '.join(PROXY_SCHEMES)})", source=source, row=row
        )
    if values["asn"] is not None:
        values["asn"] = normalize_asn(values["asn"])
    try:
        return UpstreamProxy(**values)
    except ValueError as e:
        column = "credential" if "credential" in str(e) and "address" not in str(e) else "address"
        raise ProxyDbError(str(e), source=source, row=row, column=column) from None


def _check_unique(rec: UpstreamProxy, seen: dict[str, int], *, source: str, row: int) -> None:
    first = seen.setdefault(rec.id, row)
    if first != row:
        raise ProxyDbError(
            f"duplicate id {rec.id!r} (first at row {first})", source=source, row=row, column="id"
        )


def _field_key(value: str | None) -> str | None:
    return value.lower() if value is not None else None


class ProxyDb:
    """An immutable, indexed set of :class:`UpstreamProxy` records (swap a new one to change it)."""

    def __init__(self, records: Iterable[UpstreamProxy] = (), *, source: str = "") -> None:
        self.records: tuple[UpstreamProxy, ...] = tuple(records)
        self.source = source
        ids: dict[str, int] = {}
        for i, rec in enumerate(self.records):
            if rec.id in ids:
                raise ProxyDbError(
                    f"duplicate id {rec.id!r} (first at record {ids[rec.id] + 1})",
                    source=source,
                    row=i + 1,
                    column="id",
                )
            ids[rec.id] = i
        self._by_id = {rec.id: rec for rec in self.records}
        # Per field: lowercased value -> record indices; "*" records match every value.
        self._keys = [tuple(_field_key(getattr(r, f)) for f in _MATCH_FIELDS) for r in self.records]
        self._index: list[dict[str, list[int]]] = [{} for _ in _MATCH_FIELDS]
        for i, keys in enumerate(self._keys):
            for f, key in enumerate(keys):
                if key is not None:
                    self._index[f].setdefault(key, []).append(i)
        self._cache: dict[
            tuple[ProxyFilter, str, frozenset[str] | None], tuple[UpstreamProxy, ...]
        ] = {}

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[UpstreamProxy]:
        return iter(self.records)

    def get(self, record_id: str) -> UpstreamProxy | None:
        """The record with ``record_id``, or None."""
        return self._by_id.get(record_id)

    def current(self) -> ProxyDb:
        """Itself (a :class:`ProxyDbSource` that never changes)."""
        return self

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def from_csv(cls, text: str, *, source: str = "<csv>") -> ProxyDb:
        """Parse CSV text (see the module docs for the columns)."""
        records: list[UpstreamProxy] = []
        seen: dict[str, int] = {}
        columns: Sequence[str] | None = None
        reader = csv.reader(io.StringIO(text), strict=True)
        try:
            for cells in reader:
                row = reader.line_num
                if not cells or (len(cells) == 1 and not cells[0].strip()):
                    continue
                if cells[0].lstrip().startswith("#"):
                    continue
                lowered = [c.strip().lower() for c in cells]
                if (
                    columns is None
                    and not records
                    and (lowered[0] == "id" or all(c in CSV_COLUMNS for c in lowered))
                ):
                    columns = [c.strip().lower() for c in cells]
                    for c in columns:
                        if c not in CSV_COLUMNS:
                            raise ProxyDbError(
                                "unknown column in the header", source=source, row=row, column=c
                            )
                    if len(set(columns)) != len(columns):
                        raise ProxyDbError(
                            "a column is named twice in the header", source=source, row=row
                        )
                    for c in ("id", "address"):
                        if c not in columns:
                            raise ProxyDbError(
                                "the header lacks this column", source=source, row=row, column=c
                            )
                    continue
                names = columns if columns is not None else CSV_COLUMNS
                if columns is None and len(cells) not in (len(CSV_COLUMNS) - 1, len(CSV_COLUMNS)):
                    raise ProxyDbError(
                        f"expected {len(CSV_COLUMNS) - 1} or {len(CSV_COLUMNS)} columns,"
                        f" got {len(cells)}",
                        source=source,
                        row=row,
                    )
                if columns is not None and len(cells) != len(columns):
                    raise ProxyDbError(
                        f"expected {len(columns)} columns (as the header), got {len(cells)}",
                        source=source,
                        row=row,
                    )
                rec = _record(dict(zip(names, cells, strict=False)), source=source, row=row)
                _check_unique(rec, seen, source=source, row=row)
                records.append(rec)
        except csv.Error as e:
            raise ProxyDbError(f"malformed CSV: {e}", source=source, row=reader.line_num) from None
        return cls(records, source=source)

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "<json>") -> ProxyDb:
        """Parse JSON: a list of record objects, or ``{"proxies": [...]}``."""
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as e:
            raise ProxyDbError(f"invalid JSON: {e}", source=source) from None
        if isinstance(data, dict) and set(data) == {"proxies"}:
            data = data["proxies"]
        if not isinstance(data, list):
            raise ProxyDbError('expected a list of proxies (or {"proxies": [...]})', source=source)
        records: list[UpstreamProxy] = []
        seen: dict[str, int] = {}
        for i, item in enumerate(data, 1):
            if not isinstance(item, dict):
                raise ProxyDbError("expected an object", source=source, row=i)
            rec = _record(item, source=source, row=i)
            _check_unique(rec, seen, source=source, row=i)
            records.append(rec)
        return cls(records, source=source)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, format: Literal["csv", "json"] | None = None
    ) -> ProxyDb:
        """Read a CSV or JSON file (by ``format``, else by the ``.json`` suffix)."""
        p = Path(path)
        fmt = format or ("json" if p.suffix.lower() == ".json" else "csv")
        try:
            data = p.read_bytes()
        except OSError as e:
            raise ProxyDbError(f"cannot read: {e.strerror or e}", source=str(p)) from None
        if fmt == "json":
            return cls.from_json(data, source=str(p))
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise ProxyDbError(f"not UTF-8: {e}", source=str(p)) from None
        return cls.from_csv(text, source=str(p))

    # -- matching --------------------------------------------------------------------------

    def matches(self, record: UpstreamProxy, proxy_filter: ProxyFilter) -> bool:
        """Whether ``record`` satisfies the filter (capabilities not considered)."""
        keys = tuple(_field_key(getattr(record, f)) for f in _MATCH_FIELDS)
        return _match(keys, record, _normalized(proxy_filter.match_key))

    def query(
        self,
        proxy_filter: ProxyFilter,
        *,
        transport: Transport = "tcp",
        schemes: Collection[str] | None = None,
    ) -> tuple[UpstreamProxy, ...]:
        """The records matching the filter that can carry ``transport`` with one of ``schemes``.

        ``schemes`` are the proxy protocols the caller can speak (None: all of
        :data:`PROXY_SCHEMES`). Results are cached per filter (the DB never changes).
        """
        f = proxy_filter.match_key
        scheme_set = frozenset(schemes) if schemes is not None else None
        cache_key = (f, transport, scheme_set)
        hit = self._cache.get(cache_key)
        if hit is not None:
            return hit
        f = _normalized(f)
        out = tuple(
            rec
            for i in self._candidates(f)
            if _match(self._keys[i], (rec := self.records[i]), f)
            and _capable(rec, transport, scheme_set)
        )
        if len(self._cache) >= 4096:
            self._cache.clear()
        self._cache[cache_key] = out
        return out

    def _candidates(self, f: ProxyFilter) -> Iterable[int]:
        best: list[int] | None = None
        for pos, name in enumerate(_MATCH_FIELDS):
            wanted: tuple[str, ...] = getattr(f, _FILTER_OF[name])
            if not wanted or "*" in wanted:
                continue
            index = self._index[pos]
            hits = [i for v in wanted for i in index.get(v, ())] + index.get("*", [])
            if best is None or len(hits) < len(best):
                best = hits
        if best is None:
            return range(len(self.records))
        return sorted(set(best))


def _normalized(f: ProxyFilter) -> ProxyFilter:
    """Lowercased values (ASNs without ``AS``), as labels produce them."""
    changes: dict[str, tuple[str, ...]] = {}
    for name in _FILTER_OF.values():
        values: tuple[str, ...] = getattr(f, name)
        norm = tuple(normalize_asn(v) if name == "asn" else v.lower() for v in values)
        if norm != values:
            changes[name] = norm
    return dataclasses.replace(f, **changes) if changes else f  # type: ignore[arg-type]


def _match(keys: tuple[str | None, ...], rec: UpstreamProxy, f: ProxyFilter) -> bool:
    for pos, name in enumerate(_MATCH_FIELDS):
        wanted: tuple[str, ...] = getattr(f, _FILTER_OF[name])
        if not wanted or "*" in wanted:
            continue
        key = keys[pos]
        if key is None or (key != "*" and key not in wanted):
            return False
    if f.datacenter is not None and rec.datacenter != f.datacenter:
        return False
    if f.residential is not None and rec.residential != f.residential:
        return False
    return f.mobile is None or rec.mobile == f.mobile


def _capable(rec: UpstreamProxy, transport: Transport, schemes: frozenset[str] | None) -> bool:
    if transport == "udp" and not rec.udp:
        return False
    if transport == "tcp" and not rec.tcp:
        return False
    for s in rec.schemes:
        if (schemes is None or s in schemes) and (transport == "tcp" or s in _UDP_SCHEMES):
            return True
    return False


class ProxyDbSource(Protocol):
    """Where a selector reads the current DB (a fixed :class:`ProxyDb`, or a reloading file)."""

    def current(self) -> ProxyDb:
        """The DB to use for this request."""
        ...


class ProxyDbFile:
    """A proxy DB file, reloaded when it changes: ``async with ProxyDbFile(path) as db: ...``.

    The first load happens in the constructor and raises :class:`ProxyDbError`.
    :meth:`watch` (or the async context manager) polls the file's mtime, size
    and inode every ``interval`` seconds; a changed file is parsed off the event
    loop and swapped in atomically. A bad or missing file keeps the previous DB
    and logs the error once per change.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        interval: float = 2.0,
        format: Literal["csv", "json"] | None = None,
        on_reload: Callable[[ProxyDb], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.interval = interval
        self.format: Literal["csv", "json"] | None = format
        self.on_reload = on_reload
        self._signature = self._stat()
        self._db = ProxyDb.load(self.path, format=format)
        self._tg: anyio.abc.TaskGroup | None = None
        self.reloads = 0
        """Successful reloads since construction."""
        self.last_error: ProxyDbError | None = None
        """Why the last reload attempt failed (None after a good one)."""

    def current(self) -> ProxyDb:
        """The DB in force."""
        return self._db

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    async def check(self) -> bool:
        """Reload now if the file changed; True when a new DB was swapped in."""
        signature = await anyio.to_thread.run_sync(self._stat)
        if signature == self._signature:
            return False
        self._signature = signature
        if signature is None:
            self.last_error = ProxyDbError("file is missing", source=str(self.path))
            _log.warning(
                "proxy DB %s is missing; keeping the previous %d proxies", self.path, len(self._db)
            )
            return False
        try:
            db = await anyio.to_thread.run_sync(lambda: ProxyDb.load(self.path, format=self.format))
        except ProxyDbError as e:
            self.last_error = e
            _log.error(
                "proxy DB reload failed, keeping the previous %d proxies: %s", len(self._db), e
            )
            return False
        except Exception as e:  # a bug, not the file's fault: keep serving, say so loudly
            self.last_error = ProxyDbError(f"internal error: {e!r}", source=str(self.path))
            _log.exception("proxy DB reload of %s crashed; keeping the previous DB", self.path)
            return False
        self._db = db
        self.reloads += 1
        self.last_error = None
        _log.info("proxy DB %s reloaded: %d proxies", self.path, len(db))
        if self.on_reload is not None:
            self.on_reload(db)
        return True

    async def watch(self) -> None:
        """Poll forever (run it in a task group; cancel to stop)."""
        while True:
            await anyio.sleep(self.interval)
            await self.check()

    async def __aenter__(self) -> ProxyDbFile:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self.watch)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(None, None, None)
        self._tg = None
