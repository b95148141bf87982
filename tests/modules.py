"""Real torch modules of the three families in tests/spaces.py, with the same tensor order.

Each builder returns an `nn.Module` whose `named_parameters()` order matches the hand-written
space of the same arguments, written in the styles users write: nn.Sequential, a custom
forward with functional calls, ModuleList loops, a layer called twice.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def activation(mode: str) -> type[nn.Module]:
    """An odd activation for signed mode (so the hidden sets really are signed), else SiLU:
    not odd, and without ReLU's dead zone, which could make a random small network ignore
    some of its parameters on every probe (and hide a wrong group)."""
    return nn.Tanh if mode == "signed" else nn.SiLU


def cnn_module(
    channels: tuple[int, ...], kernels: tuple[tuple[int, ...], ...], out: int, mode: str
) -> nn.Module:
    """Conv -> act -> ... -> global average pool -> Flatten -> Linear, as an nn.Sequential."""
    dims = len(kernels[0])
    conv = {1: nn.Conv1d, 2: nn.Conv2d}[dims]
    pool = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d}[dims]
    layers: list[nn.Module] = []
    for k in range(1, len(channels)):
        layers += [conv(channels[k - 1], channels[k], kernels[k - 1])]
        layers += [activation(mode)()]
    layers += [pool(1), nn.Flatten(), nn.Linear(channels[-1], out)]
    return nn.Sequential(*layers)


class Residual(nn.Module):
    """Linear(d_in -> width), blocks h + fc2(act(fc1(h))), Linear(width -> out)."""

    def __init__(self, d_in: int, width: int, hidden: tuple[int, ...], out: int, mode: str):
        super().__init__()
        self.odd = mode == "signed"
        self.inp = nn.Linear(d_in, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(width, m), activation(mode)(), nn.Linear(m, width))
            for m in hidden
        )
        self.out = nn.Linear(width, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.inp(x)) if self.odd else F.silu(self.inp(x))
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)


class Tied(nn.Module):
    """Linear(d_in -> width), one square Linear applied twice, Linear(width -> out)."""

    def __init__(self, d_in: int, width: int, out: int, mode: str):
        super().__init__()
        self.act = activation(mode)()
        self.inp = nn.Linear(d_in, width)
        self.tied = nn.Linear(width, width)
        self.out = nn.Linear(width, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.inp(x))
        h = self.act(self.tied(h))
        h = self.act(self.tied(h))
        return self.out(h)


def probe(module: nn.Module, batch: int, gen: torch.Generator) -> torch.Tensor:
    """A float64 input batch of the right shape for the first layer (spatial size 5: two
    unpadded convolutions with kernels up to 3 leave at least one position)."""
    first = next(m for m in module.modules() if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d))
    if isinstance(first, nn.Linear):
        return torch.randn(batch, first.in_features, generator=gen, dtype=torch.float64)
    spatial = (5,) * (first.weight.dim() - 2)
    return torch.randn(batch, first.in_channels, *spatial, generator=gen, dtype=torch.float64)
