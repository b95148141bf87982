"""Input normalisation of weight-space batches from training-split statistics.

Three schemes (:data:`NORMALIZATIONS`):

``orbit`` (the default)
    A mean and a standard deviation per entry, pooled over every axis the model's symmetry
    group moves. An entry's statistics then depend only on its fixed-axis indices (which
    input coordinate a column of ``W1`` reads, which output a row of ``W_M`` writes), so
    ``x -> (x - mean) / std`` commutes with every group element and an invariant or
    equivariant model stays exactly so, while each input coordinate and output keeps its own
    scale. Under sign flips (``signed``) the mean of a tensor with a signed axis is zero over
    the orbit, so no mean is subtracted there: the scale is the root mean square, and the map
    is ``x -> x / rms``, which commutes with flips.
``entry``
    Mean and standard deviation of every entry separately over the training INRs (the DWSNets
    reference code's normalisation). Not exactly invariant: a permuted input is normalised
    with the statistics of other neurons. Used for models with no symmetry (``mlp``).
``scalar``
    One root-mean-square scalar per tensor, no mean (the first versions of this project).
    Exactly symmetric, but a tensor's rows for different input coordinates share one scale.

``symmetry`` names the group whose orbits ``orbit`` pools over: ``hidden``, ``all`` or
``signed`` (the engine's modes, read off :func:`dws_theory.spec.mlp`), or ``None`` for a model
with no symmetry, which makes ``orbit`` the same as ``entry``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ...errors import InputError
from ...spec import Kind, WeightSpace, mlp

__all__ = ["NORMALIZATIONS", "Normalizer", "fit_normalizer"]

NORMALIZATIONS = ("orbit", "entry", "scalar")
_FLOOR = 1e-3


@dataclass(frozen=True, eq=False)
class Normalizer:
    """``x -> (x - mean) / std`` per tensor; mean and std broadcast against ``[B, C, ...]``."""

    scheme: str
    symmetry: str | None
    weight_mean: tuple[Tensor, ...]
    weight_std: tuple[Tensor, ...]
    bias_mean: tuple[Tensor, ...]
    bias_std: tuple[Tensor, ...]

    def __call__(
        self, weights: Sequence[Tensor], biases: Sequence[Tensor]
    ) -> tuple[list[Tensor], list[Tensor]]:
        ws = [
            (w - m) / s for w, m, s in zip(weights, self.weight_mean, self.weight_std, strict=True)
        ]
        bs = [(b - m) / s for b, m, s in zip(biases, self.bias_mean, self.bias_std, strict=True)]
        return ws, bs

    def inverse(
        self, weights: Sequence[Tensor], biases: Sequence[Tensor]
    ) -> tuple[list[Tensor], list[Tensor]]:
        ws = [w * s + m for w, m, s in zip(weights, self.weight_mean, self.weight_std, strict=True)]
        bs = [b * s + m for b, m, s in zip(biases, self.bias_mean, self.bias_std, strict=True)]
        return ws, bs

    def to(self, device: torch.device | str) -> Normalizer:
        def move(ts: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            return tuple(t.to(device) for t in ts)

        return Normalizer(
            self.scheme,
            self.symmetry,
            move(self.weight_mean),
            move(self.weight_std),
            move(self.bias_mean),
            move(self.bias_std),
        )


def fit_normalizer(
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    scheme: str = "orbit",
    symmetry: str | None = "hidden",
    space: WeightSpace | None = None,
) -> Normalizer:
    """Statistics of a training batch (``weights[m-1]``: ``[N, C, d_m, d_{m-1}]``).

    ``space`` is the networks' weight space in mode ``symmetry`` when they are not MLPs
    (weights: its tensors with two or more axes, e.g. conv kernels ``[N, C, o, i, k, k]``,
    biases the others, both in the space's order); a kernel axis is a fixed set, so every
    kernel position keeps its own statistics."""
    if scheme not in NORMALIZATIONS:
        raise InputError(f"expected a normalisation in {NORMALIZATIONS}, got {scheme!r}")
    tensors = [*weights, *biases]
    if space is not None:
        kinds = _space_kinds(space, scheme, symmetry, tensors)
    else:
        dims = (weights[0].shape[-1], *(w.shape[-2] for w in weights))
        names = [f"W{m}" for m in range(1, len(weights) + 1)] + [
            f"b{m}" for m in range(1, len(biases) + 1)
        ]
        kinds = _axis_kinds(dims, scheme, symmetry, names)
    stats = [_stats(t.double(), k, scheme) for t, k in zip(tensors, kinds, strict=True)]
    means = tuple(m.to(weights[0].dtype) for m, _ in stats)
    stds = tuple(s.to(weights[0].dtype) for _, s in stats)
    n = len(weights)
    return Normalizer(scheme, symmetry, means[:n], stds[:n], means[n:], stds[n:])


def _axis_kinds(
    dims: tuple[int, ...], scheme: str, symmetry: str | None, names: list[str]
) -> list[tuple[Kind, ...]]:
    """Per tensor, the kind of each neuron axis under the pooling group."""
    if scheme == "entry" or (scheme == "orbit" and symmetry is None):
        return [(Kind.FIXED,) * (2 if n.startswith("W") else 1) for n in names]
    if scheme == "scalar":  # every axis counted as signed: one RMS per tensor, no mean
        return [(Kind.SIGNED,) * (2 if n.startswith("W") else 1) for n in names]
    space = mlp(dims, symmetry)
    return [tuple(space.set(a).kind for a in space.tensor(n).axes) for n in names]


def _space_kinds(
    space: WeightSpace, scheme: str, symmetry: str | None, tensors: Sequence[Tensor]
) -> list[tuple[Kind, ...]]:
    """As :func:`_axis_kinds`, for a general space (weights before biases, as the layout)."""
    ordered = [t for t in space.tensors if len(t.axes) >= 2] + [
        t for t in space.tensors if len(t.axes) < 2
    ]
    shapes = [tuple(x.shape[2:]) for x in tensors]
    if shapes != [space.shape(t.name) for t in ordered]:
        raise InputError(
            f"expected tensors of shapes {[space.shape(t.name) for t in ordered]} (the weight "
            f"space's), got {shapes}"
        )
    if scheme == "entry" or (scheme == "orbit" and symmetry is None):
        return [(Kind.FIXED,) * len(t.axes) for t in ordered]
    if scheme == "scalar":
        return [(Kind.SIGNED,) * len(t.axes) for t in ordered]
    return [tuple(space.set(a).kind for a in t.axes) for t in ordered]


def _stats(x: Tensor, kinds: tuple[Kind, ...], scheme: str) -> tuple[Tensor, Tensor]:
    """Mean and std of ``x`` ``[N, C, *axes]`` over the samples and every non-fixed axis.

    Channels are features of one neuron, never pooled together.
    """
    pooled = [0] + [2 + i for i, k in enumerate(kinds) if k is not Kind.FIXED]
    centred = Kind.SIGNED not in kinds
    if centred:
        mean = x.mean(dim=pooled, keepdim=True)
        var = (x - mean).pow(2).mean(dim=pooled, keepdim=True)
    else:
        mean = torch.zeros_like(x.mean(dim=pooled, keepdim=True))
        var = x.pow(2).mean(dim=pooled, keepdim=True)
    # An entry that (almost) never varies gets a floor relative to its tensor's scale, so a
    # test input that does vary there is not blown up by a near-zero std.
    floor = _FLOOR * x.pow(2).mean().sqrt().item() + 1e-12
    return mean, var.sqrt().clamp_min(floor)
