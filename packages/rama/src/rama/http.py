"""Re-export of `rama_http` (the rama-http package)."""

from rama_http import *  # noqa: F403
from rama_http import __all__ as __all__
