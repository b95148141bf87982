"""Equivariant weight-space models for the INR tasks, registered into the training registry.

Models (see :mod:`dws_theory.inr.train` for the contract):

``dws``
    :class:`~dws_theory.models.DWSNet` in ``hidden`` mode (hidden neurons permutable; the
    input and output neurons of the INR are fixed), ReLU between layers.
``dws-all``
    DWSNet in ``all`` mode: input and output neurons are treated as permutable too. This is a
    larger group than the true symmetry (pixel coordinates are ordered), so it is a *weaker*
    model by design: an ablation.
``dws-signed``
    DWSNet in ``signed`` mode with tanh: hidden neurons may also flip sign, a true symmetry of
    a SIREN because ``sin`` is odd. Per-tensor scalar normalisation commutes with sign flips
    and the residual output (``input + model``) is sign-equivariant when the model is, so the
    whole pipeline keeps the symmetry.
``nfn``
    NFN's HNP layers (Zhou et al. 2023, package ``nfn``) as a peer: ``HNPLinear`` stack with
    ReLU, ``HNPPool`` and an MLP head, or one output channel for ``digits-dilate``.

For ``digits-dilate`` the models return weight-space residuals whose last layer starts at
zero, so an untrained model is the identity map (as :class:`~dws_theory.inr.baselines.FlatMLP`
does); otherwise the random last layer would add noise to every INR at step 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import Tensor, nn

from ..models import DWSNet
from .train import TaskInfo, register_model

__all__ = [
    "DWS_DEFAULTS",
    "DWSConfig",
    "build_dws",
    "build_nfn",
    "NFNNet",
    "nfn_available",
    "NFN_MISSING",
]

NFN_MISSING = "model 'nfn' needs the nfn package: pip install nfn"


@dataclass(frozen=True)
class DWSConfig:
    """Architecture defaults shared by the DWSNet variants (chosen on the validation split)."""

    hidden_channels: int = 16
    num_layers: int = 3
    head_hidden: int = 64
    dropout: float = 0.0
    norm: bool = True  # symmetric batch norm after every equivariant layer but the last


DWS_DEFAULTS = DWSConfig()


class SymmetricBatchNorm(nn.Module):
    """Batch norm per (tensor, channel) with statistics over the batch and ALL neuron axes.

    Statistics over every entry of a tensor are unchanged by any permutation (and, for the
    root mean square, any sign flip) of its neurons, and the affine part is one scalar per
    channel, so the layer commutes with the whole group. ``center=False`` (signed mode)
    divides by the root mean square only: subtracting a mean or adding a shift would not
    commute with sign flips.
    """

    def __init__(self, n_tensors: int, channels: int, center: bool, momentum: float = 0.1):
        super().__init__()
        self.center = center
        self.momentum = momentum
        self.scale = nn.Parameter(torch.ones(n_tensors, channels))
        self.shift = nn.Parameter(torch.zeros(n_tensors, channels)) if center else None
        self.register_buffer("running_mean", torch.zeros(n_tensors, channels))
        self.register_buffer("running_var", torch.ones(n_tensors, channels))

    def forward(self, tensors: Sequence[Tensor]) -> list[Tensor]:
        out = []
        for i, x in enumerate(tensors):
            flat = x.transpose(0, 1).reshape(x.shape[1], -1)  # [C, B * neurons]
            if self.training:
                mean = flat.mean(1) if self.center else torch.zeros_like(flat[:, 0])
                var = (flat - mean[:, None]).pow(2).mean(1)
                with torch.no_grad():
                    m = self.momentum
                    self.running_mean[i].mul_(1 - m).add_(m * mean.detach())
                    self.running_var[i].mul_(1 - m).add_(m * var.detach())
            else:
                mean, var = self.running_mean[i], self.running_var[i]
            view = (1, -1) + (1,) * (x.dim() - 2)
            y = (x - mean.view(view)) * torch.rsqrt(var.view(view) + 1e-5)
            y = y * self.scale[i].view(view)
            if self.shift is not None:
                y = y + self.shift[i].view(view)
            out.append(y)
        return out


class NormedDWSNet(DWSNet):
    """DWSNet with :class:`SymmetricBatchNorm` between each equivariant layer and its ReLU."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        n_tensors = 2 * (len(self.dims) - 1)
        center = self.mode != "signed"
        inner = [layer for layer in self.layers][: len(self.layers) - int(self.equivariant_output)]
        self.norms = nn.ModuleList(
            SymmetricBatchNorm(n_tensors, _out_channels(layer), center) for layer in inner
        )

    def forward(
        self, weights: Sequence[Tensor], biases: Sequence[Tensor]
    ) -> Tensor | tuple[list[Tensor], list[Tensor]]:
        ws, bs = list(weights), list(biases)
        n = len(ws)
        for i, layer in enumerate(self.layers):
            ws, bs = layer(ws, bs)
            if i < len(self.norms):
                both = self.norms[i](ws + bs)
                ws, bs = self._act(both[:n]), self._act(both[n:])
        if self.equivariant_output:
            return ws, bs
        assert self.invariant is not None and self.head is not None
        return self.head(self.invariant(ws, bs))


