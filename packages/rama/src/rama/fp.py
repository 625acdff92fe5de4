"""Re-export of `rama_fp` (the rama-fp package)."""

from rama_fp import *  # noqa: F403
from rama_fp import __all__ as __all__
