"""Equivariant weight-space models for the INR tasks.

``build_dws(info, arch, mode)``
    :class:`~dws_theory.models.DWSNet` in symmetry ``mode`` with :class:`SymmetricBatchNorm`
    between its layers: ``hidden`` (hidden neurons permutable; the input and output neurons of
    the INR fixed: the true symmetry), ``all`` (input and output neurons permutable too: a
    larger group than the true one, so a weaker model by design, an ablation) and ``signed``
    (hidden permutations and sign flips, a true symmetry of a SIREN because ``sin`` is odd;
    tanh between the layers).
``build_nfn(info, arch)``
    NFN's HNP layers (Zhou et al. 2023, package ``nfn``) as a peer: ``HNPLinear`` stack with
    ReLU, ``HNPPool`` and an MLP head, or one output channel for weight-to-weight tasks.

For weight-to-weight tasks the models return residuals whose last layer starts at zero, so
an untrained model is the identity map (as :class:`~dws_theory.inr.models.baselines.FlatMLP`
does); otherwise the random last layer would add noise to every INR at step 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import Tensor, nn

from ...models import DWSNet
from .base import DEFAULT_PROBES, Architecture, TaskInfo, UnsupportedTask
from .norms import SymmetricBatchNorm
from .probes import ProbeFeatures, probe_support

__all__ = [
    "SymmetricBatchNorm",
    "NormedDWSNet",
    "build_dws",
    "build_nfn",
    "NFNNet",
    "nfn_available",
    "NFN_MISSING",
]

NFN_MISSING = "model 'nfn' needs the nfn package: pip install nfn"


class NormedDWSNet(DWSNet):
    """DWSNet with :class:`SymmetricBatchNorm` between each equivariant layer and its ReLU,
    and (``max_readout``) a second invariant readout: each tensor's features maximised over
    every axis the group moves, projected and added to the linear invariant layer's output
    (max pooling is the DWSNets reference code's default reduction); ``probe`` (a module
    from the inputs to ``[B, head_hidden]``, :class:`~dws_theory.inr.models.probes.
    ProbeFeatures`) adds the networks' outputs at learned points to that readout."""

    def __init__(
        self,
        *args: object,
        max_readout: bool = False,
        probe: nn.Module | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.probe = probe
        self.max_pools = _max_pool_axes(self.space) if max_readout else None
        if self.max_pools is not None and not self.equivariant_output:
            channels = _out_channels(self.layers[-1])
            n_features = channels * sum(size for _, size in self.max_pools)
            head_in = self.head[2].in_features  # type: ignore[index]
            self.max_proj = nn.Linear(n_features, head_in)
        n_tensors = len(self.space.tensors)
        center = not self.signed
        inner = [layer for layer in self.layers][: len(self.layers) - int(self.equivariant_output)]
        self.norms = nn.ModuleList(
            SymmetricBatchNorm(n_tensors, _out_channels(layer), center) for layer in inner
        )
        if center:
            for layer in inner:
                _freeze_cancelled_biases(layer)

    def _forward(
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
        rw, rb = self._readout(ws, bs)
        features = self.invariant(rw, rb)
        if self.max_pools is not None:
            pooled = [
                x.amax(dim=axes).flatten(1) if axes else x.flatten(1)
                for x, (axes, _) in zip(rw + rb, self.max_pools, strict=True)
            ]
            features = features + self.max_proj(torch.cat(pooled, dim=1))
        if self.probe is not None:
            features = features + self.probe(weights, biases)
        return self.head(features)


def _max_pool_axes(space: object) -> list[tuple[tuple[int, ...], int]]:
    """Per tensor (weights first, then biases, as the layers order them): the batch-layout
    axes on moved sets, and the number of entries left per channel after maximising."""
    from ...spec import Kind

    tensors = sorted(space.tensors, key=lambda t: len(t.axes) < 2)  # type: ignore[attr-defined]
    out = []
    for t in tensors:
        kinds = [space.set(a).kind for a in t.axes]  # type: ignore[attr-defined]
        axes = tuple(2 + i for i, k in enumerate(kinds) if k is not Kind.FIXED)
        left = math.prod(
            space.set(a).size for a, k in zip(t.axes, kinds, strict=True) if k is Kind.FIXED
        )  # type: ignore[attr-defined]
        out.append((axes, left))
    return out


def _freeze_cancelled_biases(layer: nn.Module) -> None:
    """Zero and freeze the bias orbits that the following centred batch norm cancels.

    A tensor whose bias has a single orbit gets one constant per channel added to every
    entry; the norm subtracts the per-(tensor, channel) mean, so that constant never reaches
    the output and its gradient is exactly zero. Left trainable it would only collect
    round-off (which Adam, being scale-free, turns into full-size random steps).
    """
    c_out = _out_channels(layer)
    for name, param in layer.named_parameters():
        if name.startswith("bias_") and param.numel() == c_out:
            with torch.no_grad():
                param.zero_()
            param.requires_grad_(False)


def _out_channels(layer: nn.Module) -> int:
    for name in ("out_channels", "c_out"):
        if hasattr(layer, name):
            return int(getattr(layer, name))
    raise AttributeError(f"cannot read the output channels of {layer!r}")


def _zero_last(module: nn.Module) -> None:
    # A zero last layer makes the weight-to-weight model start as the identity residual.
    for p in module.parameters():
        nn.init.zeros_(p)


def build_dws(info: TaskInfo, arch: Architecture, mode: str = "hidden") -> DWSNet:
    """DWSNet for ``info``'s task in symmetry ``mode`` (hidden / all / signed)."""
    weights_task = info.kind == "weights"
    extra: dict[str, object] = {"max_readout": arch.max_readout} if arch.norm else {}
    probes = arch.probes
    if probes is None:  # the default: wherever they can run
        runs = not weights_task and arch.norm and probe_support(info) is None
        probes = DEFAULT_PROBES if runs else 0
    if probes:
        if weights_task or not arch.norm:
            raise UnsupportedTask("probe features feed the invariant readout of a normed DWSNet")
        extra["probe"] = ProbeFeatures(info, probes, arch.head_hidden)
    cls = NormedDWSNet if arch.norm else DWSNet
    net = cls(
        info.dims if info.example is None else info.space(mode),
        **extra,
        mode=mode,
        hidden_channels=arch.hidden_channels,
        num_layers=arch.num_layers,
        out_features=max(info.out_dim, 1),
        head_hidden=arch.head_hidden,
        equivariant_output=weights_task,
        dropout=arch.dropout,
        in_channels=info.channels,
    )
    if weights_task:
        _zero_last(net.layers[-1])
    return net


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
        shapes: tuple[Sequence[Sequence[int]], Sequence[Sequence[int]]] | None = None,
    ) -> None:
        """``shapes`` (per-sample weight and bias shapes without the channel) for networks
        other than the MLP of ``dims``: NFN reads a 2-D conv kernel ``[o, i, h, w]`` with its
        kernel positions as extra channels (``network_spec_from_wsfeat``)."""
        super().__init__()
        try:
            from nfn.common import WeightSpaceFeatures, network_spec_from_wsfeat
            from nfn.layers import HNPLinear, HNPPool
        except ImportError as exc:
            raise ImportError(NFN_MISSING) from exc
        self._features = WeightSpaceFeatures
        dims = tuple(dims)
        if shapes is None:
            shapes = (
                [(dims[m], dims[m - 1]) for m in range(1, len(dims))],
                [(dims[m],) for m in range(1, len(dims))],
            )
        probe = WeightSpaceFeatures(
            [torch.zeros(1, in_channels, *s) for s in shapes[0]],
            [torch.zeros(1, in_channels, *s) for s in shapes[1]],
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


def build_nfn(info: TaskInfo, arch: Architecture) -> NFNNet:
    """NFN-HNP model with the same channels/depth/head as the DWSNet defaults."""
    if not nfn_available():
        raise ImportError(NFN_MISSING)
    shapes = None
    if info.example is not None:
        shapes = ([s[1:] for s in info.weight_shapes], [s[1:] for s in info.bias_shapes])
        if any(len(s) not in (2, 4) for s in shapes[0]):
            raise UnsupportedTask(
                "nfn's layers read dense and 2-D conv weights only (it has no layers for "
                "attention's per-head tensors or other block symmetries)"
            )
    return NFNNet(
        info.dims,
        in_channels=info.channels,
        hidden_channels=arch.hidden_channels,
        num_layers=arch.num_layers,
        out_features=max(info.out_dim, 1),
        head_hidden=arch.head_hidden,
        equivariant_output=info.kind == "weights",
        shapes=shapes,
    )
