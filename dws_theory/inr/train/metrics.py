"""Rank metrics of predictions that are not sums over samples."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["kendall_tau"]


def kendall_tau(x: Tensor, y: Tensor) -> float:
    """Kendall's tau-b of two ``[n]`` sequences (ties adjusted, as ``scipy.stats.kendalltau``).

    ``(concordant - discordant) / sqrt(pairs untied in x * pairs untied in y)`` over all
    pairs ``i < j``; NaN when either sequence is constant. Quadratic in ``n``: meant for test
    splits of a few hundred networks.
    """
    x, y = x.double().flatten(), y.double().flatten()
    if x.shape != y.shape:
        raise ValueError(f"expected two sequences of one length, got {x.shape} and {y.shape}")
    sx = torch.sign(x[:, None] - x[None, :]).triu(1)
    sy = torch.sign(y[:, None] - y[None, :]).triu(1)
    untied_x, untied_y = sx.abs().sum().item(), sy.abs().sum().item()
    if untied_x == 0 or untied_y == 0:
        return math.nan
    return (sx * sy).sum().item() / math.sqrt(untied_x * untied_y)
