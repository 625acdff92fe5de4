"""rama's HPACK against RFC 7541 Appendix C (every example), hpack as a cross-check."""

from __future__ import annotations

import hpack
import pytest

from rama_http._h2._hpack import (
    Decoder,
    Encoder,
    HeaderListTooLarge,
    HPACKError,
    huffman_decode,
    huffman_encode,
)

H = list[tuple[bytes, bytes]]

# C.2: one block each, fresh decoder: (hex, headers, table after, table size after)
C2 = [
    (
        "400a637573746f6d2d6b65790d637573746f6d2d686561646572",
        [(b"custom-key", b"custom-header")],
        [(b"custom-key", b"custom-header")],
        55,
    ),
    ("040c2f73616d706c652f70617468", [(b":path", b"/sample/path")], [], 0),
    ("100870617373776f726406736563726574", [(b"password", b"secret")], [], 0),
    ("82", [(b":method", b"GET")], [], 0),
]

REQ1: H = [
    (b":method", b"GET"),
    (b":scheme", b"http"),
    (b":path", b"/"),
    (b":authority", b"www.example.com"),
]
REQ2: H = [*REQ1, (b"cache-control", b"no-cache")]
REQ3: H = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":path", b"/index.html"),
    (b":authority", b"www.example.com"),
    (b"custom-key", b"custom-value"),
]
RESP1: H = [
    (b":status", b"302"),
    (b"cache-control", b"private"),
    (b"date", b"Mon, 21 Oct 2013 20:13:21 GMT"),
    (b"location", b"https://www.example.com"),
]
RESP2: H = [(b":status", b"307"), *RESP1[1:]]
RESP3: H = [
    (b":status", b"200"),
    (b"cache-control", b"private"),
    (b"date", b"Mon, 21 Oct 2013 20:13:22 GMT"),
    (b"location", b"https://www.example.com"),
    (b"content-encoding", b"gzip"),
    (b"set-cookie", b"foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"),
]

# C.3 .. C.6: sequences on one connection: (table size, huffman, [(hex, headers, table size after)])
SEQUENCES = {
    "C.3": (
        4096,
        False,
        [
            ("828684410f7777772e6578616d706c652e636f6d", REQ1, 57),
            ("828684be58086e6f2d6361636865", REQ2, 110),
            ("828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565", REQ3, 164),
        ],
    ),
    "C.4": (
        4096,
        True,
        [
            ("828684418cf1e3c2e5f23a6ba0ab90f4ff", REQ1, 57),
            ("828684be5886a8eb10649cbf", REQ2, 110),
            ("828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf", REQ3, 164),
        ],
    ),
    "C.5": (
        256,
        False,
        [
            (
                "4803333032580770726976617465611d4d6f6e2c203231204f637420323031332032303a31"
                "333a323120474d546e1768747470733a2f2f7777772e6578616d706c652e636f6d",
                RESP1,
                222,
            ),
            ("4803333037c1c0bf", RESP2, 222),
            (
                "88c1611d4d6f6e2c203231204f637420323031332032303a31333a323220474d54c05a0467"
                "7a69707738666f6f3d4153444a4b48514b425a584f5157454f50495541585157454f49553b"
                "206d61782d6167653d333630303b2076657273696f6e3d31",
                RESP3,
                215,
            ),
        ],
    ),
    "C.6": (
        256,
        True,
        [
            (
                "488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e91"
                "9d29ad171863c78f0b97c8e9ae82ae43d3",
                RESP1,
                222,
            ),
            ("4883640effc1c0bf", RESP2, 222),
            (
                "88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e782"
                "1dd7f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5"
                "b1063d5007",
                RESP3,
                215,
            ),
        ],
    ),
}

HUFFMAN_STRINGS = [
    ("f1e3c2e5f23a6ba0ab90f4ff", b"www.example.com"),
    ("a8eb10649cbf", b"no-cache"),
    ("25a849e95ba97d7f", b"custom-key"),
    ("25a849e95bb8e8b4bf", b"custom-value"),
    ("6402", b"302"),
    ("640eff", b"307"),
    ("aec3771a4b", b"private"),
    ("d07abe941054d444a8200595040b8166e082a62d1bff", b"Mon, 21 Oct 2013 20:13:21 GMT"),
    ("d07abe941054d444a8200595040b8166e084a62d1bff", b"Mon, 21 Oct 2013 20:13:22 GMT"),
    ("9d29ad171863c78f0b97c8e9ae82ae43d3", b"https://www.example.com"),
    (
        "94e7821dd7f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007",
        b"foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
    ),
]


