"""The built-in weight-space models, registered by name (importing this module registers them).

========== ========= ============================================================
name       symmetry  model
========== ========= ============================================================
dws        hidden    DWSNet, hidden neurons permutable (the true symmetry)
dws-all    all       DWSNet, every neuron permutable (an over-symmetric ablation)
dws-signed signed    DWSNet, hidden permutations and sign flips (odd activations)
nfn        hidden    NFN's HNP layers (the peer implementation)
mlp        none      an MLP on the flattened weights
mlp-aug    hidden    the same MLP, every training batch's hidden neurons permuted
stats      hidden    StatNN: an MLP on per-tensor weight statistics
pixels     none      decodes the INR on its grid and classifies the pixels (a reference,
                     not a weight-space model)
========== ========= ============================================================
"""

from __future__ import annotations

from torch import nn

from .baselines import FlatMLP, PixelClassifier, StatsNet
from .equivariant import build_dws, build_nfn
from .registry import MODELS, Architecture, TaskInfo, UnsupportedTask, register_model

__all__ = ["MODELS"]


def _mlp(info: TaskInfo, arch: Architecture) -> nn.Module:
    if info.kind == "weights":
        return FlatMLP(info.in_dim, out_shapes=(info.weight_shapes, info.bias_shapes))
    return FlatMLP(info.in_dim, info.out_dim)


def _stats(info: TaskInfo, arch: Architecture) -> nn.Module:
    if info.kind == "weights":
        raise UnsupportedTask("stats reads weight statistics; it cannot output weights")
    return StatsNet(len(info.weight_shapes) + len(info.bias_shapes), info.channels, info.out_dim)


def _pixels(info: TaskInfo, arch: Architecture) -> nn.Module:
    if info.kind == "weights":
        raise UnsupportedTask("pixels classifies decoded pixels; it cannot output INR weights")
    if info.coords is None or info.w0 is None:
        raise UnsupportedTask("pixels renders SIRENs on a grid; this collection has none")
    return PixelClassifier(info.coords, info.out_dim, info.normalizer, w0=info.w0)


def _dws_mode(mode: str):
    def build(info: TaskInfo, arch: Architecture) -> nn.Module:
        return build_dws(info, arch, mode)

    return build


for _name, _mode, _text in (
    ("dws", "hidden", "DWSNet, hidden neurons permutable (the true symmetry)"),
    ("dws-all", "all", "DWSNet, every neuron permutable (an over-symmetric ablation)"),
    ("dws-signed", "signed", "DWSNet, hidden permutations and sign flips"),
):
    register_model(_name, _dws_mode(_mode), symmetry=_mode, description=_text)
register_model("nfn", build_nfn, symmetry="hidden", description="NFN's HNP layers (peer)")
register_model("mlp", _mlp, symmetry=None, description="MLP on the flattened weights")
register_model(
    "mlp-aug",
    _mlp,
    symmetry="hidden",
    permutation_augment=True,
    description="MLP on the flattened weights, hidden neurons permuted in training",
)
register_model("stats", _stats, symmetry="hidden", description="StatNN on weight statistics")
register_model("pixels", _pixels, symmetry=None, description="classifier on decoded pixels")
