"""DWSNet: a stack of generated equivariant layers for a given MLP shape and symmetry mode.

    net = DWSNet((2, 32, 32, 1), hidden_channels=16, num_layers=3, out_features=10)
    logits = net(weights, biases)  # weights[m-1]: [B, 1, d_m, d_{m-1}], biases[m-1]: [B, 1, d_m]

Equivariant layers (built in memory by `runtime.layer_classes`, the same source as
`dws-theory generate`) alternate with a pointwise nonlinearity; then the invariant layer and
an MLP head map to `[B, out_features]`. The nonlinearity must commute with the group: any
pointwise function commutes with permutations, but sign flips (`signed` mode) need an odd one,
so the default is ReLU for `hidden`/`all` and tanh for `signed`. Odd activations and signed
linear layers keep every signed entry odd, which no invariant linear map can read, so in
`signed` mode the invariant readout takes the entries' magnitudes (even, so sign invariant)
and pools them with the permutation group's invariant layer.

With `equivariant_output=True` the network is a weight-to-weight map: the last equivariant
layer has one output channel and the result is `(weights, biases)` in the layout contract
WITH the channel axis kept (`weights[m-1]` is `[B, 1, d_m, d_{m-1}]`); squeeze axis 1
yourself to get plain MLP parameters.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from itertools import pairwise

import torch
from torch import nn

from .runtime import layer_classes
from .spec import parse_dims, parse_mode

__all__ = ["DWSNet", "default_activation"]

Tensors = list[torch.Tensor]


def default_activation(mode: str) -> nn.Module:
    """ReLU for permutation modes; tanh (odd, so it commutes with sign flips) for signed."""
    return nn.Tanh() if parse_mode(mode) == "signed" else nn.ReLU()


def _is_odd(activation: Callable[[torch.Tensor], torch.Tensor]) -> bool:
    x = torch.linspace(-3.0, 3.0, 13, dtype=torch.float64)
    with torch.no_grad():
        return bool(torch.allclose(activation(-x), -activation(x), atol=1e-9))


class DWSNet(nn.Module):
    """Equivariant layers + pointwise nonlinearity, then an invariant layer and an MLP head.

    Args:
        dims: MLP widths d_0..d_M (`2,32,32,1` or a sequence).
        mode: `hidden` (default), `all` or `signed` (aliases `hnp`, `np`).
        hidden_channels: channels between the equivariant layers.
        num_layers: number of equivariant layers (at least 1).
        out_features: size of the prediction (classification / regression head).
        head_hidden: output channels of the invariant layer and width of the head.
        equivariant_output: return `(weights, biases)` with one channel instead of a vector.
        activation: pointwise module or function; default `default_activation(mode)`.
        dropout: dropout probability inside the head (the equivariant trunk has none, so
            equivariance holds sample by sample in training mode too).
        in_channels: channels of the input features (1 for raw weights).
    """

    def __init__(
        self,
        dims: str | Sequence[int],
        mode: str = "hidden",
        hidden_channels: int = 16,
        num_layers: int = 3,
        out_features: int = 10,
        head_hidden: int = 64,
        equivariant_output: bool = False,
        activation: Callable[[torch.Tensor], torch.Tensor] | None = None,
        dropout: float = 0.0,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        self.dims = parse_dims(dims if isinstance(dims, str) else tuple(dims))
        self.mode = parse_mode(mode)
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        for name, value in (
            ("hidden_channels", hidden_channels),
            ("in_channels", in_channels),
            ("out_features", out_features),
            ("head_hidden", head_hidden),
        ):
            if value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        self.activation = activation if activation is not None else default_activation(mode)
        if self.mode == "signed" and not _is_odd(self.activation):
            warnings.warn(
                "signed mode needs an odd activation (tanh, sin) to stay sign-equivariant; "
                f"{self.activation!r} is not odd",
                stacklevel=2,
            )
        self.equivariant_output = equivariant_output
        equivariant, invariant = layer_classes(self.dims, self.mode)
        if self.mode == "signed":
            # Linear maps and odd activations keep every signed entry odd, and an invariant
            # linear map can read no odd entry (in 2-32-32-1 only the output bias is left).
            # So the readout takes |x| entrywise, invariant to every sign flip, and pools
            # it with the invariant layer of the permutation group alone.
            _, invariant = layer_classes(self.dims, "hidden")
        last = 1 if equivariant_output else hidden_channels
        channels = [in_channels] + [hidden_channels] * (num_layers - 1) + [last]
        self.layers = nn.ModuleList(equivariant(c_in, c_out) for c_in, c_out in pairwise(channels))
        if equivariant_output:
            self.invariant = None
            self.head = None
        else:
            self.invariant = invariant(hidden_channels, head_hidden)
            self.head = nn.Sequential(
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(head_hidden, head_hidden),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(head_hidden, out_features),
            )

    def _act(self, tensors: Tensors) -> Tensors:
        return [self.activation(t) for t in tensors]

    def forward(
        self, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor]
    ) -> torch.Tensor | tuple[Tensors, Tensors]:
        """`[B, out_features]`, or `(weights, biases)` with one channel when equivariant."""
        ws, bs = list(weights), list(biases)
        for i, layer in enumerate(self.layers):
            ws, bs = layer(ws, bs)
            if i < len(self.layers) - 1 or not self.equivariant_output:
                ws, bs = self._act(ws), self._act(bs)
        if self.equivariant_output:
            return ws, bs
        return self.head(self.invariant(*self._readout(ws, bs)))

    def _readout(self, ws: Tensors, bs: Tensors) -> tuple[Tensors, Tensors]:
        """What the invariant layer reads: the features, or their magnitudes in signed mode."""
        if self.mode != "signed":
            return ws, bs
        return [w.abs() for w in ws], [b.abs() for b in bs]