def _rfc_encoder(size: int, huffman: bool) -> Encoder:
    # The RFC examples index every literal and send none as never-indexed.
    return Encoder(huffman=huffman, never_index=(), no_index=(), max_table_size=size)


@pytest.mark.parametrize(("hexblock", "headers", "table", "size"), C2)
def test_c2_single_representations(hexblock: str, headers: H, table: H, size: int) -> None:
    dec = Decoder(validate=False)
    assert dec.decode(bytes.fromhex(hexblock)) == headers
    assert dec.table == table
    assert dec.table_size == size
    assert hpack.Decoder().decode(bytes.fromhex(hexblock), raw=True) == headers


def test_c2_3_is_reported_never_indexed() -> None:
    dec = Decoder()
    dec.decode(bytes.fromhex(C2[2][0]))
    assert dec.never_indexed == [0]
    # Ours sends it the same way for names it never indexes.
    enc = Encoder(never_index=(b"password",))
    assert enc.encode([(b"password", b"secret")]) == bytes.fromhex(C2[2][0])


@pytest.mark.parametrize("name", sorted(SEQUENCES))
def test_sequences_decode_like_the_rfc_and_hpack(name: str) -> None:
    size, _huffman, blocks = SEQUENCES[name]
    ours = Decoder(max_table_size=size, validate=False)
    ours._resize(size)
    ref = hpack.Decoder()
    ref.header_table_size = size
    for hexblock, headers, table_size in blocks:
        block = bytes.fromhex(hexblock)
        assert ours.decode(block) == headers
        assert ours.table_size == table_size
        assert ref.decode(block, raw=True) == headers


@pytest.mark.parametrize("name", sorted(SEQUENCES))
def test_sequences_encode_byte_for_byte(name: str) -> None:
    size, huffman, blocks = SEQUENCES[name]
    enc = _rfc_encoder(size, huffman)
    for hexblock, headers, _ in blocks:
        assert enc.encode(headers).hex() == hexblock


@pytest.mark.parametrize(("hexstr", "plain"), HUFFMAN_STRINGS)
def test_huffman_strings(hexstr: str, plain: bytes) -> None:
    assert huffman_decode(bytes.fromhex(hexstr)) == plain
    assert huffman_encode(plain).hex() == hexstr


def test_huffman_every_byte_round_trips() -> None:
    data = bytes(range(256)) * 3
    assert huffman_decode(huffman_encode(data)) == data
    assert hpack.huffman.HuffmanEncoder(
        hpack.huffman_constants.REQUEST_CODES, hpack.huffman_constants.REQUEST_CODES_LENGTH
    ).encode(data) == huffman_encode(data)


@pytest.mark.parametrize(
    "bad",
    [
        "1fffffffff",  # EOS inside the string
        "18",  # padding is not all ones
        "1fff",  # 8 or more bits of padding
        "00",  # zero bits as padding
        "ff",  # eight ones: not a complete code, too much padding
        "fffffff",  # odd nibble count cannot happen, but a run of ones is EOS
    ],
)
def test_invalid_huffman_is_rejected(bad: str) -> None:
    data = bytes.fromhex(bad if len(bad) % 2 == 0 else bad + "f")
    with pytest.raises(HPACKError):
        huffman_decode(data)


@pytest.mark.parametrize(
    "block",
    [
        "80",  # index 0
        "be",  # dynamic index 62 with an empty table
        "ff80808080808080",  # integer overflow
        "41",  # literal cut before its value
        "410a616263",  # string shorter than its length
        "4003616263",  # literal name cut
        "3fe21f",  # size update to 4097, above the limit (4096)
        "8220",  # size update after a field
        "418e",  # Huffman value cut
    ],
)
def test_malformed_blocks(block: str) -> None:
    with pytest.raises(HPACKError):
        Decoder().decode(bytes.fromhex(block))


