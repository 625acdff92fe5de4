"""Re-export of `rama_proxy` (the rama-proxy package)."""

from rama_proxy import *  # noqa: F403
from rama_proxy import __all__ as __all__
