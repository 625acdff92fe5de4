"""rama's HPACK against the hpack library on generated header lists, both directions."""

from __future__ import annotations

import hpack
from hypothesis import given, settings
from hypothesis import strategies as st

from rama_http._h2._hpack import Decoder, Encoder, huffman_decode, huffman_encode

_POOL = [
    b":method",
    b":path",
    b":status",
    b":authority",
    b"content-type",
    b"content-length",
    b"date",
    b"cookie",
    b"set-cookie",
    b"authorization",
    b"user-agent",
    b"x-custom",
    b"accept",
]
names = st.one_of(
    st.sampled_from(_POOL),
    st.binary(min_size=1, max_size=20).map(lambda b: b.lower()),
)
values = st.one_of(
    st.sampled_from([b"", b"GET", b"/", b"200", b"text/plain", b"gzip, deflate"]),
    st.binary(max_size=300),
)
header_lists = st.lists(st.tuples(names, values), max_size=25)
blocks = st.lists(header_lists, min_size=1, max_size=6)
table_sizes = st.one_of(st.none(), st.integers(min_value=0, max_value=4096))


@settings(max_examples=200, deadline=None)
@given(blocks, st.booleans(), st.lists(table_sizes, min_size=6, max_size=6))
def test_ours_encodes_what_hpack_decodes(
    lists: list[list[tuple[bytes, bytes]]], huffman: bool, sizes: list[int | None]
) -> None:
    enc = Encoder(huffman=huffman)
    ref = hpack.Decoder(max_header_list_size=1 << 30)
    for headers, size in zip(lists, sizes, strict=False):
        if size is not None:
            enc.set_max_table_size(size)
        block = enc.encode(headers)
        assert ref.decode(block, raw=True) == headers
        # The cache must give the same answer as a fresh encode would.
        again = enc.encode(headers)
        assert ref.decode(again, raw=True) == headers


@settings(max_examples=200, deadline=None)
@given(blocks, st.booleans(), st.lists(table_sizes, min_size=6, max_size=6))
def test_ours_decodes_what_hpack_encodes(
    lists: list[list[tuple[bytes, bytes]]], huffman: bool, sizes: list[int | None]
) -> None:
    ref = hpack.Encoder()
    dec = Decoder(max_header_list_size=1 << 30, validate=False)
    for headers, size in zip(lists, sizes, strict=False):
        if size is not None:
            ref.header_table_size = size
        block = ref.encode(headers, huffman=huffman)
        assert dec.decode(block) == headers
        assert dec.table_size == ref.header_table._current_size


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(names, values, st.booleans()), max_size=20))
def test_never_indexed_both_ways(fields: list[tuple[bytes, bytes, bool]]) -> None:
    ref = hpack.Encoder()
    headers = [hpack.NeverIndexedHeaderTuple(n, v) if s else (n, v) for n, v, s in fields]
    dec = Decoder(validate=False, max_header_list_size=1 << 30)
    got = dec.decode(ref.encode(headers))
    assert got == [(n, v) for n, v, _ in fields]
    static = set(hpack.table.HeaderTable.STATIC_TABLE)
    sensitive = {i for i, (_, _, s) in enumerate(fields) if s}
    assert set(dec.never_indexed) <= sensitive
    # hpack sends a field that is a whole table entry (static, or sent before) as an
    # index, sensitive or not; any other sensitive field is a never-indexed literal.
    first = {
        i for i, (n, v, _) in enumerate(fields) if (n, v) not in {(a, b) for a, b, _ in fields[:i]}
    }
    must = {i for i in sensitive & first if fields[i][:2] not in static}
    assert must <= set(dec.never_indexed)
    # Our encoder never indexes its sensitive names; hpack reports them so.
    enc = Encoder()
    decoded = hpack.Decoder(max_header_list_size=1 << 30).decode(
        enc.encode([(n, v) for n, v, _ in fields]), raw=True
    )
    for (name, _), tup in zip([(n, v) for n, v, _ in fields], decoded, strict=True):
        assert tup.indexable == (name not in enc.never_index or (name, tup[1]) in static)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=500))
def test_huffman_round_trip_and_matches_hpack(data: bytes) -> None:
    coded = huffman_encode(data)
    assert huffman_decode(coded) == data
    assert (
        hpack.huffman.HuffmanEncoder(
            hpack.huffman_constants.REQUEST_CODES, hpack.huffman_constants.REQUEST_CODES_LENGTH
        ).encode(data)
        == coded
    )


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_huffman_decoding_agrees_with_hpack_on_any_bytes(data: bytes) -> None:
    from hpack.huffman_table import decode_huffman

    try:
        expected: bytes | None = decode_huffman(data)
    except hpack.HPACKDecodingError:
        expected = None
    try:
        got: bytes | None = huffman_decode(data)
    except Exception:
        got = None
    assert got == expected
