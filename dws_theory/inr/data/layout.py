"""The flat layout of a network's parameters: ``W1, b1, W2, b2, ...`` per sample.

The order of a ``--data`` file's weight-to-weight targets and of the flat baselines' inputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ...aliases import Shape

__all__ = ["Shape", "flatten_weights", "unflatten_weights"]


def flatten_weights(weights: Sequence[Tensor], biases: Sequence[Tensor]) -> Tensor:
    """Concatenate ``W_1, b_1, W_2, b_2, ...`` per sample into ``[B, D]``."""
    parts: list[Tensor] = []
    for w, b in zip(weights, biases, strict=True):
        parts += [w.flatten(1), b.flatten(1)]
    return torch.cat(parts, dim=1)


def unflatten_weights(
    flat: Tensor, weight_shapes: Sequence[Shape], bias_shapes: Sequence[Shape]
) -> tuple[list[Tensor], list[Tensor]]:
    """Inverse of :func:`flatten_weights`; shapes exclude the batch axis (``(C, d_m, d_{m-1})``)."""
    sizes: list[int] = []
    shapes: list[Shape] = []
    for ws, bs in zip(weight_shapes, bias_shapes, strict=True):
        sizes += [math.prod(ws), math.prod(bs)]
        shapes += [tuple(ws), tuple(bs)]
    pieces = torch.split(flat, sizes, dim=1)
    out = [p.reshape(flat.shape[0], *s) for p, s in zip(pieces, shapes, strict=True)]
    return out[0::2], out[1::2]
