"""The theory page's section on block symmetries (nested neuron sets), computed by the engine.

Every number in the section comes from `enumerate_basis`, the closed form's
`family_factor` or the code generator's plan, so the page cannot disagree with them; the
theory page's drift test regenerates it.
"""

from __future__ import annotations

import math

from ..basis import enumerate_basis
from ..certify import family_factor
from ..codegen.lower import lower
from ..codegen.plan import LayerPlan, Mix, Pool
from ..examples import encoder_layers
from ..spec import WeightSpace

__all__ = ["block_section"]

# The worked case: blocks of a space with H = 2 heads of d = 2, each block computed three
# ways (nested, one flat set of H d, two independent sets).
_WORKED = (
    (
        "a $[H d]$ vector to itself, $T(h, c) \\leftarrow T(h, c)$",
        "T(h,c)",
        "T(n)",
        "T(h,c)",
    ),
    (
        "a $[H d, H d]$ matrix to itself, $T(h, c, h, c) \\leftarrow T(h, c, h, c)$",
        "T(h,c,h,c)",
        "T(n,n)",
        "T(h,c,h,c)",
    ),
)

# Family factors c_p(attached) for small H, d: (label, child axes on each parent axis).
_ATTACHED = (
    ("$\\langle c \\rangle$", (("c",),)),
    ("$\\langle c \\rangle \\langle c \\rangle$", (("c",), ("c",))),
    ("$\\langle c\\, c \\rangle$", (("c", "c"),)),
    ("$\\langle c \\rangle \\langle w \\rangle$", (("c",), ("w",))),
    ("$\\langle c\\, c \\rangle \\langle c\\, c \\rangle$", (("c", "c"), ("c", "c"))),
    ("$(\\langle c \\rangle)^4$", (("c",),) * 4),
)
_SIZES = ((1, 1), (1, 2), (2, 1), (2, 2), (2, 3), (3, 2), (4, 4))


def _count(sets: str, tensor: str) -> int:
    space = WeightSpace.parse(f"sets[{sets}] tensors[{tensor}]")
    name = space.tensors[0].name
    return enumerate_basis(space).block_counts()[(name, name)]


def _worked_rows() -> list[str]:
    nested = "h:2:permuted c:2:permuted@h"
    rows = [
        "| block | $S_2 \\wr S_2$ (nested) | $S_4$ (one flat set) | $S_2 \\times S_2$ "
        "(independent sets) | signed child |",
        "|---|---|---|---|---|",
    ]
    for text, tensor, flat, split in _WORKED:
        rows.append(
            f"| {text} | {_count(nested, tensor)} | {_count('n:4:permuted', flat)} "
            f"| {_count('h:2:permuted c:2:permuted', split)} "
            f"| {_count('h:2:permuted c:2:signed@h', tensor)} |"
        )
    return rows


def _family_rows() -> list[str]:
    header = " | ".join(f"$H={h}, d={d}$" for h, d in _SIZES)
    rows = [f"| attached | {header} |", "|---|" + "---|" * len(_SIZES)]
    for label, attached in _ATTACHED:
        values = []
        for h, d in _SIZES:
            space = WeightSpace.parse(
                f"sets[p:{h}:permuted c:{d}:permuted@p w:{d}:permuted@p] tensors[T(p,c,w)]"
            )
            values.append(str(family_factor(space, "p", attached)))
        rows.append(f"| {label} | {' | '.join(values)} |")
    return rows


def _intermediate(space: WeightSpace, plan: LayerPlan) -> tuple[int, int]:
    """(pooled feature floats, mixed term floats) of the equivariant layer, per sample and
    channel: what its pools and its mixes write before the broadcast sums."""

    def positions(sets: tuple[str, ...]) -> int:
        return math.prod(space.set(s).size for s in sets)

    ops = plan.equivariant_ops
    pooled = sum(op.fold * positions(op.kept) for op in ops if isinstance(op, Pool))
    terms = sum(
        b.f_out * positions(op.kept) for op in ops if isinstance(op, Mix) for b in op.blocks
    )
    return pooled, terms


