"""Code generation: lower a `Basis` into grouped pool / mix / add ops, then print source.

`lower(basis)` turns the orbit patterns into a `LayerPlan` (frozen data, no torch):

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

A tensor of an MLP has at most two axes, so it has at most three pools, and every neuron
set contributes a constant number of mixes: the op count grows linearly with depth, not
with the 4 M^2 blocks. `render(plan)` prints a standalone module (imports: torch and the
standard library) and never imports torch itself. Basis elements are numbered as in
`Basis.dense`: pattern by pattern in `Basis.linear` order, and inside a pattern by its fixed
label values in C order; the emitted `load_theta` uses exactly that numbering.
"""

from __future__ import annotations

import argparse
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from .arguments import add_shape_arguments
from .atomic import write_text
from .basis import Basis, enumerate_basis
from .orbits import Pattern
from .spec import Kind, SpecError, WeightSpace, mlp, parse_dims, parse_mode

__all__ = [
    "GENERATOR_VERSION",
    "Add",
    "LayerPlan",
    "Mix",
    "Pool",
    "Slot",
    "add_generate_parser",
    "checked_in_modules",
    "lower",
    "module_name",
    "render",
    "source_for",
    "write_module",
]

GENERATOR_VERSION = "1"
LINE_LENGTH = 100
EQUIVARIANT = "EquivariantLayer"
INVARIANT = "InvariantLayer"

# The modules checked in under generated/ (a drift test regenerates each of them).
_CHECKED_IN: tuple[tuple[tuple[int, ...], str], ...] = (
    ((2, 32, 32, 1), "hidden"),
    ((2, 32, 32, 1), "all"),
    ((2, 32, 32, 1), "signed"),
    ((1, 32, 32, 1), "hidden"),
    ((1, 32, 32, 1), "all"),
    ((1, 32, 32, 1), "signed"),
    ((2, 32, 32, 32, 32, 1), "hidden"),
    ((64, 32, 32, 10), "hidden"),
)


def checked_in_modules() -> tuple[tuple[tuple[int, ...], str], ...]:
    """(dims, mode) of every module checked in under generated/."""
    return _CHECKED_IN


# -- the plan ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pool:
    """Op: mean over `pooled` axes of one input tensor, fixed axes folded into channels.

    The feature has shape [B, C * fold, *kept sizes]: channel index c * fold + f, where f runs
    over the folded axes' values in C order. It is computed from `source`: the tensor itself
    or an unfolded feature of it that already pooled part of `pooled` (cheaper to read). A
    feature that pools and folds nothing is the input itself and not an op (`is_identity`).
    """

    name: str
    layer: str  # EQUIVARIANT or INVARIANT
    tensor: str
    kept: tuple[str, ...]  # neuron sets kept, in the tensor's axis order
    pooled: tuple[str, ...]  # neuron sets averaged over
    folded: tuple[str, ...]  # fixed neuron sets folded into the channel axis
    fold: int  # product of the folded sizes
    source: str  # the tensor, or the feature this one is pooled further from
    patterns: tuple[Pattern, ...]  # every pattern that reads this feature
    kind: ClassVar[str] = "pool"

    @property
    def is_identity(self) -> bool:
        return not self.pooled and not self.folded


@dataclass(frozen=True)
class Slot:
    """Where one pattern's coefficients sit in a mix weight.

    Rows `[c_out * row, c_out * (row + f_out))` and columns `[c_in * column, c_in * (column +
    f_in))` of the weight, viewed as [c_out, f_out] x [c_in, f_in], hold the pattern's
    f_out x f_in basis elements (C order over its fixed labels, output axes first): basis
    elements `element .. element + f_out * f_in - 1`. `fan` is the fan-in (in units of c_in)
    that the initialisation divides by.
    """

    pattern: Pattern
    feature: str
    out: str | None
    element: int
    row: int
    column: int
    f_out: int
    f_in: int
    fan: int


@dataclass(frozen=True)
class Mix:
    """Op: concatenate `features` on the channel axis and apply ONE channel mix.

    The weight is [c_out * rows, c_in * width]; output tensor `out` owns rows
    [c_out * row, c_out * (row + f_out)) for each `(out, row, f_out)` in `outs`. Every output
    of one mix varies along the same neuron sets `kept` (and its own fixed axes, folded into
    its rows), so terms of several output tensors that read the same features share one GEMM.
    """

    name: str
    layer: str
    kept: tuple[str, ...]
    features: tuple[str, ...]
    outs: tuple[tuple[str | None, int, int], ...]
    slots: tuple[Slot, ...]
    rows: int
    width: int
    kind: ClassVar[str] = "mix"

    @property
    def patterns(self) -> tuple[Pattern, ...]:
        return tuple(s.pattern for s in self.slots)


@dataclass(frozen=True)
class Add:
    """Op: ONE broadcast sum into output tensor `out` of its mix terms and its bias orbit.

    `terms` are the mixes with a block for `out`, smallest first. With `fused`, the last
    term (the identity GEMM, every axis kept) accumulates into the sum of the others
    (`_MixAdd`: one full-size buffer, no separate pass).
    """

    name: str
    layer: str
    out: str
    terms: tuple[str, ...]
    bias: Pattern | None
    bias_element: int  # first bias element in Basis.bias order (-1: no bias orbit)
    f_out: int
    fused: bool
    patterns: tuple[Pattern, ...]
    kind: ClassVar[str] = "add"


Op = Pool | Mix | Add


