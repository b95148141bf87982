"""What every supported layer does to the neuron sets: one table entry per layer.

`OPS` lists the layers, functions and tensor methods the front end understands. Each entry
says which calls it covers, what it merges, splits or fixes (the README's table of supported
layers is generated from these words), and gives the handler that computes the layout of
the call's result from its operands' layouts (`layout.py`), merging and cutting slots on the
way. A handler sees the call's real result (the trace runs the module on an example input),
so every size is known and a merge of unequal sizes is refused, never guessed.

Handlers also record, per slot they touch, whether the operation is odd (commutes with a
sign flip of one neuron: tanh, sine, any linear map) and positively homogeneous (commutes
with a positive scaling of one neuron: ReLU, max pooling, any linear map). A hidden set all
of whose operations are odd is signed in `signed` mode; one all of whose operations are
homogeneous has an exact positive-scale symmetry.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from .layout import Axis, LayoutError, Part, axis_size, shape_of
from .sequence import RECURRENT, TRANSFORMER_LAYERS, attention, recurrent, transformer
from .values import Call, Stacked, Traced

if TYPE_CHECKING:
    from .module import Tracer

__all__ = ["OPS", "Call", "Op", "Traced", "lookup", "supported_layers_table"]

Layout = tuple[Axis, ...]


Handler = Callable[["Tracer", Call], Any]


@dataclass(frozen=True)
class Op:
    """One supported layer: the calls it covers (module types, functions, method names), what
    it does to the neuron sets (in words, for the README), and its handler."""

    name: str
    effect: str
    handler: Handler = field(repr=False)
    modules: tuple[type, ...] = ()
    functions: tuple[Any, ...] = ()
    methods: tuple[str, ...] = ()
    group: str = "layers"


# -- small helpers -----------------------------------------------------------------------------
def _dim(d: int, rank: int) -> int:
    return d % rank if rank else 0


def _axes_slots(layout: Layout) -> list[int]:
    return [f.slot for axis in layout for part in axis for f in part]


def _same(t: Tracer, call: Call, x: Traced, *, odd: bool, homogeneous: bool) -> Traced:
    """An elementwise operation: the result has the operand's layout."""
    t.touch(x.layout, odd, homogeneous, _what(call))
    return Traced(call.out, x.layout)


def _what(call: Call) -> str:
    target = call.target
    if isinstance(target, nn.Module):
        return type(target).__name__
    return getattr(target, "__name__", None) or str(target)


def _fresh_positions(t: Tracer, call: Call, sizes: tuple[int, ...], what: str) -> Layout:
    return tuple(
        t.fresh(f"{what} {i} of {call.node.name}", s, "positional") for i, s in enumerate(sizes)
    )


def _spatial(t: Tracer, call: Call, x: Traced, dims: int, what: str) -> Traced:
    """An operation on the last `dims` (spatial) axes that treats them by position: those axes
    become positional, the result's spatial axes are new positional axes, the others pass."""
    rank = len(x.layout)
    if rank < dims + 1:
        raise t.fail(call, f"a {dims}-D {what} of a tensor with {rank} axes")
    t.positional(x.layout[rank - dims :])
    out_shape = tuple(call.out.shape)
    if out_shape[: rank - dims] != x.shape[: rank - dims]:
        raise t.fail(call, f"a {what} that changes the leading axes {x.shape} -> {out_shape}")
    return Traced(
        call.out,
        x.layout[: rank - dims] + _fresh_positions(t, call, out_shape[rank - dims :], what),
    )


# -- elementwise ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pointwise:
    """Oddness and positive homogeneity of an elementwise function, maybe of its arguments."""

    odd: bool | Callable[[Call], bool]
    homogeneous: bool | Callable[[Call], bool]

    def check(self, call: Call) -> tuple[bool, bool]:
        odd = self.odd(call) if callable(self.odd) else self.odd
        homogeneous = self.homogeneous(call) if callable(self.homogeneous) else self.homogeneous
        return odd, homogeneous


def _bounds(
    call: Call, low_index: int, high_index: int, low: str, high: str
) -> tuple[float, float]:
    target = call.target
    if isinstance(target, nn.Hardtanh):  # ReLU6 is a Hardtanh(0, 6) too
        return float(target.min_val), float(target.max_val)
    return float(call.arg(low_index, low, -1.0)), float(call.arg(high_index, high, 1.0))


def _hardtanh_odd(call: Call) -> bool:
    lo, hi = _bounds(call, 1, 2, "min_val", "max_val")
    return lo == -hi


def _clamp_odd(call: Call) -> bool:
    lo, hi = call.arg(1, "min"), call.arg(2, "max")
    return lo is not None and hi is not None and float(lo) == -float(hi)


def _clamp_homogeneous(call: Call) -> bool:
    lo, hi = call.arg(1, "min"), call.arg(2, "max")
    return all(v is None or float(v) == 0.0 for v in (lo, hi))


def _leaky_homogeneous(call: Call) -> bool:
    slope = (
        call.target.negative_slope
        if isinstance(call.target, nn.Module)
        else call.arg(1, "negative_slope", 0.01)
    )
    return float(slope) >= 0


def _threshold_homogeneous(call: Call) -> bool:
    if isinstance(call.target, nn.Module):
        threshold, value = call.target.threshold, call.target.value
    else:
        threshold, value = call.arg(1, "threshold"), call.arg(2, "value")
    return float(threshold) == 0.0 and float(value) == 0.0


def _shrink_odd(call: Call) -> bool:
    return True


ODD = Pointwise(True, False)
EVEN = Pointwise(False, False)
LINEAR = Pointwise(True, True)
RELU_LIKE = Pointwise(False, True)

# name -> (modules, functions, methods, pointwise)
_POINTWISE: list[tuple[str, tuple, tuple, tuple, Pointwise]] = [
    ("ReLU", (nn.ReLU,), (torch.relu, F.relu), ("relu", "relu_"), RELU_LIKE),
    ("LeakyReLU", (nn.LeakyReLU,), (F.leaky_relu,), (), Pointwise(False, _leaky_homogeneous)),
    ("Hardtanh, ReLU6", (nn.Hardtanh,), (F.hardtanh,), (), Pointwise(_hardtanh_odd, False)),
    ("relu6", (), (F.relu6,), (), EVEN),
    ("Threshold", (nn.Threshold,), (F.threshold,), (), Pointwise(False, _threshold_homogeneous)),
    (
        "clamp",
        (),
        (torch.clamp, torch.clip),
        ("clamp", "clip"),
        Pointwise(_clamp_odd, _clamp_homogeneous),
    ),
    (
        "ELU, SELU, CELU, GELU, SiLU, Mish, Softplus, Hardswish, Hardsigmoid, Sigmoid, LogSigmoid",
        (
            nn.ELU,
            nn.SELU,
            nn.CELU,
            nn.GELU,
            nn.SiLU,
            nn.Mish,
            nn.Softplus,
            nn.Hardswish,
            nn.Hardsigmoid,
            nn.Sigmoid,
            nn.LogSigmoid,
        ),
        (
            F.elu,
            F.selu,
            F.celu,
            F.gelu,
            F.silu,
            F.mish,
            F.softplus,
            F.hardswish,
            F.hardsigmoid,
            torch.sigmoid,
            F.sigmoid,
            F.logsigmoid,
            torch.exp,
            torch.abs,
            torch.square,
            torch.cos,
            torch.cosh,
            torch.erfc,
            torch.log,
            torch.sqrt,
            torch.rsqrt,
        ),
        ("sigmoid", "exp", "abs", "square", "cos", "cosh", "log", "sqrt", "rsqrt"),
        EVEN,
    ),
    (
        "Tanh, Softsign, Tanhshrink, Hardshrink, Softshrink, sin, sinh, arctan, erf",
        (nn.Tanh, nn.Softsign, nn.Tanhshrink, nn.Hardshrink, nn.Softshrink),
        (
            torch.tanh,
            F.tanh,
            torch.sin,
            torch.sinh,
            torch.arctan,
            torch.atan,
            F.softsign,
            torch.erf,
            F.tanhshrink,
            F.hardshrink,
            F.softshrink,
            torch.asinh,
            torch.arcsinh,
        ),
        ("tanh", "sin", "sinh", "atan", "arctan", "erf"),
        ODD,
    ),
    ("negation", (), (operator.neg, torch.neg), ("neg",), LINEAR),
    (
        "Identity, Dropout",
        (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d),
        (F.dropout, F.dropout1d, F.dropout2d, F.dropout3d),
        (),
        LINEAR,
    ),
    ("AlphaDropout", (nn.AlphaDropout, nn.FeatureAlphaDropout), (F.alpha_dropout,), (), EVEN),
]


