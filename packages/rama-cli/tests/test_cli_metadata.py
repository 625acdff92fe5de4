"""The installed distribution and the import package agree on name and version."""

import importlib.metadata

import rama_cli


def test_version_matches_distribution_metadata() -> None:
    assert rama_cli.__version__ == importlib.metadata.version("rama-cli")
    assert isinstance(rama_cli.__all__, list)