def test_size_update_required_after_a_smaller_setting() -> None:
    enc = Encoder()
    dec = Decoder()
    dec.decode(enc.encode([(b"x-one", b"1" * 100)]))
    assert dec.table_size > 0
    dec.set_max_table_size(64)
    # The peer did not signal a smaller table and its table is above the new limit.
    with pytest.raises(HPACKError, match="size update"):
        dec.decode(bytes.fromhex("82"))
    # Our encoder does: the update goes first in the next block.
    enc2, dec2 = Encoder(), Decoder()
    dec2.decode(enc2.encode([(b"x-one", b"1" * 100)]))
    dec2.set_max_table_size(64)
    enc2.set_max_table_size(64)
    block = enc2.encode([(b":method", b"GET")])
    assert block[0] & 0xE0 == 0x20
    assert dec2.decode(block) == [(b":method", b"GET")]
    assert dec2.table_size == 0


def test_encoder_signals_lowest_then_final_size() -> None:
    enc = Encoder()
    enc.set_max_table_size(0)
    enc.set_max_table_size(2048)
    block = enc.encode([(b"a", b"b")])
    assert block[:3] == bytes.fromhex("20") + bytes.fromhex("3fe10f")[:2]
    ref = hpack.Decoder()
    assert ref.decode(block, raw=True) == [(b"a", b"b")]
    assert ref.header_table_size == 2048


def test_header_list_limit_counts_rfc_overhead() -> None:
    headers = [(b"x-a", b"1" * 100)]
    block = Encoder().encode(headers)
    Decoder(max_header_list_size=3 + 100 + 32).decode(block)
    with pytest.raises(HeaderListTooLarge):
        Decoder(max_header_list_size=3 + 100 + 31).decode(block)
    # The table is still in step after the error: the same field, indexed, decodes.
    dec = Decoder(max_header_list_size=100)
    with pytest.raises(HeaderListTooLarge):
        dec.decode(block)
    dec.max_header_list_size = 1000
    assert dec.decode(bytes.fromhex("be")) == headers


def test_decoded_fields_keep_exact_bytes_and_order() -> None:
    headers = [
        (b"accept", b"*/*"),
        (b"x-b", b"2"),
        (b"x-a", b"1"),
        (b"x-b", b"3"),
        (b"x-odd", b"\xff\x80 latin-1 ok"),
    ]
    for huffman in (False, True):
        assert Decoder().decode(Encoder(huffman=huffman).encode(headers)) == headers


def test_character_rules_flagged_per_block() -> None:
    enc = hpack.Encoder()
    dec = Decoder()
    dec.decode(enc.encode([(b"x-ok", b"fine")]))
    assert dec.problem is None
    for bad in ([(b"X-Upper", b"v")], [(b"x-a", b"a\r\nb")], [(b"x-a", b" lead")], [(b"", b"v")]):
        dec.decode(enc.encode(bad))
        assert dec.problem is not None, bad
    # An invalid field that went into the table is still flagged when indexed later.
    blob = hpack.Encoder()
    dec2 = Decoder()
    dec2.decode(blob.encode([(b"x-bad", b"tail ")]))
    assert dec2.problem is not None
    dec2.decode(blob.encode([(b"x-bad", b"tail ")]))  # now an indexed field
    assert dec2.problem is not None


def test_response_block_cache_hits_only_while_table_is_unchanged() -> None:
    enc = Encoder()
    resp = [(b":status", b"200"), (b"content-type", b"text/plain"), (b"content-length", b"5")]
    first = enc.encode(resp)
    second = enc.encode(resp)  # content-type now indexed
    assert len(second) < len(first)
    assert enc.encode(resp) is second  # the cached block
    new = enc.encode([(b"x-new", b"v")])  # the table changes: indices move
    third = enc.encode(resp)
    assert third != second
    dec = Decoder()
    for block, headers in ((first, resp), (second, resp), (new, [(b"x-new", b"v")]), (third, resp)):
        assert dec.decode(block) == headers


def test_fields_as_lists_are_encoded_without_the_cache() -> None:
    enc = Encoder()
    fields = [[b":status", b"200"], [b"x-a", b"1"]]
    block = enc.encode(fields)  # type: ignore[arg-type]
    assert hpack.Decoder().decode(block, raw=True) == [(b":status", b"200"), (b"x-a", b"1")]
    assert enc.encode(fields) != block  # type: ignore[arg-type]  # x-a is indexed now
