"""The eager backend: print a `LayerPlan` as a standalone PyTorch module (the reference).

The printed module imports only torch and the standard library, defines `EquivariantLayer`
and `InvariantLayer`, and runs every op of the plan as plain eager PyTorch: one pool per
feature, one GEMM per mix, one broadcast sum per output tensor. Every other backend is
checked against the module this one prints.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable, Sequence

from ...spec import WeightSpace
from ..emit import (
    LINE_LENGTH,
    assignment,
    call,
    comment,
    fits,
    index,
    patterns_comment,
    permutation,
    rows_lines,
    statement,
    string_lines,
    tuple_literal,
    unpack,
    wrap_dims,
    wrapped,
)
from ..plan import Add, Bias, Block, LayerPlan, Mix, Pool, local_name
from ..preludes import prelude_source

__all__ = ["GENERATOR_VERSION", "NAME", "render"]

NAME = "eager"  # this backend's name, the default one
GENERATOR_VERSION = "6"


def _sizes(space: WeightSpace, sets: Sequence[str]) -> list[str]:
    return [str(space.set(s).size) for s in sets]


# A step of a pool: an expression template in the previous value `{x}`, and whether its
# result is a binary expression (`a / n`) that needs parentheses before the next step.
Step = tuple[str, bool]


def _render_pool(space: WeightSpace, pool: Pool, pools: dict[str, Pool], indent: int) -> list[str]:
    """`name = source.sum(dims) / n[.transpose(...)].reshape(batch, c_in * fold, *kept)`, one
    einsum when the pool reads a diagonal, or one `_pool_folded` call where a folded axis lies
    inside a pooled one; step by step when that is too long a line."""
    parts = [f"mean over {', '.join(pool.pooled)}"] if pool.pooled else []
    parts += [f"{', '.join(pool.folded)} folded into channels"] if pool.folded else []
    parts += ["on a diagonal"] if pool.diagonal else []
    head = f"{pool.name}: {', '.join([pool.tensor, *parts])}"
    lines = patterns_comment(indent, head + "; read by ", pool.patterns)
    if not pool.diagonal and _inner_fold(pool):
        pooled = _axes_tuple(c[0] + 2 for c in pool.pool_axes)
        expr = f"_pool_folded({pool.source}, {pooled}, "
        expr += f"{_axes_tuple(a + 2 for a in pool.fold_axes)})"
        return [*lines, *assignment(indent, pool.name, expr)]
    source, steps = (
        _diagonal_pool(space, pool) if pool.diagonal else _plain_pool(space, pool, pools)
    )
    return lines + _step_lines(pool.name, source, steps, indent)


def _axes_tuple(axes: Iterable[int]) -> str:
    """`(2,)` or `(2, 3)`: a Python tuple literal of axis numbers."""
    items = [str(a) for a in axes]
    return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"


def _inner_fold(pool: Pool) -> bool:
    """A pool of the tensor itself that folds a fixed axis lying inside a pooled one (an
    MLP's first weight [B, C, n1, n0] pooled over n1): emitted as `_pool_folded`, which
    folds first under torch.compile (see its docstring in the module)."""
    if pool.source != local_name(pool.tensor) or not pool.fold_axes or not pool.pool_axes:
        return False
    return max(pool.fold_axes) > min(c[0] for c in pool.pool_axes)


def _step_lines(name: str, source: str, steps: list[Step], indent: int) -> list[str]:
    pad = " " * indent
    expr, binary = source, False
    for template, result_binary in steps:
        expr, binary = template.format(x=f"({expr})" if binary else expr), result_binary
    if fits(f"{pad}{name} = {expr}"):
        return [f"{pad}{name} = {expr}"]
    # Step by step, in a short temporary: long tensor names (a ResNet's `layer4_1_...`)
    # leave room for the operations on every line.
    lines, value = [], source
    for template, _ in steps:
        lines += assignment(indent, "step", template.format(x=value))
        value = "step"
    return [*lines, f"{pad}{name} = step"]


def _plain_pool(space: WeightSpace, pool: Pool, pools: dict[str, Pool]) -> tuple[str, list[Step]]:
    """Sum over the pooled axes (from the tensor or a parent feature), then fold."""
    sizes = space.shape(pool.tensor)
    refold = True  # False when the source already has the folded channel layout
    if pool.source == local_name(pool.tensor):
        axes, done = list(range(len(sizes))), set()
    else:
        parent = pools[pool.source]
        axes = [c[0] for c in parent.keep_axes]
        done = {a for c in parent.pool_axes for a in c}
        refold = not parent.fold_axes
    todo = [c[0] for c in pool.pool_axes if c[0] not in done]
    steps: list[Step] = []
    if todo:
        dims = [str(axes.index(a) + 2) for a in todo]
        arg = dims[0] if len(dims) == 1 else f"({', '.join(dims)})"
        if len(axes) > 1:  # sum / n, not mean: the backward of sum is a broadcast view
            steps.append((f"{{x}}.sum({arg}) / {math.prod(sizes[a] for a in todo)}", True))
        else:  # a vector: mean is one op, and its gradient is small anyway
            steps.append((f"{{x}}.mean({arg})", False))
    rest = [a for a in axes if a not in todo]
    if pool.fold_axes and refold:
        folded = set(pool.fold_axes)
        want = [a for a in rest if a in folded] + [a for a in rest if a not in folded]
        perm = permutation(rest, want, 2)
        shape = ", ".join(["batch", f"c_in * {pool.fold}", *_sizes(space, pool.kept)])
        steps.append((f"{{x}}{perm}.reshape({shape})", False))
    return pool.source, steps


_EINSUM = "defghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"  # b, c: batch and channel


def _diagonal_pool(space: WeightSpace, pool: Pool) -> tuple[str, list[Step]]:
    """One einsum: repeated letters read a diagonal, letters missing on the right are summed."""
    letter = {}
    for k, cls in enumerate(pool.keep_axes + pool.pool_axes + tuple((a,) for a in pool.fold_axes)):
        for a in cls:
            letter[a] = _EINSUM[k]
    rank = len(space.tensor(pool.tensor).axes)
    source = "".join(letter[a] for a in range(rank))
    target = "".join(letter[a] for a in pool.fold_axes)
    target += "".join(letter[c[0]] for c in pool.keep_axes)
    steps: list[Step] = [(f'torch.einsum("bc{source}->bc{target}", {{x}})', False)]
    if pool.pool_axes:
        steps.append((f"{{x}} / {_sizes_product(space, pool.pooled)}", True))
    if pool.fold_axes:
        shape = ", ".join(["batch", f"c_in * {pool.fold}", *_sizes(space, pool.kept)])
        steps.append((f"{{x}}.reshape({shape})", False))
    return local_name(pool.tensor), steps


def _sizes_product(space: WeightSpace, sets: Sequence[str]) -> int:
    return math.prod(space.set(s).size for s in sets)


def _render_mix(plan: LayerPlan, mix: Mix, indent: int) -> list[str]:
    """Concatenate the features and apply one channel mix."""
    along = ", ".join(mix.kept) or "no permuted set"
    outs = ", ".join(dict.fromkeys(b.out for b in mix.blocks))
    lines = patterns_comment(
        indent, f"{mix.name} (to {outs}; varies along {along}): ", mix.patterns
    )
    weight = f"self.{mix.name}"
    if len(mix.features) == 1:
        feature = mix.features[0]
    else:
        feature = f"cat_{mix.name[4:]}"
        lines += call(indent, feature, "torch.cat", [list(mix.features), "1"])
    if not mix.kept:
        lines += call(indent, mix.name, "F.linear", [feature, weight])
    else:
        lines += call(indent, mix.name, "_mix", [weight, feature])
    if len(mix.blocks) > 1:  # one block of rows per output (split: one op, one backward)
        names = [b.name for b in mix.blocks]
        sizes = [str(b.f_out) for b in mix.blocks]
        if len(set(sizes)) == 1:
            split = f"{mix.name}.split(c_out * {sizes[0]}, 1)"
        else:
            lines += rows_lines("rows", sizes, one_line=True, indent=indent)
            split = f"{mix.name}.split([c_out * f for f in rows], 1)"
        lines += unpack(indent, names, split)
    return lines


def _diagonals(space: WeightSpace, out: str, classes, like: str, lead: int) -> list[str]:
    """` * _diagonal(n, like, ndim, i, j)` for every extra axis of a class: the term is kept
    on the diagonal of the class's axes (`lead` dimensions come before the tensor's axes)."""
    axes = space.tensor(out).axes
    ndim = lead + len(axes)
    pieces = []
    for cls in classes:
        n = space.set(axes[cls[0]]).size
        for extra in cls[1:]:
            pieces.append(f" * _diagonal({n}, {like}, {ndim}, {cls[0] + lead}, {extra + lead})")
    return pieces


def _placed(
    plan: LayerPlan, mix: Mix, block: Block, order: Sequence[int] | None = None
) -> list[str]:
    """Pieces of the expression for one block of a mix result, broadcastable to its tensor
    with its axes in `order` (default: the tensor's own order)."""
    space = plan.space
    out = block.out
    order = list(order) if order is not None else list(range(len(space.tensor(out).axes)))
    name = block.name
    pieces = [name]
    first = [c[0] for c in block.kept_axes]
    if block.fixed_axes:
        fixed = [space.tensor(out).axes[a] for a in block.fixed_axes]
        shape = ["batch", "c_out", *_sizes(space, fixed), *_sizes(space, mix.kept)]
        pieces.append(f".view({', '.join(shape)})")
        first = list(block.fixed_axes) + first
    pieces.append(permutation(first, [a for a in order if a in first], 2))
    pieces.append(index([a in first for a in order]))
    pieces += _diagonals(space, out, block.kept_axes + block.broadcast_axes, name, 2)
    return [p for p in pieces if p]


def _placed_bias(
    plan: LayerPlan, bias: Bias, out: str, order: Sequence[int] | None = None
) -> list[str]:
    """A bias vector [c_out * f_out] as a [c_out, *axes] view (1 on permuted axes), axes in
    `order` (default: the tensor's own order)."""
    space = plan.space
    axes = space.tensor(out).axes
    order = list(order) if order is not None else list(range(len(axes)))
    shape = ["c_out"] + [
        str(space.set(axes[i]).size) if i in bias.fixed_axes else "1" for i in order
    ]
    param = f"self.{bias.name}"
    return [param, f".view({', '.join(shape)})"] + _diagonals(
        space, out, bias.broadcast_axes, param, 1
    )


def _needs_copy(terms: list[list[str]], blocks: int) -> bool:
    """Whether the sum could come out as a strided view: a term is a transposed view (a sum
    takes the layout of its operands), or the only term is one block of a split mix."""
    transposed = any(p.startswith((".permute", ".transpose")) for t in terms for p in t)
    return transposed or (len(terms) == 1 and blocks > 1)


def _working_order(plan: LayerPlan, add: Add, blocks: dict[str, tuple[Mix, Block]]) -> list[int]:
    """The axis order the broadcast sum of `add` is built in: the output's fixed axes first,
    as the mixes produce them (folded into channels), then the others; the sum is permuted
    into the tensor's order once at the end. Then every term is a plain view and the
    gradient of each broadcast term is a reduction over trailing axes, which torch.compile's
    CPU code runs far faster than one over a middle axis of a narrow tensor. The tensor's own
    order where that changes nothing, for a fused add (`_mix_add` writes the tensor's
    layout) and where a term sits on a diagonal."""
    rank = len(plan.space.tensor(add.out).axes)
    own = list(range(rank))
    used = [blocks[name][1] for name in add.blocks]
    classes = [c for b in used for c in b.kept_axes + b.broadcast_axes]
    classes += [c for b in add.biases for c in b.broadcast_axes]
    if add.fused or any(len(c) > 1 for c in classes):
        return own
    fixed = {a for b in used for a in b.fixed_axes} | {a for b in add.biases for a in b.fixed_axes}
    return sorted(fixed) + [a for a in own if a not in fixed]


def _into_own_order(target: str, order: list[int]) -> str:
    """The copy of a sum built in the working `order` into the tensor's own axis order:
    `_fixed_last` where the fixed axes moved first are the tensor's last ones (an MLP's
    first weight, a convolution's kernel), else one permuted copy."""
    own = sorted(order)
    first = order.index(own[0])  # how many axes were moved in front of the tensor's first
    if first and order == own[-first:] + own[:-first]:
        return f"_fixed_last({target}, {first})"
    return f"{target}{permutation(order, own, 2)}.contiguous()"


def _render_add(plan: LayerPlan, add: Add, mixes: dict[str, Mix], indent: int) -> list[str]:
    """The broadcast sum of one output; with `fused`, the last GEMM adds the rest."""
    pad = " " * indent
    target = add.name
    blocks = {b.name: (m, b) for m in mixes.values() for b in m.blocks}
    order = _working_order(plan, add, blocks)
    placed = [_placed(plan, *blocks[name], order) for name in add.blocks]
    terms = [_placed_bias(plan, b, add.out, order) for b in add.biases] + placed
    head = f"{target}: broadcast sum of {', '.join(add.terms)}"
    if not add.biases:
        lines = comment(indent, [], head)
    else:
        orbit = " and the bias orbit " if len(add.biases) == 1 else " and the bias orbits "
        lines = comment(indent, [str(b.pattern) for b in add.biases], head + orbit)
    if add.fused:  # the two largest remaining terms are summed inside _mix_add
        terms, rest = terms[:-2], terms[-2]
    lines += statement(indent, target, terms[0])
    for t in terms[1:]:
        lines += statement(indent, target, t, plus=target)
    last = mixes[add.terms[-1]]
    if add.fused:
        lines += statement(indent, "rest", rest)
        feature = last.features[0] if len(last.features) == 1 else f"cat_{last.name[4:]}"
        args = [f"self.{last.name}", feature, target, "rest"]
        lines += call(indent, target, "_mix_add", args)
    elif order != sorted(order):  # built in the working order: into the tensor's, once
        lines.append(f"{pad}{target} = {_into_own_order(target, order)}")
    elif _needs_copy(terms, len(mixes[add.terms[-1]].blocks)):
        lines.append(f"{pad}{target} = {target}.contiguous()")
    return wrapped(lines)


def _header(plan: LayerPlan, backend: str) -> list[str]:
    spec = textwrap.wrap(
        str(plan.space),
        width=LINE_LENGTH,
        initial_indent="#   spec: ",
        subsequent_indent="#         ",
        break_long_words=False,
    )
    flag = "" if backend == NAME else f" --backend {backend}"
    regenerate = f"#   regenerate: dws-theory generate {plan.origin}{flag}"
    if not fits(regenerate) and plan.dims is not None:
        regenerate = f"#   regenerate: dws-theory generate DIMS --symmetry {plan.mode}{flag}"
    elif not fits(regenerate) and plan.origin.startswith("--spec"):
        regenerate = f"#   regenerate: dws-theory generate --spec SPEC{flag} (the spec above)"
    dims = wrap_dims("#   dims: ", plan.dims, cont="#         ") if plan.dims else []
    return [
        "# DO NOT EDIT: generated by dws_theory.codegen; edits are overwritten.",
        f"#   generator version: {GENERATOR_VERSION}",
        *spec,
        *dims,
        f"#   mode: {_mode_text(plan)}",
        *([] if backend == NAME else [f"#   backend: {backend}"]),
        *textwrap.wrap(
            regenerate, width=LINE_LENGTH, subsequent_indent="#     ", break_on_hyphens=False
        ),
    ]


def _mode_word(plan: LayerPlan) -> str:
    return f"{plan.mode}-" if plan.mode is not None else ""


def _mode_text(plan: LayerPlan) -> str:
    return plan.mode if plan.mode is not None else "the set kinds of the spec"


def _module_doc(plan: LayerPlan) -> list[str]:
    basis = [
        "",
        f"Basis (one channel in and out): {plan.equivariant_linear} equivariant linear, "
        f"{plan.equivariant_bias} bias and {plan.invariant_linear} invariant",
        "elements. Each linear element owns a c_out x c_in block of a mix weight, each bias",
        "element c_out entries of a bias vector. Pooling is a mean (Basis.dense, normalised).",
        '"""',
    ]
    if plan.dims is not None:
        m = len(plan.dims) - 1
        return [
            f'"""Equivariant layers for the weight space of an MLP, {plan.mode} symmetry.',
            "",
            *wrap_dims("Widths d_0..d_M: ", plan.dims, "."),
            "Layout: forward(weights, biases); weights[m-1] is [B, C, d_m, d_{m-1}] and "
            "biases[m-1]",
            f"is [B, C, d_m], for m = 1..{m}. EquivariantLayer returns the same structure with",
            "out_channels; InvariantLayer returns [B, out_channels].",
            *basis,
        ]
    weights, biases = _tensor_names(plan.space)
    listing = f"Weights: {', '.join(weights) or 'none'}. Biases: {', '.join(biases) or 'none'}."
    return [
        f'"""Equivariant layers for a general weight space, {_mode_text(plan)} symmetry.',
        "",
        *textwrap.wrap(listing, width=LINE_LENGTH, break_long_words=False),
        "Layout: forward(weights, biases); weights lists the tensors with two or more axes as",
        "[B, C, *shape] (a conv kernel [B, C, out, in, *kernel]) and biases the one-axis tensors",
        "as [B, C, d], in the order above (WEIGHT_LAYOUT, BIAS_LAYOUT). EquivariantLayer returns",
        "the same structure with out_channels; InvariantLayer returns [B, out_channels].",
        *basis,
    ]


def _axes_text(space: WeightSpace, tensor: str) -> str:
    """`d_1, d_0` for an MLP's sets n1, n0; other sets by name."""
    names = []
    for a in space.tensor(tensor).axes:
        names.append(f"d_{a[1:]}" if a[:1] == "n" and a[1:].isdigit() else a)
    return ", ".join(names)


def _layout_lines(plan: LayerPlan) -> list[str]:
    space = plan.space
    weights, biases = _tensor_names(space)
    if plan.dims is not None:
        architecture = f"an MLP with widths {tuple(plan.dims)}"
    else:
        architecture = "the weight space in SPEC"

    def rows(names: list[str]) -> list[str]:
        return [
            f'("{n}", "{_axes_text(space, n)}", {tuple_literal([str(d) for d in space.shape(n)])})'
            for n in names
        ]

    return [
        "# The layout forward(weights, biases) checks: (tensor, axes, shape without B and C).",
        *rows_lines("WEIGHT_LAYOUT", rows(weights)),
        *rows_lines("BIAS_LAYOUT", rows(biases)),
        *string_lines("ARCHITECTURE = ", architecture),
    ]


def _slots_table(name: str, mixes: Sequence[Mix]) -> list[str]:
    rows = [
        f'("{m.name}", {s.element}, {s.row}, {s.column}, {s.f_out}, {s.f_in}, {s.fan})'
        for m in mixes
        for s in m.slots
    ]
    return rows_lines(name, rows)


def _tensor_names(space: WeightSpace) -> tuple[list[str], list[str]]:
    """(weights, biases): the tensors with two or more axes, and those with one, in order."""
    weights = [t.name for t in space.tensors if len(t.axes) >= 2]
    biases = [t.name for t in space.tensors if len(t.axes) == 1]
    return weights, biases


def _render_equivariant(plan: LayerPlan) -> list[str]:
    space = plan.space
    ops = plan.equivariant_ops
    pools = {op.name: op for op in ops if isinstance(op, Pool)}
    mixes = {op.name: op for op in ops if isinstance(op, Mix)}
    adds = [op for op in ops if isinstance(op, Add)]
    weights, biases = ([local_name(n) for n in names] for names in _tensor_names(space))
    lines = [
        "class EquivariantLayer(nn.Module):",
        f'    """Linear {_mode_word(plan)}equivariant map of the weight space, with channels.',
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
        lines += call(8, f"self.{m.name}", "nn.Parameter", [shape])
    for a in adds:
        for bias in a.biases:
            lines += call(
                8, f"self.{bias.name}", "nn.Parameter", [f"torch.empty({bias.f_out} * c_out)"]
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
    # A parameter of the layer: the inputs must share its dtype and device.
    like = next(iter(mixes), None) or next(b.name for a in adds for b in a.biases)
    check = ["weights", "biases", "c_in", '"EquivariantLayer"', f"self.{like}"]
    body = unpack(8, weights, "weights") + unpack(8, biases, "biases")
    for pool in pools.values():
        body += _render_pool(space, pool, pools, 8)
    fused = {a.terms[-1] for a in adds if a.fused}
    for m in mixes.values():
        if m.name not in fused:
            body += _render_mix(plan, m, 8)
        elif len(m.features) > 1:  # the fused GEMM still needs its concatenation
            body += call(8, f"cat_{m.name[4:]}", "torch.cat", [list(m.features), "1"])
    for a in adds:
        if a.fused:
            head = f"{a.terms[-1]} (varies along every axis of {a.out}): "
            body += patterns_comment(8, head, mixes[a.terms[-1]].patterns)
        body += _render_add(plan, a, mixes, 8)
    uses_batch = any("batch" in line for line in body if not line.lstrip().startswith("#"))
    lines += call(8, "batch" if uses_batch else "", "_check_inputs", check)
    lines += body
    w = ", ".join(f"{n}_out" for n in weights)
    b = ", ".join(f"{n}_out" for n in biases)
    line = f"        return wrap([{w}], [{b}])"
    if fits(line):
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
    weights, biases = ([local_name(n) for n in names] for names in _tensor_names(space))
    used = {local_name(p.tensor) for p in pools.values()} | set(mix.features)
    lines = [
        "class InvariantLayer(nn.Module):",
        f'    """Linear {_mode_word(plan)}invariant map of the weight space to [B, out_channels].',
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
    # No invariant orbit survives (every one killed by a sign): no features, bias only.
    uses_batch = not mix.features or any(
        "batch" in line for line in body if not line.lstrip().startswith("#")
    )
    check = ["weights", "biases", "c_in", '"InvariantLayer"', "self.bias"]
    lines += call(8, "batch" if uses_batch else "", "_check_inputs", check)
    lines += unpack(8, [w if w in used else "_" for w in weights], "weights")
    lines += unpack(8, [b if b in used else "_" for b in biases], "biases")
    lines += body
    if not mix.features:
        lines.append("        return self.bias.new_zeros((batch, 0))")
    elif len(mix.features) == 1:
        lines.append(f"        return {mix.features[0]}")
    else:
        lines += call(8, "", "return torch.cat", [list(mix.features), "1"])
    lines += [
        "",
        "    def forward(self, weights, biases=None) -> torch.Tensor:",
        f"        return F.linear(self.features(weights, biases), self.{mix.name}, self.bias)",
    ]
    return lines


def render(
    plan: LayerPlan, backend: str = NAME, appendix: str = "", imports: Sequence[str] = ()
) -> str:
    """Standalone Python source of EquivariantLayer and InvariantLayer for the plan.

    Another backend that builds on the eager module names itself in `backend` (the header
    and a BACKEND constant say it; the eager module has neither), passes the code that
    follows the two classes in `appendix` and the standard-library modules it needs in
    `imports`."""
    mixes = [op for op in plan.equivariant_ops if isinstance(op, Mix)]
    inv = [op for op in plan.invariant_ops if isinstance(op, Mix)]
    biases = [
        f'("{b.name}", {b.element}, {b.f_out})'
        for a in plan.equivariant_ops
        if isinstance(a, Add)
        for b in a.biases
    ]
    lines = [
        *_header(plan, backend),
        *_module_doc(plan),
        "",
        "from __future__ import annotations",
        "",
        *(f"import {name}" for name in sorted({"math", *imports})),
        "",
        "import torch",
        "from torch import nn",
        "from torch.nn import functional as F",
        "",
        *(rows_lines("DIMS", [str(d) for d in plan.dims]) if plan.dims is not None else []),
        f'MODE = "{plan.mode}"' if plan.mode is not None else "MODE = None",
        *string_lines("SPEC = ", str(plan.space)),
        f'GENERATOR_VERSION = "{GENERATOR_VERSION}"',
        *([] if backend == NAME else [f'BACKEND = "{backend}"']),
        f"EQUIVARIANT_LINEAR = {plan.equivariant_linear}",
        f"EQUIVARIANT_BIAS = {plan.equivariant_bias}",
        f"INVARIANT_LINEAR = {plan.invariant_linear}",
        "",
        "# Where each pattern's coefficients live, in Basis.linear order: (mix weight, first basis",
        "# element, first row in units of c_out, first column in units of c_in, f_out, f_in,",
        "# fan-in of the initialisation).",
        *_slots_table("SLOTS", mixes),
        "# Bias orbits: (bias vector, first bias element in Basis.bias order, f_out).",
        *rows_lines("BIASES", biases),
        "# The invariant layer's features, in Basis.invariant order.",
        *_slots_table("INVARIANT_SLOTS", inv),
        *_layout_lines(plan),
    ]
    lines += ["", ""] + prelude_source().strip("\n").split("\n")
    lines += ["", ""] + _render_equivariant(plan) + ["", ""] + _render_invariant(plan)
    if appendix:
        lines += ["", ""] + appendix.strip("\n").split("\n")
    return "\n".join(lines) + "\n"
