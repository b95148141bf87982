"""Lowering: group the orbit patterns of a `Basis` into pool, mix and add ops.

- `Pool` ops: each input tensor is read once per *reading* that some pattern needs: which of
  its axes are kept, which are averaged over, which are taken together on their diagonal
  (two axes of one neuron set in one partition block). Its fixed axes are folded into the
  channel axis (a fixed axis is a dense parameter dimension, exactly like extra channels).
  Every pattern with the same input and the same reading reads the same feature; a pool over
  several axes is taken from the cheaper pool of the same tensor that already averaged
  part of them.
- `Mix` ops: the patterns of one output tensor that place their result the same way (the
  same kept dimensions written along the same axes, the same broadcast classes) form a
  group; their features are concatenated on the channel axis and multiplied by ONE weight
  matrix (fixed output axes folded into its rows). Groups of different output tensors that
  read the same features share the GEMM: their rows are stacked and split.
- `Add` ops: per output tensor, ONE broadcast sum (views, never copies; a diagonal term is
  a product with an identity matrix) of its groups and its bias orbits. The group that
  keeps every axis (the identity term of a weight matrix) runs last as a GEMM that
  accumulates into the sum of the others (`_MixAdd` in the module).

Op count: a tensor with r axes has at most one pool per reading of its axes (3 for an
MLP's weight matrix, 3 for a conv kernel, whose kernel axes are fixed and folded), and each
output tensor at most one mix block per placement, so the number of ops grows linearly
with the number of tensors, for MLPs, CNNs and residual networks alike. What a residual
link changes is the size of the GEMMs: every tensor on a merged set reads every other one,
so the width of the mixes on that set grows with the number of tensors sharing it (the basis
itself grows quadratically there).

Basis elements are numbered as in `Basis.dense`: pattern by pattern in `Basis.linear` order,
and inside a pattern by its fixed label values in C order; the emitted `load_theta` uses
exactly that numbering.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from ..basis import Basis
from ..cost import check_layer
from ..orbits import Pattern
from ..spec import Kind, SpecError, WeightSpace, mlp, mlp_shape, parse_mode
from .plan import (
    EQUIVARIANT,
    INVARIANT,
    Add,
    Bias,
    Block,
    Classes,
    LayerPlan,
    Mix,
    Op,
    Pool,
    Slot,
    local_name,
)

__all__ = ["lower"]

Reading = tuple[str, Classes, Classes]  # (tensor, kept classes, pooled classes)
Placement = tuple[str | None, Classes, Classes]  # (out tensor, kept classes, broadcast classes)


def _suffix(sets: Sequence[str]) -> str:
    return "_".join(sets) if sets else "none"


def _sizes_product(space: WeightSpace, sets: Iterable[str]) -> int:
    return math.prod(space.set(s).size for s in sets)


def _unique(name: str, taken: set[str]) -> str:
    """`name`, or `name_2`, `name_3`, ... if taken; recorded as taken."""
    candidate, k = name, 1
    while candidate in taken:
        k += 1
        candidate = f"{name}_{k}"
    taken.add(candidate)
    return candidate


def _classes(labels: str, roles: Sequence[str], p: Pattern) -> dict[str, Classes]:
    """Axis positions of `labels` grouped by label (first-appearance order), by role."""
    grouped: dict[str, list[int]] = {}
    for position, label in enumerate(labels):
        grouped.setdefault(label, []).append(position)
    return {
        role: tuple(tuple(v) for x, v in grouped.items() if p.role(x) == role) for role in roles
    }


def _reading(p: Pattern) -> Reading:
    """How a pattern reads its input: kept and pooled classes (fixed axes: always folded)."""
    c = _classes(p.in_labels, ("keep", "pool"), p)
    return p.inp, c["keep"], c["pool"]


def _placement(p: Pattern) -> Placement:
    """How a pattern writes its output: per kept dimension (in the feature's order, the order
    of the input's axes) the output axes it lands on, and the broadcast classes."""
    out_axes: dict[str, list[int]] = {}
    for position, label in enumerate(p.out_labels):
        out_axes.setdefault(label, []).append(position)
    order = dict.fromkeys(x for x in p.in_labels if p.role(x) == "keep")
    kept = tuple(tuple(out_axes[x]) for x in order)
    broadcast = tuple(tuple(v) for x, v in out_axes.items() if p.role(x) == "broadcast")
    return p.out, kept, broadcast


def _fixed_positions(space: WeightSpace, tensor: str) -> tuple[int, ...]:
    axes = space.tensor(tensor).axes
    return tuple(i for i, a in enumerate(axes) if space.set(a).kind is Kind.FIXED)


def _fixed_axes(space: WeightSpace, tensor: str) -> tuple[str, ...]:
    """Neuron sets of the tensor's fixed axes, in axis order."""
    axes = space.tensor(tensor).axes
    return tuple(axes[i] for i in _fixed_positions(space, tensor))


def _fold(space: WeightSpace, sets: Sequence[str]) -> int:
    return _sizes_product(space, sets)


def _class_label(axes: Sequence[str], cls: Sequence[int]) -> str:
    """A kept class by its set; with the axis positions when the tensor has several axes on
    that set (a tied square weight's `s0`, `s1`, `s01`)."""
    name = axes[cls[0]]
    return name + "".join(map(str, cls)) if axes.count(name) > 1 else name


def _pool_name(space: WeightSpace, reading: Reading) -> str:
    tensor, keep, pool = reading
    axes = space.tensor(tensor).axes
    if not pool and not _fixed_positions(space, tensor) and all(len(c) == 1 for c in keep):
        return local_name(tensor)
    kept = _suffix([_class_label(axes, c) for c in keep])
    diagonals = "".join(f"_diag{''.join(map(str, c))}" for c in pool if len(c) > 1)
    return f"{local_name(tensor)}_on_{kept}{diagonals}"


def _make_pool(
    space: WeightSpace, layer: str, reading: Reading, patterns: list[Pattern], source: str
) -> Pool:
    tensor, keep, pool = reading
    axes = space.tensor(tensor).axes
    fold_axes = _fixed_positions(space, tensor)
    folded = tuple(axes[i] for i in fold_axes)
    return Pool(
        name=_pool_name(space, reading),
        layer=layer,
        tensor=tensor,
        kept=tuple(axes[c[0]] for c in keep),
        pooled=tuple(axes[c[0]] for c in pool),
        folded=folded,
        fold=_fold(space, folded),
        source=source,
        patterns=tuple(patterns),
        keep_axes=keep,
        pool_axes=pool,
        fold_axes=fold_axes,
    )


def _pools(space: WeightSpace, layer: str, uses: dict[Reading, list[Pattern]]) -> list[Pool]:
    """One Pool per reading, averaged from the cheapest parent feature where one exists: an
    unfolded one that pooled part of its axes, else one that folded the same fixed axes."""
    order = {t.name: i for i, t in enumerate(space.tensors)}
    made: dict[Reading, Pool] = {}
    # Most kept axes first, so that parents exist before their children.
    for key in sorted(uses, key=lambda k: (order[k[0]], -len(k[1]))):
        pool = _make_pool(space, layer, key, uses[key], local_name(key[0]))
        pooled = {a for c in pool.pool_axes for a in c}
        parents = [
            f
            for f in made.values()
            if f.tensor == pool.tensor
            and not f.fold_axes
            and f.pool_axes
            and not f.diagonal
            and not pool.diagonal
            and {a for c in f.pool_axes for a in c} < pooled
        ]
        # Else a feature that folded the same fixed axes (the transposed copy a fold makes):
        # reducing its contiguous last axes is faster than reducing a middle axis of the
        # tensor, and under torch.compile markedly so (inductor parallelises a reduction
        # over a middle axis of a narrow tensor one output row at a time).
        folded_parents = [
            f
            for f in made.values()
            if f.tensor == pool.tensor
            and f.fold_axes
            and f.fold_axes == pool.fold_axes
            and not f.diagonal
            and not pool.diagonal
            and {a for c in f.pool_axes for a in c} < pooled
        ]
        if parents or folded_parents:
            chosen = parents or folded_parents
            source = min(chosen, key=lambda f: _fold(space, f.kept)).name
            pool = _make_pool(space, layer, key, uses[key], source)
        made[key] = pool
    return list(made.values())


def _check_space(space: WeightSpace) -> None:
    for t in space.tensors:
        if not t.axes:
            raise SpecError(
                f"code generation needs every tensor to have at least one axis, got {t} "
                "(forward(weights, biases) takes weights with two or more axes and biases "
                "with one)"
            )


def _plan_labels(
    space: WeightSpace, mode: str | None, origin: str | None
) -> tuple[tuple[int, ...] | None, str | None, str]:
    """(dims, mode, origin) for the plan; the mode must be the space's own for an MLP."""
    shape = mlp_shape(space)
    mode = parse_mode(mode) if mode is not None else None
    if shape is None:
        return None, mode, origin if origin is not None else f"--spec '{space}'"
    dims, inferred = shape
    if mode is None:
        mode = inferred
    elif mlp(dims, mode) != space:
        raise SpecError(f"the basis is not that of {','.join(map(str, dims))} in mode {mode}")
    if origin is None:
        origin = f"{','.join(map(str, dims))} --symmetry {mode}"
    return dims, mode, origin


def lower(basis: Basis, mode: str | None = None, origin: str | None = None) -> LayerPlan:
    """Group the basis into pool, mix and add ops (see the module docstring).

    `mode` names the mode for the header: for an MLP it must be the space's own (depth 1
    has two: hidden == signed) and is inferred by default; for any other space it is the
    mode the front end derived the space with (None: the spec gave the kinds). `origin` is
    the command-line arguments that rebuild the space (by default the dims and mode of an
    MLP, else `--spec '...'`).
    """
    space = basis.space
    _check_space(space)
    check_layer(basis.equivariant_linear, basis.invariant_linear)
    dims, mode, origin = _plan_labels(space, mode, origin)
    mixes = _lower_mixes(basis)
    pools = [op for op in mixes if isinstance(op, Pool)]
    mix_ops = [op for op in mixes if isinstance(op, Mix)]
    ops: list[Op] = [f for f in pools if not f.is_identity] + mix_ops + _adds(basis, mix_ops)
    ops += _lower_invariant(basis)
    return LayerPlan(
        space=space,
        dims=dims,
        mode=mode,
        equivariant_linear=basis.equivariant_linear,
        equivariant_bias=basis.equivariant_bias,
        invariant_linear=basis.invariant_linear,
        ops=tuple(ops),
        origin=origin,
    )


def _lower_mixes(basis: Basis) -> list[Pool | Mix]:
    """The equivariant layer's pools (identity ones included) and mixes."""
    space = basis.space
    uses: dict[Reading, list[Pattern]] = {}
    groups: dict[Placement, list[tuple[Pattern, int, Reading]]] = {}
    element = 0
    for p in basis.linear:
        reading = _reading(p)
        uses.setdefault(reading, []).append(p)
        groups.setdefault(_placement(p), []).append((p, element, reading))
        element += p.multiplicity(space)
    pools = _pools(space, EQUIVARIANT, uses)
    feature = {(f.tensor, f.keep_axes, f.pool_axes): f for f in pools}

    # Fan-in of the initialisation: per output, unpooled and pooled features get one share each.
    fans: dict[tuple[str, bool], int] = {}
    for (out, _, _), members in groups.items():
        for _, _, reading in members:
            f = feature[reading]
            fans[(out, bool(f.pool_axes))] = fans.get((out, bool(f.pool_axes)), 0) + f.fold

    # Groups reading the same features share one mix (their outputs stack on the rows).
    merged: dict[tuple[tuple[str, ...], tuple[str, ...]], list[Placement]] = {}
    for placement, members in groups.items():
        names = tuple(feature[reading].name for _, _, reading in members)
        kept = feature[members[0][2]].kept
        merged.setdefault((kept, names), []).append(placement)
    taken = {f.name for f in pools}
    mixes = []
    for (kept, names), placements in merged.items():
        outs = dict.fromkeys(out for out, _, _ in placements)
        if len(outs) == 1:
            name = _unique(f"mix_{next(iter(outs))}_on_{_suffix(kept)}", taken)
        else:
            # Width-1 and signed sets can leave two feature lists on the same sets.
            name = _unique(f"mix_on_{_suffix(kept)}", taken)
        mixes.append(_make_mix(space, name, kept, names, placements, groups, feature, fans, taken))
    return [*pools, *mixes]


def _make_mix(
    space: WeightSpace,
    name: str,
    kept: tuple[str, ...],
    names: tuple[str, ...],
    placements: list[Placement],
    groups: dict[Placement, list[tuple[Pattern, int, Reading]]],
    feature: dict[Reading, Pool],
    fans: dict[tuple[str, bool], int],
    taken: set[str],
) -> Mix:
    by_name = {f.name: f for f in feature.values()}
    columns, width = {}, 0
    for n in names:
        columns[n] = width
        width += by_name[n].fold
    slots, blocks, row = [], [], 0
    for placement in placements:
        out, kept_axes, broadcast_axes = placement
        f_out = _fold(space, _fixed_axes(space, out))
        block_name = name if len(placements) == 1 else _unique(f"{name}_{out}", taken)
        blocks.append(
            Block(
                out, row, f_out, block_name, kept_axes, broadcast_axes, _fixed_positions(space, out)
            )
        )
        for p, elem, reading in groups[placement]:
            f = feature[reading]
            fan = fans[(out, bool(f.pool_axes))]
            slots.append(Slot(p, f.name, out, elem, row, columns[f.name], f_out, f.fold, fan))
        row += f_out
    return Mix(name, EQUIVARIANT, kept, names, tuple(blocks), tuple(slots), row, width)


def _term_size(space: WeightSpace, mix: Mix, block: Block) -> int:
    return block.f_out * _fold(space, mix.kept)


def _biases(basis: Basis) -> dict[str, list[Bias]]:
    """Bias orbits per output tensor, numbered in Basis.bias order."""
    space = basis.space
    per: dict[str, list[tuple[Pattern, int]]] = {}
    start = 0
    for p in basis.bias:
        per.setdefault(p.out, []).append((p, start))
        start += p.multiplicity(space)
    out: dict[str, list[Bias]] = {}
    for tensor, items in per.items():
        fixed = _fixed_positions(space, tensor)
        f_out = _fold(space, _fixed_axes(space, tensor))
        for k, (p, element) in enumerate(items, start=1):
            name = f"bias_{tensor}" if len(items) == 1 else f"bias_{tensor}_{k}"
            broadcast = _classes(p.out_labels, ("broadcast",), p)["broadcast"]
            out.setdefault(tensor, []).append(Bias(p, name, element, f_out, broadcast, fixed))
    return out


def _adds(basis: Basis, mixes: Sequence[Mix]) -> list[Add]:
    """Per output tensor: its terms (smallest first) and its bias orbits."""
    space = basis.space
    biases = _biases(basis)
    # Each mix's blocks by output tensor and its slots' patterns by (out, row), in order:
    # one pass over the mixes, not one per output tensor (quadratic in depth, not cubic).
    landing: dict[str, list[tuple[Mix, Block]]] = {}
    slots: dict[tuple[int, str | None, int], list[Pattern]] = {}  # by id of the mix
    for m in mixes:
        for b in m.blocks:
            landing.setdefault(b.out, []).append((m, b))
        for slot in m.slots:
            slots.setdefault((id(m), slot.out, slot.row), []).append(slot.pattern)
    adds = []
    for t in space.tensors:
        terms = landing.get(t.name, [])
        if not terms:  # cannot happen: the identity pattern A <- A survives in every mode
            raise SpecError(f"no linear pattern lands on {t.name}; expected at least A <- A")
        # Smallest first; on ties (width-1 sets) the terms that keep more axes go last.
        terms.sort(key=lambda mb: (_term_size(space, *mb), len(mb[0].kept), -len(mb[0].blocks)))
        last, last_block = terms[-1]
        bias = tuple(biases.get(t.name, ()))
        # The largest term absorbs the others inside its GEMM when it is a plain
        # [B, c_out, *shape] result (one output, every axis kept) and the others are summed
        # into a fresh temporary first (at least two of them, the biases included).
        others = len(terms) - 1 + len(bias)
        fused = others >= 2 and len(last.blocks) == 1 and last_block.is_identity
        patterns = tuple(p for m, b in terms for p in slots.get((id(m), b.out, b.row), ()))
        adds.append(
            Add(
                name=f"{local_name(t.name)}_out",
                layer=EQUIVARIANT,
                out=t.name,
                terms=tuple(m.name for m, _ in terms),
                blocks=tuple(b.name for _, b in terms),
                biases=bias,
                f_out=_fold(space, _fixed_axes(space, t.name)),
                fused=fused,
                patterns=patterns + tuple(b.pattern for b in bias),
            )
        )
    return adds


def _lower_invariant(basis: Basis) -> list[Op]:
    """One full pool per invariant reading of each tensor, then one linear map."""
    space = basis.space
    uses: dict[Reading, list[Pattern]] = {}
    for p in basis.invariant:
        reading = _reading(p)
        assert not reading[1], f"invariant pattern {p} keeps an axis"
        uses.setdefault(reading, []).append(p)
    pools = _pools(space, INVARIANT, uses)
    feature = {(f.tensor, f.keep_axes, f.pool_axes): f for f in pools}
    slots, column, element = [], 0, 0
    for p in basis.invariant:
        f = feature[_reading(p)]
        fan = basis.invariant_linear
        slots.append(Slot(p, f.name, None, element, 0, column, 1, f.fold, fan))
        column += f.fold
        element += p.multiplicity(space)
    mix = Mix(
        name="mix_invariant",
        layer=INVARIANT,
        kept=(),
        features=tuple(s.feature for s in slots),
        blocks=(Block(None, 0, 1, "mix_invariant"),),
        slots=tuple(slots),
        rows=1,
        width=column,
    )
    return [f for f in pools if not f.is_identity] + [mix]
