"""The installed distribution and the import package agree on name and version."""

import importlib.metadata

import rama_core


def test_version_matches_distribution_metadata() -> None:
    assert rama_core.__version__ == importlib.metadata.version("rama-core")
    assert isinstance(rama_core.__all__, list)
