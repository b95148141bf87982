"""The numbered sections of a derivation page, each a pure function to Markdown lines."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..basis import Basis, enumerate_basis
from ..certify import Certificate, axes_bound, set_factor
from ..codegen.plan import LayerPlan
from ..orbits import Pattern
from ..spec import Kind, WeightSpace
from ..symbolic import set_tex, tensor_tex
from .blocks import block_group, ends, grouped_blocks
from .figures import Figures

if TYPE_CHECKING:
    from ..frontends.target import Target
from .text import (
    block_tex,
    block_text,
    factor_tex,
    factor_text,
    kind_text,
    pattern_code,
    pattern_rows,
    set_counts,
    set_line,
    tex_int,
    widths_text,
)

__all__ = [
    "architecture_section",
    "block_section",
    "certificate_section",
    "codegen_section",
    "group_section",
    "proof_section",
    "sharing_section",
    "tensor_section",
    "totals_section",
    "weight_space_section",
]


def architecture_section(target: Target, figure: str) -> list[str]:
    space = target.space
    g = space.graph()
    edges = ", ".join(
        f"${tensor_tex(d['tensor'])}$: ${set_tex(u)} \\to {set_tex(v)}$"
        for u, v, d in g.edges(data=True)
    )
    if target.dims is not None and target.trace is None:
        dims = target.dims
        return [
            "## 1. Architecture",
            "",
            f"An MLP with $M = {len(dims) - 1}$ layers and widths "
            f"{', '.join(f'$d_{{{k}}} = {d}$' for k, d in enumerate(dims))}. In the architecture "
            f"graph the neuron sets are nodes and the weight matrices edges ({edges}); each bias "
            "lives on the set of its layer's outputs.",
            "",
            f"![Neuron-set graph]({figure})",
            "",
        ]
    lines = [
        "## 1. Architecture",
        "",
        f"{target.title[0].upper() + target.title[1:]}: {len(space.tensors)} tensors on "
        f"{len(space.sets)} neuron sets. In the architecture graph the neuron sets are nodes "
        "and every tensor with two or more axes is an edge from the set of its second axis "
        f"(the input) to the set of its first (the output) ({edges}); its further axes (conv "
        "kernels) are fixed sets of their own, and each one-axis tensor lives on its set.",
        "",
        *_child_axes_lines(space),
        f"![Neuron-set graph]({figure})",
        "",
    ]
    return lines + _origin_lines(target) + _shared_sets_table(target)


def _child_axes_lines(space: WeightSpace) -> list[str]:
    """How the graph draws axes on child sets, for a space with nested sets."""
    children = [s for s in space.sets if s.parent is not None]
    if not children:
        return []
    named = ", ".join(f"${set_tex(s.name)}$ inside ${set_tex(s.parent)}$" for s in children)
    return [
        f"Nested sets ({named}): an axis of $H \\cdot d$ entries is stored as two axes, the "
        "parent's (which block) then the child's (which position in the block). In the graph "
        "a child axis rides with its parent axis, so a tensor is drawn by its other axes "
        "and a tensor whose only other axis is the parent is listed under the parent's node.",
        "",
    ]


def _origin_lines(target: Target) -> list[str]:
    """Where the sets came from: the module's trace, or the spec."""
    if target.trace is None:
        return [
            "The spec gives the neuron sets and their kinds directly.",
            "",
        ]
    trace = target.trace
    params = ", ".join(f"`{p}`" for _, p in trace.parameters)
    lines = [
        f"`from_module` traced the module with torch.fx and gave every axis of its parameters "
        f"({params}, in `named_parameters()` order) a provisional set, then merged the axes "
        "one permutation must move together: a layer's input axis with the channel axis of "
        "the activation it reads, a bias with its weight's output axis, the operands of an "
        "addition (a residual link) or of an elementwise product, and the uses of a parameter "
        "applied twice (tying). Sets touching the network's input or output are fixed in "
        "modes `hidden` and `signed`.",
        "",
    ]
    if trace.links:
        lines += ["| fx node | merge | set | operands |", "|---|---|---|---|"]
        for link in trace.links:
            operands = ", ".join(f"`{a}`" for a in link.axes)
            lines.append(f"| `{link.node}` | {link.reason} | ${set_tex(link.set)}$ | {operands} |")
        lines.append("")
    else:
        lines += ["No residual link, product or tied use merged sets here.", ""]
    if trace.not_odd:
        kept = ", ".join(f"${set_tex(name)}$ (`{what}`)" for name, what in trace.not_odd)
        lines += [
            f"In mode `signed` these hidden sets stay permuted, because an operation on them "
            f"is not odd: {kept}.",
            "",
        ]
    return lines


