"""The weight space of a `torch.nn.Module`, derived by tracing it with torch.fx.

`from_module(module, symmetry)` gives every axis of every parameter a provisional neuron set
and merges, with union-find, the axes that one permutation must move together:

- the input axis of a layer (`nn.Linear`, `nn.ConvNd`, `F.linear`, `F.convNd`, `x @ W`) and
  the channel axis of the activation it reads, so one layer's output axis with the next
  layer's input axis, and a bias with its weight's output axis;
- the operands of an addition or subtraction of two activations (a residual link) and of an
  elementwise product: one permutation must act on both;
- the uses of a parameter applied in several places (weight tying): one tensor, one set of
  axes, however often it is called.

Kernel axes of a convolution are fixed sets of their own (dense parameter dimensions).
Elementwise activations, dropout, average and max pooling keep the channel set; global
pooling to size 1 (or a mean over every spatial axis) followed by a flatten hands the
channel set to the next `nn.Linear`. The group is the product over the merged sets: in
mode `hidden` the sets touching the network's input or output are fixed, in `all` every
channel set is permuted, in `signed` a hidden set is signed where every operation touching
it is odd (tanh, sin, identity, mean pooling, dropout) and permuted otherwise.

What cannot be derived exactly is refused with a `SpecError` naming the node: a layer it
does not know, a flatten of spatial positions into features, a grouped convolution,
buffers (batch-norm statistics), concatenation, a data-dependent branch (torch.fx cannot
trace it). A module whose space is an MLP's gets exactly `mlp(dims, mode)` (tensors W1, b1,
..., sets n0..nM); any other gets tensors named from its parameter names and channel sets
n0, n1, ... in the order the trace meets them (kernel sets k1, k2, ...).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..spec import MODES, Kind, NeuronSet, SpecError, Tensor, WeightSpace, mlp, parse_mode

__all__ = ["Link", "ModuleTrace", "from_module", "trace_module"]


@dataclass(frozen=True)
class Link:
    """One merge the trace made: at fx node `node`, `reason` forced the axes `axes`
    (descriptions such as `fc1.weight[1]` or `the input of fc1`) onto one set, `set`."""

    node: str
    reason: str
    set: str
    axes: tuple[str, ...]


@dataclass(frozen=True)
class ModuleTrace:
    """The derived space with what it was derived from.

    `parameters` pairs each tensor of the space with its parameter name (named_parameters()
    order); `links` lists the residual links, elementwise products and tied uses that merged
    sets; `not_odd` names, per hidden set that stayed permuted in `signed` mode, the first
    operation that is not odd."""

    space: WeightSpace
    mode: str
    parameters: tuple[tuple[str, str], ...]
    links: tuple[Link, ...] = ()
    not_odd: tuple[tuple[str, str], ...] = ()

    def parameter_of(self, tensor: str) -> str:
        return dict(self.parameters)[tensor]


# -- union-find over axis slots ------------------------------------------------------------------
@dataclass
class _Slots:
    """Axis slots (parameter axes and activation channels) and their merges."""

    parent: list[int] = field(default_factory=list)
    seen: list[int] = field(default_factory=list)  # when the trace first touched a slot
    names: list[str] = field(default_factory=list)
    clock: int = 0

    def new(self, name: str) -> int:
        self.parent.append(len(self.parent))
        self.seen.append(-1)
        self.names.append(name)
        return len(self.parent) - 1

    def touch(self, slot: int) -> int:
        if self.seen[slot] < 0:
            self.seen[slot] = self.clock
            self.clock += 1
        return slot

    def find(self, slot: int) -> int:
        while self.parent[slot] != slot:
            self.parent[slot] = self.parent[self.parent[slot]]
            slot = self.parent[slot]
        return slot

    def union(self, a: int, b: int) -> None:
        self.touch(a)
        self.touch(b)
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


# -- abstract values -------------------------------------------------------------------------
@dataclass
class _Act:
    """An activation [B, C, *spatial]: its channel slot and its spatial axes (1 where a
    global pool left size 1, None where unknown); `spatial` None: rank not known yet (an
    input before its first consumer)."""

    channel: int
    spatial: tuple[int | None, ...] | None


@dataclass(frozen=True)
class _Param:
    """A parameter read with get_attr: its name and the slots of its axes (maybe transposed)."""

    name: str
    slots: tuple[int, ...]


class _Opaque:
    """A non-tensor value (a size, a shape) that only flatten-like views may use."""


_OPAQUE = _Opaque()

# Elementwise operations: name -> odd (commutes with a sign flip).
_ELEMENTWISE_MODULES: dict[type, bool] = {
    nn.ReLU: False,
    nn.ReLU6: False,
    nn.LeakyReLU: False,
    nn.ELU: False,
    nn.SELU: False,
    nn.CELU: False,
    nn.GELU: False,
    nn.SiLU: False,
    nn.Mish: False,
    nn.Sigmoid: False,
    nn.Softplus: False,
    nn.Hardswish: False,
    nn.Hardsigmoid: False,
    nn.LogSigmoid: False,
    nn.Tanh: True,
    nn.Softsign: True,
    nn.Tanhshrink: True,
    nn.Hardshrink: True,
    nn.Softshrink: True,
    nn.Identity: True,
    nn.Dropout: True,
    nn.Dropout1d: True,
    nn.Dropout2d: True,
    nn.Dropout3d: True,
    nn.AlphaDropout: False,
}
_ELEMENTWISE_FUNCTIONS: dict[object, bool] = {
    torch.relu: False,
    F.relu: False,
    F.relu6: False,
    F.leaky_relu: False,
    F.elu: False,
    F.selu: False,
    F.gelu: False,
    F.silu: False,
    F.mish: False,
    torch.sigmoid: False,
    F.sigmoid: False,
    F.softplus: False,
    F.hardswish: False,
    torch.exp: False,
    torch.abs: False,
    torch.square: False,
    torch.tanh: True,
    F.tanh: True,
    torch.sin: True,
    torch.sinh: True,
    torch.arctan: True,
    torch.atan: True,
    F.softsign: True,
    F.hardtanh: True,
    F.dropout: True,
    operator.neg: True,
    torch.neg: True,
}
_ELEMENTWISE_METHODS: dict[str, bool] = {
    "relu": False,
    "sigmoid": False,
    "exp": False,
    "abs": False,
    "square": False,
    "tanh": True,
    "sin": True,
    "sinh": True,
    "neg": True,
}
_SAME_METHODS = ("contiguous", "clone", "float", "double", "half", "to", "detach")
_ADD = (operator.add, operator.iadd, torch.add, operator.sub, operator.isub, torch.sub)
_MUL = (operator.mul, operator.imul, torch.mul, operator.truediv, operator.itruediv, torch.div)


# Convolutions, pooling and reductions: (number of spatial axes, odd) per module or function.
_CONV_MODULES: dict[type, int] = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}
_CONV_FUNCTIONS: dict[object, int] = {F.conv1d: 1, F.conv2d: 2, F.conv3d: 3}
_ADAPTIVE_MODULES: dict[type, tuple[int, bool]] = {
    nn.AdaptiveAvgPool1d: (1, True),
    nn.AdaptiveAvgPool2d: (2, True),
    nn.AdaptiveAvgPool3d: (3, True),
    nn.AdaptiveMaxPool1d: (1, False),
    nn.AdaptiveMaxPool2d: (2, False),
    nn.AdaptiveMaxPool3d: (3, False),
}
_WINDOW_MODULES: dict[type, tuple[int, bool]] = {
    nn.AvgPool1d: (1, True),
    nn.AvgPool2d: (2, True),
    nn.AvgPool3d: (3, True),
    nn.MaxPool1d: (1, False),
    nn.MaxPool2d: (2, False),
    nn.MaxPool3d: (3, False),
}
_ADAPTIVE_FUNCTIONS: dict[object, tuple[int, bool]] = {
    F.adaptive_avg_pool1d: (1, True),
    F.adaptive_avg_pool2d: (2, True),
    F.adaptive_avg_pool3d: (3, True),
    F.adaptive_max_pool1d: (1, False),
    F.adaptive_max_pool2d: (2, False),
    F.adaptive_max_pool3d: (3, False),
}
_WINDOW_FUNCTIONS: dict[object, tuple[int, bool]] = {
    F.avg_pool1d: (1, True),
    F.avg_pool2d: (2, True),
    F.avg_pool3d: (3, True),
    F.max_pool1d: (1, False),
    F.max_pool2d: (2, False),
    F.max_pool3d: (3, False),
}
_REDUCTIONS: dict[object, bool] = {torch.mean: True, torch.sum: True, torch.amax: False}
_SOFTMAX = (F.softmax, F.log_softmax, torch.softmax, torch.log_softmax)


def _arg(args: list, kwargs: dict, index: int, name: str, default: object = None) -> object:
    """A call argument given by position or by keyword."""
    return args[index] if len(args) > index else kwargs.get(name, default)


class _Tracer:
    """Walks the fx graph once, merging slots; all state for one `trace_module` call."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.slots = _Slots()
        self.params = dict(module.named_parameters())
        self.param_ids = {id(p): name for name, p in self.params.items()}
        self.axes = {
            name: tuple(self.slots.new(f"{name}[{i}]") for i in range(p.dim()))
            for name, p in self.params.items()
        }
        self.used: set[str] = set()
        self.inputs: list[int] = []
        self.outputs: list[int] = []
        self.links: list[tuple[str, str, list[int]]] = []
        self.touches: list[tuple[int, bool, str]] = []  # (slot, odd, what)
        self.kernel: set[int] = set()

    # -- helpers ---------------------------------------------------------------------------
    def fail(self, node: fx.Node, message: str) -> SpecError:
        return SpecError(f"from_module: node {node.name!r} ({node.op} {_target(node)}): {message}")

    def act(self, node: fx.Node, value: object) -> _Act:
        if not isinstance(value, _Act):
            raise self.fail(node, f"expected an activation tensor, got {type(value).__name__}")
        return value

    def param_value(self, node: fx.Node, value: object, rank: int | None = None) -> _Param:
        if not isinstance(value, _Param):
            raise self.fail(node, "expected a parameter of the module (read with get_attr)")
        if rank is not None and len(value.slots) != rank:
            raise self.fail(node, f"expected a parameter with {rank} axes, got {len(value.slots)}")
        return value

    def param(self, node: fx.Node, name: str) -> _Param:
        """A use of a parameter; a second use is weight tying (one tensor, one set of axes)."""
        if name in self.used:
            self.links.append((node.name, f"tied use of {name}", list(self.axes[name])))
        self.used.add(name)
        return _Param(name, self.axes[name])

    def param_of(self, node: fx.Node, tensor: torch.Tensor | None) -> _Param | None:
        if tensor is None:
            return None
        name = self.param_ids.get(id(tensor))
        if name is None:
            raise self.fail(node, "a layer whose weight is not a parameter (a buffer?)")
        return self.param(node, name)

    def elementwise(self, x: _Act, odd: bool, what: str) -> _Act:
        self.touches.append((x.channel, odd, what))
        return x

    # -- layers ----------------------------------------------------------------------------
    def linear(self, node: fx.Node, x: _Act, weight: _Param, bias: _Param | None) -> _Act:
        if x.spatial is None:
            x.spatial = ()
        if x.spatial:
            raise self.fail(
                node,
                f"a linear map of a tensor with {len(x.spatial)} spatial axes acts on its last "
                "(spatial) axis, a different group; flatten after a global pooling first",
            )
        self.slots.union(x.channel, weight.slots[1])
        out = self.slots.touch(weight.slots[0])
        if bias is not None:
            self.slots.union(bias.slots[0], out)
        return _Act(out, ())

    def conv(
        self, node: fx.Node, x: _Act, weight: _Param, bias: _Param | None, dims: int, groups: int
    ) -> _Act:
        if groups != 1:
            raise self.fail(
                node, f"a grouped convolution (groups={groups}) ties channel blocks; refused"
            )
        if x.spatial is None:
            x.spatial = (None,) * dims
        if len(x.spatial) != dims:
            raise self.fail(
                node, f"a {dims}-D convolution of a tensor with {len(x.spatial)} spatial axes"
            )
        self.slots.union(x.channel, weight.slots[1])
        self.kernel.update(weight.slots[2:])
        for s in weight.slots[2:]:
            self.slots.touch(s)
        out = self.slots.touch(weight.slots[0])
        if bias is not None:
            self.slots.union(bias.slots[0], out)
        return _Act(out, (None,) * dims)

    def pool(self, node: fx.Node, x: _Act, size: object, odd: bool, dims: int) -> _Act:
        if x.spatial is None or len(x.spatial) != dims:
            raise self.fail(node, f"a {dims}-D pooling of a tensor without {dims} spatial axes")
        sizes = size if isinstance(size, tuple | list) else (size,) * dims
        spatial = tuple(1 if s == 1 else None for s in sizes)
        return self.elementwise(_Act(x.channel, spatial), odd, _target(node))

    def softmax(self, node: fx.Node, x: _Act, dim: object) -> _Act:
        """(log-)softmax over the channel axis: one permutation of its inputs permutes its
        outputs alike, so the set is kept (not odd)."""
        rank = 2 + len(x.spatial or ())
        if not isinstance(dim, int) or dim % rank != 1:
            raise self.fail(node, f"a softmax over axis {dim}; expected the channel axis 1")
        return self.elementwise(x, False, _target(node))

    def flatten(self, node: fx.Node, x: _Act, start: int, end: int = -1) -> _Act:
        if start != 1 or end != -1:
            raise self.fail(node, f"expected flatten(start_dim=1), got ({start}, {end})")
        if x.spatial is None:
            x.spatial = ()
        if any(s != 1 for s in x.spatial):
            raise self.fail(
                node,
                "a flatten of spatial positions into features ties positions to features, a "
                "different group; pool globally (AdaptiveAvgPool to 1 or a mean over the "
                "spatial axes) before flattening",
            )
        return _Act(x.channel, ())

    def reduce(self, node: fx.Node, x: _Act, dims: object, keep: bool, odd: bool) -> _Act:
        """mean / sum / amax over spatial axes only."""
        if x.spatial is None:
            raise self.fail(node, "a reduction of the input before any layer fixed its rank")
        rank = 2 + len(x.spatial)
        if dims is None:
            raise self.fail(node, "a reduction over every axis (the channel axis too)")
        dims = dims if isinstance(dims, tuple | list) else (dims,)
        axes = {d % rank for d in dims}
        if axes & {0, 1}:
            raise self.fail(node, "a reduction over the batch or channel axis")
        spatial = [1 if 2 + i in axes else s for i, s in enumerate(x.spatial)]
        if not keep:
            spatial = [s for i, s in enumerate(x.spatial) if 2 + i not in axes]
        return self.elementwise(_Act(x.channel, tuple(spatial)), odd, _target(node))

    def merge(self, node: fx.Node, a: _Act, b: _Act, reason: str) -> _Act:
        """One permutation on both operands (a residual link, an elementwise product)."""
        if a.spatial is None:
            a.spatial = b.spatial
        if b.spatial is None:
            b.spatial = a.spatial
        if a.spatial is not None and len(a.spatial) != len(b.spatial or ()):
            raise self.fail(node, "operands with different numbers of spatial axes")
        self.links.append((node.name, reason, [a.channel, b.channel]))
        self.slots.union(a.channel, b.channel)
        spatial = None
        if a.spatial is not None:
            spatial = tuple(
                1 if s == t == 1 else None for s, t in zip(a.spatial, b.spatial, strict=True)
            )
        return _Act(a.channel, spatial)

    # -- nodes -----------------------------------------------------------------------------
    def run(self, graph: fx.Graph) -> None:
        env: dict[str, object] = {}
        for node in graph.nodes:
            args = [_lookup(env, a) for a in node.args]
            kwargs = {k: _lookup(env, v) for k, v in node.kwargs.items()}
            env[node.name] = self.visit(node, args, kwargs)

    def visit(self, node: fx.Node, args: list, kwargs: dict) -> object:
        if node.op == "placeholder":
            slot = self.slots.touch(self.slots.new(f"the input {node.name}"))
            self.inputs.append(slot)
            return _Act(slot, None)
        if node.op == "get_attr":
            if node.target in self.params:
                return self.param(node, node.target)
            raise self.fail(node, "reads a buffer or attribute that is not a parameter")
        if node.op == "output":
            outs = args[0] if isinstance(args[0], tuple | list) else [args[0]]
            for out in outs:
                self.outputs.append(self.act(node, out).channel)
            return None
        if node.op == "call_module":
            return self.call_module(node, self.module.get_submodule(node.target), args, kwargs)
        if node.op == "call_function":
            return self.call_function(node, args, kwargs)
        if node.op == "call_method":
            return self.call_method(node, args, kwargs)
        raise self.fail(node, "an fx node kind this front end does not know")

    def call_module(self, node: fx.Node, sub: nn.Module, args: list, kwargs: dict) -> object:
        kind = type(sub)
        if isinstance(sub, nn.Linear):
            weight, bias = self.param_of(node, sub.weight), self.param_of(node, sub.bias)
            return self.linear(node, self.act(node, args[0]), weight, bias)
        if kind in _CONV_MODULES:
            weight, bias = self.param_of(node, sub.weight), self.param_of(node, sub.bias)
            x = self.act(node, args[0])
            return self.conv(node, x, weight, bias, _CONV_MODULES[kind], sub.groups)
        if kind in _ELEMENTWISE_MODULES and not list(sub.parameters()):
            return self.elementwise(self.act(node, args[0]), _odd_module(sub), kind.__name__)
        if kind in _ADAPTIVE_MODULES or kind in _WINDOW_MODULES:
            dims, odd = _ADAPTIVE_MODULES.get(kind) or _WINDOW_MODULES[kind]
            size = sub.output_size if kind in _ADAPTIVE_MODULES else None
            return self.pool(node, self.act(node, args[0]), size, odd, dims)
        if kind in (nn.Softmax, nn.LogSoftmax):
            return self.softmax(node, self.act(node, args[0]), sub.dim)
        if kind is nn.Flatten:
            return self.flatten(node, self.act(node, args[0]), sub.start_dim, sub.end_dim)
        state = [n for n, _ in sub.named_parameters()] + [n for n, _ in sub.named_buffers()]
        detail = f" with state {', '.join(state)}" if state else ""
        raise self.fail(
            node,
            f"unsupported module {kind.__name__}{detail}: known are Linear, Conv1d/2d/3d, "
            "elementwise activations, dropout, pooling, softmax and Flatten",
        )

    def call_function(self, node: fx.Node, args: list, kwargs: dict) -> object:
        fn = node.target
        if fn in _ELEMENTWISE_FUNCTIONS:
            odd = _ELEMENTWISE_FUNCTIONS[fn]
            return self.elementwise(self.act(node, args[0]), odd, fn.__name__)
        if fn in _ADD:
            return self.add(node, args[0], args[1])
        if fn in _MUL:
            product = fn in (operator.mul, operator.imul, torch.mul)
            return self.multiply(node, args[0], args[1], product)
        if fn is F.linear or fn in _CONV_FUNCTIONS:
            return self.functional_layer(node, fn, args, kwargs)
        if fn in (operator.matmul, torch.matmul):  # x @ W: W is [in, out]
            weight = self.param_value(node, args[1], 2)
            flipped = _Param(weight.name, weight.slots[::-1])
            return self.linear(node, self.act(node, args[0]), flipped, None)
        if fn in _ADAPTIVE_FUNCTIONS or fn in _WINDOW_FUNCTIONS:
            dims, odd = _ADAPTIVE_FUNCTIONS.get(fn) or _WINDOW_FUNCTIONS[fn]
            size = _arg(args, kwargs, 1, "output_size") if fn in _ADAPTIVE_FUNCTIONS else None
            return self.pool(node, self.act(node, args[0]), size, odd, dims)
        if fn in _SOFTMAX:
            return self.softmax(node, self.act(node, args[0]), _arg(args, kwargs, 1, "dim"))
        if fn is torch.flatten:
            start, end = _arg(args, kwargs, 1, "start_dim", 0), _arg(args, kwargs, 2, "end_dim", -1)
            return self.flatten(node, self.act(node, args[0]), start, end)
        if fn in _REDUCTIONS:
            dims, keep = _arg(args, kwargs, 1, "dim"), _arg(args, kwargs, 2, "keepdim", False)
            return self.reduce(node, self.act(node, args[0]), dims, keep, _REDUCTIONS[fn])
        return self.attribute(node, fn, args)

    def functional_layer(self, node: fx.Node, fn: object, args: list, kwargs: dict) -> _Act:
        """F.linear(x, W, b) and F.convNd(x, W, b, ..., groups)."""
        dims = _CONV_FUNCTIONS.get(fn)
        weight = self.param_value(node, args[1], 2 if dims is None else 2 + dims)
        bias = _arg(args, kwargs, 2, "bias")
        bias = self.param_value(node, bias, 1) if bias is not None else None
        x = self.act(node, args[0])
        if dims is None:
            return self.linear(node, x, weight, bias)
        return self.conv(node, x, weight, bias, dims, _arg(args, kwargs, 6, "groups", 1))

    def attribute(self, node: fx.Node, fn: object, args: list) -> object:
        """getattr / getitem: a transposed parameter (`W.T`) or a size; nothing else."""
        if fn is getattr and isinstance(args[0], _Param) and args[1] in ("T", "mT"):
            return self.transposed(node, args[0])
        if fn is getattr and args[1] in ("shape", "ndim", "dtype", "device"):
            return _OPAQUE
        if fn is operator.getitem and isinstance(args[0], _Opaque):
            return _OPAQUE
        raise self.fail(node, "an operation this front end does not know")

    def call_method(self, node: fx.Node, args: list, kwargs: dict) -> object:
        name, this = node.target, args[0]
        if name in ("size", "dim"):
            return _OPAQUE
        if name in _SAME_METHODS:
            return this
        if isinstance(this, _Param) and name in ("t", "transpose"):
            return self.transposed(node, this)
        if name in _ELEMENTWISE_METHODS:
            return self.elementwise(self.act(node, this), _ELEMENTWISE_METHODS[name], name)
        if name in ("add", "add_", "sub", "sub_"):
            return self.add(node, this, args[1])
        if name in ("mul", "mul_", "div", "div_"):
            return self.multiply(node, this, args[1], name.startswith("mul"))
        if name == "flatten":
            start, end = _arg(args, kwargs, 1, "start_dim", 0), _arg(args, kwargs, 2, "end_dim", -1)
            return self.flatten(node, self.act(node, this), start, end)
        if name in ("view", "reshape") and _flat_view(args[1:]):  # x.view(x.size(0), -1)
            return self.flatten(node, self.act(node, this), 1)
        if name in ("mean", "sum", "amax"):
            dims, keep = _arg(args, kwargs, 1, "dim"), _arg(args, kwargs, 2, "keepdim", False)
            return self.reduce(node, self.act(node, this), dims, keep, name != "amax")
        if name in ("softmax", "log_softmax"):
            return self.softmax(node, self.act(node, this), _arg(args, kwargs, 1, "dim"))
        if name == "squeeze":
            return self.squeeze(node, self.act(node, this), args[1:] or [kwargs.get("dim")])
        raise self.fail(node, "a tensor method this front end does not know")

    def transposed(self, node: fx.Node, weight: _Param) -> _Param:
        if len(weight.slots) != 2:
            raise self.fail(node, "a transpose of a parameter with other than two axes")
        return _Param(weight.name, weight.slots[::-1])

    def squeeze(self, node: fx.Node, x: _Act, dims: list) -> _Act:
        if x.spatial is None:
            raise self.fail(node, "a squeeze of the input before any layer fixed its rank")
        rank = 2 + len(x.spatial)
        drop = {i for i in range(len(x.spatial)) if x.spatial[i] == 1}
        if dims != [None]:
            flat = [d for ds in dims for d in (ds if isinstance(ds, tuple | list) else (ds,))]
            drop = {d % rank - 2 for d in flat}
        if any(i < 0 or x.spatial[i] != 1 for i in drop):
            raise self.fail(node, "a squeeze of an axis that is not a pooled spatial axis")
        return _Act(x.channel, tuple(s for i, s in enumerate(x.spatial) if i not in drop))

    def add(self, node: fx.Node, a: object, b: object) -> _Act:
        if isinstance(a, _Act) and isinstance(b, _Act):
            return self.merge(node, a, b, "residual addition")
        if isinstance(a, int | float) or isinstance(b, int | float):
            x, c = (a, b) if isinstance(a, _Act) else (b, a)
            return self.elementwise(self.act(node, x), c == 0, "addition of a constant")
        if isinstance(a, _Act) and isinstance(b, _Param) and len(b.slots) == 1 and not a.spatial:
            a.spatial = a.spatial or ()
            self.slots.union(b.slots[0], a.channel)
            return a
        raise self.fail(node, "an addition that is neither of two activations nor of a constant")

    def multiply(self, node: fx.Node, a: object, b: object, product: bool) -> _Act:
        if isinstance(a, _Act) and isinstance(b, int | float):
            return a
        if product and isinstance(b, _Act) and isinstance(a, int | float):
            return b
        if product and isinstance(a, _Act) and isinstance(b, _Act):
            merged = self.merge(node, a, b, "elementwise product")
            return self.elementwise(merged, False, "elementwise product")
        raise self.fail(node, "a product or quotient that is not by a constant")