@dataclass(frozen=True)
class LayerPlan:
    """Everything `render` needs: the weight space and the ops of both layers.

    `ops` holds the ops of both layers in emission order; each has `.name` (its identifier
    in the emitted source), `.patterns` (the basis patterns it implements) and `.layer`
    (`"EquivariantLayer"` or `"InvariantLayer"`). A linear pattern appears in the pool that
    reads its input (unless that is the input itself), in its mix and in its output's add;
    a bias pattern in its output's add; an invariant pattern in its pool and in the
    invariant mix.
    """

    space: WeightSpace
    dims: tuple[int, ...]
    mode: str
    equivariant_linear: int
    equivariant_bias: int
    invariant_linear: int
    ops: tuple[Op, ...]

    def layer_ops(self, layer: str = EQUIVARIANT) -> tuple[Op, ...]:
        return tuple(op for op in self.ops if op.layer == layer)

    @property
    def equivariant_ops(self) -> tuple[Op, ...]:
        return self.layer_ops(EQUIVARIANT)

    @property
    def invariant_ops(self) -> tuple[Op, ...]:
        return self.layer_ops(INVARIANT)

    def ops_of(self, pattern: Pattern) -> tuple[Op, ...]:
        """Every op that implements a pattern."""
        return tuple(op for op in self.ops if pattern in op.patterns)

    def multiply_adds(
        self, in_channels: int = 1, out_channels: int = 1, layer: str = EQUIVARIANT
    ) -> int:
        """Multiply-adds of the layer's channel mixes for one sample, forward.

        Each mix is one GEMM of its weight [c_out * rows, c_in * width] at every position of
        its kept sets. Pools and broadcast sums add only additions on top. For scale: one
        c_out x c_in mix of every weight-space entry (the benchmarks' floor) is
        `space.dimension * c_in * c_out`. With ordinary GEMMs no implementation of the
        complete basis does less: every mix block is a free parameter, applied at every
        position it varies along.
        """
        total = 0
        for op in self.layer_ops(layer):
            if isinstance(op, Mix):
                positions = math.prod(self.space.set(s).size for s in op.kept)
                total += op.rows * out_channels * op.width * in_channels * positions
        return total

    def parameter_count(self, in_channels: int = 1, out_channels: int = 1) -> int:
        """Parameters of the emitted EquivariantLayer (must equal Basis.parameter_count)."""
        total = 0
        for op in self.equivariant_ops:
            if isinstance(op, Mix):
                total += op.rows * out_channels * op.width * in_channels
            elif isinstance(op, Add) and op.bias is not None:
                total += op.f_out * out_channels
        return total


# -- lowering ----------------------------------------------------------------------------------
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


# -- source formatting helpers -------------------------------------------------------------------
def _fits(text: str) -> bool:
    return len(text) <= LINE_LENGTH


def _comment(indent: int, items: Sequence[str], head: str = "", sep: str = "; ") -> list[str]:
    """A comment of `head` then `items`, wrapped at spaces but never inside an item."""
    glue = "\x00"  # stands for a space that must not break
    text = head + sep.join(item.replace(" ", glue) for item in items)
    pad = " " * indent
    lines = textwrap.wrap(
        text,
        width=LINE_LENGTH,
        initial_indent=pad + "# ",
        subsequent_indent=pad + "#   ",
        break_long_words=False,
        break_on_hyphens=False,
    )
    return [line.replace(glue, " ") for line in lines]


def _patterns_comment(indent: int, head: str, patterns: Sequence[Pattern]) -> list[str]:
    return _comment(indent, [str(p) for p in patterns], head)


def _call(indent: int, target: str, func: str, args: Sequence[str | list[str]]) -> list[str]:
    """`target = func(args)` on one line when it fits, else exploded with trailing commas.

    A list argument is a tuple literal. Magic trailing commas keep the exploded form stable
    under `ruff format`.
    """
    pad = " " * indent

    def flat(arg: str | list[str]) -> str:
        if isinstance(arg, list):
            return "(" + ", ".join(arg) + ("," if len(arg) == 1 else "") + ")"
        return arg

    lead = f"{pad}{target} = " if target else pad
    line = f"{lead}{func}({', '.join(flat(a) for a in args)})"
    if _fits(line):
        return [line]
    lines = [f"{lead}{func}("]
    inner = " " * (indent + 4)
    for arg in args:
        one = f"{inner}{flat(arg)},"
        if _fits(one) or not isinstance(arg, list):
            lines.append(one)
        else:
            lines.append(f"{inner}(")
            lines += [f"{inner}    {a}," for a in arg]
            lines.append(f"{inner}),")
    lines.append(f"{pad})")
    return lines


def _tuple_literal(items: Sequence[str]) -> str:
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def _string_lines(lead: str, text: str) -> list[str]:
    """`lead"text"`, split into implicitly concatenated pieces when too long."""
    line = f'{lead}"{text}"'
    if _fits(line):
        return [line]
    pieces = textwrap.wrap(text, width=LINE_LENGTH - 8, drop_whitespace=False)
    return [f"{lead}("] + [f'    "{p}"' for p in pieces] + [")"]


def _index(pattern: Sequence[bool]) -> str:
    """Indexing `[:, :, None, :]` that inserts None after batch and channel where False."""
    items = [":", ":"] + [":" if keep else "None" for keep in pattern]
    while items and items[-1] == ":":
        items.pop()
    return f"[{', '.join(items)}]" if items else ""


