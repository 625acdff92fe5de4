"""The MITM certificate authority on disk (``rama ca init|show|path``).

::

    from rama_proxy.ca import CaStore

    store = CaStore()            # ~/.rama/ca (XDG-aware; $RAMA_CA_DIR overrides)
    ca = store.load_or_init()    # a rama_tls.CertificateAuthority
    print(store.show().text())
    print(store.trust_instructions())
"""

from ._ca_store import (
    CaExistsError,
    CaInfo,
    CaNotFoundError,
    CaStore,
    default_ca_dir,
    spki_sha256,
)

__all__ = [
    "CaExistsError",
    "CaInfo",
    "CaNotFoundError",
    "CaStore",
    "default_ca_dir",
    "spki_sha256",
]
