"""Certificates: CA creation, leaf issuance (names and IPs), the LRU cache, PEM I/O."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from rama_tls import (
    CertificateAuthority,
    CertificateError,
    CertifiedKey,
    LeafCertificateCache,
    self_signed,
)
from rama_tls import _certs as certs_module


def verify(
    leaf: CertifiedKey,
    ca: CertificateAuthority,
    subject: x509.verification.Subject,
    at: dt.datetime | None = None,
) -> None:
    """Path validation by cryptography's (webpki-style, strict) verifier."""
    verifier = (
        PolicyBuilder()
        .store(Store([ca.cert]))
        .time(at or dt.datetime.now(dt.UTC))
        .build_server_verifier(subject)
    )
    verifier.verify(leaf.cert, list(leaf.chain))


def test_issued_leaves_pass_strict_verification(ca: CertificateAuthority) -> None:
    leaf = ca.issue("www.example.test", "127.0.0.1", "::1")
    assert leaf.names == ("www.example.test", "127.0.0.1", "::1")
    verify(leaf, ca, x509.DNSName("www.example.test"))
    verify(leaf, ca, x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    verify(leaf, ca, x509.IPAddress(ipaddress.ip_address("::1")))
    with pytest.raises(VerificationError):
        verify(leaf, ca, x509.DNSName("other.example.test"))
    with pytest.raises(VerificationError):
        verify(leaf, CertificateAuthority.create("another CA"), x509.DNSName("www.example.test"))


def test_leaf_details(ca: CertificateAuthority) -> None:
    leaf = ca.issue("[2001:db8::1]", "Mixed.Case.test.")
    san = leaf.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("2001:db8::1")]
    assert san.get_values_for_type(x509.DNSName) == ["mixed.case.test"]
    basic = leaf.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert basic.ca is False
    assert leaf.cert.issuer == ca.cert.subject
    assert leaf.chain == (ca.cert,)
    assert isinstance(leaf.key, ec.EllipticCurvePrivateKey)
    now = dt.datetime.now(dt.UTC)
    assert leaf.cert.not_valid_before_utc < now < leaf.cert.not_valid_after_utc
    assert leaf.cert.serial_number != ca.issue("mixed.case.test").cert.serial_number
    with pytest.raises(CertificateError):
        ca.issue()