def _permutation(src: Sequence[str], dst: Sequence[str], offset: int) -> str:
    """`.transpose(i, j)` / `.permute(...)` taking axes ordered as `src` to `dst`."""
    if list(src) == list(dst):
        return ""
    perm = [list(src).index(a) for a in dst]
    moved = [i for i, j in enumerate(perm) if i != j]
    if len(moved) == 2:
        return f".transpose({moved[0] + offset}, {moved[1] + offset})"
    dims = list(range(offset)) + [i + offset for i in perm]
    return f".permute({', '.join(map(str, dims))})"


def _sizes(space: WeightSpace, sets: Sequence[str]) -> list[str]:
    return [str(space.set(s).size) for s in sets]


# -- rendering ---------------------------------------------------------------------------------
def _render_pool(space: WeightSpace, pool: Pool, pools: dict[str, Pool], indent: int) -> list[str]:
    """`name = source.sum(dims) / n[.transpose(...)].reshape(batch, c_in * fold, *kept)`."""
    if pool.source == pool.tensor:
        axes, done = list(space.tensor(pool.tensor).axes), ()
    else:
        parent = pools[pool.source]
        axes, done = [a for a in space.tensor(pool.tensor).axes if a in parent.kept], parent.pooled
    todo = [a for a in pool.pooled if a not in done]
    expr = pool.source
    if todo:
        dims = [str(axes.index(a) + 2) for a in todo]
        arg = dims[0] if len(dims) == 1 else f"({', '.join(dims)})"
        if len(axes) > 1:  # sum / n, not mean: the backward of sum is a broadcast view
            expr = f"{expr}.sum({arg}) / {_fold(space, todo)}"
        else:  # a vector: mean is one op, and its gradient is small anyway
            expr = f"{expr}.mean({arg})"
    rest = [a for a in axes if a not in todo]
    if pool.folded:
        want = [a for a in rest if a in pool.folded] + [a for a in rest if a not in pool.folded]
        perm = _permutation(rest, want, 2)
        shape = ", ".join(["batch", f"c_in * {pool.fold}", *_sizes(space, pool.kept)])
        expr = f"({expr})" if todo and perm else expr
        expr = (
            f"{expr}{perm}.reshape({shape})" if not todo or perm else f"({expr}).reshape({shape})"
        )
    parts = [f"mean over {', '.join(pool.pooled)}"] if pool.pooled else []
    parts += [f"{', '.join(pool.folded)} folded into channels"] if pool.folded else []
    head = f"{pool.name}: {', '.join([pool.tensor, *parts])}"
    lines = _patterns_comment(indent, head + "; read by ", pool.patterns)
    line = f"{' ' * indent}{pool.name} = {expr}"
    assert _fits(line), line
    return lines + [line]


def _render_mix(plan: LayerPlan, mix: Mix, indent: int) -> list[str]:
    """Concatenate the features and apply one channel mix."""
    along = ", ".join(mix.kept) or "no permuted set"
    outs = ", ".join(o for o, _, _ in mix.outs)
    lines = _patterns_comment(
        indent, f"{mix.name} (to {outs}; varies along {along}): ", mix.patterns
    )
    weight = f"self.{mix.name}"
    if len(mix.features) == 1:
        feature = mix.features[0]
    else:
        feature = f"cat_{mix.name[4:]}"
        lines += _call(indent, feature, "torch.cat", [list(mix.features), "1"])
    if not mix.kept:
        lines += _call(indent, mix.name, "F.linear", [feature, weight])
    else:
        lines += _call(indent, mix.name, "_mix", [weight, feature])
    if len(mix.outs) > 1:  # one block of rows per output (split: one op, one backward)
        blocks = [_block_name(mix, out) for out, _, _ in mix.outs]
        sizes = [str(f_out) for _, _, f_out in mix.outs]
        if len(set(sizes)) == 1:
            split = f"{mix.name}.split(c_out * {sizes[0]}, 1)"
        else:
            lines += _rows_lines("rows", sizes, one_line=True, indent=indent)
            split = f"{mix.name}.split([c_out * f for f in rows], 1)"
        lines += _unpack(indent, blocks, split)
    return lines


def _block_name(mix: Mix, out: str) -> str:
    return f"{mix.name}_{out}"


def _placed(plan: LayerPlan, mix: Mix, out: str) -> list[str]:
    """Pieces of the expression for out's block of a mix result, broadcastable to out."""
    space = plan.space
    axes = space.tensor(out).axes
    fixed = list(_fixed_axes(space, out))
    pieces = [_block_name(mix, out) if len(mix.outs) > 1 else mix.name]
    if fixed:
        shape = ["batch", "c_out", *_sizes(space, fixed), *_sizes(space, mix.kept)]
        pieces.append(f".view({', '.join(shape)})")
        present = [a for a in axes if a in fixed or a in mix.kept]
        pieces.append(_permutation(fixed + list(mix.kept), present, 2))
    pieces.append(_index([a in fixed or a in mix.kept for a in axes]))
    return [p for p in pieces if p]


def _placed_bias(plan: LayerPlan, add: Add) -> str:
    """The bias vector [c_out * f_out] as a [c_out, *axes] view (1 on permuted axes)."""
    space = plan.space
    axes = space.tensor(add.out).axes
    fixed = _fixed_axes(space, add.out)
    shape = ["c_out"] + [str(space.set(a).size) if a in fixed else "1" for a in axes]
    return [f"self.bias_{add.out}", f".view({', '.join(shape)})"]


