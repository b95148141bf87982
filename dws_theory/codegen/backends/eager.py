"""The eager backend: print a `LayerPlan` as a standalone PyTorch module (the reference).

The printed module imports only torch and the standard library, defines `EquivariantLayer`
and `InvariantLayer`, and runs every op of the plan as plain eager PyTorch: one pool per
feature, one GEMM per mix, one broadcast sum per output tensor. Every other backend is
checked against the module this one prints.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

from ...spec import WeightSpace
from ..emit import (
    LINE_LENGTH,
    call,
    comment,
    dims_text,
    fits,
    index,
    patterns_comment,
    permutation,
    rows_lines,
    statement,
    string_lines,
    unpack,
    wrap_dims,
)
from ..lower import _fixed_axes, _fold
from ..plan import Add, LayerPlan, Mix, Pool

__all__ = ["GENERATOR_VERSION", "prelude_source", "render"]

GENERATOR_VERSION = "1"
_PRELUDE = Path(__file__).resolve().parent.parent / "prelude.py"
_MARKER = "# -- emitted from here on "


def prelude_source() -> str:
    """The helpers of `prelude.py` from its marker line on, as text (never imported here)."""
    text = _PRELUDE.read_text(encoding="utf-8")
    start = text.index("\n", text.index(_MARKER)) + 1
    return text[start:]


def _sizes(space: WeightSpace, sets: Sequence[str]) -> list[str]:
    return [str(space.set(s).size) for s in sets]


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
        perm = permutation(rest, want, 2)
        shape = ", ".join(["batch", f"c_in * {pool.fold}", *_sizes(space, pool.kept)])
        expr = f"({expr})" if todo and perm else expr
        expr = (
            f"{expr}{perm}.reshape({shape})" if not todo or perm else f"({expr}).reshape({shape})"
        )
    parts = [f"mean over {', '.join(pool.pooled)}"] if pool.pooled else []
    parts += [f"{', '.join(pool.folded)} folded into channels"] if pool.folded else []
    head = f"{pool.name}: {', '.join([pool.tensor, *parts])}"
    lines = patterns_comment(indent, head + "; read by ", pool.patterns)
    line = f"{' ' * indent}{pool.name} = {expr}"
    assert fits(line), line
    return lines + [line]


def _render_mix(plan: LayerPlan, mix: Mix, indent: int) -> list[str]:
    """Concatenate the features and apply one channel mix."""
    along = ", ".join(mix.kept) or "no permuted set"
    outs = ", ".join(o for o, _, _ in mix.outs)
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
    if len(mix.outs) > 1:  # one block of rows per output (split: one op, one backward)
        blocks = [_block_name(mix, out) for out, _, _ in mix.outs]
        sizes = [str(f_out) for _, _, f_out in mix.outs]
        if len(set(sizes)) == 1:
            split = f"{mix.name}.split(c_out * {sizes[0]}, 1)"
        else:
            lines += rows_lines("rows", sizes, one_line=True, indent=indent)
            split = f"{mix.name}.split([c_out * f for f in rows], 1)"
        lines += unpack(indent, blocks, split)
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
        pieces.append(permutation(fixed + list(mix.kept), present, 2))
    pieces.append(index([a in fixed or a in mix.kept for a in axes]))
    return [p for p in pieces if p]


def _placed_bias(plan: LayerPlan, add: Add) -> str:
    """The bias vector [c_out * f_out] as a [c_out, *axes] view (1 on permuted axes)."""
    space = plan.space
    axes = space.tensor(add.out).axes
    fixed = _fixed_axes(space, add.out)
    shape = ["c_out"] + [str(space.set(a).size) if a in fixed else "1" for a in axes]
    return [f"self.bias_{add.out}", f".view({', '.join(shape)})"]


def _render_add(plan: LayerPlan, add: Add, mixes: dict[str, Mix], indent: int) -> list[str]:
    """The broadcast sum of one output; with `fused`, the last GEMM adds the rest."""
    pad = " " * indent
    target = add.name
    terms = [_placed(plan, mixes[m], add.out) for m in add.terms]
    if add.bias is not None:
        terms.insert(0, _placed_bias(plan, add))
    head = f"{target}: broadcast sum of {', '.join(add.terms)}"
    if add.bias is None:
        lines = comment(indent, [], head)
    else:
        lines = comment(indent, [str(add.bias)], head + " and the bias orbit ")
    if add.fused:  # the two largest remaining terms are summed inside _MixAdd
        terms, rest = terms[:-2], terms[-2]
    lines += statement(indent, target, terms[0])
    for t in terms[1:]:
        lines += statement(indent, target, t, plus=target)
    last = mixes[add.terms[-1]]
    if add.fused:
        lines += statement(indent, "rest", rest)
        feature = last.features[0] if len(last.features) == 1 else f"cat_{last.name[4:]}"
        args = [f"self.{last.name}", feature, target, "rest"]
        lines += call(indent, target, "_MixAdd.apply", args)
    else:
        # A fixed axis after a kept one leaves the largest term transposed: return contiguous.
        axes = plan.space.tensor(add.out).axes
        fixed = list(_fixed_axes(plan.space, add.out))
        if fixed and fixed + list(last.kept) != [a for a in axes if a in fixed or a in last.kept]:
            lines.append(f"{pad}{target} = {target}.contiguous()")
    for line in lines:
        assert fits(line), line
    return lines


def _header(plan: LayerPlan) -> list[str]:
    spec = textwrap.wrap(
        str(plan.space),
        width=LINE_LENGTH,
        initial_indent="#   spec: ",
        subsequent_indent="#         ",
        break_long_words=False,
    )
    dims = dims_text(plan.dims)
    regenerate = f"#   regenerate: dws-theory generate {dims} --symmetry {plan.mode}"
    if not fits(regenerate):
        regenerate = f"#   regenerate: dws-theory generate DIMS --symmetry {plan.mode}"
    return [
        "# DO NOT EDIT: generated by dws_theory.codegen; edits are overwritten.",
        f"#   generator version: {GENERATOR_VERSION}",
        *spec,
        *wrap_dims("#   dims: ", plan.dims, cont="#         "),
        f"#   mode: {plan.mode}",
        regenerate,
    ]


def _module_doc(plan: LayerPlan) -> list[str]:
    m = len(plan.dims) - 1
    return [
        f'"""Equivariant layers for the weight space of an MLP, {plan.mode} symmetry.',
        "",
        *wrap_dims("Widths d_0..d_M: ", plan.dims, "."),
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


