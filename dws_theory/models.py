"""DWSNet: a stack of generated equivariant layers for a weight space and symmetry mode.

    net = DWSNet((2, 32, 32, 1), hidden_channels=16, num_layers=3, out_features=10)
    logits = net(weights, biases)  # weights[m-1]: [B, 1, d_m, d_{m-1}], biases[m-1]: [B, 1, d_m]

    net = DWSNet(cnn, "hidden")  # an example module: its space is from_module(cnn, "hidden")
    net = DWSNet(space)  # any WeightSpace; weights/biases as weights_from_models gives them

Equivariant layers (built in memory by `runtime.layer_classes`, the same source as
`dws-theory generate`) alternate with a pointwise nonlinearity; then the invariant layer and
an MLP head map to `[B, out_features]`. The nonlinearity must commute with the group: any
pointwise function commutes with permutations, but sign flips (`signed` mode) need an odd one,
so the default is ReLU for `hidden`/`all` and tanh for `signed` (for a general space: tanh
when any of its sets is signed). Odd activations and signed linear layers keep every entry
on a signed set odd, which no invariant linear map can read, so with signed sets the
invariant readout takes the entries' magnitudes (even, so sign invariant) and pools them
with the invariant layer of the permutations alone.

With `equivariant_output=True` the network is a weight-to-weight map: the last equivariant
layer has one output channel and the result is `(weights, biases)` in the layout contract
WITH the channel axis kept (`weights[m-1]` is `[B, 1, d_m, d_{m-1}]`); squeeze axis 1
yourself to get plain MLP parameters.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from itertools import pairwise

import torch
from torch import nn

from .activations import ReLU
from .codegen.backends import DEFAULT_BACKEND
from .codegen.lower import mlp_shape
from .codegen.preludes.compiled import _compiled_forward
from .cuda_graphs import graph_options, module_device, uses_cuda_graphs
from .runtime import layer_classes
from .spec import Kind, WeightSpace, mlp, parse_dims, parse_mode

__all__ = ["DWSNet", "default_activation"]

Tensors = list[torch.Tensor]


def default_activation(mode: str) -> nn.Module:
    """ReLU for permutation modes; tanh (odd, so it commutes with sign flips) for signed.

    The ReLU is `activations.ReLU`: `nn.ReLU` in eager mode, and a form whose gradient
    torch.compile runs fast when the model is compiled."""
    return nn.Tanh() if parse_mode(mode) == "signed" else ReLU()


def _positive_int(name: str, value: object) -> int:
    """A positive integer argument (int or any integer type, not bool), else a clear error."""
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise TypeError(f"DWSNet: {name} must be a positive integer, got {value!r}")
    if value.__index__() < 1:
        raise ValueError(f"DWSNet: {name} must be a positive integer, got {value!r}")
    return value.__index__()


def _is_odd(activation: Callable[[torch.Tensor], torch.Tensor]) -> bool:
    x = torch.linspace(-3.0, 3.0, 13, dtype=torch.float64)
    with torch.no_grad():
        return bool(torch.allclose(activation(-x), -activation(x), atol=1e-9))


def _space_of(target: object, mode: str) -> tuple[WeightSpace, str | None]:
    """(space, mode label) from widths, a WeightSpace or an example module."""
    if isinstance(target, WeightSpace):
        shape = mlp_shape(target)
        return target, shape[1] if shape is not None else parse_mode(mode)
    if isinstance(target, nn.Module):
        from .frontends.module import trace_module

        trace = trace_module(target, mode)
        return trace.space, trace.mode
    dims = parse_dims(target)
    mode = parse_mode(mode)
    return mlp(dims, mode), mode


def _unsigned(space: WeightSpace) -> WeightSpace:
    """The same space with every signed set merely permuted (its sign flips forgotten)."""
    sets = tuple(  # replace keeps a nested set's parent
        replace(s, kind=Kind.PERMUTED) if s.kind is Kind.SIGNED else s for s in space.sets
    )
    return WeightSpace(sets, space.tensors)


class DWSNet(nn.Module):
    """Equivariant layers + pointwise nonlinearity, then an invariant layer and an MLP head.

    Args:
        dims: MLP widths d_0..d_M (`2,32,32,1` or a sequence), a `WeightSpace`, or an example
            `nn.Module` (its space is `from_module(module, mode)`).
        mode: `hidden` (default), `all` or `signed` (aliases `hnp`, `np`); for a
            `WeightSpace` it only labels the layers (the set kinds are the space's own).
        hidden_channels: channels between the equivariant layers.
        num_layers: number of equivariant layers (at least 1).
        out_features: size of the prediction (classification / regression head).
        head_hidden: output channels of the invariant layer and width of the head.
        equivariant_output: return `(weights, biases)` with one channel instead of a vector.
        activation: pointwise module or function; default `default_activation(mode)`.
        dropout: dropout probability inside the head (the equivariant trunk has none, so
            equivariance holds sample by sample in training mode too).
        in_channels: channels of the input features (1 for raw weights).
        backend: `eager` (default), `compiled`, `fused` or `triton`: with `compiled`, the
            whole forward (layers, activations, invariant layer and head) runs through
            `torch.compile` as one graph, built at the first call, and the eager forward
            where that cannot be built (after one warning), inside an outer compilation and
            under torch.func transforms; `fused` is the same with the fused layers' C
            kernels for the identity terms (CPU), `triton` with Triton kernels (CUDA).
            The layers are
            `runtime.layer_classes(..., backend)`; parameters and `state_dict` are the same
            for all. Compiling the whole model is faster than compiling each layer on its
            own: the activations fuse with the layers' sums (the project's
            docs/benchmarks.md, section Model speed).
        cuda_graphs: with a compiling backend on a CUDA device, replay the compiled forward
            and backward as CUDA graphs (inductor's `triton.cudagraphs`, as
            `mode="reduce-overhead"`): the step is launch-bound there. Each new input shape
            records a graph, and a call's outputs are overwritten by a later call of the
            same shape: clone what you keep. False: compiled without graphs.
    """

    def __init__(
        self,
        dims: str | Sequence[int] | WeightSpace | nn.Module,
        mode: str = "hidden",
        hidden_channels: int = 16,
        num_layers: int = 3,
        out_features: int = 10,
        head_hidden: int = 64,
        equivariant_output: bool = False,
        activation: Callable[[torch.Tensor], torch.Tensor] | None = None,
        dropout: float = 0.0,
        in_channels: int = 1,
        backend: str = DEFAULT_BACKEND,
        cuda_graphs: bool = True,
    ) -> None:
        super().__init__()
        self.space, self.mode = _space_of(dims, mode)
        shape = mlp_shape(self.space)
        self.dims = shape[0] if shape is not None else None
        num_layers = _positive_int("num_layers", num_layers)
        hidden_channels = _positive_int("hidden_channels", hidden_channels)
        in_channels = _positive_int("in_channels", in_channels)
        out_features = _positive_int("out_features", out_features)
        head_hidden = _positive_int("head_hidden", head_hidden)
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, int | float)
            or not (0 <= dropout < 1)
        ):
            raise ValueError(f"DWSNet: dropout must be a number in [0, 1), got {dropout!r}")
        if not isinstance(equivariant_output, bool):
            raise TypeError(
                f"DWSNet: equivariant_output must be True or False, got {equivariant_output!r}"
            )
        if activation is not None and not callable(activation):
            raise TypeError(
                "DWSNet: activation must be a module or function applied pointwise, "
                f"got {activation!r}"
            )
        signed = any(s.kind is Kind.SIGNED for s in self.space.sets)
        self.activation = (
            activation
            if activation is not None
            else default_activation("signed" if signed else "hidden")
        )
        if signed and not _is_odd(self.activation):
            warnings.warn(
                "signed mode needs an odd activation (tanh, sin) to stay sign-equivariant; "
                f"{self.activation!r} is not odd",
                stacklevel=2,
            )
        self.equivariant_output = equivariant_output
        equivariant, invariant = layer_classes(self.space, self.mode, backend)
        self.backend = backend
        if not isinstance(cuda_graphs, bool):
            raise TypeError(f"DWSNet: cuda_graphs must be True or False, got {cuda_graphs!r}")
        self.cuda_graphs = cuda_graphs
        self.signed = signed
        if signed:
            # Linear maps and odd activations keep every signed entry odd, and an invariant
            # linear map can read no odd entry (in 2-32-32-1 only the output bias is left).
            # So the readout takes |x| entrywise, invariant to every sign flip, and pools
            # it with the invariant layer of the permutation group alone.
            _, invariant = layer_classes(_unsigned(self.space), "hidden", backend)
        last = 1 if equivariant_output else hidden_channels
        channels = [in_channels] + [hidden_channels] * (num_layers - 1) + [last]
        self.layers = nn.ModuleList(equivariant(c_in, c_out) for c_in, c_out in pairwise(channels))
        if equivariant_output:
            self.invariant = None
            self.head = None
        else:
            self.invariant = invariant(hidden_channels, head_hidden)
            self.head = nn.Sequential(
                ReLU(),
                nn.Dropout(dropout),
                nn.Linear(head_hidden, head_hidden),
                ReLU(),
                nn.Dropout(dropout),
                nn.Linear(head_hidden, out_features),
            )

    def _act(self, tensors: Tensors) -> Tensors:
        return [self.activation(t) for t in tensors]

    def forward(
        self, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor | tuple[Tensors, Tensors]:
        """`[B, out_features]`, or `(weights, biases)` with one channel when equivariant.

        Like the layers, it also takes one object with `.weights` and `.biases` (NFN's
        `WeightSpaceFeatures`); an equivariant output is then an object of the same type.
        With backend `compiled` this runs `_forward` (the eager forward) compiled."""
        if self.backend in _WHOLE_MODEL:
            wanted = getattr(self, "cuda_graphs", True)  # (a model pickled before the option)
            graphs = uses_cuda_graphs(module_device(self), wanted, compiled=True)
            run = _compiled_for(type(self), self.backend, self.layers[0], graphs)
            return run(self, weights, biases)
        return self._forward(weights, biases)

    def _forward(
        self, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor | tuple[Tensors, Tensors]:
        """The eager forward (subclasses override this one, so both backends run theirs)."""
        wrap = None
        if biases is None:
            if not (hasattr(weights, "weights") and hasattr(weights, "biases")):
                raise TypeError(
                    "DWSNet expects (weights, biases) or one object with .weights and "
                    f".biases, got one argument of type {type(weights).__name__}"
                )
            weights, biases, wrap = weights.weights, weights.biases, type(weights)
        ws, bs = list(weights), list(biases)
        for i, layer in enumerate(self.layers):
            ws, bs = layer(ws, bs)
            if i < len(self.layers) - 1 or not self.equivariant_output:
                ws, bs = self._act(ws), self._act(bs)
        if self.equivariant_output:
            return (ws, bs) if wrap is None else wrap(ws, bs)
        return self.head(self.invariant(*self._readout(ws, bs)))

    def _readout(self, ws: Tensors, bs: Tensors) -> tuple[Tensors, Tensors]:
        """What the invariant layer reads: the features, or their magnitudes in signed mode."""
        if not self.signed:
            return ws, bs
        return [w.abs() for w in ws], [b.abs() for b in bs]


_WHOLE_MODEL = ("compiled", "fused", "triton")  # backends whose models compile the whole forward
_COMPILED: dict[tuple[type, str, bool], Callable[..., object]] = {}


def _compiled_for(
    cls: type, backend: str, layer: nn.Module, graphs: bool = False
) -> Callable[..., object]:
    """`cls._forward` through torch.compile with the compiled layers' fallbacks, one wrapper
    per class, backend and use of CUDA graphs (the wrapper takes the instance as its first
    argument, so copies share it), with the inductor options of the layers' module (the
    kernel backends' graph passes) and CUDA graphs where `graphs`."""
    if (cls, backend, graphs) not in _COMPILED:
        options = getattr(sys.modules[type(layer).__module__], "COMPILE_OPTIONS", None)
        _COMPILED[cls, backend, graphs] = _compiled_forward(
            cls._forward, graph_options(options, graphs)
        )
    return _COMPILED[cls, backend, graphs]