def _statement(indent: int, target: str, pieces: Sequence[str], plus: str = "") -> list[str]:
    """`target = [plus + ]pieces...`, split into chained statements when a line is too long."""
    pad = " " * indent
    lead = f"{pad}{target} = {plus + ' + ' if plus else ''}"
    if _fits(lead + "".join(pieces)):
        return [lead + "".join(pieces)]
    # Build the term in a temporary first, one piece group per line.
    lines, line = [], f"{pad}term = {pieces[0]}"
    for piece in pieces[1:]:
        if _fits(line + piece):
            line += piece
        else:
            lines.append(line)
            line = f"{pad}term = term{piece}"
    lines.append(line)
    lines.append(f"{lead}term")
    return lines


def _render_add(plan: LayerPlan, add: Add, mixes: dict[str, Mix], indent: int) -> list[str]:
    """The broadcast sum of one output; with `fused`, the last GEMM adds the rest."""
    pad = " " * indent
    target = add.name
    terms = [_placed(plan, mixes[m], add.out) for m in add.terms]
    if add.bias is not None:
        terms.insert(0, _placed_bias(plan, add))
    head = f"{target}: broadcast sum of {', '.join(add.terms)}"
    if add.bias is None:
        lines = _comment(indent, [], head)
    else:
        lines = _comment(indent, [str(add.bias)], head + " and the bias orbit ")
    if add.fused:  # the two largest remaining terms are summed inside _MixAdd
        terms, rest = terms[:-2], terms[-2]
    lines += _statement(indent, target, terms[0])
    for t in terms[1:]:
        lines += _statement(indent, target, t, plus=target)
    last = mixes[add.terms[-1]]
    if add.fused:
        lines += _statement(indent, "rest", rest)
        feature = last.features[0] if len(last.features) == 1 else f"cat_{last.name[4:]}"
        args = [f"self.{last.name}", feature, target, "rest"]
        lines += _call(indent, target, "_MixAdd.apply", args)
    else:
        # A fixed axis after a kept one leaves the largest term transposed: return contiguous.
        axes = plan.space.tensor(add.out).axes
        fixed = list(_fixed_axes(plan.space, add.out))
        if fixed and fixed + list(last.kept) != [a for a in axes if a in fixed or a in last.kept]:
            lines.append(f"{pad}{target} = {target}.contiguous()")
    for line in lines:
        assert _fits(line), line
    return lines


def _dims_text(dims: Sequence[int]) -> str:
    return ",".join(str(d) for d in dims)


def _wrap_dims(prefix: str, dims: Sequence[int], suffix: str = "", cont: str = "") -> list[str]:
    """`prefix` + widths + `suffix`, broken after commas when longer than a line."""
    items = [f"{d}," for d in dims[:-1]] + [f"{dims[-1]}{suffix}"]
    lines, line = [], prefix
    for item in items:
        if not _fits(line + item) and line.strip() not in ("", prefix.strip()):
            lines.append(line)
            line = cont
        line += item
    return lines + [line]


def _header(plan: LayerPlan) -> list[str]:
    spec = textwrap.wrap(
        str(plan.space),
        width=LINE_LENGTH,
        initial_indent="#   spec: ",
        subsequent_indent="#         ",
        break_long_words=False,
    )
    dims = _dims_text(plan.dims)
    regenerate = f"#   regenerate: dws-theory generate {dims} --symmetry {plan.mode}"
    if not _fits(regenerate):
        regenerate = f"#   regenerate: dws-theory generate DIMS --symmetry {plan.mode}"
    return [
        "# DO NOT EDIT: generated by dws_theory.codegen; edits are overwritten.",
        f"#   generator version: {GENERATOR_VERSION}",
        *spec,
        *_wrap_dims("#   dims: ", plan.dims, cont="#         "),
        f"#   mode: {plan.mode}",
        regenerate,
    ]


def _module_doc(plan: LayerPlan) -> list[str]:
    m = len(plan.dims) - 1
    return [
        f'"""Equivariant layers for the weight space of an MLP, {plan.mode} symmetry.',
        "",
        *_wrap_dims("Widths d_0..d_M: ", plan.dims, "."),
        "Layout: forward(weights, biases); weights[m-1] is [B, C, d_m, d_{m-1}] and biases[m-1]",
        f"is [B, C, d_m], for m = 1..{m}. EquivariantLayer returns the same structure with",
        "out_channels; InvariantLayer returns [B, out_channels].",
        "",
        f"Basis (one channel in and out): {plan.equivariant_linear} equivariant linear, "
        f"{plan.equivariant_bias} bias and {plan.invariant_linear} invariant",
        "elements. Each linear element owns a c_out x c_in block of a mix weight, each bias",
        "element c_out entries of a bias vector. Pooling is a mean (Basis.dense, normalised).",
        '"""',
    ]


