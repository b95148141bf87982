"""The weight space of a `torch.nn.Module`, derived by tracing it with torch.fx.

`trace_module(module, symmetry)` runs the module's fx graph once on an example input with
a `torch.fx.Interpreter` (torch's `passes/shape_prop.py` does the same to record shapes)
and gives every axis of every tensor it meets a *layout* (`layout.py`): which slots the axis
carries. Each call is handled by its entry in the op table (`ops.py`), which merges, with
union-find, the slots that one permutation must move together:

- the input axis of a layer and the axis of the activation it reads, so one layer's output
  axis with the next layer's input axis, and a bias with its weight's output axis;
- the operands of an addition of two activations (a residual link) or of an elementwise
  product;
- the uses of a parameter applied in several places (weight tying): one tensor, one set of
  axes, however often it is called.

Because the trace runs on real tensors every size is known: a size-1 axis broadcast over a
set stays its own fixed set of size 1, and a merge of unequal sizes is refused naming the
node. Kernel, spatial and token positions that an operation treats by position are fixed
sets. A concatenation of channels makes the joined set the disjoint union of its parts and
the next weight reading it is split into one tensor per part; a flatten of positions into
features makes the next Linear's input axis a channel set times fixed positions. A space
tensor is therefore a view of one entry of the module's `state_dict()` (a parameter or a
buffer such as a running mean): a slice along some axes, reshaped (`TensorSource`).

The group is the product over the merged sets: in mode `hidden` the sets touching the
network's input or output are fixed, in `all` every set but positions is permuted, in
`signed` a hidden set is signed where every operation touching it is odd and permuted
otherwise. The trace also records which hidden sets have an exact sign symmetry and which an
exact positive-scale symmetry (`sign_sets`, `scale_sets`), for canonicalisation.

What cannot be derived exactly is refused with a `SpecError` naming the fx node: a layer not
in the op table, a data-dependent branch (torch.fx cannot trace it), a merge of different
sizes. `check=True` (the default of `from_module`) then checks the space against the module
itself (`module_check.py`): shapes against the state, and random group elements applied to
the state leave the module's outputs unchanged. A module whose space is an MLP's gets
exactly `mlp(dims, mode)` (tensors W1, b1, ..., sets n0..nM); any other gets tensors named
from its state names and channel sets n0, n1, ... in the order the trace meets them (fixed
position sets k1, k2, ...).
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn
from torch.nn.utils import parametrize

from ..spec import MODES, Kind, NeuronSet, SpecError, Tensor, WeightSpace, mlp, parse_mode
from .inputs import batch_axis, example_inputs
from .layout import (
    FIXED_FLAGS,
    Axis,
    Factor,
    LayoutError,
    Slots,
    axis_size,
    part_size,
    shape_of,
    single,
)
from .ops import lookup
from .values import Call, Stacked, Traced

__all__ = ["Link", "ModuleTrace", "TensorSource", "from_module", "trace_module"]

# Inputs made from the first layer that run the module, tried in turn until one traces.
MAX_EXAMPLE_TRIES = 4


# An input or output tensor's layout by set names: per axis, per concatenated part, per
# factor, (the factor's set, or None for the batch and positions; its size).
End = tuple[tuple[tuple[tuple[str | None, int], ...], ...], ...]
# A stacked output (final states of a multi-layer recurrent net): one End per entry.
STACKED = "stacked"
StackedEnd = tuple[str, tuple[End, ...]]


@dataclass(frozen=True)
class Link:
    """One merge the trace made: at fx node `node`, `reason` forced the axes `axes`
    (descriptions such as `fc1.weight[1]`) onto one set, `set`."""

    node: str
    reason: str
    set: str
    axes: tuple[str, ...]


@dataclass(frozen=True)
class TensorSource:
    """Where a tensor of the space lives in the module: entry `state` of `state_dict()`, the
    range `index[i] = (start, stop)` of each of its axes, viewed as `shape`."""

    state: str
    index: tuple[tuple[int, int], ...]
    shape: tuple[int, ...]

    def read(self, value: torch.Tensor) -> torch.Tensor:
        """This tensor of the space, from the state entry's value (a view where possible)."""
        for axis, (start, stop) in enumerate(self.index):
            value = value.narrow(axis, start, stop - start)
        return value.reshape(self.shape)

    def write(self, target: torch.Tensor, value: torch.Tensor) -> None:
        """Write this tensor of the space into the state entry `target`, in place."""
        region = target
        for axis, (start, stop) in enumerate(self.index):
            region = region.narrow(axis, start, stop - start)
        region.copy_(value.reshape(region.shape))

    @property
    def whole(self) -> bool:
        return len(self.index) == len(self.shape) and all(
            stop - start == size for (start, stop), size in zip(self.index, self.shape, strict=True)
        )


@dataclass(frozen=True)
class ModuleTrace:
    """The derived space with what it was derived from.

    `sources` maps each tensor of the space to its place in the module's state (and
    `parameters` to the state entry's name); `links` lists the residual links, products and
    tied uses that merged sets; `not_odd` names, per hidden set that stayed permuted in
    `signed` mode, the first operation that is not odd. `sign_sets` and `scale_sets` are the
    hidden sets with an exact sign-flip and positive-scale symmetry; `scale_roles` gives per
    tensor the exponent of a set's scale on each axis (+1 on a layer's output axis and bias,
    -1 on its input axis, 0 elsewhere). `declared` names the fixed sets the module might let
    move (a declared subgroup, or an axis a constant meets). `inputs` and `outputs` give, per
    input and output tensor, per axis, the sets of its factors (None for the batch and for
    positions);
    `example` is the input the trace ran on; `notes` say where the derived group is a
    declared subgroup of the module's symmetry."""

    space: WeightSpace
    mode: str
    parameters: tuple[tuple[str, str], ...]
    links: tuple[Link, ...] = ()
    not_odd: tuple[tuple[str, str], ...] = ()
    sources: tuple[tuple[str, TensorSource], ...] = ()
    sign_sets: tuple[str, ...] = ()
    scale_sets: tuple[str, ...] = ()
    scale_roles: tuple[tuple[str, tuple[int, ...]], ...] = ()
    inputs: tuple[End, ...] = ()
    outputs: tuple[End, ...] = ()
    declared: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    example: tuple = field(default=(), compare=False, repr=False)

    def parameter_of(self, tensor: str) -> str:
        return dict(self.parameters)[tensor]

    def source_of(self, tensor: str) -> TensorSource:
        return dict(self.sources)[tensor]

    @property
    def states(self) -> tuple[str, ...]:
        """The state entries the space covers, in order."""
        return tuple(dict.fromkeys(s.state for _, s in self.sources))


