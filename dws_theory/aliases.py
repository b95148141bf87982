"""Type aliases shared across the package, each with one meaning.

Written with forward references, so importing this module loads neither torch nor the
engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:  # the names the forward references below resolve to
    import torch

    from .spec import WeightSpace

__all__ = ["Shape", "SpaceLike", "Tensors"]

Tensors = list["torch.Tensor"]  # one tensor per weight (or bias) of the space, in order
Shape = tuple[int, ...]  # the shape of one tensor
# What names a weight space (see `frontends.resolve`): MLP widths, a spec string, a
# WeightSpace, or a torch module to trace.
SpaceLike = Union[str, Sequence[int], "WeightSpace", "torch.nn.Module"]  # noqa: UP007