def _pointwise_handler(rule: Pointwise) -> Handler:
    def handler(t: Tracer, call: Call) -> Traced:
        x = t.tensor_arg(call, 0)
        odd, homogeneous = rule.check(call)
        return _same(t, call, x, odd=odd, homogeneous=homogeneous)

    return handler


def _prelu(t: Tracer, call: Call) -> Traced:
    """PReLU: a slope per channel (merged with the channel axis 1) or one shared slope."""
    x = t.tensor_arg(call, 0)
    if isinstance(call.target, nn.Module):
        weight = t.module_state(call, "weight")
    else:
        weight = t.state_arg(call, 1, rank=1)
    if weight.shape[0] == 1:
        t.broadcast(weight.layout[0])
    else:
        t.bind(call, weight.layout[0], x.layout[1 if len(x.layout) > 1 else 0])
    t.role(weight, (0,))
    return _same(t, call, x, odd=False, homogeneous=True)


# -- binary elementwise --------------------------------------------------------------------------
_ADD = (operator.add, operator.iadd, torch.add, operator.sub, operator.isub, torch.sub, torch.rsub)
_MUL = (operator.mul, operator.imul, torch.mul, torch.multiply)
_DIV = (operator.truediv, operator.itruediv, torch.div, torch.true_divide)


def _binary(t: Tracer, call: Call) -> Traced:
    kind = _binary_kind(call)
    a, b = call.arg(0, "input"), call.arg(1, "other")
    if not isinstance(a, Traced) and not isinstance(b, Traced):
        raise t.fail(call, "an operation on two constants")
    out_shape = tuple(call.out.shape)
    rank = len(out_shape)
    layouts: list[Axis] = []
    for i in range(rank):
        pieces = []
        for operand in (a, b):
            axis = _aligned_axis(operand, i, rank)
            if axis is None:
                continue
            if axis == "broadcast":
                if isinstance(operand, Traced) and operand.state is not None:
                    t.broadcast(operand.layout[i - (rank - len(operand.layout))])
                continue
            pieces.append((operand, axis))
        layouts.append(_merge_aligned(t, call, pieces, out_shape[i]))
    layout = tuple(layouts)
    _record_binary(t, call, kind, a, b, layout)
    return Traced(call.out, layout)


def _binary_kind(call: Call) -> str:
    if call.target in _ADD or call.target in ("add", "add_", "sub", "sub_", "rsub"):
        return "add"
    if call.target in _MUL or call.target in ("mul", "mul_", "multiply"):
        return "mul"
    return "div"


def _aligned_axis(operand: object, i: int, rank: int) -> Axis | str | None:
    """The layout operand `operand` contributes to result axis i (right-aligned broadcasting):
    its axis, "broadcast" where it has size 1 against a larger size, None where it has no
    axis there (or is a Python number)."""
    if isinstance(operand, Traced):
        j = i - (rank - len(operand.layout))
        if j < 0:
            return None
        return operand.layout[j]
    if isinstance(operand, torch.Tensor):  # a tensor constant made in forward
        j = i - (rank - operand.dim())
        return "constant" if j >= 0 and operand.shape[j] > 1 else None
    return None


def _merge_aligned(t: Tracer, call: Call, pieces: list, size: int) -> Axis:
    """Merge the layouts several operands give one result axis; a constant pins the axis."""
    axes = [axis for _, axis in pieces if axis != "constant"]
    sized = [axis for axis in axes if _size(axis) == size]
    for axis in axes:
        if _size(axis) == 1 and size > 1:
            t.broadcast(axis)
    if not sized:
        return t.fresh(f"axis of {call.node.name}", size, "positional")
    first = sized[0]
    for other in sized[1:]:
        if other is not first:
            try:
                t.slots.merge_axes(first, other)
            except LayoutError as e:
                raise t.fail(call, str(e)) from None
    if any(axis == "constant" for _, axis in pieces):
        t.pin(first, f"a tensor constant in {call.node.name}")
    return first


def _size(axis: Axis) -> int:
    return sum(math.prod(f.size for f in part) for part in axis)


def _record_binary(t: Tracer, call: Call, kind: str, a: object, b: object, layout: Layout) -> None:
    traced = [x for x in (a, b) if isinstance(x, Traced)]
    states = [x for x in traced if x.state is not None]
    activations = [x for x in traced if x.state is None]
    if len(activations) == 2:
        t.link(
            call,
            {"add": "residual addition", "mul": "elementwise product"}.get(
                kind, "elementwise quotient"
            ),
            [x.layout for x in activations],
        )
        if kind != "add":
            t.touch(layout, False, False, f"product of activations ({call.node.name})")
        return
    number = a if not isinstance(a, Traced | torch.Tensor) else b
    if states and activations:  # a parameter operand: bias (add) or scale (mul, div)
        for s in states:
            t.role(s, (1 if kind == "add" else 0,) * len(s.layout))
        if kind == "add":
            return
        divided_by_state = kind == "div" and isinstance(b, Traced) and b.state is not None
        t.touch(layout, False, kind == "mul" or divided_by_state, _what(call))
        return
    if states and not activations:
        return  # parameters combined with each other (a weight built from two parameters)
    if isinstance(number, int | float) and not isinstance(number, bool):
        if kind == "add":
            zero = float(number) == 0.0
            t.touch(layout, zero, zero, "addition of a constant")
        elif kind == "div" and isinstance(a, int | float):
            t.touch(layout, True, False, "a constant divided by an activation")
        return
    if isinstance(number, torch.Tensor):
        t.touch(layout, kind != "add", kind != "add", "a tensor constant")


def _pow(t: Tracer, call: Call) -> Traced:
    x = t.tensor_arg(call, 0)
    exponent = call.arg(1, "exponent")
    if not isinstance(exponent, int | float):
        raise t.fail(call, "a power whose exponent is a tensor")
    odd = float(exponent).is_integer() and int(exponent) % 2 == 1
    return _same(t, call, x, odd=odd, homogeneous=float(exponent) == 1.0)


# -- linear layers -------------------------------------------------------------------------------
def _linear(t: Tracer, call: Call) -> Traced:
    """y = x W^T + b over x's last axis: W's input axis takes that axis's layout (split into
    one tensor per concatenated part, a channel set times fixed positions after a flatten)."""
    x = t.tensor_arg(call, 0)
    if isinstance(call.target, nn.Module):
        weight, bias = t.module_state(call, "weight"), t.module_state(call, "bias")
    else:
        weight = t.state_arg(call, 1, rank=2)
        bias = call.arg(2, "bias")
        bias = t.state_arg(call, 2, rank=1) if bias is not None else None
    return _apply_linear(t, call, x, weight, bias)


def _apply_linear(t: Tracer, call: Call, x: Traced, weight: Traced, bias: Traced | None) -> Traced:
    if not x.layout:
        raise t.fail(call, "a linear map of a tensor with no axes")
    t.bind(call, weight.layout[1], x.layout[-1])
    t.meet(weight.layout[0])
    t.role(weight, (1, -1))
    if bias is not None:
        t.bind(call, bias.layout[0], weight.layout[0])
        t.role(bias, (1,))
    return Traced(call.out, x.layout[:-1] + (weight.layout[0],))