def _shared_sets_table(target: Target) -> list[str]:
    """The sets that several tensors (or one tensor twice) share."""
    space = target.space
    rows = []
    for s in space.sets:
        axes = [(t.name, i) for t in space.tensors for i, a in enumerate(t.axes) if a == s.name]
        weights = {t for t, _ in axes if len(space.tensor(t).axes) >= 2}
        if len(weights) > 2 or len({t for t, _ in axes}) < len(axes):
            on = ", ".join(f"${tensor_tex(t)}$[{i}]" for t, i in axes)
            rows.append(f"| ${set_tex(s.name)}$ | {s.size} | {s.kind.value} | {on} |")
    if not rows:
        return []
    return [
        "Sets shared by more than two weights (residual streams) or by two axes of one tensor "
        "(tied square weights); every pair of their axes meets in some block below:",
        "",
        "| neuron set | width | kind | axes (tensor[axis]) |",
        "|---|---|---|---|",
        *rows,
        "",
    ]


def weight_space_section(space: WeightSpace) -> list[str]:
    offsets = space.offsets()
    lines = [
        "## 2. Weight space",
        "",
        "| tensor | axes (neuron sets) | shape | entries | offset in the flat vector |",
        "|---|---|---|---|---|",
    ]
    for t in space.tensors:
        axes = ", ".join(f"${set_tex(a)}$" for a in t.axes)
        shape = " × ".join(str(d) for d in space.shape(t.name))
        lines.append(
            f"| ${tensor_tex(t.name)}$ | {axes} | {shape} | {space.numel(t.name):,} "
            f"| {offsets[t.name]:,} |"
        )
    lines += [
        "",
        f"The weight space is {_sum_tex(space)} of dimension "
        f"$P = {tex_int(space.dimension)}$ (tensors in this order, C order inside).",
        "",
        "| neuron set | width | kind | axes of |",
        "|---|---|---|---|",
    ]
    for s in space.sets:
        users = [t.name for t in space.tensors if s.name in t.axes]
        lines.append(
            f"| ${set_tex(s.name)}$ | {s.size} | {kind_text(space, s.name)} "
            f"| {', '.join(f'${tensor_tex(u)}$' for u in users)} |"
        )
    lines.append("")
    return lines


def _sum_tex(space: WeightSpace) -> str:
    """`V = (+)_m (W_m (+) b_m)` for an MLP's tensor names, else the direct sum over tensors."""
    names = [t.name for t in space.tensors]
    depth = len(names) // 2
    if names == [f"{k}{m}" for m in range(1, depth + 1) for k in "Wb"]:
        return "$V = \\bigoplus_m (W_m \\oplus b_m)$"
    return "$V = " + " \\oplus ".join(tensor_tex(n) for n in names) + "$"


def _set_group_tex(space: WeightSpace, name: str) -> str:
    s = space.set(name)
    if s.kind is Kind.PERMUTED:
        return f"S_{{{s.size}}}"
    if s.kind is Kind.SIGNED:
        return f"(\\{{\\pm 1\\}}^{{{s.size}}} \\rtimes S_{{{s.size}}})"
    return ""


def _group_tex(space: WeightSpace) -> str:
    """One factor per moving plain set; a set with moving children: their groups, wreathed
    with it (`(S_3 \\times S_2) \\wr S_2`)."""
    parts = []
    for s in space.sets:
        if s.parent is not None or s.kind is Kind.FIXED:
            continue
        inner = [
            _set_group_tex(space, c) for c in space.children(s.name) if _set_group_tex(space, c)
        ]
        if not inner:
            parts.append(_set_group_tex(space, s.name))
            continue
        base = inner[0] if len(inner) == 1 else "(" + " \\times ".join(inner) + ")"
        parts.append(f"({base} \\wr {_set_group_tex(space, s.name)})")
    return " \\times ".join(parts) if parts else "\\{e\\}"


