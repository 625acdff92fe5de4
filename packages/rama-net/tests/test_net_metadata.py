"""The installed distribution and the import package agree on name and version."""

import importlib.metadata

import rama_net


def test_version_matches_distribution_metadata() -> None:
    assert rama_net.__version__ == importlib.metadata.version("rama-net")
    assert isinstance(rama_net.__all__, list)