def _flat_view(sizes: list) -> bool:
    """`view(B, -1)`, `view(x.size(0), -1)`, `view(-1, C)`: two sizes, one of them -1 or a
    size read off the tensor (a flatten to [B, features]; `flatten` checks the rest)."""
    if len(sizes) == 1 and isinstance(sizes[0], tuple | list):
        sizes = list(sizes[0])
    unknown = [s for s in sizes if isinstance(s, _Opaque) or s == -1]
    return len(sizes) == 2 and len(unknown) >= 1


def _lookup(env: dict[str, object], value: object) -> object:
    if isinstance(value, fx.Node):
        return env[value.name]
    if isinstance(value, tuple | list):
        return type(value)(_lookup(env, v) for v in value)
    return value


def _target(node: fx.Node) -> str:
    target = node.target
    return getattr(target, "__name__", None) or str(target)


def _odd_module(sub: nn.Module) -> bool:
    if isinstance(sub, nn.Hardtanh):
        return sub.min_val == -sub.max_val
    return _ELEMENTWISE_MODULES[type(sub)]


# -- the space -------------------------------------------------------------------------------
def _tensor_names(parameters: Iterable[str]) -> dict[str, str]:
    """Parameter name -> tensor identifier (`conv1.weight` -> `conv1_weight`, `0.weight` ->
    `p0_weight`), made distinct."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for name in parameters:
        ident = re.sub(r"\W", "_", name)
        if not re.match(r"[A-Za-z_]", ident):
            ident = f"p{ident}"
        candidate, k = ident, 1
        while candidate in taken:
            k += 1
            candidate = f"{ident}_{k}"
        taken.add(candidate)
        out[name] = candidate
    return out


def _mlp_space(space: WeightSpace) -> WeightSpace | None:
    """`mlp(dims, mode)` when the space is an MLP's up to names, else None."""
    tensors = space.tensors
    if len(tensors) % 2 or any(len(t.axes) != 2 - i % 2 for i, t in enumerate(tensors)):
        return None
    chain = [tensors[0].axes[1]]
    for w, b in zip(tensors[::2], tensors[1::2], strict=True):
        if w.axes[1] != chain[-1] or b.axes != (w.axes[0],):
            return None
        chain.append(w.axes[0])
    if len(set(chain)) != len(chain) or len(chain) != len(space.sets):
        return None
    dims = tuple(space.set(s).size for s in chain)
    kinds = tuple(space.set(s).kind for s in chain)
    for mode in MODES:
        candidate = mlp(dims, mode)
        if tuple(s.kind for s in candidate.sets) == kinds:
            return candidate
    return None