def _moving(space: WeightSpace, name: str) -> bool:
    return space.set(name).kind is not Kind.FIXED


def _moving_children(space: WeightSpace) -> list:
    """The child sets that move inside their blocks (permuted or signed)."""
    return [s for s in space.sets if s.parent is not None and _moving(space, s.name)]


def _action_tex(space: WeightSpace, tensor: str) -> str:
    """(g . T)_{i j} = s(i) s(j) T_{pi(i), pi(j)} with identity on fixed sets; a child axis
    j under the parent axis i reads pi^{(i)}(j), the permutation of block i."""
    letters = "ijkl"
    axes = space.tensor(tensor).axes
    parents = space.parent_axes(tensor)
    names = [letters[k] if k < len(letters) else f"i_{k}" for k in range(len(axes))]
    signs, index = [], []
    for k, name in enumerate(axes):
        i, s = names[k], space.set(name)
        block = f"^{{({names[parents[k]]})}}" if parents[k] is not None else ""
        at = f"{names[parents[k]]}, {i}" if parents[k] is not None else i
        index.append(f"\\pi_{{{set_tex(name)}}}{block}({i})" if _moving(space, name) else i)
        if s.kind is Kind.SIGNED:
            signs.append(f"s_{{{set_tex(name)}}}({at})")
    lhs = f"(g \\cdot {tensor_tex(tensor)})_{{{' '.join(names)}}}"
    entry = f"{{{tensor_tex(tensor)}}}_{{{', '.join(index)}}}"
    rhs = " ".join(signs) + " \\, " + entry if signs else entry
    return f"{lhs} = {rhs}"


def group_section(space: WeightSpace, mode: str | None, network: str = "MLP") -> list[str]:
    moving = [s for s in space.sets if s.kind is not Kind.FIXED]
    fixed = [s for s in space.sets if s.kind is Kind.FIXED]
    named = f"Mode `{mode}`" if mode is not None else "The set kinds of the spec"
    lines = [
        "## 3. Symmetry group",
        "",
        f"{named}: $G = {_group_tex(space)}$, one factor per "
        + ("permuted or signed neuron set" if moving else "set (none moves here)")
        + (
            " (a set with moving children: one wreath-product factor)"
            if _moving_children(space)
            else ""
        )
        + (
            f"; the fixed sets {', '.join(f'${set_tex(s.name)}$' for s in fixed)} are never moved"
            if fixed
            else ""
        )
        + ". An element is a permutation $\\pi_k$ per moving set"
        + (
            " and a sign vector $s_k \\in \\{\\pm 1\\}^{d_k}$ per signed set"
            if any(s.kind is Kind.SIGNED for s in space.sets)
            else ""
        )
        + f"; it acts on every axis of every tensor as a gather, so the function the {network} "
        "computes is unchanged"
        + (" (for an odd activation)" if any(s.kind is Kind.SIGNED for s in space.sets) else "")
        + ":",
        "",
    ]
    lines += _nested_group_lines(space)
    for t in space.tensors:  # one display each: adjacent $$ lines would merge into one
        lines += [f"$$ {_action_tex(space, t.name)} $$", ""]
    lines += [
        "The representation $\\rho(g)$ on $V$ is the block-diagonal matrix of these signed "
        "permutations.",
        "",
    ]
    return lines


def _nested_group_lines(space: WeightSpace) -> list[str]:
    """What a child set's permutations are, when the space has some."""
    children = _moving_children(space)
    if not children:
        return []
    named = ", ".join(f"${set_tex(s.name)}$ in ${set_tex(s.parent)}$" for s in children)
    return [
        f"Nested sets ({named}): an axis on a child set indexes a position inside the block "
        "that its parent axis (the nearest earlier axis of the tensor on the parent set) "
        "indexes. The element holds one permutation $\\pi_c^{(h)}$ of the child per block "
        "$h$ of the parent, so the blocks are permuted as wholes by $\\pi_p$ and the "
        "positions inside each block by that block's own permutation: the wreath product "
        "$S_d \\wr S_H = S_d^H \\rtimes S_H$. Every tensor on a child set moves with the "
        "same $\\pi_c^{(h)}$; children of one parent permute independently inside a block.",
        "",
    ]


