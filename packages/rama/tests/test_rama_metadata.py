"""The umbrella's version matches its distribution metadata."""

import importlib.metadata

import rama


def test_version_matches_distribution_metadata() -> None:
    assert rama.__version__ == importlib.metadata.version("rama")
