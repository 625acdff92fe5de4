"""Re-export of `rama_net` (the rama-net package)."""

from rama_net import *  # noqa: F403
from rama_net import __all__ as __all__
