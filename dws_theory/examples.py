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

Spec examples (written by hand as spec strings, no module traced), checked in the same way
(`CHECKED_IN_SPECS`, regenerated with `dws-theory build --spec '...'`):

- `attention_block`: one multi-head attention block with E = 8, H = 2 heads of d = 4:
  the query, key and value projections [H d, E] viewed as [H, d, E], their biases [H, d],
  the output projection [E, H d] viewed as [E, H, d] and its bias. Heads move as wholes;
  inside each head the q and k dims share one permutation (`qk`), the v dims and the
  output projection's inputs another (`v`): (S_4 x S_4) wr S_2. The embedding set is
  permuted: inside a transformer the residual stream is a hidden set (the embedding and
  the classifier move with it).

`encoder_layers(...)` writes embedding-free transformer encoder layers the same way (the
theory page counts their ops).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ATTENTION_BLOCK",
    "CHECKED_IN",
    "CHECKED_IN_SPECS",
    "EXAMPLES_FILE",
    "ResNet",
    "encoder_layers",
    "example_target",
    "resnet18",
    "residual_mlp",
    "spec_target",
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


# -- spec examples ---------------------------------------------------------------------------
ATTENTION_BLOCK = (
    "sets[embed:8:permuted heads:2:permuted qk:4:permuted@heads v:4:permuted@heads] "
    "tensors[q_w(heads,qk,embed) k_w(heads,qk,embed) v_w(heads,v,embed) q_b(heads,qk) "
    "k_b(heads,qk) v_b(heads,v) o_w(embed,heads,v) o_b(embed)]"
)

# (name, spec) of every spec example checked in under generated/ and docs/derivations/.
CHECKED_IN_SPECS: tuple[tuple[str, str], ...] = (("attention_block", ATTENTION_BLOCK),)


def spec_target(name: str):
    """The `Target` of one spec example, as `--spec '...'` names it."""
    from .frontends.target import from_spec

    specs = dict(CHECKED_IN_SPECS)
    if name not in specs:
        raise ValueError(f"expected one of {', '.join(specs)}, got {name!r}")
    return from_spec(specs[name])


def encoder_layers(
    layers: int = 1, embed: int = 64, heads: int = 4, head_dim: int = 16, ff: int = 256
) -> str:
    """The spec of `layers` embedding-free transformer encoder layers on one residual set
    `e`: per layer k, Q, K, V (weights `[H, d, E]`, biases `[H, d]`), the output projection
    `[E, H, d]` and its bias, two LayerNorms (weight and bias on `e`) and the feed-forward
    e -> f_k -> e. 16 tensors per layer, in nn.TransformerEncoderLayer's order."""
    sets = [f"e:{embed}:permuted"]
    tensors = []
    for k in range(layers):
        h, qk, v, f = f"h{k}", f"qk{k}", f"v{k}", f"f{k}"
        sets += [
            f"{h}:{heads}:permuted",
            f"{qk}:{head_dim}:permuted@{h}",
            f"{v}:{head_dim}:permuted@{h}",
            f"{f}:{ff}:permuted",
        ]
        tensors += [f"q{k}_w({h},{qk},e)", f"k{k}_w({h},{qk},e)", f"v{k}_w({h},{v},e)"]
        tensors += [f"q{k}_b({h},{qk})", f"k{k}_b({h},{qk})", f"v{k}_b({h},{v})"]
        tensors += [f"o{k}_w(e,{h},{v})", f"o{k}_b(e)"]
        tensors += [f"ff{k}1_w({f},e)", f"ff{k}1_b({f})", f"ff{k}2_w(e,{f})", f"ff{k}2_b(e)"]
        tensors += [f"ln{k}a_w(e)", f"ln{k}a_b(e)", f"ln{k}b_w(e)", f"ln{k}b_b(e)"]
    return f"sets[{' '.join(sets)}] tensors[{' '.join(tensors)}]"