def proof_section(space: WeightSpace) -> list[str]:
    signed = any(s.kind is Kind.SIGNED for s in space.sets)
    most = max(2, *axes_bound(space).values())
    rows = [
        "| neuron set | kind | width | " + " | ".join(f"$c({t})$" for t in range(most + 1)) + " |",
        "|---|---|---|" + "---|" * (most + 1),
    ]
    for s in space.sets:
        values = " | ".join(str(set_factor(s.kind, s.size, t)) for t in range(most + 1))
        rows.append(f"| ${set_tex(s.name)}$ | {s.kind.value} | {s.size} | {values} |")
    if space.nested:
        rows += [
            "",
            "A child set's $c(t)$ is its factor inside one block of its parent (see (5)).",
        ]
    return [
        "## 4. Characterisation",
        "",
        "**Claim.** A linear map $L: V \\to V$ satisfies $L \\rho(g) = \\rho(g) L$ for every "
        "$g \\in G$ if and only if each block $L_{A \\leftarrow B}$ is a linear combination of "
        "the pattern matrices of that block listed in section 5. They are linearly "
        "independent, and block $A \\leftarrow B$ has $\\prod_k c_k(t_k)$ of them, where "
        "$t_k$ is the number of axes of $A$ and $B$ together on neuron set $k$.",
        "",
        "*Proof.* (1) *Orbits.* $\\rho(g)$ is a signed permutation: $\\rho(g) e_c = "
        "\\sigma_g(c)\\, e_{gc}$ with $\\sigma_g(c) = \\pm 1$. Commuting, "
        "$\\rho(g) L \\rho(g)^{-1} = L$, reads $L_{gr,\\,gc} = \\sigma_g(r) \\sigma_g(c) "
        "L_{rc}$ for every index pair $(r, c)$. So $L$ is fixed by one number per orbit of "
        "$G$ on index pairs; an orbit containing a pair that some $g$ fixes with "
        "$\\sigma_g(r)\\sigma_g(c) = -1$ forces $L = 0$ there, and every other orbit may carry "
        "any value. The dimension is the number of surviving orbits.",
        "",
        "(2) *Product over neuron sets.* An index pair of block $A \\leftarrow B$ is one index "
        "per axis of $A$ and of $B$. $G$ is the direct product of one group $G_k$ per set, "
        "and $G_k$ moves only the axes on set $k$, so an orbit is a tuple of orbits of each "
        "$G_k$ on $t_k$-tuples of $\\{1, \\dots, d_k\\}$ and the count is a product of "
        "per-set counts $c_k(t_k)$.",
        "",
        "(3) *One set.* Fixed: every tuple is its own orbit, $c(t) = d^t$; a pattern keeps "
        "these axes as a dense parameter dimension. Permuted: two $t$-tuples lie in one "
        "$S_d$-orbit if and only if they have the same equality pattern, a set partition of "
        "the $t$ positions, and a partition with $j$ blocks occurs if and only if $j \\leq d$: "
        "$c(t) = \\sum_{j \\leq \\min(t, d)} S(t, j)$. Signed: the same equality classes; if a "
        "block has odd size, flipping the sign of its index value fixes the pair and "
        "multiplies it by $(-1)^{\\text{odd}} = -1$, which kills the orbit; blocks of even "
        "size give sign $+1$ under every element, so those orbits survive"
        + (" (this space has signed sets, so odd blocks are absent below)" if signed else "")
        + ".",
        "",
        "(4) *Strict and non-strict patterns.* The orbit indicator $O_\\pi$ of a partition "
        "$\\pi$ is 1 where indices in one block are equal *and* indices in different blocks "
        "differ. The layers use the non-strict matrix $N_\\pi$ (1 wherever indices in one "
        "block are equal; different blocks may coincide), which is what pooling, diagonals "
        "and broadcasting compute: $N_\\pi = \\sum_{\\sigma \\succeq \\pi} O_\\sigma$ over the "
        "coarsenings $\\sigma$ of $\\pi$ (merge blocks; a coarsening has fewer blocks, and "
        "merging even blocks keeps them even, so every $\\sigma$ is in the basis too). Ordered "
        "by refinement this change of basis is unit triangular, hence invertible: the "
        "$N_\\pi$ span the same space and are independent. Mean pooling divides $N_\\pi$ by "
        "the size of each pooled label, which changes no span. $\\square$",
        "",
        *_nested_proof_lines(space),
        "The same argument with one side empty gives the equivariant bias (orbits on the "
        "indices of the output tensor) and the invariant functionals (orbits on the indices "
        f"of each input tensor). The per-set factors of this space ($c(t)$ for $t \\leq {most}$: "
        f"no block here puts more than {most} axes on one set):",
        "",
        *rows,
        "",
    ]


