"""The group action on weight-space features, in one place.

Features are the layout contract's `[B, C, *shape]` tensors, weights (two or more axes) and
biases (one axis) in the space's order. An element acts by gathering along every axis with
its neuron set's permutation and multiplying by the set's signs:
`y[b, c, .., i, ..] = sign[i] * x[b, c, .., perm[i], ..]`. The element is either one
`group.GroupElement` for the whole batch, or one element per sample (`SampleElements`,
what weight-space augmentations draw). `dws_theory.testing`, the augmentations of
`inr/train` and the tests all act through `act`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from .aliases import Tensors
from .spec import WeightSpace

__all__ = ["Element", "SampleElements", "act", "act_on_axes", "gather_axis", "split_names"]


class Element(Protocol):
    """Per neuron set, a permutation and signs: `[n]` (one for the batch) or `[B, n]`."""

    def perm(self, name: str) -> np.ndarray | torch.Tensor: ...

    def sign(self, name: str) -> np.ndarray | torch.Tensor: ...


@dataclass(frozen=True)
class SampleElements:
    """Group elements given by tensors: `perms[set]` is `[B, n]`, one per sample (new index i
    reads old index perms[b, i]), or `[n]`, one for the batch; `signs[set]` likewise, of
    +-1. A set named in neither is left alone."""

    perms: Mapping[str, torch.Tensor]
    signs: Mapping[str, torch.Tensor]

    def perm(self, name: str) -> torch.Tensor | None:
        return self.perms.get(name)

    def sign(self, name: str) -> torch.Tensor | None:
        return self.signs.get(name)


def _along(t: torch.Tensor, dim: int, index: torch.Tensor) -> torch.Tensor:
    """`index` (`[n]` or `[B, n]`) viewed to broadcast against `t` along `dim`."""
    shape = [1] * t.dim()
    shape[dim] = index.shape[-1]
    if index.dim() == 2:
        shape[0] = index.shape[0]
    return index.reshape(shape)


def gather_axis(t: torch.Tensor, dim: int, perm: object, sign: object = None) -> torch.Tensor:
    """`t` gathered along `dim` by `perm` and multiplied by `sign` (either `[n]`, `[B, n]`
    or None for the identity)."""
    if perm is not None:
        index = torch.as_tensor(perm, device=t.device)
        if index.dim() == 1:
            t = t.index_select(dim, index)
        else:
            t = t.gather(dim, _along(t, dim, index).expand(t.shape))
    if sign is not None:
        t = t * _along(t, dim, torch.as_tensor(sign, device=t.device).to(t.dtype))
    return t


def act_on_axes(t: torch.Tensor, axes: tuple[str, ...], g: Element) -> torch.Tensor:
    """g acting on one `[B, ..., *shape]` tensor (batch first, then any channel axes) whose
    last `len(axes)` axes lie on the named sets."""
    start = t.dim() - len(axes)
    for axis, set_name in enumerate(axes):
        t = gather_axis(t, start + axis, g.perm(set_name), g.sign(set_name))
    return t


def split_names(space: WeightSpace) -> tuple[list[str], list[str]]:
    """(weight tensors, bias tensors) of the space, in the order a layer receives them."""
    weights = [t.name for t in space.tensors if len(t.axes) >= 2]
    biases = [t.name for t in space.tensors if len(t.axes) == 1]
    if len(weights) + len(biases) != len(space.tensors):
        raise ValueError(f"expected a space whose tensors all have one or more axes, got {space}")
    return weights, biases


def act(
    space: WeightSpace, g: Element, weights: Tensors, biases: Tensors
) -> tuple[Tensors, Tensors]:
    """g acting on `[B, C, *shape]` features: every axis gathered by its set's permutation
    and multiplied by its signs."""
    names_w, names_b = split_names(space)

    def one(t: torch.Tensor, name: str) -> torch.Tensor:
        return act_on_axes(t, space.tensor(name).axes, g)

    return (
        [one(t, n) for t, n in zip(weights, names_w, strict=True)],
        [one(t, n) for t, n in zip(biases, names_b, strict=True)],
    )
