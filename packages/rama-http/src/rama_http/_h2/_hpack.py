"""HPACK (RFC 7541): header compression for HTTP/2, sans-IO.

:class:`Decoder` turns a header block into ``(name, value)`` byte tuples in
wire order (exact bytes kept, for fingerprints) and checks each literal's
characters against RFC 9113 section 8.2.1 as it goes, so the engine only
validates semantics. Huffman strings are decoded with a state table: one
lookup per input byte (256 states x 256 bytes, built on first use).

:class:`Encoder` indexes what repeats, never indexes sensitive fields,
optionally Huffman-encodes, and caches whole header blocks: a response whose
header list was encoded before, while the dynamic table did not change, costs
one dict lookup.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

from ._huffman import HUFFMAN_CODES, HUFFMAN_LENGTHS, STATIC_TABLE

__all__ = [
    "DEFAULT_TABLE_SIZE",
    "Decoder",
    "Encoder",
    "HPACKError",
    "HeaderListTooLarge",
    "field_problem",
    "huffman_decode",
    "huffman_encode",
]

DEFAULT_TABLE_SIZE = 4096


class HPACKError(Exception):
    """A header block that cannot be decoded (COMPRESSION_ERROR, a connection error)."""


class HeaderListTooLarge(HPACKError):
    """The decoded header list exceeds the limit (RFC 9113 accounting: name + value + 32 each).

    Raised after the whole block was decoded, so the dynamic table stays in
    step with the peer's and the connection could go on.
    """


# --- Huffman -----------------------------------------------------------------

_HUFF_NEXT: list[int] = []
_HUFF_EMIT: list[bytes] = []
_HUFF_ACCEPT: list[bool] = []


def _build_huffman_tables() -> None:
    # The decoding tree: node 0 is the root; children[node] = [zero, one];
    # a child value >= 0 is an inner node, -1 - sym a leaf.
    children: list[list[int]] = [[0, 0]]
    for sym, (code, length) in enumerate(zip(HUFFMAN_CODES, HUFFMAN_LENGTHS, strict=True)):
        node = 0
        for i in range(length - 1, -1, -1):
            bit = (code >> i) & 1
            if i == 0:
                children[node][bit] = -1 - sym
            else:
                nxt = children[node][bit]
                if nxt <= 0:
                    children.append([0, 0])
                    nxt = len(children) - 1
                    children[node][bit] = nxt
                node = nxt
    states = len(children)
    # accept[node]: ending the string here is valid padding (only 1 bits, fewer than 8).
    accept = [False] * states
    node, depth = 0, 0
    while node >= 0 and depth < 8:
        accept[node] = True
        node = children[node][1]
        depth += 1
    # 4-bit step table, then composed into the 8-bit one.
    nib_next = [0] * (states * 16)
    nib_emit: list[bytes] = [b""] * (states * 16)
    for s in range(states):
        for nib in range(16):
            node = s
            out = bytearray()
            ok = True
            for i in (3, 2, 1, 0):
                child = children[node][(nib >> i) & 1]
                if child < 0:
                    sym = -1 - child
                    if sym == 256:
                        ok = False
                        break
                    out.append(sym)
                    node = 0
                else:
                    node = child
            nib_next[s * 16 + nib] = node if ok else -1
            nib_emit[s * 16 + nib] = bytes(out)
    nxt_tab = [0] * (states * 256)
    emit_tab: list[bytes] = [b""] * (states * 256)
    for s in range(states):
        base = s * 16
        for hi in range(16):
            s1 = nib_next[base + hi]
            e1 = nib_emit[base + hi]
            for lo in range(16):
                idx = (s << 8) | (hi << 4) | lo
                if s1 < 0:
                    nxt_tab[idx] = -1
                    continue
                s2 = nib_next[s1 * 16 + lo]
                nxt_tab[idx] = s2
                emit_tab[idx] = e1 + nib_emit[s1 * 16 + lo] if s2 >= 0 else b""
    _HUFF_NEXT[:] = nxt_tab
    _HUFF_EMIT[:] = emit_tab
    _HUFF_ACCEPT[:] = accept


def huffman_decode(data: bytes | memoryview) -> bytes:
    """Decode a Huffman-coded string (RFC 7541 section 5.2); :class:`HPACKError` if invalid."""
    if not _HUFF_NEXT:
        _build_huffman_tables()
    nxt = _HUFF_NEXT
    emit = _HUFF_EMIT
    state = 0
    out: list[bytes] = []
    append = out.append
    for b in data:
        idx = (state << 8) | b
        state = nxt[idx]
        if state < 0:
            raise HPACKError("invalid Huffman code (EOS in string)")
        e = emit[idx]
        if e:
            append(e)
    if not _HUFF_ACCEPT[state]:
        raise HPACKError("invalid Huffman padding")
    return b"".join(out)


def huffman_encode(data: bytes) -> bytes:
    """Huffman-encode a string (RFC 7541 section 5.2), padded with 1 bits."""
    acc = 0
    bits = 0
    codes = HUFFMAN_CODES
    lengths = HUFFMAN_LENGTHS
    for b in data:
        n = lengths[b]
        acc = (acc << n) | codes[b]
        bits += n
    pad = -bits % 8
    if pad:
        acc = (acc << pad) | ((1 << pad) - 1)
    return acc.to_bytes((bits + pad) >> 3, "big")


def _huffman_length(data: bytes) -> int:
    lengths = HUFFMAN_LENGTHS
    return (sum([lengths[b] for b in data]) + 7) >> 3


# --- integers and strings ----------------------------------------------------


def _encode_int(value: int, prefix_bits: int, first: int) -> bytes:
    """An integer with an N-bit prefix; ``first`` holds the bits above the prefix."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _decode_int(data: bytes, pos: int, limit: int) -> tuple[int, int]:
    """Continue an integer whose prefix (at ``pos - 1``) was all ones (``limit``)."""
    value = limit
    shift = 0
    n = len(data)
    while True:
        if pos >= n:
            raise HPACKError("truncated integer")
        b = data[pos]
        pos += 1
        value += (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift > 28:
            raise HPACKError("integer too large")


# Characters that may not appear in a field name (RFC 9113 section 8.2.1):
# controls, space, uppercase, DEL and non-ASCII. Also ":" after the first byte.
_BAD_NAME_CHARS = bytes([*range(0x21), *range(0x41, 0x5B), *range(0x7F, 0x100)])
_NAME_DELETE = bytes(c for c in range(256) if c not in _BAD_NAME_CHARS and c != 0x3A)
_TOKEN_CHARS = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")


def field_problem(name: bytes, value: bytes) -> str | None:
    """Why a field breaks RFC 9113 section 8.2.1 character rules, or None."""
    if not name:
        return "empty field name"
    body = name[1:] if name[0] == 0x3A else name
    if not body or body.translate(None, _NAME_DELETE):
        return "invalid character in a field name (uppercase, control, space, ':' or non-ASCII)"
    if value:
        if b"\r" in value or b"\n" in value or b"\x00" in value:
            return "CR, LF or NUL in a field value"
        if value[0] in (0x20, 0x09) or value[-1] in (0x20, 0x09):
            return "leading or trailing whitespace in a field value"
    return None


_STATIC_SIZES = tuple(len(n) + len(v) + 32 for n, v in STATIC_TABLE)


class Decoder:
    """Decodes header blocks of one direction of a connection.

    ``max_table_size`` is what we allowed the peer (our SETTINGS_HEADER_TABLE_SIZE,
    once acknowledged); the peer's size updates may not exceed it. When it is
    lowered below the size in use, the next block must start with a size update
    (RFC 7541 section 4.2). ``max_header_list_size`` bounds the decoded list.

    After each :meth:`decode`, :attr:`problem` holds the first RFC 9113 section
    8.2.1 character-rule violation of the block (or None) and
    :attr:`never_indexed` the positions of never-indexed fields.
    """

    __slots__ = (
        "_cache",
        "_dyn",
        "_dyn_size",
        "_generation",
        "_max",
        "_require_update",
        "_tainted",
        "max_header_list_size",
        "max_table_size",
        "never_indexed",
        "problem",
        "validate",
    )

    def __init__(
        self,
        *,
        max_table_size: int = DEFAULT_TABLE_SIZE,
        max_header_list_size: int = 64 * 1024,
        validate: bool = True,
    ) -> None:
        self._dyn: deque[tuple[bytes, bytes]] = deque()
        self._dyn_size = 0
        self._generation = 0
        self._cache: dict[bytes, tuple[int, list[tuple[bytes, bytes]], int]] = {}
        self._max = max_table_size
        self.max_table_size = max_table_size
        self.max_header_list_size = max_header_list_size
        self._require_update = False
        self._tainted: set[tuple[bytes, bytes]] = set()
        self.validate = validate
        self.problem: str | None = None
        self.never_indexed: list[int] = []

    @property
    def table_size(self) -> int:
        """The dynamic table's current size (RFC 7541 accounting)."""
        return self._dyn_size

    @property
    def generation(self) -> int:
        """Changes whenever the dynamic table does: a block decodes the same within one."""
        return self._generation

    @property
    def table(self) -> list[tuple[bytes, bytes]]:
        """The dynamic table, newest entry first."""
        return list(self._dyn)

    def set_max_table_size(self, size: int) -> None:
        """Apply a new SETTINGS_HEADER_TABLE_SIZE of ours (once the peer acknowledged it)."""
        if size < self._max:
            self._require_update = True
        self.max_table_size = size

    def _resize(self, size: int) -> None:
        self._max = size
        self._generation += 1
        dyn = self._dyn
        while self._dyn_size > size:
            n, v = dyn.pop()
            self._dyn_size -= len(n) + len(v) + 32

    def _add(self, entry: tuple[bytes, bytes]) -> None:
        size = len(entry[0]) + len(entry[1]) + 32
        dyn = self._dyn
        self._generation += 1
        if size > self._max:
            dyn.clear()
            self._dyn_size = 0
            return
        limit = self._max - size
        while self._dyn_size > limit:
            n, v = dyn.pop()
            self._dyn_size -= len(n) + len(v) + 32
        dyn.appendleft(entry)
        self._dyn_size += size

    def decode(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """Decode one complete header block.

        A block made only of indexed fields (a request repeated on a connection)
        is decoded once per dynamic-table state: later copies cost a dict lookup.
        """
        hit = self._cache.get(data)
        if hit is not None and hit[0] == self._generation and not self._require_update:
            if hit[2] > self.max_header_list_size:
                raise HeaderListTooLarge(f"header list of {hit[2]} bytes exceeds the limit")
            self.problem = None
            if self.never_indexed:
                self.never_indexed = []
            return list(hit[1])
        generation = self._generation
        out: list[tuple[bytes, bytes]] = []
        append = out.append
        static = STATIC_TABLE
        static_sizes = _STATIC_SIZES
        dyn = self._dyn
        pos = 0
        n = len(data)
        total = 0
        limit = self.max_header_list_size
        validate = self.validate
        tainted = self._tainted
        self.problem = None
        if self.never_indexed:
            self.never_indexed = []
        if self._require_update:
            if self._dyn_size > self.max_table_size and (not n or data[0] & 0xE0 != 0x20):
                raise HPACKError(
                    "missing dynamic table size update after SETTINGS_HEADER_TABLE_SIZE"
                )
            if not n or data[0] & 0xE0 != 0x20:
                self._resize(min(self._max, self.max_table_size))
            self._require_update = False
        try:
            while pos < n:
                b = data[pos]
                pos += 1
                if b & 0x80:  # indexed field
                    idx = b & 0x7F
                    if idx == 0x7F:
                        idx, pos = _decode_int(data, pos, 0x7F)
                    if idx <= 61:
                        if idx == 0:
                            raise HPACKError("index 0")
                        entry = static[idx - 1]
                        total += static_sizes[idx - 1]
                    else:
                        entry = dyn[idx - 62]
                        if tainted and entry in tainted and self.problem is None:
                            self.problem = field_problem(*entry)
                        total += len(entry[0]) + len(entry[1]) + 32
                    if total <= limit:
                        append(entry)
                    continue
                if b & 0x40:  # literal with incremental indexing
                    idx = b & 0x3F
                    if idx == 0x3F:
                        idx, pos = _decode_int(data, pos, 0x3F)
                    index = True
                elif b & 0x20:  # dynamic table size update
                    size = b & 0x1F
                    if size == 0x1F:
                        size, pos = _decode_int(data, pos, 0x1F)
                    if out or total:
                        raise HPACKError("dynamic table size update after a field")
                    if size > self.max_table_size:
                        raise HPACKError("dynamic table size update above the limit")
                    self._resize(size)
                    continue
                else:  # without indexing (0x00) or never indexed (0x10)
                    idx = b & 0x0F
                    if idx == 0x0F:
                        idx, pos = _decode_int(data, pos, 0x0F)
                    index = False
                    if b & 0x10:
                        self.never_indexed.append(len(out))
                checked = False
                if idx:
                    if idx <= 61:
                        name = static[idx - 1][0]
                        checked = True
                    else:
                        ent = dyn[idx - 62]
                        name = ent[0]
                        checked = not tainted or ent not in tainted
                else:
                    if pos >= n:
                        raise HPACKError("truncated string")
                    sb = data[pos]
                    ln = sb & 0x7F
                    pos += 1
                    if ln == 0x7F:
                        ln, pos = _decode_int(data, pos, 0x7F)
                    end = pos + ln
                    if end > n:
                        raise HPACKError("truncated string")
                    name = huffman_decode(data[pos:end]) if sb & 0x80 else data[pos:end]
                    pos = end
                if pos >= n:
                    raise HPACKError("truncated string")
                sb = data[pos]
                ln = sb & 0x7F
                pos += 1
                if ln == 0x7F:
                    ln, pos = _decode_int(data, pos, 0x7F)
                end = pos + ln
                if end > n:
                    raise HPACKError("truncated string")
                value = huffman_decode(data[pos:end]) if sb & 0x80 else data[pos:end]
                pos = end
                entry = (name, value)
                if validate:
                    # Names from the tables were checked when they got there.
                    if checked:
                        bad = None
                        if value and (
                            b"\r" in value
                            or b"\n" in value
                            or b"\x00" in value
                            or value[0] in (0x20, 0x09)
                            or value[-1] in (0x20, 0x09)
                        ):
                            bad = field_problem(name, value)
                    else:
                        bad = field_problem(name, value)
                    if bad is not None:
                        if self.problem is None:
                            self.problem = bad
                        if index:
                            tainted.add(entry)
                if index:
                    self._add(entry)
                total += len(name) + len(value) + 32
                if total <= limit:
                    append(entry)
        except IndexError:
            raise HPACKError("index out of range") from None
        if total > limit:
            raise HeaderListTooLarge(f"header list of {total} bytes exceeds {limit}")
        if generation == self._generation and self.problem is None and not self.never_indexed:
            cache = self._cache
            if len(cache) >= 64:
                cache.clear()
            cache[data] = (generation, out, total)
            return list(out)
        return out


class Encoder:
    """Encodes header blocks of one direction of a connection.

    ``never_index`` names are sent as never-indexed literals (RFC 7541 section
    7.1.3); ``no_index`` names (values that change on every message) as literals
    without indexing, which also keeps the dynamic table stable so the block
    cache hits. ``huffman`` Huffman-codes strings when that is shorter.
    ``max_table_size`` is the table size both sides start with (4096 in HTTP/2).
    """

    __slots__ = (
        "_cache",
        "_dyn",
        "_dyn_size",
        "_evicted",
        "_exact",
        "_generation",
        "_inserted",
        "_max",
        "_names",
        "_pending_update",
        "cache_size",
        "huffman",
        "max_table_size",
        "never_index",
        "no_index",
    )

    def __init__(
        self,
        *,
        huffman: bool = False,
        never_index: Iterable[bytes] = (b"authorization", b"proxy-authorization", b"set-cookie"),
        no_index: Iterable[bytes] = (
            b":path",
            b"content-length",
            b"date",
            b"etag",
            b"last-modified",
            b"if-modified-since",
            b"if-none-match",
            b"age",
            b"expires",
            b"content-range",
            b"location",
        ),
        cache_size: int = 256,
        max_table_size: int = DEFAULT_TABLE_SIZE,
    ) -> None:
        self._dyn: deque[tuple[bytes, bytes]] = deque()
        self._dyn_size = 0
        self._max = max_table_size
        self.max_table_size = max_table_size
        """The most the peer's decoder allows (its SETTINGS_HEADER_TABLE_SIZE)."""
        self._exact: dict[tuple[bytes, bytes], int] = {}
        self._names: dict[bytes, int] = {}
        self._inserted = 0
        self._evicted = 0
        self._generation = 0
        self._pending_update: list[int] = []
        self._cache: dict[object, tuple[int, bytes]] = {}
        self.cache_size = cache_size
        self.huffman = huffman
        self.never_index = frozenset(never_index)
        self.no_index = frozenset(no_index)

    def set_max_table_size(self, size: int) -> None:
        """Apply the peer's SETTINGS_HEADER_TABLE_SIZE; the next block starts with a size update.

        We never use more than 4096 bytes even when allowed more.
        """
        self.max_table_size = size
        new = min(size, DEFAULT_TABLE_SIZE)
        if new == self._max:
            return
        pending = self._pending_update
        if not pending:
            self._pending_update = [new]
        else:
            # Signal the lowest size reached, then the final one (RFC 7541 section 4.2).
            low = min(pending[0], new)
            self._pending_update = [low] if low == new else [low, new]
        self._resize(new)

    def _resize(self, size: int) -> None:
        self._max = size
        self._evict(0)
        self._generation += 1

    def _evict(self, room: int) -> None:
        dyn = self._dyn
        limit = self._max - room
        while self._dyn_size > limit and dyn:
            name, value = dyn.pop()
            self._dyn_size -= len(name) + len(value) + 32
            k = self._evicted
            self._evicted += 1
            if self._exact.get((name, value)) == k:
                del self._exact[(name, value)]
            if self._names.get(name) == k:
                del self._names[name]

    def _add(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value) + 32
        self._generation += 1
        if size > self._max:
            self._evict(self._max)
            # An entry larger than the table empties it and is not added.
            return
        self._evict(size)
        self._dyn.appendleft((name, value))
        self._dyn_size += size
        k = self._inserted
        self._inserted += 1
        self._exact[(name, value)] = k
        self._names[name] = k

    def _string(self, s: bytes) -> bytes:
        if self.huffman and len(s) > 1:
            hl = _huffman_length(s)
            if hl <= len(s):
                return _encode_int(hl, 7, 0x80) + huffman_encode(s)
        n = len(s)
        if n < 127:
            return bytes((n,)) + s
        return _encode_int(n, 7, 0) + s

    def encode(self, headers: Sequence[tuple[bytes, bytes]]) -> bytes:
        """Encode a header list (bytes tuples, in the order to send)."""
        key: object = tuple(headers)
        try:
            cached = self._cache.get(key)
        except TypeError:  # fields given as lists: encoded, not cached
            key = cached = None
        if cached is not None and cached[0] == self._generation and not self._pending_update:
            return cached[1]
        parts: list[bytes] = []
        if self._pending_update:
            parts.extend(_encode_int(s, 5, 0x20) for s in self._pending_update)
            self._pending_update = []
        generation = self._generation
        static_exact = _STATIC_EXACT
        static_names = _STATIC_NAMES
        exact = self._exact
        names = self._names
        for name, value in headers:
            i = static_exact.get((name, value))
            if i is not None:
                parts.append(_INDEXED[i])
                continue
            k = exact.get((name, value))
            if k is not None:
                parts.append(_encode_int(62 + self._inserted - 1 - k, 7, 0x80))
                continue
            nidx = static_names.get(name)
            if nidx is None:
                k = names.get(name)
                nidx = 0 if k is None else 62 + self._inserted - 1 - k
            if name in self.never_index:
                head = _encode_int(nidx, 4, 0x10)
                indexing = False
            elif name in self.no_index or len(name) + len(value) + 32 > self._max >> 1:
                head = _encode_int(nidx, 4, 0x00)
                indexing = False
            else:
                head = _encode_int(nidx, 6, 0x40)
                indexing = True
            parts.append(head)
            if not nidx:
                parts.append(self._string(name))
            parts.append(self._string(value))
            if indexing:
                self._add(name, value)
        block = b"".join(parts)
        if generation == self._generation and self.cache_size and key is not None:
            cache = self._cache
            if len(cache) >= self.cache_size:
                cache.clear()
            cache[key] = (generation, block)
        return block


_STATIC_EXACT: dict[tuple[bytes, bytes], int] = {}
_STATIC_NAMES: dict[bytes, int] = {}
for _i, _entry in enumerate(STATIC_TABLE, 1):
    _STATIC_EXACT.setdefault(_entry, _i)
    _STATIC_NAMES.setdefault(_entry[0], _i)
_INDEXED = [bytes((0x80 | _i,)) for _i in range(128)]
del _i, _entry
