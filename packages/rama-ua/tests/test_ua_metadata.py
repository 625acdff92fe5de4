"""The installed distribution and the import package agree on name and version."""

import importlib.metadata

import rama_ua


def test_version_matches_distribution_metadata() -> None:
    assert rama_ua.__version__ == importlib.metadata.version("rama-ua")
    assert isinstance(rama_ua.__all__, list)
