"""Probe features: the input networks evaluated at a set of learned input points.

A network's outputs at fixed inputs do not depend on how its hidden neurons are ordered,
flipped or scaled, so they are invariant to the whole symmetry group by construction; they
read the function directly, where the weights show it only through the symmetries. An MLP
collection that declares no activation is evaluated under each of :data:`GUESSES`. The
points start as a deterministic spread over the input domain (a subset of an INR's pixel
grid, or of a zoo's training images; standard normal inputs otherwise) and are trained
with the model. The outputs, ``[B, points * outputs]``, go through a batch norm (their
scale is the networks', not the model's; all-reduced under data parallelism) and a linear
map.

:class:`ProbeFeatures` evaluates MLPs (with the activation the collection declares; sine
as ``sin(w0 (W x + b))``) and any module collection (the example module, run per network
with ``torch.func.functional_call`` under ``vmap``). Inputs arrive normalised (and in
canonical form): the normaliser's inverse gives the raw weights back, which compute the same
function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..data.siren import DEFAULT_W0
from .base import TaskInfo, UnsupportedTask
from .norms import SymmetricBatchNorm

__all__ = ["ProbeFeatures", "ProbeNet", "ACTIVATION_FUNCTIONS", "GUESSES", "probe_support"]

# Where an MLP collection does not declare its activation, the probes evaluate the networks
# under each of these (sine with the SIREN convention's w0) and feed all the outputs: each
# is a permutation-invariant function of the weights whatever the true activation, and the
# one that matches reads the networks' function.
GUESSES = ("sine", "tanh", "relu")

ACTIVATION_FUNCTIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "leaky_relu": F.leaky_relu,
    "gelu": F.gelu,
    "silu": F.silu,
    "sigmoid": torch.sigmoid,
    "elu": F.elu,
    "softplus": F.softplus,
}


def probe_support(info: TaskInfo) -> str | None:
    """Why probes cannot run on ``info``'s networks, or None when they can."""
    if info.example is not None and info.input_shape is None:
        return "the networks' input shape is unknown"
    if info.example is not None and info.activation in (None, "sine"):
        return (
            "probes run a module collection with its declared activation (none, or sine, "
            "which no torch module computes)"
        )
    return None


class ProbeFeatures(nn.Module):
    """``[B, out_features]`` features of the networks' outputs at ``points`` learned inputs."""

    def __init__(self, info: TaskInfo, points: int, out_features: int) -> None:
        super().__init__()
        reason = probe_support(info)
        if reason is not None:
            raise UnsupportedTask(reason)
        if points < 1:
            raise UnsupportedTask(f"expected at least one probe point, got {points}")
        self.info = info
        self.normalizer = info.normalizer
        self.points = nn.Parameter(_initial_points(info, points))
        # where each space tensor lives in the module's state: traced once, read every batch
        self.sources = _sources(info.example) if info.example is not None else None
        self.activations = (info.activation,) if info.activation is not None else GUESSES
        self.w0 = info.w0 if info.w0 is not None else DEFAULT_W0
        n_out = self._evaluate_raw(*_zeros(info), self.points.detach()).shape[-1]
        self.norm = SymmetricBatchNorm(1, points * n_out, center=True)
        self.proj = nn.Linear(points * n_out, out_features)

    def forward(self, weights: Sequence[Tensor], biases: Sequence[Tensor]) -> Tensor:
        raw_w, raw_b = self.normalizer.to(weights[0].device).inverse(weights, biases)
        out = self._evaluate_raw(raw_w, raw_b, self.points.to(weights[0].dtype))
        return self.proj(self.norm([out.flatten(1)])[0])

    def _evaluate_raw(self, weights: Sequence[Tensor], biases: Sequence[Tensor], x: Tensor):
        """``[B, P, outputs]``: every network (``[B, 1, ...]``, one channel) at ``x``, under
        each activation (the declared one, or every guess) side by side."""
        ws = [w[:, 0] for w in weights]
        bs = [b[:, 0] for b in biases]
        if self.info.example is not None:
            return _module_outputs(self.info.example, self.sources, ws, bs, x)
        outs = [_mlp_outputs(ws, bs, x, a, self.w0) for a in self.activations]
        return torch.cat(outs, dim=-1)


