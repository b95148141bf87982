"""The flat layout of a network's parameters: ``W1, b1, W2, b2, ...`` per sample.

The order of a ``--data`` file's weight-to-weight targets and of the flat baselines' inputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

import torch
from torch import Tensor

from ...aliases import Shape

__all__ = ["Shape", "flatten_weights", "unflatten_weights"]

T = TypeVar("T")


def _interleave(weights: Sequence[T], biases: Sequence[T]) -> list[T]:
    """``W_1, b_1, W_2, b_2, ...``, then the rest of the longer list (a general module's space
    may hold more weights than biases: attention's per-head bias ``[H, d]`` is a weight)."""
    out: list[T] = []
    for i in range(max(len(weights), len(biases))):
        out += [*weights[i : i + 1], *biases[i : i + 1]]
    return out


def flatten_weights(weights: Sequence[Tensor], biases: Sequence[Tensor]) -> Tensor:
    """Concatenate ``W_1, b_1, W_2, b_2, ...`` per sample into ``[B, D]``."""
    return torch.cat([t.flatten(1) for t in _interleave(weights, biases)], dim=1)


def unflatten_weights(
    flat: Tensor, weight_shapes: Sequence[Shape], bias_shapes: Sequence[Shape]
) -> tuple[list[Tensor], list[Tensor]]:
    """Inverse of :func:`flatten_weights`; shapes exclude the batch axis (``(C, d_m, d_{m-1})``)."""
    tagged = _interleave(
        [(True, tuple(s)) for s in weight_shapes], [(False, tuple(s)) for s in bias_shapes]
    )
    pieces = torch.split(flat, [math.prod(s) for _, s in tagged], dim=1)
    out = [(w, p.reshape(flat.shape[0], *s)) for (w, s), p in zip(tagged, pieces, strict=True)]
    return [t for w, t in out if w], [t for w, t in out if not w]