def _out_channels(layer: nn.Module) -> int:
    for name in ("out_channels", "c_out"):
        if hasattr(layer, name):
            return int(getattr(layer, name))
    raise AttributeError(f"cannot read the output channels of {layer!r}")


def _zero_last(module: nn.Module) -> None:
    # A zero last layer makes the weight-to-weight model start as the identity residual.
    for p in module.parameters():
        nn.init.zeros_(p)


def build_dws(info: TaskInfo, mode: str = "hidden", config: DWSConfig = DWS_DEFAULTS) -> DWSNet:
    """DWSNet for ``info``'s task in symmetry ``mode`` (hidden / all / signed)."""
    weights_task = info.kind == "weights"
    cls = NormedDWSNet if config.norm else DWSNet
    net = cls(
        info.dims,
        mode=mode,
        hidden_channels=config.hidden_channels,
        num_layers=config.num_layers,
        out_features=max(info.out_dim, 1),
        head_hidden=config.head_hidden,
        equivariant_output=weights_task,
        dropout=config.dropout,
        in_channels=info.channels,
    )
    if weights_task:
        _zero_last(net.layers[-1])
    return net


def _dws(info: TaskInfo) -> nn.Module:
    return build_dws(info, "hidden")


def _dws_all(info: TaskInfo) -> nn.Module:
    return build_dws(info, "all")


def _dws_signed(info: TaskInfo) -> nn.Module:
    return build_dws(info, "signed")


# ----------------------------------------------------------------------------- NFN peer


def nfn_available() -> bool:
    try:
        import nfn  # noqa: F401
    except ImportError:
        return False
    return True


class NFNNet(nn.Module):
    """NFN-HNP peer: HNPLinear layers with ReLU, then HNPPool + MLP head (or 1 channel out)."""

    def __init__(
        self,
        dims: Sequence[int],
        in_channels: int = 1,
        hidden_channels: int = 16,
        num_layers: int = 3,
        out_features: int = 10,
        head_hidden: int = 64,
        equivariant_output: bool = False,
    ) -> None:
        super().__init__()
        try:
            from nfn.common import WeightSpaceFeatures, network_spec_from_wsfeat
            from nfn.layers import HNPLinear, HNPPool
        except ImportError as exc:
            raise ImportError(NFN_MISSING) from exc
        self._features = WeightSpaceFeatures
        dims = tuple(dims)
        probe = WeightSpaceFeatures(
            [torch.zeros(1, in_channels, dims[m], dims[m - 1]) for m in range(1, len(dims))],
            [torch.zeros(1, in_channels, dims[m]) for m in range(1, len(dims))],
        )
        spec = network_spec_from_wsfeat(probe)
        self.equivariant_output = equivariant_output
        last = 1 if equivariant_output else hidden_channels
        channels = [in_channels] + [hidden_channels] * (num_layers - 1) + [last]
        self.layers = nn.ModuleList(
            HNPLinear(spec, c_in, c_out) for c_in, c_out in pairwise(channels)
        )
        if equivariant_output:
            _zero_last(self.layers[-1])
            self.pool = None
            self.head = None
        else:
            self.pool = HNPPool(spec)
            n_pool = HNPPool.get_num_outs(spec) * hidden_channels
            self.head = nn.Sequential(
                nn.Linear(n_pool, head_hidden),
                nn.ReLU(),
                nn.Linear(head_hidden, head_hidden),
                nn.ReLU(),
                nn.Linear(head_hidden, out_features),
            )

    def forward(
        self, weights: Sequence[Tensor], biases: Sequence[Tensor]
    ) -> Tensor | tuple[list[Tensor], list[Tensor]]:
        feats = self._features(list(weights), list(biases))
        for i, layer in enumerate(self.layers):
            feats = layer(feats)
            if i < len(self.layers) - 1 or not self.equivariant_output:
                feats = feats.map(torch.relu)
        if self.equivariant_output:
            return list(feats.weights), list(feats.biases)
        assert self.pool is not None and self.head is not None
        return self.head(self.pool(feats).flatten(1))


def build_nfn(info: TaskInfo, config: DWSConfig = DWS_DEFAULTS) -> NFNNet:
    """NFN-HNP model with the same channels/depth/head as the DWSNet defaults."""
    if not nfn_available():
        raise ImportError(NFN_MISSING)
    return NFNNet(
        info.dims,
        in_channels=info.channels,
        hidden_channels=config.hidden_channels,
        num_layers=config.num_layers,
        out_features=max(info.out_dim, 1),
        head_hidden=config.head_hidden,
        equivariant_output=info.kind == "weights",
    )


# An equivariant epoch costs 5-20x a flat-MLP epoch on CPU; 15 epochs keep the default
# `train digits-inr --model dws` near the 5-minute budget (validation accuracy had not moved
# after epoch 10 in our runs, see docs/results.md).
DEFAULT_EPOCHS = {"epochs": 15}
register_model("dws", _dws, DEFAULT_EPOCHS)
register_model("dws-all", _dws_all, DEFAULT_EPOCHS)
register_model("dws-signed", _dws_signed, DEFAULT_EPOCHS)
register_model("nfn", build_nfn, DEFAULT_EPOCHS)
