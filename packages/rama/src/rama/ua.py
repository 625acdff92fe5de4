"""Re-export of `rama_ua` (the rama-ua package)."""

from rama_ua import *  # noqa: F403
from rama_ua import __all__ as __all__