# -- the tracer ------------------------------------------------------------------------------
def _aliases(graph_module: fx.GraphModule, state: dict[str, torch.Tensor]) -> dict[str, str]:
    """Other names of a state tensor (a weight tied by assignment, `head.weight =
    emb.weight`): each maps to the name `state` holds it under."""
    canonical = {id(t): name for name, t in state.items()}
    named = [
        *graph_module.named_parameters(remove_duplicate=False),
        *graph_module.named_buffers(remove_duplicate=False),
    ]
    out = {}
    for qualified, tensor in named:
        name = qualified.removeprefix(f"{ROOT_NAME}.")
        if name not in state and id(tensor) in canonical:
            out[name] = canonical[id(tensor)]
    return out


class Tracer(fx.Interpreter):
    """Runs the graph once on the example input, computing every value's layout."""

    def __init__(
        self, graph_module: fx.GraphModule, state: dict[str, torch.Tensor], batch: int = 0
    ) -> None:
        super().__init__(graph_module, garbage_collect_values=False)
        self.batch = batch  # the batch axis of the inputs
        self.slots = Slots()
        self.state = state
        self.aliases = _aliases(graph_module, state)
        self.state_layouts: dict[str, tuple[Axis, ...]] = {
            name: tuple(
                single(self.slots.new(f"{name}[{i}]", size, "state"), size)
                for i, size in enumerate(value.shape)
            )
            for name, value in state.items()
        }
        self.used: list[str] = []
        self.links: list[tuple[str, str, list[tuple[Axis, ...]]]] = []
        self.touches: list[tuple[int, bool, bool, str]] = []
        self.roles: dict[int, int] = {}
        self.inputs: list[tuple[Axis, ...]] = []
        self.result: list[Any] = []  # the graph's output tensors, for comparison with forward
        self.outputs: list[tuple[str | None, object]] = []  # (None, layout) | (STACKED, entries)
        self.notes: list[str] = []
        self.node: fx.Node | None = None

    # -- helpers for the op handlers -------------------------------------------------------
    def fail(self, call: Call | None, message: str) -> SpecError:
        node = call.node if call is not None else self.node
        where = f"node {node.name!r} ({node.op} {_target_name(node)})" if node is not None else ""
        return SpecError(f"from_module: {where}: {message}")

    def tensor_arg(self, call: Call, index: int) -> Traced:
        value = call.args[index] if len(call.args) > index else None
        if not isinstance(value, Traced):
            raise self.fail(
                call, f"expected a traced tensor as operand {index}, got {type(value).__name__}"
            )
        return value

    def state_arg(self, call: Call, index: int, rank: int | None = None) -> Traced:
        value = call.args[index] if len(call.args) > index else None
        if value is None:
            names = {1: "weight", 2: "bias"}
            value = call.kwargs.get(names.get(index, ""))
        if not isinstance(value, Traced) or value.state is None:
            raise self.fail(call, "expected a parameter of the module (read with get_attr)")
        if rank is not None and len(value.layout) != rank:
            raise self.fail(call, f"expected a parameter with {rank} axes, got {len(value.layout)}")
        return value

    def module_state(self, call: Call, attribute: str) -> Traced | None:
        """The parameter or buffer `attribute` of the called module, as a traced read."""
        tensor = getattr(call.target, attribute, None)
        if tensor is None:
            return None
        name = self.state_name(f"{call.node.target}.{attribute}")
        if name not in self.state:
            if parametrize.is_parametrized(call.target, attribute):
                raise self.fail(
                    call,
                    f"{name} is computed by a parametrization (weight_norm, spectral_norm, ...): "
                    "remove it first (torch.nn.utils.parametrize.remove_parametrizations)",
                )
            raise self.fail(call, f"{name} is not a parameter or floating-point buffer")
        return self.read_state(call.node, name)

    def state_name(self, qualified: str) -> str:
        """A graph's qualified name as the module's own state names it (a module traced as one
        call is wrapped as `ROOT_NAME`, which its own names do not carry)."""
        name = qualified.removeprefix(f"{ROOT_NAME}.")
        return self.aliases.get(name, name)

    def read_state(self, node: fx.Node, name: str) -> Traced:
        name = self.state_name(name)
        if name in self.used:
            self.links.append((node.name, f"tied use of {name}", [self.state_layouts[name]]))
        else:
            self.used.append(name)
        return Traced(self.state[name], self.state_layouts[name], name)

    def fresh(self, name: str, size: int, *flags: str) -> Axis:
        return self.slots.axis(name, size, *flags)

    def _leaves(self, layout: Iterable[Axis]) -> list[int]:
        return [f.slot for axis in layout for part in self.slots.expand(axis) for f in part]

    def meet(self, axis: Axis) -> None:
        """Record when the trace first met these slots (sets are numbered in that order)."""
        for slot in self._leaves([axis]):
            self.slots.touch(slot)

    def positional(self, layout: Iterable[Axis]) -> None:
        for slot in self._leaves(layout):
            self.slots.flag(slot, "positional")

    def broadcast(self, axis: Axis) -> None:
        for slot in self._leaves([axis]):
            self.slots.flag(slot, "broadcast")

    def pin(self, axis: Axis, why: str) -> None:
        for slot in self._leaves([axis]):
            self.slots.flag(slot, "pinned")
        self.notes.append(f"fixed by {why}")

    def bind(self, call: Call, own: Axis, activation: Axis) -> None:
        """A parameter axis reads (or writes) an activation axis: it takes that axis's layout,
        cut into the same pieces, and every piece merges with the activation's."""
        try:
            own_x, act_x = self.slots.expand(own), self.slots.expand(activation)
            if shape_of(own_x) != shape_of(act_x) and len(own_x) == 1 and len(own_x[0]) == 1:
                shape = [tuple(f.size for f in part) for part in act_x]
                self.slots.split_slot(own_x[0][0].slot, shape)
            self.slots.merge_axes(own, activation)
        except LayoutError as e:
            raise self.fail(call, str(e)) from None

    def blocks(self, call: Call, axis: Axis, groups: int) -> Axis:
        """The axis as `groups` blocks: one part of two factors, (block, position inside
        it), the position nested in the block (its permutation may differ block by block).
        An axis already cut so is reused; cut another way, it is refused."""
        layout = self.slots.expand(axis)
        size = axis_size(layout)
        if len(layout) != 1 or size % groups:
            raise self.fail(call, f"{groups} groups of an axis of {shape_of(layout)} channels")
        part = layout[0]
        try:
            if len(part) == 1:
                head, tail = self.slots.split_slot(part[0].slot, [(groups, size // groups)])[0]
            elif len(part) == 2 and part[0].size == groups:
                head, tail = part
            else:
                raise LayoutError(
                    f"{groups} groups of channels already cut into {shape_of(layout)}"
                )
            self.slots.nest(tail.slot, head.slot)
        except LayoutError as e:
            raise self.fail(call, str(e)) from None
        return ((head, tail),)

    def role(self, value: Traced, exponents: Sequence[int]) -> None:
        for axis, exponent in zip(value.layout, exponents, strict=True):
            for slot in self._leaves([axis]):
                self.roles.setdefault(slot, exponent)

    def touch(self, layout: Iterable[Axis], odd: bool, homogeneous: bool, what: str) -> None:
        for slot in self._leaves(layout):
            self.touches.append((slot, odd, homogeneous, what))

    def link(self, call: Call, reason: str, layouts: list[tuple[Axis, ...]]) -> None:
        self.links.append((call.node.name, reason, layouts))

    def cut(self, axis: Axis, sizes: list[int], where: str) -> list[Axis]:
        """The axis cut into consecutive ranges of the given sizes (zero sizes allowed): each
        range's layout, cutting slots where a boundary falls inside one."""
        total = axis_size(axis)
        if sum(sizes) != total:
            raise LayoutError(f"cannot cut an axis of size {total} into {sizes}")
        bounds = set()
        position = 0
        for s in sizes[:-1]:
            position += s
            if 0 < position < total:
                bounds.add(position)
        start = 0
        for part in self.slots.expand(axis):
            size = part_size(part)
            inner = sorted(b - start for b in bounds if start < b < start + size)
            if inner:
                trailing = math.prod(f.size for f in part[1:])
                if any(b % trailing for b in inner):
                    raise LayoutError(
                        f"a cut at {inner} inside a product of sizes {[f.size for f in part]} "
                        f"(at {where})"
                    )
                edges = [0] + [b // trailing for b in inner] + [part[0].size]
                pieces = [(edges[i + 1] - edges[i],) for i in range(len(edges) - 1)]
                self.slots.split_slot(part[0].slot, pieces)
            start += size
        parts = list(self.slots.expand(axis))
        out: list[Axis] = []
        position = 0
        for s in sizes:
            taken: list = []
            while s > 0:
                part = parts.pop(0)
                taken.append(part)
                s -= part_size(part)
            out.append(tuple(taken))
        return out

    def reshape(self, x: Traced, out_shape: tuple[int, ...], where: str) -> tuple[Axis, ...]:
        """The layout of x viewed as `out_shape` (see `_reshape` in ops.py)."""
        in_axes = [(i, a) for i, a in enumerate(x.layout) if x.shape[i] != 1]
        # Size-1 axes that carry a set (a one-channel map) keep it where the result has a
        # size-1 axis, in order; the others were positions or broadcasts.
        ones = [a for i, a in enumerate(x.layout) if x.shape[i] == 1 and self._is_set(a)]
        kept = ones[: sum(1 for s in out_shape if s == 1)]
        for a in ones[len(kept) :]:
            self.touch([a], False, False, "a squeezed axis")
        out_real = [j for j, s in enumerate(out_shape) if s != 1]
        groups = _groups([x.shape[i] for i, _ in in_axes], [out_shape[j] for j in out_real])
        layout: dict[int, Axis] = {}
        for gi, gj in groups:
            axes = [in_axes[k][1] for k in gi]
            sizes = [out_shape[out_real[k]] for k in gj]
            if len(axes) == 1 and len(sizes) == 1:
                layout[out_real[gj[0]]] = axes[0]
                continue
            atoms: list[Factor] = []
            for a in axes:
                expanded = self.slots.expand(a)
                if len(expanded) != 1:
                    raise LayoutError(
                        f"a reshape that joins concatenated pieces {shape_of(expanded)} with "
                        "other axes"
                    )
                atoms += [f for f in expanded[0] if f.size != 1]
            for k, size in zip(gj, sizes, strict=True):
                run: list[Factor] = []
                acc = 1
                while acc < size:
                    atom = atoms.pop(0)
                    if size % (acc * atom.size) == 0:
                        run.append(atom)
                        acc *= atom.size
                        continue
                    need = size // acc
                    if atom.size % need:
                        raise LayoutError(f"a reshape that cuts {atom.size} into pieces of {need}")
                    pieces = self.slots.split_slot(atom.slot, [(need, atom.size // need)])
                    head, tail = pieces[0][0], pieces[0][1]
                    run.append(head)
                    acc *= need
                    atoms.insert(0, tail)
                layout[out_real[k]] = (tuple(run),)
        result = []
        for j, size in enumerate(out_shape):
            if size == 1:
                result.append(
                    kept.pop(0) if kept else self.fresh(f"size-1 axis of {where}", 1, "broadcast")
                )
            else:
                result.append(layout[j])
        return tuple(result)

    def _is_set(self, axis: Axis) -> bool:
        """Whether an axis may carry a neuron set (not positions, the batch or a broadcast)."""
        free = {"positional", "broadcast", "batch"}
        return not any(self.slots.has(s, f) for s in self._leaves([axis]) for f in free)

    # -- fx.Interpreter ---------------------------------------------------------------------
    def run_node(self, n: fx.Node) -> Any:
        self.node = n
        return super().run_node(n)

    def placeholder(self, target: Any, args: tuple, kwargs: dict) -> Any:
        value = super().placeholder(target, args, kwargs)
        if not isinstance(value, torch.Tensor):
            return value
        layout = [
            self.fresh(f"the batch of {target}", size, "batch")
            if i == self.batch
            else self.fresh(f"axis {i} of the input {target}", size, "input")
            for i, size in enumerate(value.shape)
        ]
        self.inputs.append(tuple(layout))
        return Traced(value, tuple(layout))

    def get_attr(self, target: Any, args: tuple, kwargs: dict) -> Any:
        value = super().get_attr(target, args, kwargs)
        if target in self.state:
            return self.read_state(self.node, target)
        return value  # a constant (not a parameter or floating-point buffer)

    def call_module(self, target: Any, args: tuple, kwargs: dict) -> Any:
        module = self.fetch_attr(target)
        op = lookup("call_module", module)
        if op is None:
            state = [n for n, _ in module.named_parameters()] + [
                n for n, _ in module.named_buffers()
            ]
            detail = f" with state {', '.join(state)}" if state else ""
            raise self.fail(
                None,
                f"unsupported module {type(module).__name__}{detail} (the supported layers are "
                "listed in the README)",
            )
        out = module(*_real(args), **_real(kwargs))
        return op.handler(self, Call(self.node, module, args, kwargs, out))

    def call_function(self, target: Any, args: tuple, kwargs: dict) -> Any:
        out = target(*_real(args), **_real(kwargs))
        if not _any_traced((args, kwargs)):
            return out
        op = lookup("call_function", target)
        if op is None:
            raise self.fail(None, f"an operation this front end does not know ({_name(target)})")
        return op.handler(self, Call(self.node, target, args, kwargs, out))

    def call_method(self, target: Any, args: tuple, kwargs: dict) -> Any:
        this = _real(args[0])
        out = getattr(this, target)(*_real(args[1:]), **_real(kwargs))
        if not _any_traced((args, kwargs)):
            return out
        op = lookup("call_method", target)
        if op is None:
            raise self.fail(None, f"a tensor method this front end does not know ({target})")
        return op.handler(self, Call(self.node, target, args, kwargs, out))

    def output(self, target: Any, args: tuple, kwargs: dict) -> Any:
        """Every output tensor, in the order `_leaves_of` walks them, with its layout (a
        stacked one with a layout per entry); their sets touch the network's output."""
        self.result = _leaves_of(args[0])
        for item in self.result:
            if isinstance(item, Traced):
                layouts = [item.layout]
                self.outputs.append((None, item.layout))
            elif isinstance(item, Stacked):
                layouts = list(item.entries)
                self.outputs.append((STACKED, item.entries))
            elif isinstance(item, torch.Tensor):
                raise self.fail(None, "an output tensor that does not depend on the input")
            else:
                continue
            for layout in layouts:
                for slot in self._leaves(layout):
                    self.slots.flag(slot, "output")
        return _real(args[0])


def _leaves_of(value: Any) -> list[Any]:
    """The tensors (traced or not) of a nested output, depth first, in order."""
    if isinstance(value, tuple | list):
        return [leaf for item in value for leaf in _leaves_of(item)]
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves_of(item)]
    return [value] if isinstance(value, Traced | Stacked | torch.Tensor) else []


def _real(value: Any) -> Any:
    if isinstance(value, Traced | Stacked):
        return value.tensor
    if isinstance(value, tuple):
        return tuple(_real(v) for v in value)
    if isinstance(value, list):
        return [_real(v) for v in value]
    if isinstance(value, dict):
        return {k: _real(v) for k, v in value.items()}
    return value


def _any_traced(value: Any) -> bool:
    if isinstance(value, Traced | Stacked):
        return True
    if isinstance(value, tuple | list):
        return any(_any_traced(v) for v in value)
    if isinstance(value, dict):
        return any(_any_traced(v) for v in value.values())
    return False


def _name(target: Any) -> str:
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__name__", None) or str(target)
    return f"{module}.{name}" if module and not module.startswith("_operator") else name


def _target_name(node: fx.Node) -> str:
    target = node.target
    return getattr(target, "__name__", None) or str(target)


def _groups(a: list[int], b: list[int]) -> list[tuple[list[int], list[int]]]:
    """Runs of axes of two shapes (no size-1 axes) with equal products, in order."""
    groups = []
    i = j = 0
    while i < len(a) and j < len(b):
        gi, gj = [i], [j]
        pa, pb = a[i], b[j]
        i, j = i + 1, j + 1
        while pa != pb:
            if pa < pb:
                if i >= len(a):
                    raise LayoutError(f"a reshape of {a} into {b}")
                pa *= a[i]
                gi.append(i)
                i += 1
            else:
                if j >= len(b):
                    raise LayoutError(f"a reshape of {a} into {b}")
                pb *= b[j]
                gj.append(j)
                j += 1
        groups.append((gi, gj))
    if i != len(a) or j != len(b):
        raise LayoutError(f"a reshape of {a} into {b}")
    return groups


# -- the graph ------------------------------------------------------------------------------
class _LeafTracer(fx.Tracer):
    """torch.fx's tracer, with every module the op table knows kept as one call."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if lookup("call_module", m) is not None:
            return True
        return super().is_leaf_module(m, module_qualified_name)


class _ConcreteProxy(fx.Proxy):
    """A proxy that knows the value its node takes on the example input: shapes, sizes,
    dtypes and devices read from it are plain Python values (`x.shape[1]` is an int), so
    `torch.ones(t, t)` or `torch.arange(x.size(1))` trace, fixed to the example's sizes.
    Control flow on a tensor's data (`if x.sum() > 0`) stays untraceable."""

    _PLAIN = frozenset({"shape", "dtype", "device", "ndim", "is_cuda", "layout"})
    _SIZES = frozenset({"size", "dim", "numel", "nelement"})

    def __getattr__(self, name: str) -> Any:
        node = self.__dict__.get("node")  # absent while the proxy is made
        value = node.meta.get(_VALUE) if node is not None else None
        if isinstance(value, torch.Tensor) and (name in self._PLAIN or name in self._SIZES):
            return getattr(value, name)
        return super().__getattr__(name)

    def __len__(self) -> int:
        value = self.node.meta.get(_VALUE)
        if isinstance(value, torch.Tensor | tuple | list):
            return len(value)
        return super().__len__()


_VALUE = "dws_theory_value"


class _ConcreteTracer(_LeafTracer):
    """`_LeafTracer` run beside the example input: every node's value is computed as it is
    recorded, for the module whose forward reads sizes from its input (a causal mask of the
    sequence length, positions `arange(T)`), which symbolic tracing cannot follow."""

    def __init__(self, inputs: tuple[torch.Tensor, ...]) -> None:
        super().__init__()
        self.inputs = [x.clone() for x in inputs]  # forward may write into its inputs
        self.computing = False  # fx's patches of Module.__call__/__getattr__ step aside

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict) -> Any:
        if self.computing:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    def call_module(self, m: nn.Module, forward: Any, args: Any, kwargs: Any) -> Any:
        if self.computing:
            return forward(*args, **kwargs)
        return super().call_module(m, forward, args, kwargs)

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _ConcreteProxy(node, self)

    def create_proxy(self, kind, target, args, kwargs, *rest, **options):  # type: ignore[override]
        proxy = super().create_proxy(kind, target, args, kwargs, *rest, **options)
        proxy.node.meta[_VALUE] = self._value(kind, target, args, kwargs)
        return proxy

    def _value(self, kind: str, target: Any, args: Any, kwargs: Any) -> Any:
        self.computing = True
        try:
            return self._compute(kind, target, args, kwargs)
        finally:
            self.computing = False

    def _compute(self, kind: str, target: Any, args: Any, kwargs: Any) -> Any:
        def real(a: Any) -> Any:
            return a.node.meta.get(_VALUE) if isinstance(a, fx.Proxy) else a

        args = fx.node.map_aggregate(args, real)
        kwargs = fx.node.map_aggregate(kwargs, real)
        if kind == "placeholder":
            return self.inputs.pop(0) if self.inputs else (args[0] if args else None)
        if kind == "get_attr":
            value: Any = self.root
            for part in target.split("."):
                value = getattr(value, part)
            return value
        if kind == "call_module":
            return self.root.get_submodule(target)(*args, **kwargs)
        if kind == "call_method":
            return getattr(args[0], target)(*args[1:], **kwargs)
        if kind == "call_function":
            return target(*args, **kwargs)
        return None


ROOT_NAME = "root"


class _Wrapped(nn.Module):
    """A module that is one call of the op table (an LSTM, an attention module), wrapped so
    that fx traces one call of it; `arity` inputs."""

    def __init__(self, module: nn.Module, arity: int) -> None:
        super().__init__()
        self.add_module(ROOT_NAME, module)
        self.arity = arity

    def forward(self, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> object:
        return getattr(self, ROOT_NAME)(*(a, b, c)[: self.arity])


def _arity(module: nn.Module) -> int:
    if isinstance(module, nn.MultiheadAttention):
        return 3
    if isinstance(module, nn.Transformer | nn.TransformerDecoderLayer | nn.TransformerDecoder):
        return 2
    return 1


def _graph_module(
    module: nn.Module, inputs: tuple[torch.Tensor, ...] | None = None
) -> fx.GraphModule:
    """The module's graph, traced symbolically, or with `inputs` beside it (sizes read from
    the input become constants of the example's sizes)."""
    if lookup("call_module", module) is not None:
        return _wrapped_graph(module)
    tracer = _LeafTracer() if inputs is None else _ConcreteTracer(inputs)
    try:
        with torch.no_grad():
            graph = tracer.trace(module)
    except Exception as e:  # torch.fx raises many types: data-dependent control flow, ...
        raise SpecError(
            f"from_module: torch.fx cannot trace {type(module).__name__} ({type(e).__name__}: "
            f"{_short(e)}); a data-dependent branch or an operation fx cannot follow"
        ) from None
    graph_module = fx.GraphModule(tracer.root, graph)
    graph_module.graph.eliminate_dead_code()
    return graph_module


def _wrapped_graph(module: nn.Module) -> fx.GraphModule:
    """The graph of one call of `module` on `_arity(module)` inputs."""
    wrapper = _Wrapped(module, _arity(module))
    graph = fx.Graph()
    inputs = [graph.placeholder(name) for name in "abc"[: wrapper.arity]]
    graph.output(graph.call_module(ROOT_NAME, tuple(inputs)))
    return fx.GraphModule(wrapper, graph)


def _short(e: BaseException, limit: int = 300) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and floating-point buffers (not counters such as num_batches_tracked)."""
    state = {n: p for n, p in module.named_parameters()}
    for n, b in module.named_buffers():
        if b is not None and b.is_floating_point():
            state[n] = b
    return state


# -- the space -------------------------------------------------------------------------------
@dataclass
class _Class:
    root: int
    size: int
    flags: set[str]
    first: int
    not_odd: str | None = None
    not_homogeneous: str | None = None


def _tensor_names(entries: Iterable[str]) -> dict[str, str]:
    """State name -> tensor identifier (`conv1.weight` -> `conv1_weight`, `0.weight` ->
    `p0_weight`), made distinct."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for name in entries:
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


class _Assembler:
    """From the tracer's slots to the WeightSpace, the sources and the records."""

    def __init__(self, tracer: Tracer, mode: str, order: list[str]) -> None:
        self.t = tracer
        self.slots = tracer.slots
        self.mode = mode
        self.order = order
        self.origin = self._origins()

    def _origins(self) -> dict[int, int]:
        origin: dict[int, int] = {}
        for slot, layout in self.slots.refined.items():
            for part in layout:
                for f in part:
                    origin[f.slot] = slot
        return origin

    def ancestry(self, slot: int) -> list[int]:
        chain = [slot]
        while chain[-1] in self.origin:
            chain.append(self.origin[chain[-1]])
        return chain

    def flags(self, slot: int) -> set[str]:
        out: set[str] = set()
        for s in self.ancestry(slot):
            out |= self.slots.flags[self.slots.find(s)]
        return out

    def role(self, slot: int) -> int:
        for s in self.ancestry(slot):
            if s in self.t.roles:
                return self.t.roles[s]
        return 0

    def first(self, root: int) -> int:
        members = self.slots.members[root]
        seen = [self.slots.seen[m] for m in members if self.slots.seen[m] >= 0]
        return min(seen) if seen else len(self.slots.parent) + min(members)

    def leaves_of(self, slot: int) -> list[int]:
        if slot not in self.slots.refined:
            return [slot]
        return [
            leaf
            for part in self.slots.refined[slot]
            for f in part
            for leaf in self.leaves_of(f.slot)
        ]

    def classes(self, layouts: dict[str, tuple[Axis, ...]]) -> dict[int, _Class]:
        out: dict[int, _Class] = {}
        for layout in layouts.values():
            for axis in layout:
                for part in axis:
                    for f in part:
                        root = self.slots.find(f.slot)
                        if root not in out:
                            out[root] = _Class(root, f.size, set(), self.first(root))
                        out[root].flags |= self.flags(f.slot)
        for slot, odd, homogeneous, what in self.t.touches:
            for leaf in self.leaves_of(slot):
                c = out.get(self.slots.find(leaf))
                if c is None:
                    continue
                if not odd and c.not_odd is None:
                    c.not_odd = what
                if not homogeneous and c.not_homogeneous is None:
                    c.not_homogeneous = what
        return out

    def kind(self, c: _Class) -> Kind:
        if c.flags & FIXED_FLAGS:
            return Kind.FIXED
        if c.flags & {"input", "output"}:
            return Kind.PERMUTED if self.mode == "all" else Kind.FIXED
        if self.mode == "signed" and c.not_odd is None:
            return Kind.SIGNED
        return Kind.PERMUTED

    def build(self) -> ModuleTrace:
        layouts = {
            name: tuple(self.slots.expand(axis) for axis in self.t.state_layouts[name])
            for name in self.order
        }
        classes = self.classes(layouts)
        kinds = {root: self.kind(c) for root, c in classes.items()}
        channel = sorted(
            (r for r, c in classes.items() if not c.flags & FIXED_FLAGS),
            key=lambda r: classes[r].first,
        )
        fixed = sorted((r for r in classes if r not in channel), key=lambda r: classes[r].first)
        names = _tensor_names(self.order)
        pieces = [
            (names[state] + suffix, source, factors)
            for state in self.order
            for suffix, source, factors in self._pieces(state, layouts[state], kinds)
        ]
        used = {self.slots.find(f.slot) for _, _, factors in pieces for f in factors}
        channel = [r for r in channel if r in used]
        fixed = [r for r in fixed if r in used]
        set_name = {r: f"n{i}" for i, r in enumerate(channel)}
        set_name |= {r: f"k{i}" for i, r in enumerate(fixed, start=1)}
        parents = self._parents(classes, kinds, [factors for _, _, factors in pieces])
        for parent in set(parents.values()):
            if kinds[parent] is Kind.SIGNED:  # a block's neurons flip one by one, as children
                kinds[parent] = Kind.PERMUTED
        for child, parent in parents.items():
            if kinds[parent] is Kind.FIXED and kinds[child] is not Kind.FIXED:
                kinds[child] = Kind.FIXED  # positions in fixed blocks: fixed (a subgroup)
        sets = tuple(
            NeuronSet(
                set_name[r],
                classes[r].size,
                kinds[r],
                set_name[parents[r]] if r in parents else None,
            )
            for r in channel + fixed
        )
        tensors, sources, roles = [], [], []
        for tensor, source, factors in pieces:
            tensors.append(
                Tensor(tensor, tuple(set_name[self.slots.find(f.slot)] for f in factors))
            )
            sources.append((tensor, source))
            roles.append((tensor, tuple(self.role(f.slot) for f in factors)))
        space = WeightSpace(sets, tuple(tensors))
        boundary = {"input", "output"} | FIXED_FLAGS
        hidden = [r for r in channel if not classes[r].flags & boundary]
        return ModuleTrace(
            space=space,
            mode=self.mode,
            parameters=tuple((t, s.state) for t, s in sources),
            links=self._links(set_name),
            not_odd=tuple(
                (set_name[r], classes[r].not_odd)
                for r in hidden
                if self.mode == "signed" and classes[r].not_odd is not None
            ),
            sources=tuple(sources),
            sign_sets=tuple(set_name[r] for r in hidden if classes[r].not_odd is None),
            scale_sets=tuple(set_name[r] for r in hidden if classes[r].not_homogeneous is None),
            scale_roles=tuple(roles),
            declared=tuple(set_name[r] for r in fixed if classes[r].flags & {"declared", "pinned"}),
            inputs=tuple(self._ends(layout, set_name) for layout in self.t.inputs),
            outputs=tuple(self._output_end(item, set_name) for item in self.t.outputs),
            notes=tuple(dict.fromkeys(self.t.notes)),
        )

    def _parents(
        self, classes: dict[int, _Class], kinds: dict[int, Kind], tensors: list[list[Factor]]
    ) -> dict[int, int]:
        """Child class -> parent class, where every tensor that has an axis on the child has
        an axis on the parent before it, and the parent is a plain set (one level). Where not,
        the child is kept as a plain set: one permutation for every block, a subgroup."""
        parents = {}
        for root in classes:
            parent = self.slots.parent_of(root)
            if parent is not None and parent in classes and parent != root:
                parents[root] = parent
        parents = {c: p for c, p in parents.items() if p not in parents}
        for factors in tensors:
            roots = [self.slots.find(f.slot) for f in factors]
            for i, r in enumerate(roots):
                if r in parents and parents[r] not in roots[:i]:
                    self.t.notes.append(
                        f"{self.slots.names[factors[i].slot]}: positions inside blocks kept as "
                        "one set for every block (a tensor holds them without their blocks)"
                    )
                    del parents[r]
        return parents

    def _pieces(self, state: str, layout: tuple[Axis, ...], kinds: dict[int, Kind]):
        """One tensor per combination of parts of the entry's axes: (name suffix, source,
        factors). Size-1 factors inside a product are dropped (they carry no symmetry) unless
        their set is signed."""
        per_axis = []
        for axis in layout:
            options, start = [], 0
            for part in axis:
                size = part_size(part)
                kept = [
                    f for f in part if f.size != 1 or kinds[self.slots.find(f.slot)] is Kind.SIGNED
                ]
                if not kept:
                    kept = [part[0]]
                options.append(((start, start + size), kept))
                start += size
            per_axis.append(options)
        split = any(len(o) > 1 for o in per_axis)
        out = []
        for combo in _product(per_axis):
            suffix = ""
            if split:
                suffix = "_" + "_".join(
                    str(i)
                    for (i, _), options in zip(combo, per_axis, strict=True)
                    if len(options) > 1
                )
            index = tuple(rng for _, (rng, _) in combo)
            factors = [f for _, (_, kept) in combo for f in kept]
            out.append(
                (suffix, TensorSource(state, index, tuple(f.size for f in factors)), factors)
            )
        return out

    def _links(self, set_name: dict[int, str]) -> tuple[Link, ...]:
        """One Link per fx node, reason and set it merged onto, naming the merged axes."""
        links: dict[tuple[str, str, str], list[str]] = {}
        for node, reason, layouts in self.t.links:
            for layout in layouts:
                for axis in layout:
                    for part in self.slots.expand(axis):
                        for f in part:
                            name = set_name.get(self.slots.find(f.slot))
                            if name is not None:
                                links.setdefault((node, reason, name), []).append(
                                    self.slots.names[f.slot]
                                )
        return tuple(
            Link(node, reason, name, tuple(dict.fromkeys(axes)))
            for (node, reason, name), axes in links.items()
        )

    def _output_end(self, item: tuple, set_name: dict[int, str]) -> End | StackedEnd:
        kind, value = item
        if kind == STACKED:  # one layout per entry
            return (STACKED, tuple(self._ends(entry, set_name) for entry in value))
        return self._ends(value, set_name)

    def _ends(self, layout: tuple[Axis, ...], set_name: dict[int, str]) -> End:
        """Per axis, per concatenated part, per factor: (its set or None, size)."""
        return tuple(
            tuple(
                tuple((set_name.get(self.slots.find(f.slot)), f.size) for f in part)
                for part in self.slots.expand(axis)
            )
            for axis in layout
        )


def _product(options: list[list]) -> list[list]:
    out: list[list] = [[]]
    for choices in options:
        out = [prefix + [(i, c)] for prefix in out for i, c in enumerate(choices)]
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


def _as_mlp(trace: ModuleTrace) -> ModuleTrace:
    """The trace renamed to `mlp(dims, mode)` names when its space is an MLP's."""
    as_mlp = _mlp_space(trace.space)
    if as_mlp is None or any(not s.whole for _, s in trace.sources):
        return trace
    renamed = dict(
        zip([t.name for t in trace.space.tensors], [t.name for t in as_mlp.tensors], strict=True)
    )
    chain = [trace.space.tensors[0].axes[1]] + [t.axes[0] for t in trace.space.tensors[::2]]
    set_names = dict(zip(chain, [s.name for s in as_mlp.sets], strict=True))
    dims = tuple(s.size for s in as_mlp.sets)
    matching = [m for m in MODES if mlp(dims, m) == as_mlp]
    effective = trace.mode if trace.mode in matching else matching[0]

    def ends(items: tuple[End, ...]) -> tuple[End, ...]:
        return tuple(
            tuple(
                tuple(
                    tuple((set_names.get(n) if n else None, size) for n, size in part)
                    for part in axis
                )
                for axis in item
            )
            for item in items
        )

    return ModuleTrace(
        space=as_mlp,
        mode=effective,
        parameters=tuple((renamed[t], s) for t, s in trace.parameters),
        links=tuple(
            Link(link.node, link.reason, set_names.get(link.set, link.set), link.axes)
            for link in trace.links
        ),
        not_odd=tuple((set_names.get(name, name), what) for name, what in trace.not_odd),
        sources=tuple((renamed[t], s) for t, s in trace.sources),
        sign_sets=tuple(set_names[s] for s in trace.sign_sets),
        scale_sets=tuple(set_names[s] for s in trace.scale_sets),
        scale_roles=tuple((renamed[t], r) for t, r in trace.scale_roles),
        inputs=ends(trace.inputs),
        outputs=ends(trace.outputs),
        declared=tuple(set_names.get(s, s) for s in trace.declared),
        notes=trace.notes,
        example=trace.example,
    )


# -- entry points ----------------------------------------------------------------------------
def trace_module(
    module: nn.Module,
    symmetry: str = "hidden",
    example_input: object = None,
    check: bool = False,
) -> ModuleTrace:
    """Trace `module` and derive its weight space (see the module docstring).

    `example_input` is a tensor or a tuple of tensors the module accepts (batch first); by
    default one is made from the first layer (Linear: `[2, in]`; a convolution: a small
    spatial size every layer accepts; Embedding: integer tokens). The shapes of the space
    are always checked against the module's state; `check=True` also checks that random
    group elements applied to the state leave the module's outputs unchanged."""
    mode = parse_mode(symmetry)
    if not isinstance(module, nn.Module):
        raise SpecError(f"from_module expects a torch.nn.Module, got {type(module).__name__}")
    params = dict(module.named_parameters())
    if not params:
        raise SpecError("from_module: the module has no parameters")
    work = copy.deepcopy(module).eval()
    try:
        symbolic: fx.GraphModule | None = _graph_module(work)
        untraceable = None
    except SpecError as e:  # sizes read from the input, say: traced beside each example
        symbolic, untraceable = None, e
    state = _state(work)
    first_error: SpecError | None = None
    tracer = None
    for inputs in _candidates(work, symbolic, example_input, untraceable):
        try:
            graph_module = symbolic or _graph_module(work, inputs)
        except SpecError as e:
            first_error = first_error or e
            continue
        candidate = Tracer(graph_module, state, batch_axis(graph_module))
        try:
            with torch.no_grad():
                candidate.run(*inputs)
        except LayoutError as e:
            first_error = first_error or candidate.fail(None, str(e))
            continue
        except SpecError as e:
            first_error = first_error or e
            continue
        _same_as_forward(work, inputs, candidate)
        tracer = candidate
        break
    if tracer is None:
        raise first_error or SpecError("from_module: no example input could be traced")
    unused = [n for n in params if n not in tracer.used]
    if unused:
        raise SpecError(f"from_module: parameters never used by forward: {', '.join(unused)}")
    order = [n for n in module.state_dict() if n in tracer.used]
    order += [n for n in tracer.used if n not in order]
    try:
        trace = _Assembler(tracer, mode, order).build()
    except LayoutError as e:
        raise SpecError(f"from_module: {e}") from None
    trace = _as_mlp(_with_example(trace, inputs))
    from .module_check import check_shapes, check_symmetry

    check_shapes(module, trace)
    if check:
        check_symmetry(module, trace)
    return trace


def _candidates(
    work: nn.Module,
    symbolic: fx.GraphModule | None,
    example_input: object,
    untraceable: SpecError | None,
) -> Iterator[tuple[torch.Tensor, ...]]:
    """At most MAX_EXAMPLE_TRIES example inputs, made lazily (each one runs the module); where
    none can be made for a module fx could not trace, fx's reason is the error."""
    made = example_inputs(work, symbolic, example_input)
    for _ in range(MAX_EXAMPLE_TRIES):
        try:
            yield next(made)
        except StopIteration:
            return
        except SpecError:
            if untraceable is not None:
                raise untraceable from None
            raise


def _same_as_forward(module: nn.Module, inputs: tuple, tracer: Tracer) -> None:
    """The graph must compute what forward computes: Python control flow on a traced value
    (`isinstance(x, tuple)`, a branch) makes torch.fx record another computation."""
    with torch.no_grad():
        eager = _leaves_of(module(*inputs))
    graph = [leaf.tensor if isinstance(leaf, Traced | Stacked) else leaf for leaf in tracer.result]
    same = len(eager) == len(graph) and all(
        a.shape == b.shape and torch.allclose(a, b, rtol=1e-5, atol=1e-6, equal_nan=True)
        for a, b in zip(eager, graph, strict=False)
    )
    if not same:
        raise SpecError(
            "from_module: torch.fx recorded a different computation than forward runs (Python "
            "control flow on a traced value, such as isinstance or a branch on a tensor); "
            "write forward without it"
        )


def _with_example(trace: ModuleTrace, inputs: tuple) -> ModuleTrace:
    return ModuleTrace(**{**trace.__dict__, "example": tuple(inputs)})


def from_module(
    module: nn.Module,
    symmetry: str = "hidden",
    example_input: object = None,
    check: bool = True,
) -> WeightSpace:
    """The weight space of `module` under `symmetry` (hidden, all, signed; see trace_module).

    The space is checked against the module: its tensors' shapes against the module's state
    and, with `check` (the default), random elements of the group applied to the state
    against the module's outputs; a failure is a SpecError naming the tensor or set."""
    return trace_module(module, symmetry, example_input, check=check).space