def _encoder_rows(sizes: tuple[int, int, int, int]) -> list[str]:
    rows = [
        "| layers | tensors | $P$ | linear basis | ops (pools, mixes, adds) | multiply-adds "
        "| pooled features | mixed terms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for layers in range(1, 5):
        space = WeightSpace.parse(encoder_layers(layers, *sizes))
        basis = enumerate_basis(space)
        plan = lower(basis)
        ops = plan.equivariant_ops
        kinds = [sum(op.kind == k for op in ops) for k in ("pool", "mix", "add")]
        pooled, terms = _intermediate(space, plan)
        rows.append(
            f"| {layers} | {len(space.tensors)} | {space.dimension:,} "
            f"| {basis.equivariant_linear:,} | {len(ops)} ({', '.join(map(str, kinds))}) "
            f"| {plan.multiply_adds():,} | {pooled:,} | {terms:,} |"
        )
    return rows


def _gates_count() -> tuple[str, int, int]:
    spec = (
        "sets[g:4:fixed h:32:permuted x:8:fixed] tensors[w_ih(g,h,x) w_hh(g,h,h) "
        "b_ih(g,h) b_hh(g,h)]"
    )
    basis = enumerate_basis(WeightSpace.parse(spec))
    return spec, basis.equivariant_linear, basis.block_counts()[("w_hh", "w_hh")]


def block_section(number: int = 7) -> list[str]:
    """The section, as Markdown lines."""
    gates, gates_total, gates_hh = _gates_count()
    sizes = (64, 4, 16, 256)
    return [
        f"## {number}. Block symmetries: heads, gates and groups",
        "",
        "Attention heads, the groups of GroupNorm and of a grouped convolution are sets of "
        "$H$ blocks of $d$ positions whose symmetry is not a product of symmetric groups: "
        "the blocks can be permuted as wholes, and the positions inside each block by that "
        "block's own permutation, the wreath product "
        "$S_d \\wr S_H = S_d^H \\rtimes S_H$ of order $(d!)^H H!$. A spec writes such a set as "
        "two sets, the parent (which block) and a child (which position), `heads:4:permuted "
        "hd:16:permuted@heads`, and stores an $[H d]$ axis as two axes, the parent's then the "
        "child's (a query projection $[H d, E]$ viewed as `Q(heads, hd, e)`). A child axis "
        "belongs to the nearest earlier axis of its tensor on the parent set; several "
        "children of one parent (the q/k dims and the v dims of attention) permute "
        "independently inside each block, and every tensor on one child set shares its "
        "permutations. An element holds one permutation of the child per block and acts by "
        "a gather,",
        "",
        "$$ (g \\cdot T)_{\\dots h \\dots i \\dots} = s_p(h)\\, s_c(h, i)\\, "
        "T_{\\dots \\pi_p(h) \\dots \\pi_c^{(h)}(i) \\dots}, $$",
        "",
        "with signs where the parent or the child is signed (flipping a query dim together "
        "with its key dim, or a value dim with the output projection's column, keeps "
        "attention's function). A fixed child never moves inside a block: it is a fixed set. "
        "One level of nesting is supported, and a fixed parent with a moving child is refused "
        "(its orbits are not dense fixed labels times partitions): declare the child fixed, "
        "a subgroup, which under-claims and is safe.",
        "",
        "**Orbits.** An index of a child axis is a position inside the block its parent axis "
        "indexes. Two tuples lie in one orbit if and only if the parent axes have the same "
        "equality pattern $P$ (at most $H$ blocks) and, inside each block $B$ of $P$, the "
        "child axes attached to $B$ have the same equality pattern (per child, at most $d$ "
        "blocks). Child axes under different blocks of $P$ sit in different blocks of the "
        "parent and are moved by independent permutations, so nothing relates them. A "
        "parent and its children therefore contribute one factor to the block count, the "
        "*family factor*",
        "",
        "$$ c_p = \\sum_{P} \\prod_{B \\in P} \\prod_{c} c_c(t_{c,B}), $$",
        "",
        "the sum over set partitions $P$ of the parent's axes into at most $H$ blocks (even "
        "blocks if the parent is signed), $t_{c,B}$ the number of $c$-axes attached to $B$ and "
        "$c_c$ the child's per-set factor of section 2. The layers use the non-strict pattern "
        "(indices sharing a label equal): it covers the tuples of every coarser nested "
        "pattern (merge blocks of $P$, then child blocks inside each merged block), each an "
        "orbit with at most $H$ and $d$ blocks, so the change of basis to the orbit "
        "indicators is again unit triangular. Widths enter only through $\\min(H, t_p)$ and "
        "$\\min(d, t_c)$, so the explicit certificate routes run on copies cut to those. The "
        "test suite checks every count against the orbits of the whole enumerated group "
        "(Burnside's character average, and union-find over every element's action on the "
        "index pairs) on tiny $H$, $d$.",
        "",
        "**Worked case, $H = d = 2$.** For the vector, the pairs $((h, i), (h', j))$ fall "
        "into three orbits: the same head and position; the same head, another position; "
        "another head. One flat set of 4 sees only two (equal or not), two independent sets "
        "four; a signed child leaves only the first. Counts from the engine:",
        "",
        *_worked_rows(),
        "",
        "Family factors for small sizes ($\\langle \\cdot \\rangle$ lists, per parent axis, the "
        "child axes attached to it, $(\\cdot)^4$ four such axes; $c$ and $w$ are two "
        "children, both permuted):",
        "",
        *_family_rows(),
        "",
        "From $H \\geq 4$ and $d \\geq 4$ no family here depends on the widths.",
        "",
        "**Gates.** An LSTM's `weight_ih` is $[4H, \\text{in}]$: the gate axis is a fixed set "
        "and the hidden units one permuted set shared by the four gate blocks, so it needs "
        f"no nesting: `{gates}` has {gates_total:,} equivariant linear basis elements "
        f"({gates_hh:,} in $w_{{hh}} \\leftarrow w_{{hh}}$, where the gate axes are dense and "
        "the four $h$ axes are partitioned).",
        "",
        "**Code generation.** A child axis is an ordinary axis of its tensor, so the patterns "
        "lower to the same pools, diagonals, channel mixes and broadcasts, and the number of "
        "ops stays linear in the number of tensors. For embedding-free transformer encoder "
        f"layers ($E = {sizes[0]}$, $H = {sizes[1]}$ heads of $d = {sizes[2]}$, feed-forward "
        f"{sizes[3]}; per layer Q, K, V, their biases, the output projection, two LayerNorms "
        "and the feed-forward, 16 tensors, all on one residual set; "
        "`dws_theory.examples.encoder_layers`), the equivariant layer's ops, its "
        "multiply-adds per sample (one channel in and out) and the floats its pools and its "
        "mixes write per sample and channel:",
        "",
        *_encoder_rows(sizes),
        "",
        "Ops and intermediate floats grow by a constant per layer. The multiply-adds grow "
        "a little faster: every tensor on the residual set reads every other one, so the "
        "mixes on that set widen with the number of layers (the basis itself grows "
        "quadratically there).",
        "",
    ]