_HELPERS = '''

def _mix(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """One channel mix [B, K, *S] -> [B, O, *S] for a weight [O, K]: one batched GEMM."""
    batch, size = x.shape[0], math.prod(x.shape[2:])  # no -1: B may be 0
    y = torch.bmm(weight.expand(batch, -1, -1), x.reshape(batch, x.shape[1], size))
    return y.view(batch, weight.shape[0], *x.shape[2:])


class _MixAdd(torch.autograd.Function):
    """out = weight @ x (channel mix) + a + b, with a and b broadcast to the result.

    The GEMM of a tensor's identity term, accumulating into the sum of its other terms. One
    autograd node so that (a) the forward writes one full-size buffer: the terms are summed
    into it and the GEMM accumulates in place (baddbmm_); (b) the backward hands x a fresh,
    non-view gradient, into which autograd then adds the gradients of x's pooled features in
    place instead of allocating another full-size buffer. The `vmap` rule keeps torch.func
    (vmap, jacrev) working and double backward uses differentiable ops; there is no forward-
    mode rule (jvp), because torch.compile cannot trace a Function that defines one.
    """

    @staticmethod
    def forward(weight, x, a, b):
        batch, c_out, size = x.shape[0], weight.shape[0], math.prod(x.shape[2:])
        acc = (a + b).expand(batch, c_out, *x.shape[2:]).contiguous()  # fresh: ours to write
        x3 = x.reshape(batch, x.shape[1], size)
        acc.view(batch, c_out, size).baddbmm_(weight.expand(batch, -1, -1), x3)
        return acc

    @staticmethod
    def setup_context(ctx, inputs, output):
        weight, x, a, b = inputs
        ctx.save_for_backward(weight, x)
        ctx.term_shapes = (a.shape, b.shape)

    @staticmethod
    def backward(ctx, grad):
        weight, x = ctx.saved_tensors
        batch, c_in, size = x.shape[0], x.shape[1], math.prod(x.shape[2:])
        g3 = grad.reshape(batch, grad.shape[1], size)
        grad_weight = grad_x = None
        if ctx.needs_input_grad[0]:
            grad_weight = torch.bmm(g3, x.reshape(batch, c_in, size).transpose(1, 2)).sum(0)
        if ctx.needs_input_grad[1]:
            w_t = weight.t().expand(batch, -1, -1)
            if torch.is_grad_enabled():  # double backward: stay differentiable
                grad_x = torch.bmm(w_t, g3).view(x.shape)
            else:  # a base tensor, not a view, so autograd may add into it in place
                grad_x = torch.empty(x.shape, dtype=grad.dtype, device=grad.device)
                torch.bmm(w_t, g3, out=grad_x.view(batch, c_in, size))
        grad_terms = [
            grad.sum_to_size(shape) if needed else None
            for shape, needed in zip(ctx.term_shapes, ctx.needs_input_grad[2:], strict=True)
        ]
        return grad_weight, grad_x, *grad_terms

    @staticmethod
    def vmap(info, in_dims, weight, x, a, b):
        """Under torch.func.vmap: the same sum, out of place, mapped axis first."""

        def front(t: torch.Tensor, dim: int | None) -> torch.Tensor:
            return t.movedim(dim, 0) if dim is not None else t.expand(info.batch_size, *t.shape)

        out = torch.einsum("voc,vbc...->vbo...", front(weight, in_dims[0]), front(x, in_dims[1]))
        for term, dim in zip((a, b), in_dims[2:], strict=True):
            term = front(term, dim)
            out = out + term.view(term.shape[0], *[1] * (out.dim() - term.dim()), *term.shape[1:])
        return out, 0


def _channels(value, name: str, layer: str) -> int:
    """A channel count: a positive integer (int or any integer type, not bool)."""
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise TypeError(f"{layer}: {name} must be a positive integer, got {value!r}")
    if value.__index__() < 1:
        raise ValueError(f"{layer}: {name} must be a positive integer, got {value!r}")
    return value.__index__()


def _pair(weights, biases):
    return weights, biases


def _features(weights, biases, layer: str):
    """(weights, biases, wrap): forward(weights, biases) takes two sequences of tensors;
    forward(features) one object with .weights and .biases (NFN's WeightSpaceFeatures),
    whose type wrap(weights, biases) rebuilds for the result."""
    if biases is not None:
        return weights, biases, _pair
    if hasattr(weights, "weights") and hasattr(weights, "biases"):
        return weights.weights, weights.biases, type(weights)
    raise TypeError(
        f"{layer} expects (weights, biases) or one object with .weights and .biases (such "
        f"as NFN's WeightSpaceFeatures), got one argument of type {type(weights).__name__}"
    )


def _check_tensor(name: str, got, like: torch.Tensor, layer: str) -> None:
    """A tensor of the layer's dtype on the layer's device."""
    if not isinstance(got, torch.Tensor):
        raise TypeError(f"{layer}: {name} must be a torch.Tensor, got {type(got).__name__}")
    if got.device != like.device:
        raise ValueError(
            f"{layer}: {name} is on {got.device}, expected {like.device} (where the layer's "
            "parameters are); move the inputs or the layer with .to(device)"
        )
    if got.dtype != like.dtype:
        fix = f"convert the inputs with .to({like.dtype})"
        if got.is_floating_point():
            fix += f" or the layer with .to({got.dtype})"
        raise TypeError(
            f"{layer}: {name} has dtype {got.dtype}, expected {like.dtype} (the dtype of "
            f"the layer's parameters); {fix}"
        )


def _check_inputs(weights, biases, channels: int, layer: str, like: torch.Tensor) -> int:
    """Shapes against the layout contract, dtype and device against the layer's parameter
    `like`; returns the batch size (which may be 0)."""
    depth = len(DIMS) - 1
    if len(weights) != depth or len(biases) != depth:
        raise ValueError(
            f"{layer} expects {depth} weight and {depth} bias tensors (an MLP with widths "
            f"{DIMS}), got {len(weights)} and {len(biases)}"
        )
    _check_tensor("weights[0]", weights[0], like, layer)
    batch = weights[0].shape[0]
    for m in range(1, depth + 1):
        checks = (
            (f"weights[{m - 1}]", weights[m - 1], (batch, channels, DIMS[m], DIMS[m - 1])),
            (f"biases[{m - 1}]", biases[m - 1], (batch, channels, DIMS[m])),
        )
        for name, got, want in checks:
            _check_tensor(name, got, like, layer)
            if tuple(got.shape) != want:
                axes = f"d_{m}, d_{m - 1}" if len(want) == 4 else f"d_{m}"
                raise ValueError(
                    f"{layer}: {name} must have shape [B, C, {axes}] = {list(want)} "
                    f"(C = {channels} channels), got {list(got.shape)}"
                )
    return batch


def _as_theta(theta, count: int, c_out: int, c_in: int | None, what: str) -> torch.Tensor:
    """[count] (one channel) or [count, c_out(, c_in)] -> [count, c_out(, c_in)]."""
    theta = torch.as_tensor(theta)
    full = (count, c_out) if c_in is None else (count, c_out, c_in)
    if tuple(theta.shape) == (count,) and c_out == 1 and c_in in (None, 1):
        return theta.reshape(full)
    if tuple(theta.shape) != full:
        raise ValueError(
            f"{what} needs shape {list(full)} (or [{count}] with one channel), "
            f"got {list(theta.shape)}"
        )
    return theta


def _load_slots(module: nn.Module, slots, theta: torch.Tensor) -> None:
    """Write coefficients [elements, c_out, c_in] into the mix weights (see SLOTS)."""
    c_out, c_in = module.out_channels, module.in_channels
    for name, start, row, column, f_out, f_in, _ in slots:
        block = theta[start : start + f_out * f_in].reshape(f_out, f_in, c_out, c_in)
        block = block.permute(2, 0, 3, 1).reshape(c_out * f_out, c_in * f_in)
        weight = getattr(module, name)
        rows = slice(c_out * row, c_out * (row + f_out))
        weight[rows, c_in * column : c_in * (column + f_in)] = block.to(weight)


def _init_slots(module: nn.Module, slots) -> None:
    """Normal blocks with std 1/sqrt(fan * c_in) (fan from SLOTS)."""
    c_out, c_in = module.out_channels, module.in_channels
    for name, _, row, column, f_out, f_in, fan in slots:
        weight = getattr(module, name)
        rows = slice(c_out * row, c_out * (row + f_out))
        block = weight[rows, c_in * column : c_in * (column + f_in)]
        nn.init.normal_(block, std=1.0 / math.sqrt(fan * c_in))
'''


