"""Lowering: group the orbit patterns of a `Basis` into pool, mix and add ops.

- `Pool` ops: each input tensor is pooled (mean) once per set of neuron sets that some
  pattern keeps, and its fixed axes are folded into the channel axis (a fixed axis is a
  dense parameter dimension, exactly like extra channels). Every pattern with the same
  input tensor and the same kept sets reads the same feature; a pool over two axes is taken
  from the cheaper one-axis pool of the same tensor.
- `Mix` ops: the patterns of one output tensor whose output varies along the same neuron
  sets form a group; their features are concatenated on the channel axis and multiplied by
  ONE weight matrix (fixed output axes folded into its rows). Groups of different output
  tensors that read the same features share the GEMM: their rows are stacked and split.
- `Add` ops: per output tensor, ONE broadcast sum (views, never copies) of its groups and its
  bias orbit. The group that keeps every axis (the identity term of a weight matrix) runs
  last as a GEMM that accumulates into the sum of the others (`_MixAdd` in the module).

Basis elements are numbered as in `Basis.dense`: pattern by pattern in `Basis.linear` order,
and inside a pattern by its fixed label values in C order; the emitted `load_theta` uses
exactly that numbering.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..basis import Basis
from ..orbits import Pattern
from ..spec import Kind, SpecError, WeightSpace, mlp, parse_mode
from .plan import EQUIVARIANT, INVARIANT, Add, LayerPlan, Mix, Op, Pool, Slot

__all__ = ["lower"]


def _infer_mode(space: WeightSpace) -> tuple[tuple[int, ...], str]:
    """(dims, mode) of an MLP weight space, or SpecError when the space is no MLP."""
    dims = tuple(s.size for s in space.sets)
    if len(dims) >= 2:
        for mode in ("hidden", "all", "signed"):
            if mlp(dims, mode) == space:
                return dims, mode
    raise SpecError(
        f"code generation needs an MLP weight space (mlp(dims, mode)), got {space}: the "
        "forward(weights, biases) layout is defined for MLPs"
    )


def _suffix(sets: Sequence[str]) -> str:
    return "_".join(sets) if sets else "none"


def _fold(space: WeightSpace, sets: Sequence[str]) -> int:
    return math.prod(space.set(s).size for s in sets)


def _roles(p: Pattern) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(kept, pooled, folded) neuron sets of a pattern's input, in the input's axis order."""
    for labels in (p.in_labels, p.out_labels):
        if len(set(labels)) != len(labels):
            raise SpecError(f"pattern {p} takes a diagonal; MLP weight spaces have none")
    kept = tuple(p.set_of(x) for x in p.in_labels if p.role(x) == "keep")
    pooled = tuple(p.set_of(x) for x in p.in_labels if p.role(x) == "pool")
    folded = tuple(p.set_of(x) for x in p.in_labels if p.role(x) == "dense")
    kept_out = tuple(p.set_of(x) for x in p.out_labels if p.role(x) == "keep")
    if kept != kept_out:
        raise SpecError(f"pattern {p} keeps axes in a different order on each side")
    return kept, pooled, folded


def _fixed_axes(space: WeightSpace, tensor: str) -> tuple[str, ...]:
    return tuple(a for a in space.tensor(tensor).axes if space.set(a).kind is Kind.FIXED)


def _pools(
    space: WeightSpace, layer: str, uses: dict[tuple[str, tuple[str, ...]], list[Pattern]]
) -> list[Pool]:
    """One Pool per (tensor, kept sets), pooled from the cheapest unfolded parent."""
    order = {t.name: i for i, t in enumerate(space.tensors)}
    made: dict[tuple[str, tuple[str, ...]], Pool] = {}
    # Fewest pooled sets first, so that parents exist before their children.
    for key in sorted(uses, key=lambda k: (order[k[0]], -len(k[1]))):
        tensor, kept = key
        axes = space.tensor(tensor).axes
        pooled = tuple(a for a in axes if a not in kept and space.set(a).kind is not Kind.FIXED)
        folded = _fixed_axes(space, tensor)
        source = tensor
        parents = [
            f
            for f in made.values()
            if f.tensor == tensor and not f.folded and f.pooled and set(f.pooled) < set(pooled)
        ]
        if parents:
            source = min(parents, key=lambda f: _fold(space, f.kept)).name
        trivial = not pooled and not folded
        made[key] = Pool(
            name=tensor if trivial else f"{tensor}_on_{_suffix(kept)}",
            layer=layer,
            tensor=tensor,
            kept=kept,
            pooled=pooled,
            folded=folded,
            fold=_fold(space, folded),
            source=source,
            patterns=tuple(uses[key]),
        )
    return list(made.values())


