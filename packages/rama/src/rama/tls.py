"""Re-export of `rama_tls` (the rama-tls package)."""

from rama_tls import *  # noqa: F403
from rama_tls import __all__ as __all__
