"""`resolve(shape, mode)`: the one path from whatever names a weight space to a `Target`.

A shape is MLP widths (`"2,32,32,1"` or a sequence of integers), a spec string
(`"sets[...] tensors[...]"`), a `WeightSpace`, or a `torch.nn.Module` (traced with torch.fx).
The result is the `Target` the command line works on too: its `space`, its `mode` label (the
MLP mode, or the mode a module was traced with; for a spec or a space that is no MLP's, the
given mode as a label, or None), and the names that go with them. The runtime, the models,
the checks of `dws_theory.testing` and the file writers all resolve through here, so a
shape means the same space everywhere.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ..spec import WeightSpace
from .target import Target, from_dims, from_module, from_space

if TYPE_CHECKING:
    from ..aliases import SpaceLike

__all__ = ["resolve"]


def _is_module(shape: object) -> bool:
    """A torch.nn.Module; torch is not imported for widths and specs (an object can only be
    a Module where torch was imported already)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(shape, torch.nn.Module)


def resolve(shape: SpaceLike, mode: str | None = None) -> Target:
    """The target `shape` names (`mode` default hidden for widths and modules; for a space
    or a spec it only labels: the set kinds are the space's own)."""
    if isinstance(shape, Target):
        return shape
    if isinstance(shape, WeightSpace):
        return from_space(shape, mode)
    if _is_module(shape):
        return from_module(shape, type(shape).__name__, mode or "hidden")
    if isinstance(shape, str) and shape.lstrip().startswith("sets["):
        return from_space(WeightSpace.parse(shape), mode)
    return from_dims(shape, mode or "hidden")