def _matmul(t: Tracer, call: Call) -> Traced:
    """x @ W with W a parameter [in, out] (a Linear), or a product of two activations
    (attention scores q k^T, weights times values): the contracted axes merge, the leading
    (batch) axes merge where they broadcast; neither odd nor homogeneous."""
    x, w = call.arg(0, "input"), call.arg(1, "other")
    if isinstance(x, Traced) and isinstance(w, Traced) and w.state is not None and x.state is None:
        if len(w.layout) != 2:
            raise t.fail(call, f"x @ W with a parameter of {len(w.layout)} axes")
        t.bind(call, w.layout[0], x.layout[-1])
        t.meet(w.layout[1])
        t.role(w, (-1, 1))
        return Traced(call.out, x.layout[:-1] + (w.layout[1],))
    if not (isinstance(x, Traced) and isinstance(w, Traced)):
        raise t.fail(call, "a matrix product with a tensor that is not traced")
    if len(x.layout) < 2 or len(w.layout) < 2:
        raise t.fail(call, "a matrix product of vectors")
    try:
        t.slots.merge_axes(x.layout[-1], w.layout[-2])
    except LayoutError as e:
        raise t.fail(call, str(e)) from None
    lead_x, lead_w = x.layout[:-2], w.layout[:-2]
    rank = max(len(lead_x), len(lead_w))
    lead = []
    for i in range(rank):
        pieces = []
        for operand, layout in ((x, lead_x), (w, lead_w)):
            j = i - (rank - len(layout))
            if j >= 0:
                pieces.append((operand, layout[j]))
        lead.append(_merge_aligned(t, call, pieces, call.out.shape[i]))
    layout = tuple(lead) + (x.layout[-2], w.layout[-1])
    t.touch(x.layout + w.layout, False, False, "a product of activations")
    return Traced(call.out, layout)


def _einsum_labels(equation: str, ranks: list[int]) -> tuple[list[list[str]], list[str]]:
    """Per operand its axes' labels, and the output's, with an ellipsis spelled out as
    labels of its own (right-aligned across operands, as einsum broadcasts them)."""
    equation = equation.replace(" ", "")
    inputs, arrow, output = equation.partition("->")
    terms = inputs.split(",")
    if len(terms) != len(ranks):
        raise LayoutError(f"einsum {equation!r} names {len(terms)} operands, got {len(ranks)}")
    spans = [rank - len(term.replace("...", "")) for term, rank in zip(terms, ranks, strict=True)]
    widest = max([n for n, term in zip(spans, terms, strict=True) if "..." in term], default=0)
    dots = [f"...{i}" for i in range(widest)]

    def spell(term: str, n: int) -> list[str]:
        head, ellipsis, tail = term.partition("...")
        return list(head) + (dots[widest - n :] if ellipsis else []) + list(tail)

    labels = [spell(term, n) for term, n in zip(terms, spans, strict=True)]
    if not arrow:  # implicit output: the ellipsis, then the labels used once, sorted
        counts = {c: sum(term.count(c) for term in terms) for c in set("".join(terms)) - {"."}}
        return labels, dots + sorted(c for c, k in counts.items() if k == 1)
    return labels, spell(output, widest)


def _einsum(t: Tracer, call: Call) -> Traced:
    """torch.einsum: axes of one label merge (the same neuron set wherever it appears); a
    label missing from the output is summed over; a constant operand fixes its labels'
    axes. A product of activations is neither odd nor homogeneous; an activation times one
    parameter is linear in the activation, as a Linear is."""
    equation, *operands = call.args
    if len(operands) == 1 and isinstance(operands[0], tuple | list):
        operands = list(operands[0])
    if not isinstance(equation, str) or not operands:
        raise t.fail(call, "einsum without an equation and operands")
    ranks = [x.tensor.dim() if isinstance(x, Traced) else x.dim() for x in operands]
    try:
        labels, output = _einsum_labels(equation, ranks)
    except LayoutError as e:
        raise t.fail(call, str(e)) from None
    axes: dict[str, list[tuple[object, Axis | str]]] = {}
    for operand, names in zip(operands, labels, strict=True):
        for j, name in enumerate(names):
            if isinstance(operand, Traced):
                axes.setdefault(name, []).append((operand, operand.layout[j]))
            elif operand.shape[j] > 1:
                axes.setdefault(name, []).append((operand, "constant"))
    activations = [x for x in operands if isinstance(x, Traced) and x.state is None]
    states = [x for x in operands if isinstance(x, Traced) and x.state is not None]
    merged: dict[str, Axis] = {}
    for name, pieces in axes.items():
        size = call.out.shape[output.index(name)] if name in output else None
        if size is None:  # summed over: the size every operand gives it
            size = (
                max(_size(a) for _, a in pieces if a != "constant")
                if any(a != "constant" for _, a in pieces)
                else 1
            )
        # a parameter's axis reads the activation's
        partner = next((a for o, a in pieces if isinstance(o, Traced) and o.state is None), None)
        for operand, axis in pieces:
            reads = isinstance(operand, Traced) and operand.state is not None
            if reads and partner is not None and _size(axis) == _size(partner):
                t.bind(call, axis, partner)
        merged[name] = _merge_aligned(t, call, pieces, size)
    for operand in states:
        t.meet(operand.layout[-1])
    if len(activations) > 1:
        t.touch(
            [a for x in activations for a in x.layout], False, False, "a product of activations"
        )
    if len(activations) == 1 and len(states) == 1 and len(states[0].layout) == 2:
        w = states[0]
        names = next(n for o, n in zip(operands, labels, strict=True) if o is w)
        t.role(w, tuple(1 if n in output else -1 for n in names))
    layout = tuple(
        merged[name] if name in merged else t.fresh(f"axis of {call.node.name}", size, "positional")
        for name, size in zip(output, call.out.shape, strict=True)
    )
    return Traced(call.out, layout)


def _expand(t: Tracer, call: Call) -> Traced:
    """expand / expand_as / broadcast_to: a size-1 axis repeated (a class token per sample);
    the repeated axis is new and free to meet the batch."""
    x = t.tensor_arg(call, 0)
    out_shape = tuple(call.out.shape)
    offset = len(out_shape) - len(x.layout)
    layout = []
    for i, size in enumerate(out_shape):
        j = i - offset
        if j >= 0 and x.shape[j] == size:
            layout.append(x.layout[j])
            continue
        if j >= 0:
            t.broadcast(x.layout[j])
        layout.append(t.fresh(f"expanded axis of {call.node.name}", size))
    return Traced(call.out, tuple(layout))


@dataclass(frozen=True)
class _ConvSpec:
    dims: int
    transposed: bool


_CONV_MODULES = {
    nn.Conv1d: _ConvSpec(1, False),
    nn.Conv2d: _ConvSpec(2, False),
    nn.Conv3d: _ConvSpec(3, False),
    nn.ConvTranspose1d: _ConvSpec(1, True),
    nn.ConvTranspose2d: _ConvSpec(2, True),
    nn.ConvTranspose3d: _ConvSpec(3, True),
}
_CONV_FUNCTIONS = {
    F.conv1d: _ConvSpec(1, False),
    F.conv2d: _ConvSpec(2, False),
    F.conv3d: _ConvSpec(3, False),
    F.conv_transpose1d: _ConvSpec(1, True),
    F.conv_transpose2d: _ConvSpec(2, True),
    F.conv_transpose3d: _ConvSpec(3, True),
}


def _conv(t: Tracer, call: Call) -> Traced:
    """Convolution: input channels (axis 1) merge with the kernel's input axis, the kernel and
    spatial axes are positions (fixed), the output channels are the kernel's output axis.
    Depthwise (groups = input channels) keeps one set through the layer."""
    if isinstance(call.target, nn.Module):
        spec = _CONV_MODULES[type(call.target)]
        weight, bias = t.module_state(call, "weight"), t.module_state(call, "bias")
        groups = call.target.groups
    else:
        spec = _CONV_FUNCTIONS[call.target]
        weight = t.state_arg(call, 1)
        bias = call.arg(2, "bias")
        bias = t.state_arg(call, 2, rank=1) if bias is not None else None
        groups = call.arg(7 if spec.transposed else 6, "groups", 1)
    x = t.tensor_arg(call, 0)
    rank = len(x.layout)
    if rank != spec.dims + 2:
        raise t.fail(
            call, f"a {spec.dims}-D convolution of a tensor with {rank} axes; expected a batch"
        )
    if len(weight.layout) != spec.dims + 2:
        raise t.fail(call, f"a {spec.dims}-D convolution kernel with {len(weight.layout)} axes")
    t.positional(x.layout[2:])
    t.positional(weight.layout[2:])
    in_axis, out_axis = (0, 1) if spec.transposed else (1, 0)
    if groups == 1:
        t.bind(call, weight.layout[in_axis], x.layout[1])
        out = weight.layout[out_axis]
        t.meet(out)
    else:
        out = _grouped(t, call, x, weight, groups, spec.transposed)
    roles = [0] * (spec.dims + 2)
    roles[in_axis], roles[out_axis] = -1, 1
    t.role(weight, tuple(roles))
    if bias is not None:
        t.bind(call, bias.layout[0], out)
        t.role(bias, (1,))
    spatial = _fresh_positions(t, call, tuple(call.out.shape[2:]), "position")
    return Traced(call.out, (x.layout[0], out) + spatial)