def test_openssl_verifies_the_chain(
    tmp_path: Path, ca: CertificateAuthority, require_peer: Callable[[str], str]
) -> None:
    leaf = ca.issue("api.example.test", key_type="rsa")
    assert isinstance(leaf.key, rsa.RSAPrivateKey)
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem())
    (tmp_path / "leaf.pem").write_bytes(leaf.cert_pem())
    argv = [require_peer("openssl"), "verify", "-CAfile", str(tmp_path / "ca.pem")]
    ok = subprocess.run(
        [*argv, "-verify_hostname", "api.example.test", str(tmp_path / "leaf.pem")],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    wrong = subprocess.run(
        [*argv, "-verify_hostname", "web.example.test", str(tmp_path / "leaf.pem")],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert wrong.returncode != 0


def test_cache_is_a_bounded_lru(ca: CertificateAuthority) -> None:
    cache = LeafCertificateCache(ca, max_size=2)
    a = cache.get("a.test")
    b = cache.get("b.test")
    assert cache.get("A.TEST.") is a  # names are case-folded and the root dot dropped
    cache.get("c.test")  # evicts b, the least recently used
    assert len(cache) == 2
    assert "a.test" in cache
    assert "b.test" not in cache
    assert cache.issued == 3
    assert cache.get("b.test") is not b
    assert cache.issued == 4
    assert cache.get("[0:0::1]") is cache.get("::1")
    verify(cache.get("::1"), ca, x509.IPAddress(ipaddress.ip_address("::1")))
    with pytest.raises(ValueError, match="max_size"):
        LeafCertificateCache(ca, max_size=0)


def test_pem_round_trip_and_key_file_mode(tmp_path: Path, ca: CertificateAuthority) -> None:
    leaf = ca.issue("files.example.test")
    leaf.save(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    assert stat.S_IMODE((tmp_path / "leaf.key").stat().st_mode) == 0o600
    loaded = CertifiedKey.load(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    assert loaded.cert == leaf.cert
    assert loaded.chain == (ca.cert,)
    assert loaded.key_pem() == leaf.key_pem()

    ca.save(tmp_path / "ca.pem", tmp_path / "ca.key")
    again = CertificateAuthority.load(tmp_path / "ca.pem", tmp_path / "ca.key")
    verify(again.issue("after-reload.test"), ca, x509.DNSName("after-reload.test"))


def test_bad_pem_is_a_typed_error(tmp_path: Path, ca: CertificateAuthority) -> None:
    leaf = ca.issue("x.test")
    other = ca.issue("y.test")
    with pytest.raises(CertificateError, match="does not match"):
        CertifiedKey.from_pem(leaf.cert_pem(), other.key_pem())
    with pytest.raises(CertificateError, match="invalid PEM"):
        CertifiedKey.from_pem(b"not a pem", leaf.key_pem())
    with pytest.raises(CertificateError, match="does not match"):
        CertificateAuthority(ca.cert, other.key)


def test_encrypted_keys_need_the_right_password(
    tmp_path: Path, ca: CertificateAuthority, require_peer: Callable[[str], str]
) -> None:
    """A key encrypted by openssl: missing or wrong passwords are typed errors, not TypeError."""
    leaf = ca.issue("locked.example.test")
    leaf.save(tmp_path / "leaf.pem", tmp_path / "plain.key")
    encrypted = tmp_path / "locked.key"
    subprocess.run(
        [
            require_peer("openssl"),
            "pkey",
            "-in",
            str(tmp_path / "plain.key"),
            "-aes256",
            "-passout",
            "pass:s3cret",
            "-out",
            str(encrypted),
        ],
        check=True,
        capture_output=True,
        timeout=10,
    )
    assert b"ENCRYPTED" in encrypted.read_bytes()
    loaded = CertifiedKey.load(tmp_path / "leaf.pem", encrypted, b"s3cret")
    assert loaded.key_pem() == leaf.key_pem()
    with pytest.raises(CertificateError, match="a password is needed"):
        CertifiedKey.load(tmp_path / "leaf.pem", encrypted)
    with pytest.raises(CertificateError, match="password"):
        CertifiedKey.load(tmp_path / "leaf.pem", encrypted, b"wrong")
    with pytest.raises(CertificateError, match="no password is needed"):
        CertifiedKey.load(tmp_path / "leaf.pem", tmp_path / "plain.key", b"s3cret")
    ca.save(tmp_path / "ca.pem", tmp_path / "ca.key")
    with pytest.raises(CertificateError):
        CertificateAuthority.load(tmp_path / "ca.pem", tmp_path / "ca.key", b"s3cret")


def test_self_signed_defaults() -> None:
    cert = self_signed()
    assert cert.names == ("localhost", "127.0.0.1", "::1")
    assert cert.cert.issuer == cert.cert.subject
    assert cert.chain == ()


@pytest.mark.anyio
async def test_concurrent_misses_for_one_host_issue_once(ca: CertificateAuthority) -> None:
    """A burst of lookups for one new name shares a single (slow, RSA) issuance."""
    cache = LeafCertificateCache(ca, max_size=4, key_type="rsa")
    results: list[CertifiedKey] = []

    async def one(name: str) -> None:
        results.append(await cache.aget(name))

    async with anyio.create_task_group() as tg:
        for i in range(30):
            tg.start_soon(one, "Burst.Example.Test" if i % 2 else "burst.example.test.")
    assert cache.issued == 1
    assert len(results) == 30
    assert all(r is results[0] for r in results)
    assert await cache.aget("burst.example.test") is results[0]  # and it is cached
    verify(results[0], ca, x509.DNSName("burst.example.test"))


@pytest.mark.anyio
async def test_issuance_does_not_block_the_event_loop(ca: CertificateAuthority) -> None:
    """RSA leaves take tens of milliseconds each: the loop keeps turning meanwhile."""
    cache = LeafCertificateCache(ca, key_type="rsa")
    ticks = 0
    issuing = True

    async def ticker() -> None:
        nonlocal ticks
        while issuing:
            await anyio.sleep(0.001)
            ticks += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        for i in range(4):
            await cache.aget(f"slow{i}.example.test")
        issuing = False
    assert cache.issued == 4
    # issued inline, the ticker would not run at all until the four leaves exist
    assert ticks >= 10


@pytest.mark.anyio
async def test_a_cancelled_lookup_does_not_fail_the_others(ca: CertificateAuthority) -> None:
    cache = LeafCertificateCache(ca, key_type="rsa")
    got: list[CertifiedKey] = []

    async def impatient() -> None:
        with anyio.move_on_after(0.001):
            await cache.aget("shared.example.test")

    async def patient() -> None:
        got.append(await cache.aget("shared.example.test"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(impatient)
        await anyio.sleep(0)
        tg.start_soon(patient)
    assert len(got) == 1
    assert cache.issued == 1
    assert "shared.example.test" in cache


class Clock:
    """Stands in for the module's wall clock (issuance and freshness checks read it)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        monkeypatch.setattr(certs_module, "_now", lambda: self.now)


def test_short_lived_leaves_are_renewed_before_they_expire(
    ca: CertificateAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(monkeypatch)
    start = clock.now
    cache = LeafCertificateCache(ca, valid_days=1 / 24, renew_before=dt.timedelta(minutes=10))
    host = "short.example.test"
    first = cache.get(host)
    assert first.cert.not_valid_after_utc == start + dt.timedelta(hours=1)

    clock.now = start + dt.timedelta(minutes=49, seconds=59)
    assert cache.get(host) is first
    clock.now = start + dt.timedelta(minutes=50)  # 10 minutes left: time to renew
    assert host not in cache
    second = cache.get(host)
    assert second is not first
    assert cache.issued == 2
    assert second.cert.not_valid_after_utc == clock.now + dt.timedelta(hours=1)
    verify(second, ca, x509.DNSName(host), at=clock.now + dt.timedelta(minutes=55))
    assert cache.get(host) is second

    # the clock steps back before the leaf's not_valid_before (leaves are backdated a day)
    clock.now = second.cert.not_valid_before_utc - dt.timedelta(seconds=1)
    third = cache.get(host)
    assert third is not second
    assert third.cert.not_valid_before_utc <= clock.now
    assert cache.issued == 3
    assert len(cache) == 1


@pytest.mark.anyio
async def test_expired_leaves_are_reissued_by_aget(
    ca: CertificateAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(monkeypatch)
    cache = LeafCertificateCache(ca, valid_days=1 / 24)  # renew_before: a quarter, 15 minutes
    assert cache.renew_before == dt.timedelta(minutes=15)
    first = await cache.aget("127.0.0.1")
    clock.now += dt.timedelta(hours=2)
    second = await cache.aget("127.0.0.1")
    assert second is not first
    assert second.cert.not_valid_after_utc > clock.now
    assert cache.issued == 2


def test_renew_before_must_be_shorter_than_the_validity(ca: CertificateAuthority) -> None:
    assert LeafCertificateCache(ca).renew_before == dt.timedelta(days=1)
    with pytest.raises(ValueError, match="renew_before"):
        LeafCertificateCache(ca, valid_days=1, renew_before=dt.timedelta(days=1))
    with pytest.raises(ValueError, match="renew_before"):
        LeafCertificateCache(ca, renew_before=dt.timedelta(seconds=-1))


def test_a_wrong_password_that_decrypts_to_garbage_still_says_password() -> None:
    """About one wrong password in 256 passes the padding check: still a password error."""
    from cryptography.hazmat.primitives import serialization

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.BestAvailableEncryption(b"s3cret"),
    )
    garbage_password = None
    for i in range(20000):
        candidate = b"wrong%d" % i
        try:
            serialization.load_pem_private_key(pem, candidate)
        except ValueError as e:
            if "password" not in str(e):
                garbage_password = candidate
                break
    assert garbage_password is not None
    with pytest.raises(CertificateError, match="password"):
        CertifiedKey.from_pem(self_signed("localhost").cert_pem(), pem, garbage_password)