def _kinds(tracer: _Tracer, mode: str, roots: list[int]) -> tuple[dict[int, Kind], dict[int, str]]:
    """Kind per channel class; for classes left permuted in signed mode, the reason."""
    slots = tracer.slots
    ends = {slots.find(s) for s in tracer.inputs + tracer.outputs}
    not_odd: dict[int, str] = {}
    for slot, odd, what in tracer.touches:
        if not odd:
            not_odd.setdefault(slots.find(slot), what)
    kinds, reasons = {}, {}
    for root in roots:
        if root in ends:
            kinds[root] = Kind.PERMUTED if mode == "all" else Kind.FIXED
        elif mode == "signed" and root not in not_odd:
            kinds[root] = Kind.SIGNED
        else:
            kinds[root] = Kind.PERMUTED
            if mode == "signed":
                reasons[root] = not_odd[root]
    return kinds, reasons


def trace_module(module: nn.Module, symmetry: str = "hidden") -> ModuleTrace:
    """Trace `module` and derive its weight space (see the module docstring)."""
    mode = parse_mode(symmetry)
    if not isinstance(module, nn.Module):
        raise SpecError(f"from_module expects a torch.nn.Module, got {type(module).__name__}")
    tracer = _Tracer(module)
    for name, p in tracer.params.items():
        if p.dim() == 0:
            raise SpecError(f"from_module: parameter {name!r} is a scalar; expected 1 or more axes")
    buffers = [n for n, _ in module.named_buffers()]
    if buffers:
        raise SpecError(
            f"from_module: the module carries buffers ({', '.join(buffers)}), state that a "
            "permutation of its parameters would not move; refused"
        )
    graph = _graph(module)
    tracer.run(graph)
    unused = [n for n in tracer.params if n not in tracer.used]
    if unused:
        raise SpecError(f"from_module: parameters never used by forward: {', '.join(unused)}")
    if not tracer.params:
        raise SpecError("from_module: the module has no parameters")
    return _assemble(tracer, mode)