def _slots_table(name: str, mixes: Sequence[Mix]) -> list[str]:
    rows = [
        f'("{m.name}", {s.element}, {s.row}, {s.column}, {s.f_out}, {s.f_in}, {s.fan})'
        for m in mixes
        for s in m.slots
    ]
    return rows_lines(name, rows)


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
        "        self.in_channels = in_channels",
        "        self.out_channels = out_channels",
        "        c_in, c_out = in_channels, out_channels",
    ]
    for m in mixes.values():
        shape = f"torch.empty({m.rows} * c_out, {m.width} * c_in)"
        lines += call(8, f"self.{m.name}", "nn.Parameter", [shape])
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
        "    def forward(self, weights, biases):",
        "        c_in, c_out = self.in_channels, self.out_channels",
        '        batch = _check_inputs(weights, biases, c_in, "EquivariantLayer")',
    ]
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
    if not any("batch" in line for line in body if not line.lstrip().startswith("#")):
        lines[-1] = '        _check_inputs(weights, biases, c_in, "EquivariantLayer")'
    lines += body
    w = ", ".join(f"{n}_out" for n in weights)
    b = ", ".join(f"{n}_out" for n in biases)
    line = f"        return [{w}], [{b}]"
    if fits(line):
        lines.append(line)
    else:
        lines += ["        return ("]
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
        "        self.in_channels = in_channels",
        "        self.out_channels = out_channels",
        "        c_in, c_out = in_channels, out_channels",
        f"        self.{mix.name} = nn.Parameter(torch.empty(c_out, {mix.width} * c_in))",
        "        self.bias = nn.Parameter(torch.empty(out_channels))",
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
        "    def features(self, weights, biases) -> torch.Tensor:",
        '        """Invariant features [B, in_channels * INVARIANT_LINEAR] (dense_invariant)."""',
        "        c_in = self.in_channels",
        '        batch = _check_inputs(weights, biases, c_in, "InvariantLayer")',
    ]
    body = []
    for pool in pools.values():
        body += _render_pool(space, pool, pools, 8)
    if not any("batch" in line for line in body if not line.lstrip().startswith("#")):
        lines[-1] = '        _check_inputs(weights, biases, c_in, "InvariantLayer")'
    lines += unpack(8, [w if w in used else "_" for w in weights], "weights")
    lines += unpack(8, [b if b in used else "_" for b in biases], "biases")
    lines += body
    if len(mix.features) == 1:
        lines.append(f"        return {mix.features[0]}")
    else:
        lines += call(8, "", "return torch.cat", [list(mix.features), "1"])
    lines += [
        "",
        "    def forward(self, weights, biases) -> torch.Tensor:",
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
        *rows_lines("DIMS", [str(d) for d in plan.dims]),
        f'MODE = "{plan.mode}"',
        *string_lines("SPEC = ", str(plan.space)),
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
        *rows_lines("BIASES", biases),
        "# The invariant layer's features, in Basis.invariant order.",
        *_slots_table("INVARIANT_SLOTS", inv),
    ]
    lines += ["", ""] + prelude_source().strip("\n").split("\n")
    lines += ["", ""] + _render_equivariant(plan) + ["", ""] + _render_invariant(plan)
    return "\n".join(lines) + "\n"
