"""Old import path of :mod:`dws_theory.inr.models.equivariant` (other code imports it here)."""

from .models.equivariant import *  # noqa: F403
from .models.equivariant import __all__  # noqa: F401
