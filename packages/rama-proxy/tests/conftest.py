"""Fixtures the MITM tests share: the origin's CA, the interception CA and its PEM file."""

from __future__ import annotations

from pathlib import Path

import pytest

from rama_tls import CertificateAuthority


@pytest.fixture(scope="module")
def origin_ca() -> CertificateAuthority:
    """The CA the test origins' certificates come from."""
    return CertificateAuthority.create("origin test CA")


@pytest.fixture(scope="module")
def mitm_ca() -> CertificateAuthority:
    """The CA the MITM issues its leaves from."""
    return CertificateAuthority.create("mitm test CA")


@pytest.fixture
def ca_file(tmp_path: Path, mitm_ca: CertificateAuthority) -> str:
    """The MITM CA as a PEM file (for curl --cacert)."""
    p = tmp_path / "mitm-ca.pem"
    p.write_bytes(mitm_ca.cert_pem())
    return str(p)
