"""The installed distribution and the import package agree on name and version."""

import importlib.metadata

import rama_http


def test_version_matches_distribution_metadata() -> None:
    assert rama_http.__version__ == importlib.metadata.version("rama-http")
    assert isinstance(rama_http.__all__, list)
