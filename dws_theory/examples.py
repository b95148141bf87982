"""Example architectures beyond MLPs, with their modules checked in under generated/.

Each is a function returning a fresh `nn.Module`, so the command line reaches them as
`--module dws_theory/examples.py:NAME` and a drift test rebuilds their modules and
derivations from the engine:

- `zoo_cnn`: Conv2d 1 -> 8 -> 8 -> 8 (3x3, ReLU), global average pooling, Linear 8 -> 10
  (the small CNNs of a model zoo on 8x8 digits);
- `residual_mlp`: Linear 2 -> 32, two residual blocks h + fc2(relu(fc1(h))) of
  32 -> 32 -> 32, Linear 32 -> 1;
- `tied_mlp`: Linear 2 -> 32, one square Linear 32 -> 32 applied twice (a tied weight),
  Linear 32 -> 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CHECKED_IN", "EXAMPLES_FILE", "example_target", "residual_mlp", "tied_mlp", "zoo_cnn"]

EXAMPLES_FILE = "dws_theory/examples.py"  # as the command line names this file


def zoo_cnn() -> nn.Sequential:
    """The small digits CNN of the model zoo (``dws_theory.inr.data.zoo`` trains thousands)."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    )


class ResidualMLP(nn.Module):
    def __init__(self, d_in: int = 2, width: int = 32, blocks: int = 2, d_out: int = 1):
        super().__init__()
        self.inp = nn.Linear(d_in, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width))
            for _ in range(blocks)
        )
        self.out = nn.Linear(width, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.inp(x))
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)


def residual_mlp() -> nn.Module:
    return ResidualMLP()


class TiedMLP(nn.Module):
    def __init__(self, d_in: int = 2, width: int = 32, d_out: int = 1, uses: int = 2):
        super().__init__()
        self.uses = uses
        self.inp = nn.Linear(d_in, width)
        self.tied = nn.Linear(width, width)
        self.out = nn.Linear(width, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.inp(x))
        for _ in range(self.uses):
            h = F.relu(self.tied(h))
        return self.out(h)


def tied_mlp() -> nn.Module:
    return TiedMLP()


# (function name, mode) of every example checked in under generated/ and docs/derivations/.
CHECKED_IN: tuple[tuple[str, str], ...] = (
    ("zoo_cnn", "hidden"),
    ("residual_mlp", "hidden"),
    ("tied_mlp", "hidden"),
)


def example_target(name: str, mode: str = "hidden"):
    """The `Target` of one example, as `--module dws_theory/examples.py:NAME` names it."""
    from .frontends.target import from_module

    if name not in {n for n, _ in CHECKED_IN}:
        raise ValueError(f"expected one of {', '.join(n for n, _ in CHECKED_IN)}, got {name!r}")
    return from_module(globals()[name](), name, mode, f"{EXAMPLES_FILE}:{name}")
