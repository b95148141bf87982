"""The group action on weight-space features, in one place.

Features are the layout contract's `[B, C, *shape]` tensors, weights (two or more axes) and
biases (one axis) in the space's order. An element acts by gathering along every axis with
its neuron set's permutation and multiplying by the set's signs:
`y[b, c, .., i, ..] = sign[i] * x[b, c, .., perm[i], ..]`. An axis on a child set (a set
nested in blocks of its parent, `NeuronSet.parent`) is gathered after its parent axis (which
comes first in the tensor), by the permutation of the block the output index lies in:
`(g x)[.., h, .., i, ..] = s_p(h) s_c(h, i) x[.., sigma(h), .., tau_h(i), ..]`. The element
is either one `group.GroupElement` for the whole batch, or one element per sample
(`SampleElements`, what weight-space augmentations draw). `dws_theory.testing` (and through
it the module check), the augmentations of `inr/train` and the tests all act through here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from .aliases import Tensors
from .spec import WeightSpace

__all__ = [
    "Element",
    "SampleElements",
    "act",
    "act_on",
    "gather_axis",
    "gather_in_blocks",
    "split_names",
]


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


def gather_in_blocks(
    t: torch.Tensor, parent: int, axis: int, perm: object, sign: object
) -> torch.Tensor:
    """y[.., h, .., i, ..] = sign[h, i] * t[.., h, .., perm[h, i], ..]: a child axis gathered
    by the permutation of the block its parent axis (`parent`, an earlier dim) indexes."""
    perm = torch.as_tensor(perm, device=t.device)
    shape = [1] * t.dim()
    shape[parent], shape[axis] = perm.shape
    t = torch.gather(t, axis, perm.view(shape).expand(t.shape))
    return t * torch.as_tensor(sign, device=t.device).to(t.dtype).view(shape)


def _leaves(perm: object, sign: object) -> bool:
    """Whether NumPy `perm` (or one per block) and `sign` leave an axis in place. Torch
    values are not inspected (that would wait for their device): they are always applied."""
    if isinstance(perm, torch.Tensor) or isinstance(sign, torch.Tensor):
        return False
    if perm is not None and (np.asarray(perm) != np.arange(np.shape(perm)[-1])).any():
        return False
    return sign is None or bool((np.asarray(sign) == 1).all())


def act_on(
    space: WeightSpace, g: Element, tensor: str, t: torch.Tensor, lead: int | None = None
) -> torch.Tensor:
    """g acting on one tensor of the space with `lead` leading axes (batch and channel: 2;
    a module's own parameter: 0; by default every axis before the tensor's own).

    An axis that a NumPy-valued g (a `GroupElement`) leaves in place, the identity
    permutation with every sign +1, is skipped (no copy of `t` for it)."""
    axes = space.tensor(tensor).axes
    start = t.dim() - len(axes) if lead is None else lead
    parents = space.parent_axes(tensor)
    for axis, set_name in enumerate(axes):
        perm, sign = g.perm(set_name), g.sign(set_name)
        if _leaves(perm, sign):
            continue
        if parents[axis] is None:
            t = gather_axis(t, start + axis, perm, sign)
        else:
            t = gather_in_blocks(t, start + parents[axis], start + axis, perm, sign)
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
    return (
        [act_on(space, g, n, t) for t, n in zip(weights, names_w, strict=True)],
        [act_on(space, g, n, t) for t, n in zip(biases, names_b, strict=True)],
    )