def _nested_proof_lines(space: WeightSpace) -> list[str]:
    """Step (5) of the proof, for a space with nested sets."""
    if not _moving_children(space):
        return []
    return [
        "(5) *Nested sets.* A parent $p$ of size $H$ and its moving children are one factor "
        "of $G$ (their wreath product), so in (2) they form one factor of the count, the "
        "*family factor*. An index of a child axis is a position inside the block its parent "
        "axis indexes. Two tuples lie in one orbit if and only if their parent axes have the "
        "same equality pattern $P$ (at most $H$ blocks; even blocks for a signed parent) and, "
        "inside each block $B$ of $P$, the child axes attached to $B$ have the same equality "
        "pattern per child $c$ (at most $d_c$ blocks; even for a signed child). Child axes "
        "attached to different blocks of $P$ sit in different blocks of the parent, moved "
        "by independent permutations, so nothing relates them. The family factor is therefore "
        "$\\sum_P \\prod_{B \\in P} \\prod_c c_c(t_{c,B})$, where $t_{c,B}$ counts the "
        "$c$-axes attached to $B$; the tables write it $c_p(\\langle \\dots \\rangle, "
        "\\dots)$ with, per axis of $p$, the child axes attached to it. The non-strict "
        "pattern of (4) still spans: the tuples it covers are those of every coarser nested "
        "pattern (merge blocks of $P$, then merge child blocks inside each merged block), "
        "each of them an orbit of the basis, so the change of basis is again unit triangular.",
        "",
    ]


def _blocks_tex(space: WeightSpace, count: int) -> str:
    """`$4M^2 = 36$` for an MLP (2M tensors), `$T^2 = 144$` (T tensors) otherwise."""
    if _sum_tex(space).startswith("$V = \\bigoplus_m"):
        return f"$4M^2 = {count}$"
    return f"$T^2 = {count}$ (for the $T = {len(space.tensors)}$ tensors)"


def _implementing_ops(plan: LayerPlan) -> dict[Pattern, list[str]]:
    """Each pattern -> the ops of the generated module that serve it, in emission order."""
    serving: dict[Pattern, list[str]] = {}
    for op in plan.ops:
        for p in op.patterns:
            names = serving.setdefault(p, [])
            if op.name not in names:
                names.append(op.name)
    return serving


