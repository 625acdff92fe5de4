"""The installed distribution and the import package agree on name and version."""

import importlib.metadata

import rama_fp


def test_version_matches_distribution_metadata() -> None:
    assert rama_fp.__version__ == importlib.metadata.version("rama-fp")
    assert isinstance(rama_fp.__all__, list)