def _grouped(
    t: Tracer, call: Call, x: Traced, weight: Traced, groups: int, transposed: bool
) -> Axis:
    """groups > 1: input channels are g groups of a, output channels g groups of b, and
    group k of the output reads group k of the input only. The channel sets become g blocks
    (one set, permuted as wholes) with the positions inside each block a set of its own,
    permuted block by block (S_a wr S_g and S_b wr S_g on one g). Depthwise: a = 1."""
    blocks = t.blocks(call, x.layout[1], groups)  # the input axis as (g, a)
    group, inner = t.slots.expand(blocks)[0]
    if transposed:  # kernel [g a, b, ...]: its input axis is (g, a), its output axis b
        t.bind(call, weight.layout[0], blocks)
        position = t.slots.expand(weight.layout[1])[0][0]
        t.slots.nest(position.slot, group.slot)
        t.meet(weight.layout[1])
        return ((group, position),)
    t.bind(call, weight.layout[1], ((inner,),))  # kernel [g b, a, ...]
    own = t.blocks(call, weight.layout[0], groups)
    t.slots.union(t.slots.expand(own)[0][0].slot, group.slot)
    t.meet(own)
    return own


# -- normalisation -------------------------------------------------------------------------------
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
_INSTANCE_NORMS = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)


def _batch_norm(t: Tracer, call: Call) -> Traced:
    """BatchNorm / InstanceNorm: weight, bias, running mean and variance are vectors over the
    channel axis 1, one permutation with it; `num_batches_tracked` is no weight."""
    x = t.tensor_arg(call, 0)
    channel = x.layout[1] if len(x.layout) > 1 else None
    if channel is None:
        raise t.fail(call, "a batch norm of a tensor without a channel axis")
    states = []
    if isinstance(call.target, nn.Module):
        for name in ("weight", "bias", "running_mean", "running_var"):
            s = t.module_state(call, name)
            if s is not None:
                states.append(s)
    else:
        for index, name in ((1, "running_mean"), (2, "running_var"), (3, "weight"), (4, "bias")):
            if call.arg(index, name) is not None:
                states.append(t.state_arg(call, index, rank=1))
    for s in states:
        t.bind(call, s.layout[0], channel)
        t.role(s, (0,))
    if len(x.layout) > 2:
        pass  # spatial axes: normalised over, per channel; positions stay as they are
    return _same(t, call, x, odd=False, homogeneous=False)


def _group_norm(t: Tracer, call: Call) -> Traced:
    """GroupNorm(g, C): statistics per group of C / g channels, so the channel axis is g
    blocks (permuted as wholes) with the positions inside each block permuted block by block
    (S_{C/g} wr S_g); weight and bias on both."""
    x = t.tensor_arg(call, 0)
    if isinstance(call.target, nn.Module):
        groups = call.target.num_groups
        weight, bias = t.module_state(call, "weight"), t.module_state(call, "bias")
    else:
        groups = call.arg(1, "num_groups")
        weight = t.state_arg(call, 2, rank=1) if call.arg(2, "weight") is not None else None
        bias = t.state_arg(call, 3, rank=1) if call.arg(3, "bias") is not None else None
    if len(x.layout) < 2:
        raise t.fail(call, "a group norm of a tensor without a channel axis")
    blocks = t.blocks(call, x.layout[1], groups)
    for s in (weight, bias):
        if s is not None:
            t.bind(call, s.layout[0], blocks)
            t.role(s, (0,))
    t.touch((blocks,), False, False, _what(call))
    return Traced(call.out, (x.layout[0], blocks) + x.layout[2:])


def _layer_norm(t: Tracer, call: Call) -> Traced:
    """LayerNorm over the last axes: its weight and bias take those axes' layouts (a channel
    set is permuted with them; mean and variance over it do not change)."""
    x = t.tensor_arg(call, 0)
    if isinstance(call.target, nn.Module):
        shape = tuple(call.target.normalized_shape)
        weight, bias = t.module_state(call, "weight"), t.module_state(call, "bias")
    else:
        shape = tuple(call.arg(1, "normalized_shape"))
        weight = t.state_arg(call, 2) if call.arg(2, "weight") is not None else None
        bias = t.state_arg(call, 3) if call.arg(3, "bias") is not None else None
    k = len(shape)
    axes = x.layout[len(x.layout) - k :]
    for s in (weight, bias):
        if s is None:
            continue
        if len(s.layout) != k:
            raise t.fail(
                call, f"a layer norm whose {s.state} has {len(s.layout)} axes, expected {k}"
            )
        for own, axis in zip(s.layout, axes, strict=True):
            t.bind(call, own, axis)
        t.role(s, (0,) * k)
    t.touch(axes, False, False, _what(call))
    return Traced(call.out, x.layout)


# -- embeddings ----------------------------------------------------------------------------------
def _embedding(t: Tracer, call: Call) -> Traced:
    """Embedding(V, E): the vocabulary axis is fixed (the tokens' identities, in every mode),
    the embedding axis a channel set written into the result."""
    tokens = call.arg(0, "input")
    if isinstance(call.target, nn.Module):
        weight = t.module_state(call, "weight")
    else:
        weight = t.state_arg(call, 1, rank=2)
    t.positional([weight.layout[0]])  # token identities: fixed in every mode
    t.meet(weight.layout[0])
    t.meet(weight.layout[1])
    t.role(weight, (0, 1))
    lead = (
        tokens.layout
        if isinstance(tokens, Traced)
        else _fresh_positions(t, call, tuple(tokens.shape), "token")
    )
    out_shape = tuple(call.out.shape)
    if isinstance(call.target, nn.EmbeddingBag) or call.target is F.embedding_bag:
        lead = tuple(t.fresh(f"bag {call.node.name}", s, "positional") for s in out_shape[:-1])
    elif tuple(s for s in out_shape[:-1]) != tuple(tokens.shape):
        raise t.fail(call, f"an embedding of tokens {tuple(tokens.shape)} giving {out_shape}")
    return Traced(call.out, tuple(lead) + (weight.layout[1],))


# -- pooling and resampling ----------------------------------------------------------------------
_POOLS: dict[type, tuple[int, Pointwise]] = {
    nn.AvgPool1d: (1, LINEAR),
    nn.AvgPool2d: (2, LINEAR),
    nn.AvgPool3d: (3, LINEAR),
    nn.AdaptiveAvgPool1d: (1, LINEAR),
    nn.AdaptiveAvgPool2d: (2, LINEAR),
    nn.AdaptiveAvgPool3d: (3, LINEAR),
    nn.MaxPool1d: (1, RELU_LIKE),
    nn.MaxPool2d: (2, RELU_LIKE),
    nn.MaxPool3d: (3, RELU_LIKE),
    nn.AdaptiveMaxPool1d: (1, RELU_LIKE),
    nn.AdaptiveMaxPool2d: (2, RELU_LIKE),
    nn.AdaptiveMaxPool3d: (3, RELU_LIKE),
    nn.LPPool1d: (1, RELU_LIKE),
    nn.LPPool2d: (2, RELU_LIKE),
}
_POOL_FUNCTIONS: dict[Any, tuple[int, Pointwise]] = {
    F.avg_pool1d: (1, LINEAR),
    F.avg_pool2d: (2, LINEAR),
    F.avg_pool3d: (3, LINEAR),
    F.adaptive_avg_pool1d: (1, LINEAR),
    F.adaptive_avg_pool2d: (2, LINEAR),
    F.adaptive_avg_pool3d: (3, LINEAR),
    F.max_pool1d: (1, RELU_LIKE),
    F.max_pool2d: (2, RELU_LIKE),
    F.max_pool3d: (3, RELU_LIKE),
    F.adaptive_max_pool1d: (1, RELU_LIKE),
    F.adaptive_max_pool2d: (2, RELU_LIKE),
    F.adaptive_max_pool3d: (3, RELU_LIKE),
}