def _graph(module: nn.Module) -> fx.Graph:
    try:
        traced = fx.symbolic_trace(module)
    except Exception as e:  # torch.fx raises many types: data-dependent control flow, ...
        raise SpecError(
            f"from_module: torch.fx cannot trace {type(module).__name__} ({type(e).__name__}: "
            f"{e}); a data-dependent branch or an operation fx cannot follow"
        ) from None
    traced.graph.eliminate_dead_code()
    return traced.graph


def _assemble(tracer: _Tracer, mode: str) -> ModuleTrace:
    slots = tracer.slots
    params = tracer.params
    param_slots = [s for name in params for s in tracer.axes[name]]
    kernel_roots = {slots.find(s) for s in tracer.kernel}
    roots = list(dict.fromkeys(slots.find(s) for s in param_slots))
    channel = sorted((r for r in roots if r not in kernel_roots), key=lambda r: _first(slots, r))
    kernel = sorted(kernel_roots, key=lambda r: _first(slots, r))
    kinds, reasons = _kinds(tracer, mode, channel)
    set_name = {r: f"n{i}" for i, r in enumerate(channel)}
    set_name |= {r: f"k{i}" for i, r in enumerate(kernel, start=1)}
    sizes = {}
    for name, p in params.items():
        for s, size in zip(tracer.axes[name], p.shape, strict=True):
            sizes.setdefault(slots.find(s), int(size))
    sets = [NeuronSet(set_name[r], sizes[r], kinds.get(r, Kind.FIXED)) for r in channel + kernel]
    names = _tensor_names(params)
    tensors = [
        Tensor(names[n], tuple(set_name[slots.find(s)] for s in tracer.axes[n])) for n in params
    ]
    space = WeightSpace(tuple(sets), tuple(tensors))
    pairs = tuple((names[n], n) for n in params)
    as_mlp = _mlp_space(space)
    if as_mlp is not None:
        renamed = dict(
            zip([t.name for t in space.tensors], [t.name for t in as_mlp.tensors], strict=True)
        )
        pairs = tuple((renamed[t], n) for t, n in pairs)
        matching = [m for m in MODES if mlp(_dims(as_mlp), m) == as_mlp]
        effective = mode if mode in matching else matching[0]
        return ModuleTrace(as_mlp, effective, pairs)
    links = tuple(
        Link(
            node, reason, set_name.get(slots.find(ops[0]), "?"), tuple(slots.names[s] for s in ops)
        )
        for node, reason, ops in tracer.links
    )
    not_odd = tuple((set_name[r], what) for r, what in reasons.items())
    return ModuleTrace(space, mode, pairs, links, not_odd)


def _dims(space: WeightSpace) -> tuple[int, ...]:
    return tuple(s.size for s in space.sets)


def _first(slots: _Slots, root: int) -> int:
    """When the trace first touched any slot of a class (untouched slots last, by index)."""
    members = [s for s in range(len(slots.parent)) if slots.find(s) == root]
    touched = [slots.seen[s] for s in members if slots.seen[s] >= 0]
    return min(touched) if touched else len(slots.parent) + min(members)


def from_module(module: nn.Module, symmetry: str = "hidden") -> WeightSpace:
    """The weight space of `module` under `symmetry` (hidden, all, signed; see trace_module)."""
    return trace_module(module, symmetry).space
