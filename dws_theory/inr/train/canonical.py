"""Canonical forms of the exact sign and positive-scale symmetries of networks' weights.

Besides permutations of hidden neurons, two maps leave a network's function unchanged:

``sign`` (odd activations: sine, tanh)
    flip neuron i: multiply its incoming row and bias by -1 and its outgoing column by -1,
    since ``f(-x) = -f(x)``;
``scale`` (positively homogeneous activations: ReLU, LeakyReLU)
    scale neuron i by ``s > 0``: its incoming row and bias by ``s``, its outgoing column by
    ``1 / s``, since ``f(s x) = s f(x)``.

A :class:`Canonicalizer` picks one representative per orbit of these maps, so that a model
that reads canonical weights never has to learn them (it still sees permutations, which the
equivariant models handle). For each neuron of a rule's set, its *incoming entries* are the
entries of every tensor whose first axis (the rows of a weight, ``[out, in, *kernel]``; a
conv channel's kernel slice is its row) or only axis (a bias) is on that set; its *outgoing
entries* are those of every weight whose other axes are on it (the columns of the next
layer's weight).

The rule, deterministic and documented:

* ``scale``: divide the incoming entries by their L2 norm (so it is 1) and multiply the
  outgoing entries by it;
* ``sign``: make the incoming entries' *largest-magnitude entry* positive; where entries of
  equal magnitude and opposite signs tie for largest, the sign of the sum of those entries,
  then of the sum of all incoming entries, then of the sum of their cubes decides; when all
  of these are zero the neuron is left as given;
* a neuron whose incoming entries are all zero computes ``f(0) = 0`` for both kinds, so its
  outgoing entries cannot matter: they are set to zero (exact, and it makes the form unique).

Sets are processed in dependency order (a set's incoming rows read the sets before it, which
are canonical by then), so the result does not depend on how the input was flipped or scaled,
and it commutes with permutations of the neurons: ``canonical(P g x) = P canonical(x)`` for
every sign flip or positive scaling ``g`` and permutation ``P`` (up to float rounding for
scales). The map is refused where the activation lacks the symmetry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ...errors import InputError
from ...spec import Kind, WeightSpace, mlp
from ..data.activations import ACTIVATIONS, SYMMETRY_OF
from ..data.collection import Collection

__all__ = [
    "KINDS",
    "CanonicalError",
    "Canonicalizer",
    "canonicalizer",
    "mlp_rules",
    "module_rules",
    "for_collection",
]

KINDS = ("sign", "scale")

Batch = tuple[list[Tensor], list[Tensor]]
# What a plain chain may hold between its layers: pointwise activations (the declared one
# stands for them) and maps that commute with per-channel signs and positive scales.
_BETWEEN = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.Tanh,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.ELU,
    nn.Softplus,
    nn.Flatten,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
)
_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class CanonicalError(InputError):
    """A canonical form that would not be exact (the activation lacks the symmetry)."""


@dataclass(frozen=True)
class _Axis:
    tensor: int  # index into weights + biases (the batch layout)
    axis: int  # axis of the tensor's own shape (0: rows / a bias)


@dataclass(frozen=True)
class _Step:
    set: str
    kind: str
    incoming: tuple[_Axis, ...]
    outgoing: tuple[_Axis, ...]


@dataclass(frozen=True, eq=False)
class Canonicalizer:
    """The canonical form of ``rules`` (set name -> ``sign`` / ``scale``) on ``space``, for
    batches in the layout ``weights`` (tensors of two or more axes, ``[B, 1, *shape]``, in
    the space's order) and ``biases`` (one-axis tensors, ``[B, 1, d]``); build it with
    :func:`canonicalizer`."""

    space: WeightSpace
    steps: tuple[_Step, ...]
    n_weights: int

    @property
    def rules(self) -> dict[str, str]:
        return {s.set: s.kind for s in self.steps}

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds applied (``("sign",)``, ``("scale",)``, both or none)."""
        return tuple(k for k in KINDS if any(s.kind == k for s in self.steps))

    def __call__(self, weights: Sequence[Tensor], biases: Sequence[Tensor]) -> Batch:
        tensors = [*weights, *biases]
        if len(weights) != self.n_weights or len(tensors) != len(self.space.tensors):
            raise InputError(
                f"expected {self.n_weights} weights and "
                f"{len(self.space.tensors) - self.n_weights} biases, got {len(weights)} and "
                f"{len(biases)}"
            )
        if any(t.dim() < 2 or t.shape[1] != 1 for t in tensors):
            raise InputError(
                f"canonical forms act on raw networks [B, 1, ...], got shapes "
                f"{[tuple(t.shape) for t in tensors]}"
            )
        for step in self.steps:
            tensors = _apply(step, tensors)
        return tensors[: self.n_weights], tensors[self.n_weights :]


def _moved(x: Tensor, axis: int) -> Tensor:
    """``[B, 1, *shape]`` -> ``[B, d, rest]`` with the neuron axis second."""
    y = x[:, 0].movedim(1 + axis, 1)
    return y.reshape(y.shape[0], y.shape[1], -1)


def _apply(step: _Step, tensors: list[Tensor]) -> list[Tensor]:
    rows = torch.cat([_moved(tensors[a.tensor], a.axis) for a in step.incoming], dim=2)
    dead = (rows == 0).all(dim=2)  # [B, d]
    factor = _sign(rows) if step.kind == "sign" else _inverse_norm(rows)
    out_factor = torch.where(dead, torch.zeros_like(factor), 1.0 / factor)
    tensors = list(tensors)
    for axes, f in ((step.incoming, factor), (step.outgoing, out_factor)):
        for a in axes:
            x = tensors[a.tensor]
            shape = [x.shape[0]] + [1] * (x.dim() - 1)
            shape[2 + a.axis] = x.shape[2 + a.axis]
            tensors[a.tensor] = x * f.to(x.dtype).reshape(shape)
    return tensors


def _inverse_norm(rows: Tensor) -> Tensor:
    norm = rows.double().pow(2).sum(dim=2).sqrt()
    return torch.where(norm > 0, 1.0 / norm, torch.ones_like(norm)).to(rows.dtype)


def _sign(rows: Tensor) -> Tensor:
    """+-1 per neuron from the documented cascade of odd, permutation-invariant keys."""
    r = rows.double()
    size = r.abs()
    top = size == size.amax(dim=2, keepdim=True)
    keys = [(r * top).sum(dim=2), r.sum(dim=2), r.pow(3).sum(dim=2)]
    sign = torch.ones_like(keys[0])
    decided = torch.zeros_like(keys[0], dtype=torch.bool)
    for key in keys:
        take = ~decided & (key != 0)
        sign = torch.where(take, torch.sign(key), sign)
        decided |= take
    return sign.to(rows.dtype)


def _layout(space: WeightSpace) -> list[tuple[str, ...]]:
    """Axes of the batch layout's tensors: weights (two or more axes) first, then biases."""
    weights = [t.axes for t in space.tensors if len(t.axes) >= 2]
    return weights + [t.axes for t in space.tensors if len(t.axes) < 2]


def canonicalizer(space: WeightSpace, rules: dict[str, str]) -> Canonicalizer:
    """Check ``rules`` against ``space`` and order them so that every set's incoming rows
    read sets that are canonical already."""
    layout = _layout(space)
    names = {s.name for s in space.sets}
    steps: dict[str, _Step] = {}
    for name, kind in rules.items():
        if kind not in KINDS:
            raise CanonicalError(f"expected a canonical form in {KINDS}, got {kind!r}")
        if name not in names:
            raise CanonicalError(f"expected a neuron set of the space, got {name!r}")
        incoming, outgoing = [], []
        for i, axes in enumerate(layout):
            if axes.count(name) > 1:
                raise CanonicalError(f"set {name}: a tensor has two axes on it; not supported")
            if name in axes:
                (incoming if axes.index(name) == 0 else outgoing).append(_Axis(i, axes.index(name)))
        if not incoming:
            raise CanonicalError(f"set {name}: no tensor writes it (an input set has no {kind})")
        if not outgoing:
            raise CanonicalError(f"set {name}: no tensor reads it (an output set has no {kind})")
        steps[name] = _Step(name, kind, tuple(incoming), tuple(outgoing))
    order = _order(steps, layout)
    n_weights = sum(len(t.axes) >= 2 for t in space.tensors)
    return Canonicalizer(space, tuple(steps[n] for n in order), n_weights)


def _order(steps: dict[str, _Step], layout: list[tuple[str, ...]]) -> list[str]:
    """Sets in an order where each one's incoming rows read only sets processed before."""
    needs = {
        name: {a for i in step.incoming for a in layout[i.tensor] if a in steps and a != name}
        for name, step in steps.items()
    }
    order: list[str] = []
    while needs:
        ready = [n for n, deps in needs.items() if deps <= set(order)]
        if not ready:
            raise CanonicalError(f"sets {sorted(needs)} read each other in a cycle; no order")
        order.append(ready[0])
        del needs[ready[0]]
    return order


def mlp_rules(dims: Sequence[int], activation: str) -> dict[str, str]:
    """The rules of an MLP whose hidden layers apply ``activation``: every hidden set."""
    kind = _kind_of(activation)
    space = mlp(tuple(dims), "hidden")
    return {s.name: kind for s in space.sets if s.kind is not Kind.FIXED}


def _kind_of(activation: str) -> str:
    if activation not in SYMMETRY_OF:
        raise CanonicalError(f"expected an activation in {ACTIVATIONS}, got {activation!r}")
    kind = SYMMETRY_OF[activation]
    if kind is None:
        raise CanonicalError(
            f"{activation} is neither odd nor positively homogeneous: no exact sign or scale "
            "symmetry to canonicalise"
        )
    return kind


def module_rules(module: nn.Module, activation: str | None = None) -> dict[str, str]:
    """The exact sign or scale rules of ``module``'s hidden channel sets.

    With ``activation`` declared and ``module`` a plain ``nn.Sequential`` chain (Linear and
    Conv layers, pointwise activations, average pooling, Flatten: every map between two
    layers is the activation or commutes with per-channel signs and positive scales), every
    hidden set gets the activation's kind. Otherwise the trace decides (``sign_sets``: the
    sets whose operations are all odd; ``scale_sets``: all positively homogeneous; a set in
    both gets sign). Empty when nothing is exact."""
    from ...frontends.module import from_module, trace_module

    if activation is not None and _plain_chain(module):
        kind = _kind_of(activation)
        space = from_module(module, "hidden")
        return {s.name: kind for s in space.sets if s.kind is Kind.PERMUTED}
    trace = trace_module(module, "hidden")
    scale = [s for s in trace.scale_sets if _rows_in(trace, s)]
    return dict.fromkeys(scale, "scale") | dict.fromkeys(trace.sign_sets, "sign")


def _rows_in(trace: object, name: str) -> bool:
    """Whether the trace's scale roles of set ``name`` are this module's convention: +1 on a
    weight's first axis and on a bias, -1 on a weight's other axes (a layer that reads a
    transposed weight would differ; its set is then left alone)."""
    space: WeightSpace = trace.space  # type: ignore[attr-defined]
    for tensor, roles in trace.scale_roles:  # type: ignore[attr-defined]
        axes = space.tensor(tensor).axes
        for i, (axis, role) in enumerate(zip(axes, roles, strict=True)):
            if axis == name and role != (1 if i == 0 else -1):
                return False
    return True


def _plain_chain(module: nn.Module) -> bool:
    if not isinstance(module, nn.Sequential) or not any(isinstance(m, _LAYERS) for m in module):
        return False
    return all(isinstance(m, _LAYERS + _BETWEEN) for m in module)


def for_collection(data: Collection, request: bool | None = None) -> Canonicalizer | None:
    """The canonical form ``train`` applies to ``data``.

    ``request`` None (the default): wherever it is exact, else none; True: required (refused
    with the reason where it is not exact); False: none. Exact needs a known activation with
    a sign or scale symmetry (``data.activation``; a module's own layers for collections of
    modules), and a target that does not move with the weights: a weight-to-weight task with
    given target networks is left alone by default (its targets would need the same map)."""
    if request is False:
        return None
    try:
        if data.task.kind == "weights" and data.task.target == "given":
            raise CanonicalError(
                "the targets are networks given in the inputs' orientation; canonical inputs "
                "would no longer match them"
            )
        return _build(data)
    except CanonicalError as exc:
        if request:
            raise CanonicalError(f"cannot canonicalise {data.task.name}: {exc}") from None
        return None


def _build(data: Collection) -> Canonicalizer:
    if data.activation is None:  # a module collection's layers may be stand-ins then
        raise CanonicalError(
            "the networks' activation is unknown (give --activation, or an 'activation' key in "
            "the --data file)"
        )
    if data.example is not None:
        from ...frontends.module import from_module

        rules = module_rules(data.example, data.activation)
        space = from_module(data.example, "hidden")
        if not rules:
            raise CanonicalError("no hidden set of these networks has an exact sign or scale map")
    else:
        rules = mlp_rules(data.dims, data.activation)
        space = mlp(data.dims, "hidden")
    return canonicalizer(space, rules)
