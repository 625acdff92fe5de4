"""The installed distribution and the import package agree on name and version."""

import importlib.metadata

import rama_tls


def test_version_matches_distribution_metadata() -> None:
    assert rama_tls.__version__ == importlib.metadata.version("rama-tls")
    assert isinstance(rama_tls.__all__, list)
