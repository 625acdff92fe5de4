"""The installed distribution and the import package agree on name and version."""

import importlib.metadata

import rama_proxy


def test_version_matches_distribution_metadata() -> None:
    assert rama_proxy.__version__ == importlib.metadata.version("rama-proxy")
    assert isinstance(rama_proxy.__all__, list)
