"""The model table: every built-in weight-space model by name, the presets, ``get_model``.

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
probe      hidden    an MLP on the networks' outputs at learned input points (probe
                     features alone; ``--probes N`` adds them to dws)
========== ========= ============================================================
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ...errors import InputError
from .base import DEFAULT_PROBES, Architecture, ModelBuilder, ModelSpec, TaskInfo, UnsupportedTask
from .baselines import FlatMLP, PixelClassifier, StatsNet
from .equivariant import build_dws, build_nfn
from .probes import ProbeNet

__all__ = ["MODELS", "PRESETS", "Preset", "get_model"]


@dataclass(frozen=True)
class Preset:
    """A named configuration: model sizes plus training overrides (``train --preset``)."""

    arch: Architecture
    train: dict[str, object]
    description: str


PRESETS: dict[str, Preset] = {
    "default": Preset(Architecture(), {}, "the task's own defaults"),
    # The DWSNets paper's MNIST classifier: 32 channels, 5 equivariant layers, no probes,
    # AdamW with amsgrad at lr 5e-3, weight decay 5e-4, batch 512, 100 epochs (augmentation:
    # the task's).
    "paper": Preset(
        Architecture(hidden_channels=32, num_layers=5, probes=0),
        {"lr": 5e-3, "weight_decay": 5e-4, "batch_size": 512, "epochs": 100, "amsgrad": True},
        "the DWSNets paper's classifier configuration",
    ),
}


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


def _probe(info: TaskInfo, arch: Architecture) -> nn.Module:
    return ProbeNet(info, arch.probes or DEFAULT_PROBES, arch.head_hidden)


def _dws_mode(mode: str) -> ModelBuilder:
    def build(info: TaskInfo, arch: Architecture) -> nn.Module:
        return build_dws(info, arch, mode)

    return build


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "dws",
            _dws_mode("hidden"),
            "hidden",
            "DWSNet, hidden neurons permutable (the true symmetry)",
        ),
        ModelSpec(
            "dws-all",
            _dws_mode("all"),
            "all",
            "DWSNet, every neuron permutable (an over-symmetric ablation)",
        ),
        ModelSpec(
            "dws-signed",
            _dws_mode("signed"),
            "signed",
            "DWSNet, hidden permutations and sign flips",
        ),
        ModelSpec("nfn", build_nfn, "hidden", "NFN's HNP layers (peer)"),
        ModelSpec("mlp", _mlp, None, "MLP on the flattened weights"),
        ModelSpec(
            "mlp-aug",
            _mlp,
            "hidden",
            "MLP on the flattened weights, hidden neurons permuted in training",
            permutation_augment=True,
        ),
        ModelSpec("stats", _stats, "hidden", "StatNN on weight statistics"),
        ModelSpec("pixels", _pixels, None, "classifier on decoded pixels"),
        ModelSpec("probe", _probe, "hidden", "MLP on the networks' outputs at learned points"),
    )
}


def get_model(name: str) -> ModelSpec:
    if name not in MODELS:
        raise InputError(f"unknown model {name!r}; registered: {', '.join(sorted(MODELS))}")
    return MODELS[name]