def _rows_lines(
    name: str, rows: Sequence[str], one_line: bool = False, indent: int = 0
) -> list[str]:
    """A tuple assignment: on one line when it fits (always tried for 0 or 1 rows), else one
    row per line with a magic trailing comma."""
    pad = " " * indent
    one_line = one_line or len(rows) <= 1 or name == "DIMS"
    if one_line and _fits(f"{pad}{name} = {_tuple_literal(rows)}"):
        return [f"{pad}{name} = {_tuple_literal(rows)}"]
    return [f"{pad}{name} = ("] + [f"{pad}    {r}," for r in rows] + [f"{pad})"]


def _slots_table(name: str, mixes: Sequence[Mix]) -> list[str]:
    rows = [
        f'("{m.name}", {s.element}, {s.row}, {s.column}, {s.f_out}, {s.f_in}, {s.fan})'
        for m in mixes
        for s in m.slots
    ]
    return _rows_lines(name, rows)


def _unpack(indent: int, names: Sequence[str], source: str) -> list[str]:
    pad = " " * indent
    line = f"{pad}{', '.join(names)} = {source}"
    if len(names) == 1:
        line = f"{pad}({names[0]},) = {source}"
    if _fits(line):
        return [line]
    return [f"{pad}("] + [f"{pad}    {n}," for n in names] + [f"{pad}) = {source}"]


def _tensor_names(space: WeightSpace) -> tuple[list[str], list[str]]:
    weights = [t.name for t in space.tensors if len(t.axes) == 2]
    biases = [t.name for t in space.tensors if len(t.axes) == 1]
    return weights, biases


