"""Old import path of :mod:`dws_theory.inr.data.tasks` (other code imports it here)."""

from .data.tasks import *  # noqa: F403
from .data.tasks import __all__  # noqa: F401
