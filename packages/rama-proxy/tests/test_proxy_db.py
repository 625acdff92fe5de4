"""The upstream proxy DB: CSV/JSON loading and validation, matching, capabilities, hot reload."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import os
import string
from pathlib import Path

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rama_proxy import ProxyDb, ProxyDbError, ProxyDbFile, ProxyFilter, UpstreamProxy

HEADER = (
    "id,tcp,udp,http,https,socks5,socks5h,datacenter,residential,mobile,address,"
    "pool_id,continent,country,state,city,carrier,asn,credential"
)

CSV = """\
# id,tcp,udp,http,https,socks5,socks5h,dc,res,mob,address,pool,cont,country,state,city,carrier,asn
be1,true,,true,,,,,1,,127.0.0.1:8001,poolA,EU,BE,vlaanderen,gent,proximus,AS5432
us1,1,1,,,1,1,1,,,proxy.example:1080,poolB,NA,US,ny,new york,,7018,alice:s3cret

us2,TRUE,0,1,1,FALSE,null,nil,false,1,[::1]:3128,poolB,na,us,ca,los angeles,t-mobile,21928
any,1,,1,,,,1,,,10.0.0.9:8080,*,*,*,,,,
"""


def db() -> ProxyDb:
    return ProxyDb.from_csv(CSV, source="test.csv")


def ids(records: tuple[UpstreamProxy, ...]) -> list[str]:
    return [r.id for r in records]


def test_csv_without_header() -> None:
    d = db()
    assert len(d) == 4
    be1 = d.get("be1")
    assert be1 is not None
    assert (be1.tcp, be1.udp, be1.http, be1.https, be1.socks5, be1.socks5h) == (
        True,
        False,
        True,
        False,
        False,
        False,
    )
    assert (be1.datacenter, be1.residential, be1.mobile) == (False, True, False)
    assert str(be1.authority) == "127.0.0.1:8001"
    assert be1.asn == "5432"
    assert be1.credential is None
    us1 = d.get("us1")
    assert us1 is not None
    assert us1.credential == "alice:s3cret"
    assert "s3cret" not in repr(us1)
    assert us1.schemes == ("socks5", "socks5h")
    us2 = d.get("us2")
    assert us2 is not None
    assert str(us2.authority) == "[::1]:3128"
    assert (us2.tcp, us2.udp, us2.http, us2.https, us2.socks5, us2.socks5h) == (
        True,
        False,
        True,
        True,
        False,
        False,
    )
    assert us2.mobile
    assert d.get("nope") is None


def test_csv_with_a_header_in_any_order_and_without_credential() -> None:
    text = "address,id,tcp,http,country\n127.0.0.1:1,a,1,1,be\n127.0.0.1:2,b,1,1,us\n"
    d = ProxyDb.from_csv(text)
    assert ids(d.query(ProxyFilter(country=("us",)))) == ["b"]
    full = HEADER + "\n" + "x,1,,1,,,,,,,127.0.0.1:9,,,,,,,,u:p\n"
    rec = ProxyDb.from_csv(full).get("x")
    assert rec is not None
    assert rec.credential == "u:p"
    assert rec.url("http") == "http://u:p@127.0.0.1:9"


def test_json_and_its_round_trip() -> None:
    d = db()
    rows = [r.to_row() for r in d]
    again = ProxyDb.from_json(json.dumps(rows))
    assert again.records == d.records
    wrapped = ProxyDb.from_json(json.dumps({"proxies": rows}))
    assert wrapped.records == d.records
    strings = ProxyDb.from_json(
        '[{"id": "j", "tcp": "true", "http": 1, "udp": null, "address": "127.0.0.1:5", "asn": 42}]'
    )
    rec = strings.get("j")
    assert rec is not None
    assert (rec.tcp, rec.http, rec.udp, rec.asn) == (True, True, False, "42")


def test_address_as_url() -> None:
    d = ProxyDb.from_csv("s,1,1,,,,1,,,,socks5h://bob:pw@socks.example,,,,,,,\n")
    rec = d.get("s")
    assert rec is not None
    assert rec.scheme == "socks5h"
    assert rec.schemes == ("socks5h",)
    assert rec.credential == "bob:pw"
    assert rec.address == "socks5h://socks.example"
    assert str(rec.authority) == "socks.example:1080"
    assert rec.url("socks5h") == "socks5h://bob:pw@socks.example:1080"


@pytest.mark.parametrize(
    ("text", "row", "column", "message"),
    [
        ("a,yes please,,1,,,,,,,h:1,,,,,,,\n", 1, "tcp", "expected a boolean"),
        (
            "\n\na,1,,1,,,,,,,h:1,,,,,,,\nb,1,,1,,,,,,,h:1,,,,,,,\na,1,,1,,,,,,,h:2,,,,,,,\n",
            5,
            "id",
            "duplicate id 'a'",
        ),
        (",1,,1,,,,,,,h:1,,,,,,,\n", 1, "id", "required"),
        ("a,1,,1,,,,,,,,,,,,,,\n", 1, "address", "required"),
        ("a,1,,1,,,,,,,h,,,,,,,\n", 1, "address", "missing port"),
        ("a,1,,1,,,,,,,h:99999,,,,,,,\n", 1, "address", "invalid address"),
        ("a,1,,1,,,,,,,ftp://h:1,,,,,,,\n", 1, "address", "unsupported proxy scheme"),
        ("a,1,,1,,,,,,,socks5://h:1,,,,,,,\n", 1, "address", "socks5 column is false"),
        ("a,1,,1,,,,,,,http://h:1/path,,,,,,,\n", 1, "address", "no path"),
        ("a,1,,1,,,,,,,http://u:p@h:1,,,,,,,,x:y\n", 1, "address", "both in the address"),
        ("a,1,,1,,,,,,,h:1,,,,,,,,us er:pw\n", 1, "credential", "credential must be"),
        ("a,1,,1,,,,,,,h:1,,,,,,,,u:p/q\n", 1, "credential", "credential must be"),
        ("a,1,,1,,,,,,,h:1\n", 1, None, "expected 18 or 19 columns, got 11"),
        ("a,,,1,,,,,,,h:1,,,,,,,\n", 1, None, "neither tcp nor udp"),
        ("a,1,1,,,,,,,,h:1,,,,,,,\n", 1, None, "no protocol"),
        ("id,tcp,http,address,colour\na,1,1,h:1,red\n", 1, "colour", "unknown column"),
        ("id,tcp,http,address\na,1,1,h:1,extra\n", 2, None, "expected 4 columns"),
        ('a,1,,1,,,,,,,h:1,"unterminated,,,,,,\n', None, None, "malformed CSV"),
    ],
)
def test_csv_errors_name_the_row_and_column(
    text: str, row: int | None, column: str | None, message: str
) -> None:
    with pytest.raises(ProxyDbError) as info:
        ProxyDb.from_csv(text, source="db.csv")
    err = info.value
    assert message in str(err)
    assert str(err).startswith("db.csv")
    if row is not None:
        assert err.row == row
        assert f"row {row}" in str(err)
    if column is not None:
        assert err.column == column
        assert repr(column) in str(err)


@pytest.mark.parametrize(
    ("text", "row", "column", "message"),
    [
        ("{", None, None, "invalid JSON"),
        ('{"a": 1}', None, None, "expected a list"),
        ("[1]", 1, None, "expected an object"),
        (
            '[{"id": "a", "tcp": true, "http": true, "address": "h:1", "colour": 1}]',
            1,
            "colour",
            "unknown column",
        ),
        ('[{"id": "a", "tcp": "maybe", "http": true, "address": "h:1"}]', 1, "tcp", "boolean"),
        ('[{"id": "a", "tcp": 2, "http": true, "address": "h:1"}]', 1, "tcp", "boolean"),
        ('[{"id": ["a"], "tcp": true, "http": true, "address": "h:1"}]', 1, "id", "string"),
        (
            json.dumps([{"id": "a", "tcp": True, "http": True, "address": "h:1"}] * 2),
            2,
            "id",
            "duplicate",
        ),
    ],
)
def test_json_errors(text: str, row: int | None, column: str | None, message: str) -> None:
    with pytest.raises(ProxyDbError) as info:
        ProxyDb.from_json(text, source="db.json")
    assert message in str(info.value)
    assert info.value.row == row
    assert info.value.column == column


def test_load_by_suffix(tmp_path: Path) -> None:
    csv_path = tmp_path / "p.csv"
    csv_path.write_text(CSV)
    json_path = tmp_path / "p.json"
    json_path.write_text(json.dumps([r.to_row() for r in db()]))
    assert ProxyDb.load(csv_path).records == ProxyDb.load(json_path).records
    assert ProxyDb.load(json_path, format="json").source == str(json_path)
    with pytest.raises(ProxyDbError, match="cannot read"):
        ProxyDb.load(tmp_path / "missing.csv")
    (tmp_path / "bad.csv").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ProxyDbError, match="not UTF-8"):
        ProxyDb.load(tmp_path / "bad.csv")


def test_matching_or_within_and_across() -> None:
    d = db()
    assert ids(d.query(ProxyFilter())) == ["be1", "us1", "us2", "any"]
    assert ids(d.query(ProxyFilter(country=("us",)))) == ["us1", "us2", "any"]
    assert ids(d.query(ProxyFilter(country=("us", "be")))) == ["be1", "us1", "us2", "any"]
    assert ids(d.query(ProxyFilter(country=("us",), state=("ca",)))) == ["us2"]
    assert ids(d.query(ProxyFilter(country=("us",), pool=("poolb",)))) == ["us1", "us2", "any"]
    assert ids(d.query(ProxyFilter(country=("fr",)))) == ["any"]
    assert ids(d.query(ProxyFilter(country=("fr",), pool=("poolb",)))) == ["any"]
    assert ids(d.query(ProxyFilter(city=("new york",)))) == ["us1"]
    assert ids(d.query(ProxyFilter(carrier=("t-mobile",)))) == ["us2"]
    assert ids(d.query(ProxyFilter(asn=("7018",)))) == ["us1"]
    assert ids(d.query(ProxyFilter(id=("BE1",)))) == ["be1"]  # case-insensitive both ways


def test_wildcards() -> None:
    d = db()
    # "*" in the filter: anything, including records without the field
    assert ids(d.query(ProxyFilter(state=("*",)))) == ["be1", "us1", "us2", "any"]
    assert ids(d.query(ProxyFilter(state=("zz", "*")))) == ["be1", "us1", "us2", "any"]
    # "*" in a record: any filter value, but a field the record leaves empty never matches
    assert ids(d.query(ProxyFilter(continent=("as",)))) == ["any"]
    assert ids(d.query(ProxyFilter(city=("gent", "paris")))) == ["be1"]


def test_flags() -> None:
    d = db()
    assert ids(d.query(ProxyFilter(residential=True))) == ["be1"]
    assert ids(d.query(ProxyFilter(residential=False))) == ["us1", "us2", "any"]
    assert ids(d.query(ProxyFilter(datacenter=True))) == ["us1", "any"]
    assert ids(d.query(ProxyFilter(mobile=True, country=("us",)))) == ["us2"]
    assert ids(d.query(ProxyFilter(mobile=False, datacenter=False))) == ["be1"]


def test_capabilities() -> None:
    d = db()
    assert ids(d.query(ProxyFilter(), transport="udp")) == ["us1"]
    assert ids(d.query(ProxyFilter(), schemes={"socks5h"})) == ["us1"]
    assert ids(d.query(ProxyFilter(), schemes={"https"})) == ["us2"]
    assert ids(d.query(ProxyFilter(), schemes={"http"})) == ["be1", "us2", "any"]
    assert ids(d.query(ProxyFilter(), transport="udp", schemes={"http"})) == []
    us1 = d.get("us1")
    assert us1 is not None
    assert us1.supports("udp", "socks5")
    assert not us1.supports("udp", "http")
    udp_only = ProxyDb.from_csv("u,,1,,,1,,,,,h:1,,,,,,,\n")
    assert ids(udp_only.query(ProxyFilter())) == []
    assert ids(udp_only.query(ProxyFilter(), transport="udp")) == ["u"]


def test_session_and_newconn_do_not_change_the_match() -> None:
    d = db()
    plain = d.query(ProxyFilter(country=("us",)))
    assert d.query(ProxyFilter(country=("us",), session="k", new_connection=True)) is plain


# -- property tests: the indexed query equals a brute-force scan --------------------------------

_small = st.sampled_from(["a", "b", "C", "*"])
_opt = st.none() | _small


@st.composite
def records(draw: st.DrawFn, i: int) -> UpstreamProxy:
    schemes = draw(
        st.lists(st.sampled_from(["http", "https", "socks5", "socks5h"]), min_size=1, unique=True)
    )
    tcp, udp = draw(st.sampled_from([(True, False), (False, True), (True, True)]))
    return UpstreamProxy(
        id=f"r{i}",
        address=f"127.0.0.1:{1000 + i}",
        tcp=tcp,
        udp=udp,
        http="http" in schemes,
        https="https" in schemes,
        socks5="socks5" in schemes,
        socks5h="socks5h" in schemes,
        datacenter=draw(st.booleans()),
        residential=draw(st.booleans()),
        mobile=draw(st.booleans()),
        pool_id=draw(_opt),
        continent=draw(_opt),
        country=draw(_opt),
        state=draw(_opt),
        city=draw(_opt),
        carrier=draw(_opt),
        asn=draw(st.none() | st.sampled_from(["1", "2"])),
    )


@st.composite
def dbs(draw: st.DrawFn) -> ProxyDb:
    n = draw(st.integers(0, 8))
    return ProxyDb([draw(records(i)) for i in range(n)])


_fvals = st.lists(st.sampled_from(["a", "b", "c", "*", "z"]), max_size=2, unique=True).map(tuple)
_flag = st.sampled_from([None, True, False])


@st.composite
def filters(draw: st.DrawFn) -> ProxyFilter:
    return ProxyFilter(
        pool=draw(_fvals),
        continent=draw(_fvals),
        country=draw(_fvals),
        state=draw(_fvals),
        city=draw(_fvals),
        carrier=draw(_fvals),
        asn=tuple(draw(st.lists(st.sampled_from(["1", "2", "*"]), max_size=2, unique=True))),
        id=tuple(draw(st.lists(st.sampled_from(["r0", "r1", "r5"]), max_size=2, unique=True))),
        datacenter=draw(_flag),
        residential=draw(_flag),
        mobile=draw(_flag),
    )


def _oracle(
    rec: UpstreamProxy, f: ProxyFilter, transport: str, schemes: frozenset[str] | None
) -> bool:
    if not _filter_oracle(rec, f):
        return False
    usable = [s for s in rec.schemes if schemes is None or s in schemes]
    if transport == "udp":
        return rec.udp and any(s in ("socks5", "socks5h") for s in usable)
    return rec.tcp and bool(usable)


def _filter_oracle(rec: UpstreamProxy, f: ProxyFilter) -> bool:
    pairs = [
        (rec.id, f.id),
        (rec.pool_id, f.pool),
        (rec.continent, f.continent),
        (rec.country, f.country),
        (rec.state, f.state),
        (rec.city, f.city),
        (rec.carrier, f.carrier),
        (rec.asn, f.asn),
    ]
    for value, wanted in pairs:
        if not wanted or "*" in wanted:
            continue
        if value is None:
            return False
        if value != "*" and value.lower() not in wanted:
            return False
    for have, want in (
        (rec.datacenter, f.datacenter),
        (rec.residential, f.residential),
        (rec.mobile, f.mobile),
    ):
        if want is not None and have != want:
            return False
    return True


@given(
    dbs(),
    filters(),
    st.sampled_from(["tcp", "udp"]),
    st.none() | st.frozensets(st.sampled_from(["http", "https", "socks5", "socks5h"])),
)
@settings(max_examples=120)
def test_query_equals_a_full_scan(
    d: ProxyDb, f: ProxyFilter, transport: str, schemes: frozenset[str] | None
) -> None:
    assert transport in ("tcp", "udp")
    got = d.query(f, transport=transport, schemes=schemes)  # type: ignore[arg-type]
    expected = tuple(r for r in d if _oracle(r, f, transport, schemes))
    assert got == expected
    assert d.query(f, transport=transport, schemes=schemes) is got  # type: ignore[arg-type]
    for r in d:
        assert d.matches(r, f) == _filter_oracle(r, f)


@given(dbs())
@settings(max_examples=50)
def test_json_round_trip_property(d: ProxyDb) -> None:
    assert ProxyDb.from_json(json.dumps([r.to_row() for r in d])).records == d.records


_cell = st.text(string.printable, max_size=6)


@given(st.lists(st.lists(_cell, min_size=0, max_size=20), max_size=5))
@settings(max_examples=300)
def test_garbage_csv_is_a_proxy_db_error_or_a_db(rows: list[list[str]]) -> None:
    text = "\n".join(",".join(r) for r in rows)
    try:
        d = ProxyDb.from_csv(text)
    except ProxyDbError as e:
        assert str(e)
        return
    for r in d:
        assert r.id
        assert r.tcp or r.udp


@given(st.text(max_size=60))
def test_garbage_json_is_a_proxy_db_error_or_a_db(text: str) -> None:
    try:
        ProxyDb.from_json(text)
    except ProxyDbError:
        pass


# -- hot reload -----------------------------------------------------------------------------------


def _write(path: Path, text: str, bump: int) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    st_ = path.stat() if path.exists() else None
    os.replace(tmp, path)
    if st_ is not None:  # a distinct mtime even on coarse-clock filesystems
        ns = st_.st_mtime_ns + bump * 1_000_000_000
        os.utime(path, ns=(ns, ns))


@pytest.mark.anyio
async def test_reload_swaps_and_keeps_the_old_db_on_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "proxies.csv"
    path.write_text("a,1,,1,,,,,,,127.0.0.1:1,,,be,,,,\n")
    seen: list[int] = []
    source = ProxyDbFile(path, interval=0.02, on_reload=lambda d: seen.append(len(d)))
    first = source.current()
    assert ids(first.query(ProxyFilter())) == ["a"]
    assert not await source.check()  # unchanged

    _write(path, "a,1,,1,,,,,,,127.0.0.1:1,,,be,,,,\nb,1,,1,,,,,,,127.0.0.1:2,,,us,,,,\n", 1)
    assert await source.check()
    assert ids(source.current().query(ProxyFilter(country=("us",)))) == ["b"]
    assert seen == [2]
    assert first is not source.current()

    good = source.current()
    caplog.set_level(logging.INFO, logger="rama.proxy.db")
    _write(path, "a,1,,1,,,,,,,127.0.0.1:1,,,be,,,,\nbroken,maybe\n", 2)
    assert not await source.check()
    assert source.current() is good
    assert source.last_error is not None
    assert "row 2" in str(source.last_error)
    assert "reload failed" in caplog.text
    assert "row 2" in caplog.text
    caplog.clear()
    assert not await source.check()  # the same bad file is not reported again
    assert "reload failed" not in caplog.text

    path.unlink()
    assert not await source.check()
    assert source.current() is good
    assert "missing" in caplog.text

    _write(path, "c,1,,1,,,,,,,127.0.0.1:3,,,fr,,,,\n", 3)
    assert await source.check()
    assert ids(source.current().query(ProxyFilter())) == ["c"]
    assert source.last_error is None
    assert source.reloads == 2


@pytest.mark.anyio
async def test_watch_polls_the_file(tmp_path: Path) -> None:
    path = tmp_path / "proxies.json"
    path.write_text('[{"id": "a", "tcp": true, "http": true, "address": "127.0.0.1:1"}]')
    async with ProxyDbFile(path, interval=0.01) as source:
        assert ids(source.current().query(ProxyFilter())) == ["a"]
        _write(
            path,
            '[{"id": "b", "tcp": true, "http": true, "address": "127.0.0.1:2"}]',
            1,
        )
        with anyio.fail_after(3):
            while source.reloads == 0:
                await anyio.sleep(0.01)
        assert ids(source.current().query(ProxyFilter())) == ["b"]


def test_a_bad_initial_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("a,1\n")
    with pytest.raises(ProxyDbError, match="row 1"):
        ProxyDbFile(path)


def _csv_cell(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else ""
    return "" if value is None else str(value)


@given(dbs())
@settings(max_examples=50)
def test_csv_round_trip_property(d: ProxyDb) -> None:
    out = io.StringIO()
    writer = csv.writer(out)
    for r in d:
        row = r.to_row()
        writer.writerow([_csv_cell(row.get(c)) for c in HEADER.split(",")])
    assert ProxyDb.from_csv(out.getvalue()).records == d.records


def test_replace_reparses_the_address() -> None:
    rec = UpstreamProxy(id="a", address="http://u:p@127.0.0.1:1", http=True)
    assert rec.credential == "u:p"
    moved = dataclasses.replace(rec, address="127.0.0.1:2")
    assert str(moved.authority) == "127.0.0.1:2"
    assert moved.credential == "u:p"
    assert moved.scheme is None
    with pytest.raises(ValueError, match="both in the address"):
        dataclasses.replace(rec, address="http://x:y@127.0.0.1:3")


@given(st.lists(st.lists(st.text(max_size=8), max_size=20), max_size=4))
@settings(max_examples=200)
def test_unicode_garbage_csv_is_a_proxy_db_error_or_a_db(rows: list[list[str]]) -> None:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    try:
        ProxyDb.from_csv(out.getvalue())
    except ProxyDbError as e:
        assert str(e)


@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["id", "tcp", "http", "address", "asn", "credential", "udp"]),
            st.none() | st.booleans() | st.integers(-2, 70000) | st.text(max_size=12),
        ),
        max_size=4,
    )
)
@settings(max_examples=300)
def test_json_rows_of_any_type_are_a_proxy_db_error_or_a_db(rows: list[dict[str, object]]) -> None:
    try:
        ProxyDb.from_json(json.dumps(rows))
    except ProxyDbError as e:
        assert str(e)