def _pool(t: Tracer, call: Call) -> Traced:
    dims, rule = (
        _POOLS[type(call.target)]
        if isinstance(call.target, nn.Module)
        else _POOL_FUNCTIONS[call.target]
    )
    x = t.tensor_arg(call, 0)
    odd, homogeneous = rule.check(call)
    t.touch(x.layout[: len(x.layout) - dims], odd, homogeneous, _what(call))
    if isinstance(call.out, tuple):  # return_indices: the indices follow untraced
        values = _spatial(t, dataclasses.replace(call, out=call.out[0]), x, dims, "pooling")
        return (values, call.out[1])  # type: ignore[return-value]
    return _spatial(t, call, x, dims, "pooling")


_PADS = (
    nn.ZeroPad1d,
    nn.ZeroPad2d,
    nn.ZeroPad3d,
    nn.ConstantPad1d,
    nn.ConstantPad2d,
    nn.ConstantPad3d,
    nn.ReflectionPad1d,
    nn.ReflectionPad2d,
    nn.ReflectionPad3d,
    nn.ReplicationPad1d,
    nn.ReplicationPad2d,
    nn.ReplicationPad3d,
    nn.CircularPad1d,
    nn.CircularPad2d,
    nn.CircularPad3d,
)


def _pad(t: Tracer, call: Call) -> Traced:
    """Padding (F.pad, the Pad modules). A constant pad is a concatenation: the axis becomes
    [pad before | the input's axis | pad after], each pad a piece of its own whose entries
    are equal (so a channel axis padded with zeros, a CIFAR ResNet's option-A shortcut,
    keeps its set, and the channels added to the zeros are a set of their own).
    Reflection, replication and circular padding copy entries of the axis: it becomes
    positions (a padded channel axis is fixed: a subgroup). Zero, reflection, replication
    and circular padding are linear (odd, homogeneous); a non-zero constant is neither."""
    x = t.tensor_arg(call, 0)
    module = call.target if isinstance(call.target, nn.Module) else None
    if module is not None:
        pads = tuple(module.padding)
        constant = hasattr(module, "value")  # ConstantPad and ZeroPad (a ConstantPad of 0)
        value = getattr(module, "value", 0.0)
    else:
        pads = tuple(call.arg(1, "pad"))
        mode, value = call.arg(2, "mode", "constant"), call.arg(3, "value", None)
        constant, value = mode == "constant", 0.0 if value is None else value
    rank = len(x.layout)
    if len(pads) % 2 or len(pads) // 2 > rank:
        raise t.fail(call, f"padding {pads} of a tensor with {rank} axes")
    amounts = {rank - 1 - i: (pads[2 * i], pads[2 * i + 1]) for i in range(len(pads) // 2)}
    padded = {i for i, (a, b) in amounts.items() if (a, b) != (0, 0)}
    linear = not constant or value == 0
    t.touch([x.layout[i] for i in range(rank) if i not in padded], linear, linear, _what(call))
    layout: list[Axis] = []
    for i, axis in enumerate(x.layout):
        before, after = amounts.get(i, (0, 0))
        if i not in padded:
            layout.append(axis)
        elif constant and before >= 0 and after >= 0:
            parts: list[Part] = []
            for size, what in ((before, "before"), (axis_size(axis), None), (after, "after")):
                if what is None:
                    parts += list(t.slots.expand(axis))
                elif size:
                    # equal constants: any permutation of them is a symmetry
                    pad = t.fresh(f"pad {what} axis {i} of {call.node.name}", size)
                    parts += list(t.slots.expand(pad))
            layout.append(tuple(parts))
        else:
            t.positional([axis])
            size = call.out.shape[i]
            layout.append(t.fresh(f"padded axis {i} of {call.node.name}", size, "positional"))
    return Traced(call.out, tuple(layout))


def _interpolate(t: Tracer, call: Call) -> Traced:
    """Upsample / interpolate (nearest or (bi, tri)linear, bicubic): linear in the input, so
    odd and homogeneous; the spatial axes are positions."""
    x = t.tensor_arg(call, 0)
    dims = len(x.layout) - 2
    if dims < 1:
        raise t.fail(call, "an interpolation of a tensor without spatial axes")
    t.touch(x.layout[:2], True, True, _what(call))
    return _spatial(t, call, x, dims, "interpolation")


def _pixel_shuffle(t: Tracer, call: Call) -> Traced:
    """PixelShuffle(r): channels C r^2 become C channels on an r-times larger grid; the channel
    set is cut into (C, r, r), the two r pieces positions."""
    x = t.tensor_arg(call, 0)
    r = (
        call.target.upscale_factor
        if isinstance(call.target, nn.Module)
        else call.arg(1, "upscale_factor")
    )
    channels = x.shape[1] // (r * r)
    slot = _only_slot(t, call, x.layout[1])
    pieces = t.slots.split_slot(slot, [(channels, r, r)])
    t.positional((((pieces[0][1],),), ((pieces[0][2],),)))
    spatial = _fresh_positions(t, call, tuple(call.out.shape[2:]), "position")
    return Traced(call.out, (x.layout[0], ((pieces[0][0],),)) + spatial)


def _only_slot(t: Tracer, call: Call, axis: Axis) -> int:
    axis = t.slots.expand(axis)
    if len(axis) != 1 or len(axis[0]) != 1:
        raise t.fail(
            call, f"an operation that cuts an axis already made of pieces {shape_of(axis)}"
        )
    return axis[0][0].slot


# -- reductions and softmax ----------------------------------------------------------------------
_REDUCE_FUNCTIONS: dict[Any, Pointwise] = {
    torch.mean: LINEAR,
    torch.sum: LINEAR,
    torch.amax: RELU_LIKE,
    torch.amin: RELU_LIKE,
    torch.logsumexp: EVEN,
    torch.std: RELU_LIKE,
    torch.var: EVEN,
    torch.norm: RELU_LIKE,
}
_REDUCE_METHODS: dict[str, Pointwise] = {
    "mean": LINEAR,
    "sum": LINEAR,
    "amax": RELU_LIKE,
    "amin": RELU_LIKE,
    "logsumexp": EVEN,
    "std": RELU_LIKE,
    "var": EVEN,
    "norm": RELU_LIKE,
}


def _reduce(t: Tracer, call: Call) -> Traced:
    """A reduction over some axes: over positions it is a pooling; over a neuron set it is
    invariant to the set's permutations but mixes its neurons (neither odd nor homogeneous
    per neuron). The kept axes pass; keepdim leaves size-1 axes."""
    x = t.tensor_arg(call, 0)
    rule = (
        _REDUCE_METHODS[call.target]
        if isinstance(call.target, str)
        else _REDUCE_FUNCTIONS[call.target]
    )
    rank = len(x.layout)
    dims = call.arg(1, "dim")
    if call.target in (torch.norm, "norm"):
        dims = call.arg(2, "dim")
    keep = bool(
        call.kwargs.get("keepdim", False)
        or (len(call.args) > 2 and call.args[2] is True and call.target not in (torch.norm, "norm"))
    )
    reduced = (
        set(range(rank))
        if dims is None
        else {_dim(d, rank) for d in (dims if isinstance(dims, tuple | list) else (dims,))}
    )
    odd, homogeneous = rule.check(call)
    kept = [i for i in range(rank) if i not in reduced]
    t.touch(tuple(x.layout[i] for i in kept), odd, homogeneous, _what(call))
    t.touch(tuple(x.layout[i] for i in reduced), False, False, f"{_what(call)} over the axis")
    out_rank = len(call.out.shape)
    if keep or out_rank == rank:
        layout = tuple(
            t.fresh(f"reduced axis of {call.node.name}", 1, "broadcast")
            if i in reduced
            else x.layout[i]
            for i in range(rank)
        )
    else:
        layout = tuple(x.layout[i] for i in kept)
    if tuple(_size(a) for a in layout) != tuple(call.out.shape):
        raise t.fail(call, f"a reduction whose result {tuple(call.out.shape)} is not understood")
    return Traced(call.out, layout)


def _max_dim(t: Tracer, call: Call) -> Any:
    """torch.max / min with a dim: values like amax; the indices are not followed."""
    x = t.tensor_arg(call, 0)
    dim = call.arg(1, "dim")
    if dim is None or isinstance(dim, Traced):
        return _same(t, call, x, odd=False, homogeneous=False) if dim is None else _binary(t, call)
    rank = len(x.layout)
    d = _dim(dim, rank)
    keep = bool(call.arg(2, "keepdim", False))
    t.touch(tuple(x.layout[i] for i in range(rank) if i != d), False, True, _what(call))
    t.touch((x.layout[d],), False, False, f"{_what(call)} over the axis")
    layout = tuple(
        (t.fresh(f"reduced axis of {call.node.name}", 1, "broadcast") if keep else None)
        if i == d
        else x.layout[i]
        for i in range(rank)
    )
    layout = tuple(a for a in layout if a is not None)
    values, indices = call.out
    return (Traced(values, layout), indices)


def _softmax(t: Tracer, call: Call) -> Traced:
    """(log-)softmax along an axis: equivariant to permuting any axis, neither odd nor
    homogeneous."""
    x = t.tensor_arg(call, 0)
    return _same(t, call, x, odd=False, homogeneous=False)


def _glu(t: Tracer, call: Call) -> Traced:
    """GLU along `dim`: the axis cut into halves a | b and a * sigmoid(b) returned; the two
    halves move together (one set, as a product of two activations). Not odd."""
    x = t.tensor_arg(call, 0)
    dim = call.target.dim if isinstance(call.target, nn.Module) else call.arg(1, "dim", -1)
    d = _dim(dim, len(x.layout))
    half = x.shape[d] // 2
    try:
        first, second = t.cut(x.layout[d], [half, half], call.node.name)
        t.slots.merge_axes(first, second)
    except LayoutError as e:
        raise t.fail(call, str(e)) from None
    t.touch(x.layout, False, False, _what(call))
    return Traced(call.out, x.layout[:d] + (first,) + x.layout[d + 1 :])


def _normalize(t: Tracer, call: Call) -> Traced:
    """F.normalize: each vector along `dim` divided by its norm. Equivariant to permuting any
    axis; odd (a flipped entry flips in the result, the norm unchanged); not homogeneous
    (scaling one entry changes every entry of its vector)."""
    x = t.tensor_arg(call, 0)
    return _same(t, call, x, odd=True, homogeneous=False)


def _masked_fill(t: Tracer, call: Call) -> Traced:
    """x.masked_fill(mask, value): a constant mask (a causal mask) fixes the axes it varies
    along; a mask computed from traced values meets x's axes elementwise. Not odd (a fill
    value does not change sign with x)."""
    x = t.tensor_arg(call, 0)
    mask, value = call.arg(1, "mask"), call.arg(2, "value")
    if isinstance(value, Traced):
        raise t.fail(call, "a fill value computed from the input or the weights")
    rank = len(x.layout)
    for i in range(rank):
        axis = _aligned_axis(mask, i, rank)
        if axis == "constant":
            t.pin(x.layout[i], f"the mask of {call.node.name}")
        elif axis not in (None, "broadcast"):
            _merge_aligned(t, call, [(x, x.layout[i]), (mask, axis)], _size(x.layout[i]))
    return _same(t, call, x, odd=False, homogeneous=False)


# -- shapes --------------------------------------------------------------------------------------
def _reshape(t: Tracer, call: Call) -> Traced:
    """view / reshape / flatten / unflatten / squeeze / unsqueeze: the result's axes are runs
    of the input's factors; an axis cut inside a free (positional, batch) factor cuts it; a
    cut inside a neuron set cuts the set into pieces (each a set of its own)."""
    x = t.tensor_arg(call, 0)
    try:
        layout = t.reshape(x, tuple(call.out.shape), call.node.name)
    except LayoutError as e:
        raise t.fail(call, str(e)) from None
    return Traced(call.out, layout, x.state)


def _permute(t: Tracer, call: Call) -> Traced:
    x = t.tensor_arg(call, 0)
    rank = len(x.layout)
    name = call.target if isinstance(call.target, str) else getattr(call.target, "__name__", "")
    if name in ("t", "T", "mT") or (name == "getattr"):
        order = (
            list(range(rank))[::-1] if rank <= 2 else list(range(rank - 2)) + [rank - 1, rank - 2]
        )
    elif name in ("transpose", "swapaxes", "swapdims"):
        a, b = _dim(call.arg(1, "dim0"), rank), _dim(call.arg(2, "dim1"), rank)
        order = list(range(rank))
        order[a], order[b] = order[b], order[a]
    elif name == "movedim":
        src, dst = call.arg(1, "source"), call.arg(2, "destination")
        order = torch.movedim(torch.arange(rank), src, dst).tolist()
    else:  # permute
        dims = call.args[1:] if len(call.args) > 2 else call.arg(1, "dims")
        order = [_dim(d, rank) for d in (dims if isinstance(dims, tuple | list) else [dims])]
    return Traced(call.out, tuple(x.layout[i] for i in order), x.state)


def _passthrough(t: Tracer, call: Call) -> Traced:
    """contiguous, clone, detach, to, float, double, ...: same layout."""
    x = t.tensor_arg(call, 0)
    if tuple(call.out.shape) != x.shape:
        raise t.fail(
            call, f"a conversion that changes the shape {x.shape} -> {tuple(call.out.shape)}"
        )
    return Traced(call.out, x.layout, x.state)


def _concatenate(t: Tracer, call: Call) -> Traced:
    """torch.cat: along the axis, the result's set is the disjoint union of the operands'
    (a later weight reading it splits into one tensor per operand); the other axes merge."""
    tensors = list(call.arg(0, "tensors"))
    dim = call.arg(1, "dim", 0)
    items = [x for x in tensors if isinstance(x, Traced)]
    if len(items) != len(tensors):
        raise t.fail(call, "a concatenation with a tensor that is not traced")
    rank = len(items[0].layout)
    d = _dim(dim, rank)
    layout: list[Axis] = []
    for i in range(rank):
        if i == d:
            parts: list[Part] = []
            for x in items:
                parts += list(t.slots.expand(x.layout[i]))
            layout.append(tuple(parts))
        else:
            first = items[0].layout[i]
            for x in items[1:]:
                try:
                    t.slots.merge_axes(first, x.layout[i])
                except LayoutError as e:
                    raise t.fail(call, str(e)) from None
            layout.append(first)
    return Traced(call.out, tuple(layout))


def _stack(t: Tracer, call: Call) -> Traced:
    """torch.stack: the new axis indexes the operands (positions); the other axes merge."""
    tensors = list(call.arg(0, "tensors"))
    dim = call.arg(1, "dim", 0)
    items = [x for x in tensors if isinstance(x, Traced)]
    if len(items) != len(tensors):
        raise t.fail(call, "a stack with a tensor that is not traced")
    rank = len(items[0].layout) + 1
    d = _dim(dim, rank)
    for i, axis in enumerate(items[0].layout):
        for x in items[1:]:
            try:
                t.slots.merge_axes(axis, x.layout[i])
            except LayoutError as e:
                raise t.fail(call, str(e)) from None
    new = t.fresh(f"stacked axis of {call.node.name}", len(items), "positional")
    layout = list(items[0].layout)
    layout.insert(d, new)
    return Traced(call.out, tuple(layout))


def _split(t: Tracer, call: Call) -> tuple:
    """chunk / split / unbind along an axis: each piece's layout is its range of the axis
    (a neuron set is cut into pieces where a range cuts it: the gates of a fused layer)."""
    x = t.tensor_arg(call, 0)
    outs = list(call.out)
    name = call.target if isinstance(call.target, str) else call.target.__name__
    rank = len(x.layout)
    if name == "unbind":
        d = _dim(call.arg(1, "dim", 0), rank)
    elif name == "chunk":
        d = _dim(call.arg(2, "dim", 0), rank)
    else:
        d = _dim(call.arg(2, "dim", 0), rank)
    sizes = [o.shape[d] if name != "unbind" else 1 for o in outs]
    try:
        pieces = t.cut(x.layout[d], sizes, call.node.name)
    except LayoutError as e:
        raise t.fail(call, str(e)) from None
    result = []
    for o, piece in zip(outs, pieces, strict=True):
        layout = list(x.layout)
        if name == "unbind":
            layout.pop(d)
            # as an entry chosen by index: its set leaves the layout but still scales the
            # values, so whatever follows reads it untracked (neither odd nor homogeneous)
            t.touch((piece,), False, False, "an entry chosen by unbind")
        else:
            layout[d] = piece
        result.append(Traced(o, tuple(layout), None))
    return tuple(result)


def _getitem(t: Tracer, call: Call) -> Any:
    """x[...] with integers, slices, None and Ellipsis: a slice of an axis is a cut of its
    layout (a piece of a set, or positions); an integer removes the axis; None inserts a
    size-1 axis. A parameter sliced this way is split into one tensor per piece."""
    x, index = call.args[0], call.args[1]
    if isinstance(x, tuple | list):
        return x[index]
    if isinstance(x, Stacked):
        if not isinstance(index, int):
            raise t.fail(call, "stacked final states read other than by one integer index")
        return x.entry(index)
    if not isinstance(x, Traced):
        return call.out
    if not isinstance(index, tuple):
        index = (index,)
    rank = len(x.layout)
    if sum(i is Ellipsis for i in index) > 1:
        raise t.fail(call, "an index with two ellipses")
    explicit = [i for i in index if i is not None and i is not Ellipsis]
    if len(explicit) > rank:
        raise t.fail(call, "an index with more entries than axes")
    expanded: list[Any] = []
    for i in index:
        if i is Ellipsis:
            expanded += [slice(None)] * (rank - len(explicit))
        else:
            expanded.append(i)
    expanded += [slice(None)] * (rank - sum(i is not None for i in expanded))
    layout: list[Axis] = []
    axis = 0
    for i in expanded:
        if i is None:
            layout.append(t.fresh(f"new axis of {call.node.name}", 1, "broadcast"))
            continue
        size = x.shape[axis]
        if isinstance(i, int):
            start = i % size
            try:
                pieces = t.cut(x.layout[axis], [start, 1, size - start - 1], call.node.name)
            except LayoutError as e:
                raise t.fail(call, str(e)) from None
            # The chosen entry's set leaves the layout but still scales the values: whatever
            # follows reads it untracked, so it is neither odd nor homogeneous.
            t.touch((pieces[1],), False, False, "an entry chosen by index")
            axis += 1
            continue
        if isinstance(i, slice):
            start, stop, step = i.indices(size)
            if step != 1:
                if x.state is not None:
                    raise t.fail(call, "a strided slice of a parameter")
                # every other position (a strided shortcut): the axis is read by position
                t.positional([x.layout[axis]])
                count = len(range(start, stop, step))
                layout.append(t.fresh(f"strided axis of {call.node.name}", count, "positional"))
                axis += 1
                continue
            if (start, stop) == (0, size):
                layout.append(x.layout[axis])
            else:
                try:
                    pieces = t.cut(
                        x.layout[axis], [start, stop - start, size - stop], call.node.name
                    )
                except LayoutError as e:
                    raise t.fail(call, str(e)) from None
                layout.append(pieces[1])
            axis += 1
            continue
        raise t.fail(call, f"an index by {type(i).__name__}")
    return Traced(call.out, tuple(layout), x.state)


def _attribute(t: Tracer, call: Call) -> Any:
    """getattr: `.T` / `.mT` of a tensor; sizes and dtypes are plain values."""
    obj, name = call.args
    if isinstance(obj, Traced) and name in ("T", "mT"):
        return _permute(t, Call(call.node, "T", call.args, call.kwargs, call.out))
    if isinstance(obj, Traced) and name in ("shape", "ndim", "dtype", "device", "is_cuda"):
        return call.out
    if not isinstance(obj, Traced):
        return call.out
    raise t.fail(call, f"the attribute {name!r} of a tensor")


def _plain(t: Tracer, call: Call) -> Any:
    """size(), dim(), numel(): plain values."""
    return call.out


# -- the table -----------------------------------------------------------------------------------
def _ops() -> list[Op]:
    ops = [
        Op(
            "Linear",
            "input axis: merged with the activation's last axis (one tensor per concatenated "
            "part; a channel set times fixed positions after a flatten); output axis and bias: "
            "one set",
            _linear,
            modules=(nn.Linear,),
            functions=(F.linear,),
        ),
        Op(
            "x @ W, matmul of activations",
            "as Linear, with W stored [in, out]; two activations (attention scores and values): "
            "the contracted axes merge, the batch axes merge; not odd",
            _matmul,
            functions=(operator.matmul, torch.matmul),
            methods=("matmul",),
        ),
        Op(
            "Conv1d/2d/3d, ConvTranspose1d/2d/3d",
            "input channels merged with the kernel's input axis, output channels and bias one "
            "set, kernel and spatial axes fixed positions; grouped (depthwise too): channels "
            "as blocks permuted as wholes, positions inside a block permuted block by block",
            _conv,
            modules=tuple(_CONV_MODULES),
            functions=tuple(_CONV_FUNCTIONS),
        ),
        Op(
            "BatchNorm1d/2d/3d, InstanceNorm1d/2d/3d",
            "weight, bias, running mean and variance: vectors on the channel set "
            "(`num_batches_tracked` is not a weight); not odd",
            _batch_norm,
            modules=_BATCH_NORMS + _INSTANCE_NORMS,
            functions=(F.batch_norm, F.instance_norm),
            group="normalisation",
        ),
        Op(
            "GroupNorm",
            "channels as groups permuted as wholes, channels inside a group permuted group by "
            "group; weight and bias on both; not odd",
            _group_norm,
            modules=(nn.GroupNorm,),
            functions=(F.group_norm,),
            group="normalisation",
        ),
        Op(
            "LayerNorm",
            "weight and bias on the normalised (last) axes' sets; not odd",
            _layer_norm,
            modules=(nn.LayerNorm,),
            functions=(F.layer_norm,),
            group="normalisation",
        ),
        Op(
            "Embedding, EmbeddingBag",
            "vocabulary axis fixed (token identities); embedding axis: a set",
            _embedding,
            modules=(nn.Embedding, nn.EmbeddingBag),
            functions=(F.embedding, F.embedding_bag),
        ),
        Op(
            "MultiheadAttention",
            "heads permuted as wholes; inside each head the query/key dims one set and the "
            "value dims (with the output projection's inputs) another, each permuted head by "
            "head; in_proj split into query, key and value rows viewed as [heads, dims, E]; "
            "masks fix the token axes",
            attention,
            modules=(nn.MultiheadAttention,),
        ),
        Op(
            "TransformerEncoderLayer/DecoderLayer, TransformerEncoder/Decoder, Transformer",
            "attention as above; the residual stream one set through every layer, with the "
            "layer norms and feed-forward outputs on it",
            transformer,
            modules=TRANSFORMER_LAYERS,
        ),
        Op(
            "RNN, LSTM, GRU",
            "each fused gate axis viewed as (gate: fixed) x (hidden units: one set shared by "
            "every gate, the biases and the recurrent weight's input axis); layers, "
            "directions and LSTM projections each their own set; a tanh RNN is odd",
            recurrent,
            modules=RECURRENT,
        ),
        Op(
            "PReLU",
            "slope vector on the channel set (or one shared slope: a fixed set of size 1)",
            _prelu,
            modules=(nn.PReLU,),
            functions=(F.prelu,),
        ),
        Op(
            "AvgPool, MaxPool, LPPool, adaptive pooling",
            "spatial axes are positions (fixed); channels pass",
            _pool,
            modules=tuple(_POOLS),
            functions=tuple(_POOL_FUNCTIONS),
            group="shape",
        ),
        Op(
            "ZeroPad, ConstantPad, ReflectionPad, ReplicationPad, CircularPad, F.pad",
            "padded axes are positions (a padded channel axis is fixed); the others pass; "
            "linear unless the constant is not zero",
            _pad,
            modules=_PADS,
            functions=(F.pad,),
            group="shape",
        ),
        Op(
            "Upsample, interpolate",
            "spatial axes are positions; channels pass (linear: odd and homogeneous)",
            _interpolate,
            modules=(nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d),
            functions=(F.interpolate, F.upsample),
            group="shape",
        ),
        Op(
            "PixelShuffle",
            "channels C r^2 cut into a set of C and two positions of r",
            _pixel_shuffle,
            modules=(nn.PixelShuffle,),
            functions=(F.pixel_shuffle,),
            group="shape",
        ),
        Op(
            "Flatten, view, reshape, unflatten, squeeze, unsqueeze",
            "axes regrouped: a flatten of positions into features makes the next Linear's input "
            "a channel set times fixed positions; a cut inside a set cuts it into pieces",
            _reshape,
            modules=(nn.Flatten, nn.Unflatten),
            functions=(
                torch.flatten,
                torch.reshape,
                torch.squeeze,
                torch.unsqueeze,
                torch.unflatten,
            ),
            methods=(
                "view",
                "reshape",
                "flatten",
                "unflatten",
                "squeeze",
                "unsqueeze",
                "view_as",
                "reshape_as",
            ),
            group="shape",
        ),
        Op(
            "permute, transpose, .T",
            "axes reordered",
            _permute,
            functions=(torch.permute, torch.transpose, torch.swapaxes, torch.movedim, torch.t),
            methods=("permute", "transpose", "t", "swapaxes", "swapdims", "movedim"),
            group="shape",
        ),
        Op(
            "cat",
            "the joined axis's set is the disjoint union of the operands' (the next weight "
            "reading it splits into one tensor per operand)",
            _concatenate,
            functions=(torch.cat, torch.concat, torch.concatenate),
            group="shape",
        ),
        Op(
            "expand, broadcast_to",
            "a size-1 axis repeated: a new, free axis (a class token per sample)",
            _expand,
            functions=(torch.broadcast_to,),
            methods=("expand", "expand_as"),
            group="shape",
        ),
        Op(
            "stack",
            "a new axis of positions; the operands' sets merge",
            _stack,
            functions=(torch.stack,),
            group="shape",
        ),
        Op(
            "chunk, split, unbind",
            "a set cut into pieces where the ranges cut it (gates of a fused layer)",
            _split,
            functions=(torch.chunk, torch.split, torch.unbind),
            methods=("chunk", "split", "unbind"),
            group="shape",
        ),
        Op(
            "indexing x[...]",
            "a slice cuts the axis into pieces; an integer drops it; None adds a size-1 axis",
            _getitem,
            functions=(operator.getitem,),
            group="shape",
        ),
        Op(
            "sum, mean, amax, amin, std, var, norm, logsumexp, max/min over a dim",
            "over positions: a pooling; over a set: invariant to its permutations (not odd)",
            _reduce,
            functions=tuple(_REDUCE_FUNCTIONS),
            methods=tuple(_REDUCE_METHODS),
            group="shape",
        ),
        Op(
            "max, min with a dim",
            "as amax, amin; the indices are not followed",
            _max_dim,
            functions=(torch.max, torch.min),
            methods=("max", "min"),
            group="shape",
        ),
        Op(
            "softmax, log_softmax",
            "equivariant along any axis; not odd",
            _softmax,
            modules=(nn.Softmax, nn.LogSoftmax, nn.Softmin),
            functions=(F.softmax, F.log_softmax, torch.softmax, torch.log_softmax, F.softmin),
            methods=("softmax", "log_softmax"),
            group="elementwise",
        ),
        Op(
            "GLU",
            "the axis cut into halves that move together (their product); not odd",
            _glu,
            modules=(nn.GLU,),
            functions=(F.glu,),
            group="elementwise",
        ),
        Op(
            "normalize",
            "F.normalize along any axis: equivariant; odd; not homogeneous",
            _normalize,
            functions=(F.normalize,),
            group="elementwise",
        ),
        Op(
            "einsum",
            "axes of one label merge; a label left out of the output is summed over; a "
            "constant operand fixes its labels' axes; a product of activations is not odd",
            _einsum,
            functions=(torch.einsum,),
        ),
        Op(
            "masked_fill",
            "a constant mask (causal): the axes it varies along are fixed; a mask computed "
            "from activations: merged elementwise; not odd",
            _masked_fill,
            functions=(torch.masked_fill,),
            methods=("masked_fill", "masked_fill_"),
            group="elementwise",
        ),
        Op(
            "+, -, *, / of activations, parameters, constants",
            "two activations: one set (a residual link; a product is not odd); a parameter "
            "vector: merged with the axis it meets (a bias, a scale); a size-1 operand "
            "broadcast: its own fixed set; a tensor constant: the axis it meets is fixed",
            _binary,
            functions=_ADD + _MUL + _DIV,
            methods=(
                "add",
                "add_",
                "sub",
                "sub_",
                "rsub",
                "mul",
                "mul_",
                "multiply",
                "div",
                "div_",
                "true_divide",
            ),
            group="elementwise",
        ),
        Op(
            "pow",
            "odd for odd integer powers",
            _pow,
            functions=(torch.pow, operator.pow),
            methods=("pow",),
            group="elementwise",
        ),
        Op(
            "contiguous, clone, detach, to, float, double, type_as",
            "nothing",
            _passthrough,
            methods=(
                "contiguous",
                "clone",
                "detach",
                "to",
                "float",
                "double",
                "half",
                "bfloat16",
                "type",
                "type_as",
                "cpu",
                "cuda",
                "requires_grad_",
            ),
            functions=(torch.clone,),
            group="shape",
        ),
        Op(
            "size, dim, shape, numel",
            "nothing (plain values)",
            _plain,
            methods=("size", "dim", "numel", "__len__"),
            group="shape",
        ),
        Op(
            "getattr",
            "`.T`, `.mT` reorder axes; sizes are plain values",
            _attribute,
            functions=(getattr,),
            group="shape",
        ),
    ]
    for name, modules, functions, methods, rule in _POINTWISE:
        what = "elementwise: the set passes"
        if rule.odd is True:
            what += " (odd)"
        elif callable(rule.odd):
            what += " (odd where its bounds are symmetric)"
        ops.append(
            Op(
                name,
                what,
                _pointwise_handler(rule),
                modules=modules,
                functions=functions,
                methods=methods,
                group="elementwise",
            )
        )
    return ops


OPS: tuple[Op, ...] = tuple(_ops())
_BY_MODULE = {m: op for op in OPS for m in op.modules}
_BY_FUNCTION = {id(f): op for op in OPS for f in op.functions}
_BY_METHOD = {m: op for op in OPS for m in op.methods}


def lookup(kind: str, target: Any) -> Op | None:
    """The op for an fx call: kind is `call_module` (target a module), `call_function`
    or `call_method` (target a method name)."""
    if kind == "call_module":
        for cls in type(target).__mro__:
            if cls in _BY_MODULE:
                return _BY_MODULE[cls]
        return None
    if kind == "call_function":
        return _BY_FUNCTION.get(id(target))
    return _BY_METHOD.get(target)


def supported_layers_table() -> str:
    """The README's table of supported layers, from `OPS`."""
    lines = ["| layer | what it does to the neuron sets |", "|---|---|"]
    for op in OPS:
        if op.group == "layers" or op.group == "normalisation":
            lines.append(f"| {op.name} | {op.effect} |")
    for group in ("elementwise", "shape"):
        for op in OPS:
            if op.group == group:
                lines.append(f"| {op.name} | {op.effect} |")
    return "\n".join(lines)


BEGIN_TABLE = "<!-- BEGIN SUPPORTED LAYERS"
END_TABLE = "<!-- END SUPPORTED LAYERS -->"


def with_table(readme: str) -> str:
    """The README's text with the supported-layers block replaced by `supported_layers_table`."""
    start = readme.index(BEGIN_TABLE)
    start = readme.index("\n", start) + 1
    end = readme.index(END_TABLE)
    return readme[:start] + supported_layers_table() + "\n" + readme[end:]


if __name__ == "__main__":  # python -m dws_theory.frontends.ops README.md: rewrite the table
    import sys
    from pathlib import Path

    from ..atomic import write_text

    for name in sys.argv[1:]:
        write_text(Path(name), with_table(Path(name).read_text(encoding="utf-8")))