def _render_equivariant(plan: LayerPlan) -> list[str]:
    space = plan.space
    ops = plan.equivariant_ops
    pools = {op.name: op for op in ops if isinstance(op, Pool)}
    mixes = {op.name: op for op in ops if isinstance(op, Mix)}
    adds = [op for op in ops if isinstance(op, Add)]
    weights, biases = _tensor_names(space)
    lines = [
        "class EquivariantLayer(nn.Module):",
        f'    """Linear {plan.mode}-equivariant map of the weight space, with channels.',
        "",
        "    One weight per mix (see the comments in `forward`): every basis element owns a",
        "    c_out x c_in block of it (SLOTS); every bias orbit owns c_out entries of a bias_<T>.",
        '    """',
        "",
        "    def __init__(self, in_channels: int, out_channels: int) -> None:",
        "        super().__init__()",
        '        self.in_channels = _channels(in_channels, "in_channels", "EquivariantLayer")',
        '        self.out_channels = _channels(out_channels, "out_channels", "EquivariantLayer")',
        "        c_in, c_out = self.in_channels, self.out_channels",
    ]
    for m in mixes.values():
        shape = f"torch.empty({m.rows} * c_out, {m.width} * c_in)"
        lines += _call(8, f"self.{m.name}", "nn.Parameter", [shape])
    for a in adds:
        if a.bias is not None:
            lines.append(
                f"        self.bias_{a.out} = nn.Parameter(torch.empty({a.f_out} * c_out))"
            )
    lines += [
        "        self.reset_parameters()",
        "",
        "    @torch.no_grad()",
        "    def reset_parameters(self) -> None:",
        '        """Normal weights scaled by fan-in, zero biases.',
        "",
        "        Per output tensor, unpooled features (kept along every permuted axis) and pooled",
        "        ones each get one share of the variance: with i.i.d. inputs the output variance",
        "        stays close to the input's, with strongly correlated inputs within a factor 2.",
        '        """',
        "        _init_slots(self, SLOTS)",
        "        for name, _, _ in BIASES:",
        "            nn.init.zeros_(getattr(self, name))",
        "",
        "    @torch.no_grad()",
        "    def load_theta(self, theta_linear, theta_bias) -> None:",
        '        """Set the parameters from basis coefficients, numbered as in Basis.dense.',
        "",
        f"        theta_linear: [{plan.equivariant_linear}, out_channels, in_channels] "
        f"(or [{plan.equivariant_linear}] with one channel);",
        f"        theta_bias: [{plan.equivariant_bias}, out_channels] "
        f"(or [{plan.equivariant_bias}]). Then, channel by channel,",
        "        forward(x) = Basis.dense(theta) @ x + Basis.dense_bias(theta_bias).",
        '        """',
        "        c_out, c_in = self.out_channels, self.in_channels",
        '        theta = _as_theta(theta_linear, EQUIVARIANT_LINEAR, c_out, c_in, "theta_linear")',
        "        _load_slots(self, SLOTS, theta)",
        '        bias = _as_theta(theta_bias, EQUIVARIANT_BIAS, c_out, None, "theta_bias")',
        "        for name, start, f_out in BIASES:",
        "            getattr(self, name).copy_(bias[start : start + f_out].T.reshape(-1))",
        "",
        "    def forward(self, weights, biases=None):",
        '        """(weights, biases) -> (weights, biases) with out_channels; one object with',
        "        .weights and .biases (NFN's WeightSpaceFeatures) -> an object of its type.",
        '        """',
        "        c_in, c_out = self.in_channels, self.out_channels",
        '        weights, biases, wrap = _features(weights, biases, "EquivariantLayer")',
    ]
    check = ["weights", "biases", "c_in", '"EquivariantLayer"', f"self.{next(iter(mixes))}"]
    body = _unpack(8, weights, "weights") + _unpack(8, biases, "biases")
    for pool in pools.values():
        body += _render_pool(space, pool, pools, 8)
    fused = {a.terms[-1] for a in adds if a.fused}
    for m in mixes.values():
        if m.name not in fused:
            body += _render_mix(plan, m, 8)
        elif len(m.features) > 1:  # the fused GEMM still needs its concatenation
            body += _call(8, f"cat_{m.name[4:]}", "torch.cat", [list(m.features), "1"])
    for a in adds:
        if a.fused:
            head = f"{a.terms[-1]} (varies along every axis of {a.out}): "
            body += _patterns_comment(8, head, mixes[a.terms[-1]].patterns)
        body += _render_add(plan, a, mixes, 8)
    uses_batch = any("batch" in line for line in body if not line.lstrip().startswith("#"))
    lines += _call(8, "batch" if uses_batch else "", "_check_inputs", check)
    lines += body
    w = ", ".join(f"{n}_out" for n in weights)
    b = ", ".join(f"{n}_out" for n in biases)
    line = f"        return wrap([{w}], [{b}])"
    if _fits(line):
        lines.append(line)
    else:
        lines += ["        return wrap("]
        for items in (weights, biases):
            lines += (
                ["            ["]
                + [f"                {n}_out," for n in items]
                + ["            ],"]
            )
        lines += ["        )"]
    return lines


