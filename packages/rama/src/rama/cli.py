"""Re-export of `rama_cli` (the rama-cli package)."""

from rama_cli import *  # noqa: F403
from rama_cli import __all__ as __all__
