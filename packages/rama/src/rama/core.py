"""Re-export of `rama_core` (the rama-core package)."""

from rama_core import *  # noqa: F403
from rama_core import __all__ as __all__
