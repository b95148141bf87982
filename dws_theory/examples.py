"""Example architectures beyond MLPs, with their modules checked in under generated/.

Each is a function returning a fresh `nn.Module`, so the command line reaches them as
`--module dws_theory/examples.py:NAME` and a drift test rebuilds their modules and
derivations from the engine:

- `zoo_cnn`: Conv2d 1 -> 8 -> 8 -> 8 (3x3, ReLU), global average pooling, Linear 8 -> 10
  (the small CNNs of a model zoo on 8x8 digits);
- `residual_mlp`: Linear 2 -> 32, two residual blocks h + fc2(relu(fc1(h))) of
  32 -> 32 -> 32, Linear 32 -> 1;
- `tied_mlp`: Linear 2 -> 32, one square Linear 32 -> 32 applied twice (a tied weight),
  Linear 32 -> 1;
- `resnet18`: torchvision's ResNet-18 layout with batch norm at its real widths (64 to 512
  channels, 1,000 classes, 11.7 M parameters), written out here (no torchvision needed);
  not checked in (its module is 11.7 M parameters' worth of layer), a benchmark instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CHECKED_IN",
    "EXAMPLES_FILE",
    "ResNet",
    "example_target",
    "resnet18",
    "residual_mlp",
    "tied_mlp",
    "zoo_cnn",
]

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


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock: conv-bn-relu-conv-bn, a projected shortcut."""

    def __init__(self, c_in: int, c: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.downsample = None
        if stride != 1 or c_in != c:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c, 1, stride=stride, bias=False), nn.BatchNorm2d(c)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + identity)


class ResNet(nn.Module):
    """torchvision's ResNet layout (stem, stages of BasicBlocks, pool, fc), any widths."""

    def __init__(self, widths: tuple[int, ...] = (4, 8), blocks: int = 2, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        layers, c_in = [], widths[0]
        for i, c in enumerate(widths):
            stage = [BasicBlock(c_in, c, 1 if i == 0 else 2)]
            stage += [BasicBlock(c, c, 1) for _ in range(blocks - 1)]
            layers.append(nn.Sequential(*stage))
            c_in = c
        self.layers = nn.ModuleList(layers)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[-1], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in self.layers:
            x = stage(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(classes: int = 1000, width: int = 64) -> nn.Module:
    """torchvision's ResNet-18 (11.7 M parameters at width 64 and 1,000 classes)."""
    return ResNet((width, 2 * width, 4 * width, 8 * width), blocks=2, classes=classes)


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
