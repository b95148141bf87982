"""Non-equivariant baselines on weight-space batches.

Batch layout: ``weights[m-1]`` is ``[B, C, d_m, d_{m-1}]``, ``biases[m-1]`` is ``[B, C, d_m]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ...errors import InputError
from ..data.layout import Shape, flatten_weights, unflatten_weights
from ..data.siren import DEFAULT_W0, render
from ..train.normalize import Normalizer

__all__ = [
    "FlatMLP",
    "PixelClassifier",
    "STAT_QUANTILES",
    "weight_statistics",
    "StatsNet",
]


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class FlatMLP(nn.Module):
    """An MLP on the flattened, concatenated weights and biases.

    With ``out_shapes=(weight_shapes, bias_shapes)`` (shapes without the batch axis) it
    predicts a flat vector and returns it unflattened as ``(weights, biases)``; its last layer
    then starts at zero, so an untrained model predicts no change (callers add it as a
    residual on the input).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int | None = None,
        hidden: Sequence[int] = (512, 512),
        out_shapes: tuple[Sequence[Shape], Sequence[Shape]] | None = None,
    ) -> None:
        super().__init__()
        if (out_dim is None) == (out_shapes is None):
            raise InputError("give exactly one of out_dim and out_shapes")
        self.out_shapes = out_shapes
        if out_shapes is not None:
            out_dim = sum(math.prod(s) for s in (*out_shapes[0], *out_shapes[1]))
        assert out_dim is not None
        self.net = _mlp([in_dim, *hidden, out_dim])
        if out_shapes is not None:
            last = self.net[-1]
            assert isinstance(last, nn.Linear)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(
        self, weights: Sequence[Tensor], biases: Sequence[Tensor]
    ) -> Tensor | tuple[list[Tensor], list[Tensor]]:
        out = self.net(flatten_weights(weights, biases))
        if self.out_shapes is None:
            return out
        return unflatten_weights(out, *self.out_shapes)


class PixelClassifier(nn.Module):
    """Reference model that decodes each INR on its grid and applies an MLP to the samples.

    Inputs are normalised weights; ``normalizer.inverse`` undoes that before rendering, so the
    pixels are the INR's actual outputs.
    """

    def __init__(
        self,
        coords: Tensor,
        out_dim: int,
        normalizer: Normalizer,
        *,
        w0: float = DEFAULT_W0,
        hidden: Sequence[int] = (256, 256),
        out_channels: int = 1,
    ) -> None:
        super().__init__()
        self.register_buffer("coords", coords.clone())
        self.w0 = w0
        self.normalizer = normalizer
        self.net = _mlp([coords.shape[0] * out_channels, *hidden, out_dim])

    def pixels(self, weights: Sequence[Tensor], biases: Sequence[Tensor]) -> Tensor:
        norm = self.normalizer.to(weights[0].device)
        raw_w, raw_b = norm.inverse(weights, biases)
        return render(raw_w, raw_b, self.coords, self.w0)  # [B, P, d_M]

    def forward(self, weights: Sequence[Tensor], biases: Sequence[Tensor]) -> Tensor:
        return self.net(self.pixels(weights, biases).flatten(1))


# Quantiles of StatNN (Unterthiner et al. 2020), the NFN paper's statistics baseline.
STAT_QUANTILES = (0.0, 0.25, 0.5, 0.75, 1.0)


def weight_statistics(weights: Sequence[Tensor], biases: Sequence[Tensor]) -> Tensor:
    """Per tensor and channel: mean, variance and the :data:`STAT_QUANTILES`, ``[B, F]``.

    Every statistic is over all entries of a tensor, so it is unchanged by any permutation of
    its neurons: a model on these features is permutation invariant by construction.
    """
    feats = []
    q = None
    for x in (*weights, *biases):
        flat = x.flatten(2)  # [B, C, entries]
        if q is None:
            q = torch.tensor(STAT_QUANTILES, dtype=flat.dtype, device=flat.device)
        quant = torch.quantile(flat, q, dim=-1).permute(1, 2, 0)  # [B, C, Q]
        mean = flat.mean(-1, keepdim=True)
        var = flat.var(-1, keepdim=True, correction=0)
        feats.append(torch.cat([mean, var, quant], dim=-1).flatten(1))
    return torch.cat(feats, dim=1)


class StatsNet(nn.Module):
    """StatNN: an MLP on :func:`weight_statistics`, standardised with a batch norm first."""

    def __init__(self, n_tensors: int, channels: int, out_dim: int, hidden: int = 256) -> None:
        super().__init__()
        n_features = n_tensors * channels * (2 + len(STAT_QUANTILES))
        self.norm = nn.BatchNorm1d(n_features)
        self.net = _mlp([n_features, hidden, hidden, out_dim])

    def forward(self, weights: Sequence[Tensor], biases: Sequence[Tensor]) -> Tensor:
        return self.net(self.norm(weight_statistics(weights, biases)))