def _zeros(info: TaskInfo) -> tuple[list[Tensor], list[Tensor]]:
    ws = [torch.zeros(1, *s[1:]).unsqueeze(1) for s in info.weight_shapes]
    bs = [torch.zeros(1, *s[1:]).unsqueeze(1) for s in info.bias_shapes]
    return ws, bs


def _initial_points(info: TaskInfo, points: int) -> Tensor:
    gen = torch.Generator().manual_seed(0)
    if info.example is not None and info.domain is not None:  # a spread of the domain's inputs
        idx = torch.linspace(0, info.domain.shape[0] - 1, points).round().long()
        return info.domain[idx].float().clone()
    if info.example is not None:
        assert info.input_shape is not None
        return torch.randn(points, *info.input_shape, generator=gen)
    if info.coords is not None:  # an INR: a spread of its own grid points
        idx = torch.linspace(0, info.coords.shape[0] - 1, points).round().long()
        return info.coords[idx].float().clone()
    return torch.randn(points, info.dims[0], generator=gen)


def _mlp_outputs(ws: list[Tensor], bs: list[Tensor], x: Tensor, activation: str, w0: float):
    h = x.expand(ws[0].shape[0], *x.shape)
    last = len(ws) - 1
    for m, (w, b) in enumerate(zip(ws, bs, strict=True)):
        h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
        if m < last:
            h = torch.sin(w0 * h) if activation == "sine" else ACTIVATION_FUNCTIONS[activation](h)
    return h


def _module_outputs(
    example: nn.Module, sources: list, ws: list[Tensor], bs: list[Tensor], x: Tensor
):
    """Every network at ``x``: the space's tensors (weights and biases in the space's order,
    each a view of one state entry: a parameter, a buffer, or a slice of one, such as one
    head's query rows of attention's in-projection) put back into the module's state, and
    the module run per network (``sources``: :func:`_sources` of the example)."""
    wi, bi = iter(ws), iter(bs)
    tensors = [next(wi) if len(source.shape) >= 2 else next(bi) for source in sources]
    full = {name: tuple(t.shape) for name, t in example.state_dict().items()}

    def one(*values: Tensor) -> Tensor:
        state: dict[str, Tensor] = {}
        for source, value in zip(sources, values, strict=True):
            placed = _placed(source, value, full[source.state])
            state[source.state] = state[source.state] + placed if source.state in state else placed
        out = torch.func.functional_call(example, state, (x,))
        return out.reshape(x.shape[0], -1)

    with sdpa_kernel(SDPBackend.MATH):  # attention's composite kernel: vmap batches it
        return torch.vmap(one)(*tensors)


def _sources(example: nn.Module) -> list:
    """Where each tensor of the module's space lives in its state (the front end's trace)."""
    from ...frontends.module import trace_module

    return [source for _, source in trace_module(example).sources]


def _placed(source, value: Tensor, shape: tuple[int, ...]) -> Tensor:
    """The state entry of shape ``shape`` holding ``value`` in ``source``'s region and zeros
    elsewhere (the adjoint of ``source.read``: the sources of one entry tile it, so their
    sum is the entry)."""
    ranges = list(source.index) + [(0, size) for size in shape[len(source.index) :]]
    region = value.reshape([stop - start for start, stop in ranges])
    pads: list[int] = []
    for (start, stop), size in reversed(list(zip(ranges, shape, strict=True))):
        pads += [start, size - stop]
    return F.pad(region, pads) if any(pads) else region


class ProbeNet(nn.Module):
    """Probe features alone: an MLP head on the networks' outputs at learned points."""

    def __init__(self, info: TaskInfo, points: int, hidden: int = 64) -> None:
        super().__init__()
        if info.kind == "weights":
            raise UnsupportedTask("probe features feed an invariant readout; they edit no weights")
        self.features = ProbeFeatures(info, points, hidden)
        self.head = nn.Sequential(
            nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, info.out_dim)
        )

    def forward(self, weights: Sequence[Tensor], biases: Sequence[Tensor]) -> Tensor:
        return self.head(self.features(weights, biases))