def block_section(basis: Basis, plan: LayerPlan) -> list[str]:
    space = basis.space
    counts = basis.block_counts()
    groups = grouped_blocks(basis)
    lines = [
        "## 5. Equivariant linear basis, block by block",
        "",
        f"$L$ has {_blocks_tex(space, len(counts))} blocks $A \\leftarrow B$. They fall into "
        f"{len(groups)} groups by how the two tensors share neuron sets and whether they "
        "touch the first or last layer. One representative block per group is written out "
        "in full; the table at the end gives every block. Labels: one letter per axis, "
        "shared letters mean equal indices; $\\theta^{(k)}$ is the parameter of pattern $k$, "
        "indexed by its fixed-axis labels (one basis element per value).",
        "",
        "| group | blocks | representative | count per block | subtotal |",
        "|---|---|---|---|---|",
    ]
    for (relation, position), blocks in groups.items():
        per = sorted({counts[b] for b in blocks})
        rep = blocks[0]
        lines.append(
            f"| {relation.replace('<-', '←')}, {position} | {len(blocks)} "
            f"| ${block_tex(*rep)}$ | {', '.join(f'{c:,}' for c in per)} "
            f"| {sum(counts[b] for b in blocks):,} |"
        )
    lines.append("")
    by_block: dict[tuple[str, str], list] = {}  # one pass over the patterns, not one per block
    for p in basis.linear:
        by_block.setdefault((p.out, p.inp), []).append(p)
    for (relation, position), blocks in groups.items():
        out, inp = blocks[0]
        patterns = by_block.get((out, inp), [])
        by_set = "; ".join(
            f"{set_line(space, name)}: {t} {'axis' if t == 1 else 'axes'}"
            for name, t in set_counts(space, out, inp)
        )
        lines += [
            f"### {relation.replace('<-', '←')}, {position}: {block_text(out, inp)}",
            "",
            f"Axes by neuron set: {by_set}. Count: ${factor_tex(space, out, inp)}$ "
            f"({len(patterns)} pattern{'s' if len(patterns) != 1 else ''}).",
            "",
        ]
        if patterns:
            lines += pattern_rows(space, patterns)
        else:
            lines.append("No pattern survives: every orbit of this block is killed by a sign.")
        lines.append("")
    lines += [
        "### Every block",
        "",
        "The last but one column names the ops of the generated module that serve the "
        "block's patterns (section 11).",
        "",
        "| block | group | per-set factors | generated ops | count |",
        "|---|---|---|---|---|",
    ]
    serving = _implementing_ops(plan)
    sides = ends(space)
    for (out, inp), n in counts.items():
        relation, position = block_group(space, out, inp, sides)
        block = by_block.get((out, inp), [])
        ops = list(dict.fromkeys(name for p in block for name in serving.get(p, [])))
        lines.append(
            f"| `{out} <- {inp}` | {relation.replace('<-', '←')}, {position} "
            f"| {factor_text(space, out, inp)} | {', '.join(f'`{o}`' for o in ops) or '-'} "
            f"| {n:,} |"
        )
    lines += ["", f"Equivariant linear total: **{basis.equivariant_linear:,}**.", ""]
    return lines


def tensor_section(basis: Basis, kind: str) -> list[str]:
    """Equivariant bias (kind 'bias') or invariant layer (kind 'invariant')."""
    space = basis.space
    bias = kind == "bias"
    patterns = basis.bias if bias else basis.invariant
    counts = basis.bias_counts() if bias else basis.invariant_counts()
    total = basis.equivariant_bias if bias else basis.invariant_linear
    if bias:
        lines = [
            "## 6. Equivariant bias",
            "",
            "An equivariant affine layer adds a $G$-invariant vector: one free constant per "
            "orbit of $G$ on the indices of each output tensor (the block $A \\leftarrow 1$).",
            "",
        ]
    else:
        lines = [
            "## 7. Invariant layer",
            "",
            "An invariant linear functional $V \\to \\mathbb{R}$ is one number per orbit of "
            "$G$ on the indices of each input tensor (the block $z \\leftarrow B$); the "
            "generated `InvariantLayer` applies these with a channel mix.",
            "",
        ]
    lines += ["| tensor | per-set factors | count |", "|---|---|---|"]
    for t in space.tensors:
        out, inp = (t.name, None) if bias else (None, t.name)
        lines.append(f"| `{t.name}` | {factor_text(space, out, inp)} | {counts[t.name]:,} |")
    lines += ["", f"Total: **{total:,}**.", ""]
    if patterns:
        lines += pattern_rows(space, patterns)
    else:
        lines.append("No pattern survives.")
    lines.append("")
    return lines


def totals_section(basis: Basis, channels: tuple[int, int]) -> list[str]:
    c_in, c_out = channels
    return [
        "## 8. Totals",
        "",
        "| quantity | count |",
        "|---|---|",
        f"| equivariant linear | {basis.equivariant_linear:,} |",
        f"| equivariant bias | {basis.equivariant_bias:,} |",
        f"| invariant linear | {basis.invariant_linear:,} |",
        f"| parameters, {c_in} -> {c_out} channels | {basis.parameter_count(c_in, c_out):,} |",
        "",
        f"With $c_{{in}} = {c_in}$ input and $c_{{out}} = {c_out}$ output channels every "
        "linear basis element carries a $c_{out} \\times c_{in}$ matrix and every bias orbit "
        f"a $c_{{out}}$-vector: ${tex_int(basis.equivariant_linear)} \\cdot {c_in} \\cdot "
        f"{c_out} + {tex_int(basis.equivariant_bias)} \\cdot {c_out} = "
        f"{tex_int(basis.parameter_count(c_in, c_out))}$ "
        "parameters.",
        "",
    ]