def lower(basis: Basis, mode: str | None = None) -> LayerPlan:
    """Group the basis into pool, mix and add ops (see the module docstring).

    `mode` names the mode for the header where two modes give the same space (depth 1:
    hidden == signed); by default it is inferred from the space.
    """
    space = basis.space
    dims, inferred = _infer_mode(space)
    if mode is None:
        mode = inferred
    else:
        mode = parse_mode(mode)
        if mlp(dims, mode) != space:
            raise SpecError(f"the basis is not that of {','.join(map(str, dims))} in mode {mode}")

    # Which feature each pattern reads, and the (out, kept) group it lands in.
    uses: dict[tuple[str, tuple[str, ...]], list[Pattern]] = {}
    groups: dict[tuple[str, tuple[str, ...]], list[tuple[Pattern, int]]] = {}
    element = 0
    for p in basis.linear:
        kept, _, _ = _roles(p)
        uses.setdefault((p.inp, kept), []).append(p)
        groups.setdefault((p.out, kept), []).append((p, element))
        element += p.multiplicity(space)
    pools = _pools(space, EQUIVARIANT, uses)
    feature = {(f.tensor, f.kept): f for f in pools}

    # Fan-in of the initialisation: per output, unpooled and pooled features get one share each.
    fans: dict[tuple[str, bool], int] = {}
    for (out, kept), members in groups.items():
        for p, _ in members:
            f = feature[(p.inp, kept)]
            fans[(out, bool(f.pooled))] = fans.get((out, bool(f.pooled)), 0) + f.fold

    # Groups reading the same features share one mix (their outputs stack on the rows).
    merged: dict[tuple[tuple[str, ...], tuple[str, ...]], list[str]] = {}
    for (out, kept), members in groups.items():
        names = tuple(feature[(p.inp, kept)].name for p, _ in members)
        merged.setdefault((kept, names), []).append(out)
    seen: dict[tuple[str, ...], int] = {}
    mixes = []
    for (kept, names), outs in merged.items():
        if len(outs) == 1:
            name = f"mix_{outs[0]}_on_{_suffix(kept)}"
        else:
            # Width-1 and signed sets can leave two feature lists on the same sets.
            seen[kept] = seen.get(kept, 0) + 1
            name = f"mix_on_{_suffix(kept)}" + (f"_{seen[kept]}" if seen[kept] > 1 else "")
        columns, width = {}, 0
        for n in names:
            columns[n] = width
            width += next(f.fold for f in pools if f.name == n)
        slots, blocks, row = [], [], 0
        for out in outs:
            f_out = _fold(space, _fixed_axes(space, out))
            blocks.append((out, row, f_out))
            for p, elem in groups[(out, kept)]:
                f = feature[(p.inp, kept)]
                fan = fans[(out, bool(f.pooled))]
                slots.append(Slot(p, f.name, out, elem, row, columns[f.name], f_out, f.fold, fan))
            row += f_out
        mixes.append(Mix(name, EQUIVARIANT, kept, names, tuple(blocks), tuple(slots), row, width))

    adds = _adds(basis, mixes)
    ops: list[Op] = [f for f in pools if not f.is_identity] + mixes + adds
    ops += _lower_invariant(basis)
    return LayerPlan(
        space=space,
        dims=dims,
        mode=mode,
        equivariant_linear=basis.equivariant_linear,
        equivariant_bias=basis.equivariant_bias,
        invariant_linear=basis.invariant_linear,
        ops=tuple(ops),
    )


def _term_size(space: WeightSpace, mix: Mix, out: str) -> int:
    f_out = next(f for o, _, f in mix.outs if o == out)
    return f_out * _fold(space, mix.kept)


def _adds(basis: Basis, mixes: Sequence[Mix]) -> list[Add]:
    """Per output tensor: its terms (smallest first) and its bias orbit."""
    space = basis.space
    biases: dict[str, tuple[Pattern, int]] = {}
    start = 0
    for p in basis.bias:
        biases[p.out] = (p, start)
        start += p.multiplicity(space)
    adds = []
    for t in space.tensors:
        terms = [m for m in mixes if any(o == t.name for o, _, _ in m.outs)]
        if not terms:  # no linear pattern lands here (cannot happen for an MLP: A <- A)
            continue
        # Smallest first; on ties (width-1 sets) the terms that keep more axes go last.
        terms.sort(key=lambda m: (_term_size(space, m, t.name), len(m.kept), -len(m.outs)))
        last = terms[-1]
        bias, bias_element = biases.get(t.name, (None, -1))
        # The largest term absorbs the others inside its GEMM when it is a plain
        # [B, c_out, *shape] result (one output, every axis kept) and the others are summed
        # into a fresh temporary first (at least two of them, the bias included).
        others = len(terms) - 1 + (bias is not None)
        fused = others >= 2 and len(last.outs) == 1 and last.kept == space.tensor(t.name).axes
        patterns = tuple(s.pattern for m in terms for s in m.slots if s.out == t.name)
        adds.append(
            Add(
                name=f"{t.name}_out",
                layer=EQUIVARIANT,
                out=t.name,
                terms=tuple(m.name for m in terms),
                bias=bias,
                bias_element=bias_element,
                f_out=_fold(space, _fixed_axes(space, t.name)),
                fused=fused,
                patterns=patterns + ((bias,) if bias is not None else ()),
            )
        )
    return adds


def _lower_invariant(basis: Basis) -> list[Op]:
    """One full pool per tensor with an invariant orbit, then one linear map."""
    space = basis.space
    uses = {}
    for p in basis.invariant:
        kept, _, _ = _roles(p)
        assert not kept, f"invariant pattern {p} keeps an axis"
        uses[(p.inp, ())] = [p]
    pools = _pools(space, INVARIANT, uses)
    by_tensor = {f.tensor: f for f in pools}
    slots, column, element = [], 0, 0
    for p in basis.invariant:
        f = by_tensor[p.inp]
        fan = basis.invariant_linear
        slots.append(Slot(p, f.name, None, element, 0, column, 1, f.fold, fan))
        column += f.fold
        element += p.multiplicity(space)
    mix = Mix(
        name="mix_invariant",
        layer=INVARIANT,
        kept=(),
        features=tuple(s.feature for s in slots),
        outs=((None, 0, 1),),
        slots=tuple(slots),
        rows=1,
        width=column,
    )
    return [f for f in pools if not f.is_identity] + [mix]