def _render_invariant(plan: LayerPlan) -> list[str]:
    space = plan.space
    ops = plan.invariant_ops
    mix = next(op for op in ops if isinstance(op, Mix))
    pools = {op.name: op for op in ops if isinstance(op, Pool)}
    weights, biases = _tensor_names(space)
    used = {p.tensor for p in pools.values()} | set(mix.features)
    lines = [
        "class InvariantLayer(nn.Module):",
        f'    """Linear {plan.mode}-invariant map of the weight space to [B, out_channels].',
        "",
        "    Invariant features (one per invariant basis element and input channel: means over",
        "    every permuted axis, fixed axes kept), then one linear map with bias.",
        '    """',
        "",
        "    def __init__(self, in_channels: int, out_channels: int) -> None:",
        "        super().__init__()",
        '        self.in_channels = _channels(in_channels, "in_channels", "InvariantLayer")',
        '        self.out_channels = _channels(out_channels, "out_channels", "InvariantLayer")',
        "        c_in, c_out = self.in_channels, self.out_channels",
        f"        self.{mix.name} = nn.Parameter(torch.empty(c_out, {mix.width} * c_in))",
        "        self.bias = nn.Parameter(torch.empty(c_out))",
        "        self.reset_parameters()",
        "",
        "    @torch.no_grad()",
        "    def reset_parameters(self) -> None:",
        '        """Normal weights with std 1/sqrt(fan-in), zero bias."""',
        "        _init_slots(self, INVARIANT_SLOTS)",
        "        nn.init.zeros_(self.bias)",
        "",
        "    @torch.no_grad()",
        "    def load_theta(self, theta, bias=None) -> None:",
        '        """Set the weight from coefficients numbered as Basis.dense_invariant rows.',
        "",
        "        theta: [INVARIANT_LINEAR, out_channels, in_channels] (or [INVARIANT_LINEAR] with",
        "        one channel); bias: [out_channels] (unchanged when None).",
        '        """',
        "        c_out, c_in = self.out_channels, self.in_channels",
        '        theta = _as_theta(theta, INVARIANT_LINEAR, c_out, c_in, "theta")',
        "        _load_slots(self, INVARIANT_SLOTS, theta)",
        "        if bias is not None:",
        "            self.bias.copy_(torch.as_tensor(bias).reshape(c_out))",
        "",
        "    def features(self, weights, biases=None) -> torch.Tensor:",
        '        """Invariant features [B, in_channels * INVARIANT_LINEAR] (dense_invariant)."""',
        "        c_in = self.in_channels",
        '        weights, biases, _ = _features(weights, biases, "InvariantLayer")',
    ]
    body = []
    for pool in pools.values():
        body += _render_pool(space, pool, pools, 8)
    uses_batch = any("batch" in line for line in body if not line.lstrip().startswith("#"))
    check = ["weights", "biases", "c_in", '"InvariantLayer"', "self.bias"]
    lines += _call(8, "batch" if uses_batch else "", "_check_inputs", check)
    lines += _unpack(8, [w if w in used else "_" for w in weights], "weights")
    lines += _unpack(8, [b if b in used else "_" for b in biases], "biases")
    lines += body
    if len(mix.features) == 1:
        lines.append(f"        return {mix.features[0]}")
    else:
        lines += _call(8, "", "return torch.cat", [list(mix.features), "1"])
    lines += [
        "",
        "    def forward(self, weights, biases=None) -> torch.Tensor:",
        f"        return F.linear(self.features(weights, biases), self.{mix.name}, self.bias)",
    ]
    return lines


def render(plan: LayerPlan) -> str:
    """Standalone Python source of EquivariantLayer and InvariantLayer for the plan."""
    mixes = [op for op in plan.equivariant_ops if isinstance(op, Mix)]
    inv = [op for op in plan.invariant_ops if isinstance(op, Mix)]
    biases = [
        f'("bias_{a.out}", {a.bias_element}, {a.f_out})'
        for a in plan.equivariant_ops
        if isinstance(a, Add) and a.bias is not None
    ]
    lines = [
        *_header(plan),
        *_module_doc(plan),
        "",
        "from __future__ import annotations",
        "",
        "import math",
        "",
        "import torch",
        "from torch import nn",
        "from torch.nn import functional as F",
        "",
        *_rows_lines("DIMS", [str(d) for d in plan.dims]),
        f'MODE = "{plan.mode}"',
        *_string_lines("SPEC = ", str(plan.space)),
        f'GENERATOR_VERSION = "{GENERATOR_VERSION}"',
        f"EQUIVARIANT_LINEAR = {plan.equivariant_linear}",
        f"EQUIVARIANT_BIAS = {plan.equivariant_bias}",
        f"INVARIANT_LINEAR = {plan.invariant_linear}",
        "",
        "# Where each pattern's coefficients live, in Basis.linear order: (mix weight, first basis",
        "# element, first row in units of c_out, first column in units of c_in, f_out, f_in,",
        "# fan-in of the initialisation).",
        *_slots_table("SLOTS", mixes),
        "# Bias orbits: (bias vector, first bias element in Basis.bias order, f_out).",
        *_rows_lines("BIASES", biases),
        "# The invariant layer's features, in Basis.invariant order.",
        *_slots_table("INVARIANT_SLOTS", inv),
    ]
    lines += _HELPERS.rstrip("\n").split("\n")
    lines += ["", ""] + _render_equivariant(plan) + ["", ""] + _render_invariant(plan)
    return "\n".join(lines) + "\n"


# -- files and CLI -----------------------------------------------------------------------------
def module_name(dims: Sequence[int], mode: str) -> str:
    """`dws_2_32_32_1_hidden`: the file stem of a generated module."""
    return "dws_" + "_".join(str(d) for d in parse_dims(tuple(dims))) + "_" + parse_mode(mode)


def source_for(dims: str | Sequence[int], mode: str = "hidden") -> str:
    """Rendered source for an MLP shape and mode (no file written)."""
    dims = parse_dims(dims if isinstance(dims, str) else tuple(dims))
    mode = parse_mode(mode)
    return render(lower(enumerate_basis(mlp(dims, mode)), mode=mode))


def write_module(dims: str | Sequence[int], mode: str = "hidden", out_dir="generated") -> Path:
    """Write `dws_<dims>_<mode>.py` under out_dir and return its path."""
    dims = parse_dims(dims if isinstance(dims, str) else tuple(dims))
    mode = parse_mode(mode)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{module_name(dims, mode)}.py"
    write_text(path, source_for(dims, mode))  # atomic: complete or absent
    return path


def _run_generate(args: argparse.Namespace) -> int:
    print(write_module(args.dims, args.symmetry, args.out))
    return 0


def add_generate_parser(subparsers: argparse._SubParsersAction) -> None:
    """`dws-theory generate DIMS [--symmetry MODE] [--out DIR]`."""
    p = subparsers.add_parser("generate", help="write a standalone PyTorch layer module")
    add_shape_arguments(p)
    p.add_argument("--out", default="generated", metavar="DIR", help="output folder")
    p.set_defaults(func=_run_generate)