def certificate_section(cert: Certificate) -> list[str]:
    lines = [
        "## 9. Certificate",
        "",
        "Each route computes the counts without the enumeration's code path and compares "
        "them block by block (equivariant linear, bias and invariant blocks together: "
        f"{cert.equivariant_linear + cert.equivariant_bias + cert.invariant_linear:,} on "
        "this shape). Explicit routes need explicit index pairs; when the shape is too "
        "large they run on a reduced copy, and say why.",
        "",
        "| route | checks | ran on | counted | enumerated | result |",
        "|---|---|---|---|---|---|",
    ]
    for r in cert.results:
        widths = widths_text(WeightSpace.parse(r.ran_on))
        why = r.note.removeprefix("reduced copy: ").removeprefix("reduced copy ")
        where = f"reduced copy {widths} ({why})" if r.reduced else f"full shape {widths}"
        lines.append(
            f"| `{r.name}` | {r.description} | {where} | {r.value:,} "
            f"| {r.expected:,} | {'pass' if r.passed else 'FAIL'} |"
        )
        if r.mismatches:
            lines.append(f"| | disagrees on {', '.join(r.mismatches[:12])} | | | | |")
    lines += ["", f"Certificate: **{'PASSED' if cert.passed else 'FAILED'}**.", ""]
    return lines


def sharing_section(basis: Basis, figures: Figures) -> list[str]:
    shown = figures.sharing_basis
    if shown is None:
        shown = (
            basis
            if figures.sharing_space == basis.space
            else enumerate_basis(figures.sharing_space)
        )
    return [
        "## 10. Parameter sharing",
        "",
        f"The equivariant linear map as a $P \\times P$ matrix, each entry coloured by the "
        f"pattern whose orbit it lies in ({len(shown.linear)} patterns, "
        f"{shown.equivariant_linear:,} basis elements there; fixed-axis values of one "
        "pattern share its colour; white entries lie in no surviving orbit). "
        f"{figures.sharing_reason}",
        "",
        f"![Parameter-sharing matrix]({figures.sharing})",
        "",
    ]


def codegen_section(origin: str, basis: Basis, plan: LayerPlan, name: str) -> list[str]:
    kinds = {op.kind: op.summary for op in plan.ops}
    # For each kind of op: how many ops of that kind serve each linear pattern.
    exactly_once = []
    for kind in kinds:
        served = {p: 0 for p in basis.linear}
        for op in plan.ops:
            if op.kind == kind:
                for p in set(op.patterns) & set(served):
                    served[p] += 1
        if basis.linear and all(n == 1 for n in served.values()):
            exactly_once.append(kind)
    if exactly_once:
        coverage = (
            f"Each of the {len(basis.linear)} equivariant linear patterns is served by exactly "
            f"one op of kind {' and '.join(f'*{k}*' for k in exactly_once)}."
        )
    else:
        coverage = "**No kind of op serves every equivariant linear pattern exactly once.**"
    described = "; ".join(kinds.values())
    lines = [
        "## 11. Generated code",
        "",
        f"`dws-theory generate {origin}` writes "
        f"`generated/{name}.py`. The code generator lowers the same basis into "
        f"{len(plan.ops)} ops: {described}. {coverage} The last column of the block table in "
        "section 5 names the ops that serve each block.",
        "",
    ]
    for layer in dict.fromkeys(op.layer for op in plan.ops):
        lines += [
            f"### `{layer}`",
            "",
            "| op | kind | reads or writes | patterns | elements |",
            "|---|---|---|---|---|",
        ]
        for op in plan.ops:
            if op.layer != layer:
                continue
            patterns = ", ".join(pattern_code(p) for p in op.patterns)
            elements = sum(p.multiplicity(basis.space) for p in op.patterns)
            lines.append(
                f"| `{op.name}` | {op.kind} | {op.describe()} | {patterns} | {elements:,} |"
            )
        lines.append("")
    lines += [
        "*patterns* are the basis patterns an op serves (for a pool, those that read its "
        "feature); *elements* their basis elements.",
        "",
    ]
    return lines
