"""Derivation documents: one Markdown page plus PNG figures per MLP shape and mode.

Everything on the page is computed from one `Basis`, one `Certificate` and the code
generator's `LayerPlan` for the same space, so the page cannot disagree with the counts,
the checks or the emitted module. Output is deterministic (no timestamps; PNGs are drawn
with fixed rcParams and without the Software metadata), so a test can regenerate the
checked-in pages and compare bytes.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import networkx as nx
import numpy as np

from .arguments import add_channel_arguments, add_shape_arguments
from .atomic import replacing, write_text
from .basis import Basis, enumerate_basis, pattern_entries
from .certify import Certificate, certify, reduce_space, set_factor
from .orbits import Pattern
from .spec import Kind, WeightSpace, mlp, parse_dims, parse_mode
from .symbolic import display_label, display_labels, pattern_formula, set_tex, tensor_tex

if TYPE_CHECKING:  # matplotlib and codegen are imported where used: the CLI starts faster
    from matplotlib.figure import Figure

    from .codegen import LayerPlan

__all__ = [
    "DEFAULT_DOCS_DIR",
    "SHARING_MAX_P",
    "Figures",
    "add_docs_parser",
    "block_group",
    "derivation_stem",
    "draw_architecture",
    "draw_sharing",
    "render_derivation",
    "sharing_matrix",
    "sharing_space",
    "write_derivation",
]

DEFAULT_DOCS_DIR = "docs/derivations"
SHARING_MAX_P = 200  # draw the parameter-sharing matrix of the shape itself up to this P

_RC = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "svg.hashsalt": "dws_theory",
    "path.simplify": False,
    "image.interpolation": "nearest",
}
_KIND_STYLE = {
    Kind.PERMUTED: ("o", "#4C72B0"),
    Kind.FIXED: ("s", "#9A9A9A"),
    Kind.SIGNED: ("D", "#DD8452"),
}
_RELATIONS = (
    "W <- W, same layer",
    "W <- W, neighbours, next layer",
    "W <- W, neighbours, previous layer",
    "W <- W, non-neighbours",
    "W <- b, bias on its rows",
    "W <- b, bias on its columns",
    "W <- b, disjoint",
    "b <- W, on its rows",
    "b <- W, on its columns",
    "b <- W, disjoint",
    "b <- b, same layer",
    "b <- b, other layer",
)
_POSITIONS = ("interior", "first layer", "last layer", "first and last layer")


def derivation_stem(dims: Sequence[int], mode: str) -> str:
    """File stem of a derivation: the generated module's name, e.g. dws_2_32_32_1_hidden."""
    from .codegen import module_name

    return module_name(tuple(dims), mode)


def _tex_int(n: int) -> str:
    """Thousands separators that LaTeX does not space out: 1{,}185."""
    return f"{n:,}".replace(",", "{,}")


def _dims_text(dims: Sequence[int]) -> str:
    return "-".join(str(d) for d in dims)


# -- grouping blocks -----------------------------------------------------------------------------
def _letter(space: WeightSpace, tensor: str) -> str:
    return {1: "b", 2: "W"}.get(len(space.tensor(tensor).axes), "T")


def _ends(space: WeightSpace) -> tuple[set[str], set[str]]:
    """Input-side and output-side neuron sets: sources and sinks of the architecture graph."""
    g = space.graph()
    return {n for n in g if g.in_degree(n) == 0}, {n for n in g if g.out_degree(n) == 0}


def _relation(space: WeightSpace, out: str, inp: str) -> str:
    """How two tensors share neuron sets, named by which axes meet (rows = axis 1)."""
    a, b = _letter(space, out), _letter(space, inp)
    axes_a, axes_b = space.tensor(out).axes, space.tensor(inp).axes
    meets = {(i, j) for i, x in enumerate(axes_a) for j, y in enumerate(axes_b) if x == y}
    if out == inp:
        return "same layer"
    if not meets:
        return {("W", "W"): "non-neighbours", ("b", "b"): "other layer"}.get((a, b), "disjoint")
    if a == b == "W":
        return {(0, 1): "neighbours, next layer", (1, 0): "neighbours, previous layer"}.get(
            min(meets), "shares sets"
        )
    if (a, b) == ("W", "b"):
        return "bias on its rows" if (0, 0) in meets else "bias on its columns"
    if (a, b) == ("b", "W"):
        return "on its rows" if (0, 0) in meets else "on its columns"
    return "shares sets"


def block_group(space: WeightSpace, out: str, inp: str) -> tuple[str, str]:
    """(relation, position) of a block: how the two tensors share neuron sets, and whether
    the block touches the first (input) or last (output) set of the network."""
    relation = f"{_letter(space, out)} <- {_letter(space, inp)}, {_relation(space, out, inp)}"
    axes = set(space.tensor(out).axes) | set(space.tensor(inp).axes)
    sources, sinks = _ends(space)
    first, last = bool(axes & sources), bool(axes & sinks)
    if first and last:
        return relation, "first and last layer"
    if first or last:
        return relation, "first layer" if first else "last layer"
    return relation, "interior"


def _group_order(key: tuple[str, str]) -> tuple[int, int, str]:
    relation, position = key
    r = _RELATIONS.index(relation) if relation in _RELATIONS else len(_RELATIONS)
    return r, _POSITIONS.index(position), relation


def _grouped_blocks(basis: Basis) -> dict[tuple[str, str], list[tuple[str, str]]]:
    groups: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for out, inp in basis.block_counts():
        groups.setdefault(block_group(basis.space, out, inp), []).append((out, inp))
    return dict(sorted(groups.items(), key=lambda item: _group_order(item[0])))


# -- small text helpers --------------------------------------------------------------------------
def _axes(space: WeightSpace, out: str | None, inp: str | None) -> list[tuple[str, str]]:
    """(axis name, neuron set) for the block's axes: out axes first, then in axes."""
    axes = []
    if out is not None:
        axes += [(rf"\mathrm{{out}}_{k + 1}", s) for k, s in enumerate(space.tensor(out).axes)]
    if inp is not None:
        axes += [(rf"\mathrm{{in}}_{k + 1}", s) for k, s in enumerate(space.tensor(inp).axes)]
    return axes


def _set_counts(space: WeightSpace, out: str | None, inp: str | None) -> list[tuple[str, int]]:
    """(neuron set, t) for sets with at least one axis in the block, in the space's order."""
    names = [s for _, s in _axes(space, out, inp)]
    return [(s.name, names.count(s.name)) for s in space.sets if s.name in names]


def _factors(space: WeightSpace, out: str | None, inp: str | None) -> list[tuple[str, int, int]]:
    """(set, t, c(t)) per set of the block: the engine's per-set orbit counts."""
    return [
        (name, t, set_factor(space.set(name).kind, space.set(name).size, t))
        for name, t in _set_counts(space, out, inp)
    ]


def _factor_text(space: WeightSpace, out: str | None, inp: str | None) -> str:
    """`n1: 2 × n0: 4`, the plain form the count tables use (parsed back by tests)."""
    return " × ".join(f"{name}: {c}" for name, _, c in _factors(space, out, inp)) or "1"


def _factor_tex(space: WeightSpace, out: str | None, inp: str | None) -> str:
    facs = _factors(space, out, inp)
    lhs = r" \cdot ".join(f"c_{{{set_tex(name)}}}({t})" for name, t, _ in facs)
    rhs = r" \cdot ".join(str(c) for _, _, c in facs)
    total = 1
    for _, _, c in facs:
        total *= c
    return f"{lhs} = {rhs} = {total}" if len(facs) > 1 else f"{lhs} = {total}"


def _set_line(space: WeightSpace, name: str) -> str:
    s = space.set(name)
    return f"${set_tex(name)}$ ({s.kind.value}, $d = {s.size}$)"


def _block_tex(out: str | None, inp: str | None) -> str:
    left = tensor_tex(out) if out else "z"
    right = tensor_tex(inp) if inp else "1"
    return f"{left} \\leftarrow {right}"


_SUBSCRIPTS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def _block_text(out: str | None, inp: str | None) -> str:
    """A block in plain text, for headings (the table of contents shows no TeX): W₂ ← b₁."""

    def one(name: str | None, missing: str) -> str:
        if name is None:
            return missing
        stem = name.rstrip("0123456789")
        return stem + name[len(stem) :].translate(_SUBSCRIPTS) if stem else name

    return f"{one(out, 'z')} ← {one(inp, '1')}"


def _pattern_code(p: Pattern) -> str:
    out = f"{p.out}[{display_labels(p.out_labels)}]" if p.out else "z"
    inp = f"{p.inp}[{display_labels(p.in_labels)}]" if p.inp else "1"
    return f"`{out} <- {inp}`"


def _partition_text(space: WeightSpace, p: Pattern) -> str:
    """Per neuron set, the blocks of the partition as sets of axis names (all in math mode:
    bare braces at the end of a table cell would read as Markdown attribute lists)."""
    axes = _axes(space, p.out, p.inp)
    labels = p.out_labels + p.in_labels
    parts = []
    for name, _ in _set_counts(space, p.out, p.inp):
        blocks = []
        for label, set_name in p.label_sets:
            if set_name == name:
                members = [axes[k][0] for k, x in enumerate(labels) if x == label]
                blocks.append(r"\{" + ", ".join(members) + r"\}")
        parts.append(f"${set_tex(name)}$: $" + r"\ ".join(blocks) + "$")
    return "; ".join(parts)


def _values(space: WeightSpace, set_name: str) -> str:
    n = space.set(set_name).size
    return f"{n} value{'s' if n != 1 else ''}"


def _reading(space: WeightSpace, p: Pattern) -> str:
    """The pattern as the layer's operations: pool, keep (diagonal), broadcast, dense."""
    words = []
    for label, set_name in p.label_sets:
        x, where = display_label(label), f"${set_tex(set_name)}$"
        role = p.role(label)
        if role == "pool":
            words.append(f"mean over ${x}$ ({where})")
        elif role == "keep":
            diagonal = p.in_labels.count(label) > 1 or p.out_labels.count(label) > 1
            words.append(f"keep ${x}$ ({where}{', diagonal' if diagonal else ''})")
        elif role == "broadcast":
            diagonal = p.out_labels.count(label) > 1
            words.append(
                f"broadcast along ${x}$ ({where}{', on the diagonal' if diagonal else ''})"
            )
        elif label in p.in_labels:
            words.append(f"dense sum over ${x}$ ({where}, {_values(space, set_name)})")
        else:
            words.append(f"one output per ${x}$ ({where}, {_values(space, set_name)})")
    return "; ".join(words) if words else "constant"


def _pattern_rows(space: WeightSpace, patterns: Sequence[Pattern]) -> list[str]:
    rows = [
        "| # | pattern | partition by neuron set | reading | elements | formula |",
        "|---|---|---|---|---|---|",
    ]
    for k, p in enumerate(patterns, start=1):
        tex = pattern_formula(space, p, str(k)).latex()
        rows.append(
            f"| {k} | {_pattern_code(p)} | {_partition_text(space, p)} | {_reading(space, p)} "
            f"| {p.multiplicity(space):,} | ${tex}$ |"
        )
    return rows


# -- figures -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Figures:
    architecture: str  # file names, relative to the Markdown page
    sharing: str
    sharing_space: WeightSpace
    sharing_reason: str


def _save(fig: Figure, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    with replacing(path) as temporary:  # atomic: complete or absent
        fig.savefig(temporary, format="png", metadata={"Software": None})


def _layout(g: nx.MultiDiGraph) -> dict[str, tuple[float, float]]:
    """Neuron sets left to right by topological generation (layer), stacked within one."""
    try:
        generations = [sorted(gen) for gen in nx.topological_generations(g)]
    except nx.NetworkXUnfeasible:  # a cyclic front end: one column per set
        generations = [[n] for n in g]
    return {
        n: (float(x), float(len(gen) - 1) / 2 - y)
        for x, gen in enumerate(generations)
        for y, n in enumerate(gen)
    }


def draw_architecture(space: WeightSpace, path: Path, title: str) -> None:
    """The neuron-set graph: sets as nodes (shape and colour by kind), weights as edges,
    biases written under their set."""
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    g = space.graph()
    pos = _layout(g)
    with matplotlib.rc_context(_RC):
        width = 1.3 * len(g) + 1.5
        fig = Figure(figsize=(width, 2.6))
        ax = fig.add_axes((0.02, 0.02, 0.96, 0.74))
        nx.draw_networkx_edges(
            g, pos, ax=ax, arrows=True, arrowsize=14, node_size=900, edge_color="#555555"
        )
        for kind, (shape, colour) in _KIND_STYLE.items():
            nodes = [n for n in g if g.nodes[n]["kind"] == kind.value]
            nx.draw_networkx_nodes(
                g, pos, nodelist=nodes, ax=ax, node_shape=shape, node_color=colour, node_size=900
            )
        for n in g:
            x, y = pos[n]
            ax.text(
                x,
                y,
                f"{n}\n{g.nodes[n]['size']}",
                ha="center",
                va="center",
                color="white",
                fontsize=8,
                fontweight="bold",
            )
            if g.nodes[n]["tensors"]:
                ax.text(x, y - 0.32, ", ".join(g.nodes[n]["tensors"]), ha="center", va="top")
        for u, v, data in g.edges(data=True):
            (x0, y0), (x1, y1) = pos[u], pos[v]
            shape = "x".join(str(d) for d in space.shape(data["tensor"]))
            ax.text(
                (x0 + x1) / 2,
                (y0 + y1) / 2 + 0.12,
                f"{data['tensor']} ({shape})",
                ha="center",
                va="bottom",
            )
        handles = [
            Line2D([], [], marker=shape, color=colour, linestyle="", markersize=9, label=kind.value)
            for kind, (shape, colour) in _KIND_STYLE.items()
        ]
        ax.legend(
            handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False
        )
        xs = [p[0] for p in pos.values()]
        ys = [p[1] for p in pos.values()]
        ax.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
        ax.set_ylim(min(ys) - 0.55, max(ys) + 0.4)
        ax.set_axis_off()
        fig.suptitle(title, y=0.97, fontsize=10)
        _save(fig, path)


def sharing_matrix(basis: Basis) -> np.ndarray:
    """P x P integers: k + 1 where entry (row, col) lies in the strict orbit of linear
    pattern k (indices sharing a label equal, distinct labels on one permuted or signed set
    distinct); 0 where no orbit survives (sign-killed). Strict orbits never overlap."""
    space = basis.space
    matrix = np.zeros((space.dimension, space.dimension), dtype=np.int64)
    for k, p in enumerate(basis.linear):
        e = pattern_entries(space, p, normalised=False)
        sizes = [space.set(name).size for _, name in p.label_sets]
        grid = np.array(list(itertools.product(*(range(n) for n in sizes))), dtype=np.int64)
        grid = grid.reshape(-1, len(sizes))
        keep = np.ones(len(grid), dtype=bool)
        for (i, (la, sa)), (j, (lb, sb)) in itertools.combinations(enumerate(p.label_sets), 2):
            if sa == sb and la not in p.fixed and lb not in p.fixed:
                keep &= grid[:, i] != grid[:, j]
        matrix[e.rows[keep], e.cols[keep]] = k + 1
    return matrix


def sharing_space(space: WeightSpace) -> tuple[WeightSpace, str]:
    """The space whose parameter-sharing matrix is drawn, and why that one."""
    if space.dimension <= SHARING_MAX_P:
        return space, f"Drawn for the shape itself ($P = {space.dimension}$)."
    reduced = reduce_space(space)
    if reduced.dimension <= SHARING_MAX_P:
        return reduced, (
            f"Drawn for the reduced copy {_widths(reduced)} ($P = {reduced.dimension}$), "
            f"since $P = {_tex_int(space.dimension)}$ is too large to draw: permuted and signed "
            "widths are cut to the most axes a block puts on one set, which keeps every pattern "
            "and every count."
        )
    small = reduce_space(space, shrink_fixed=True)
    return small, (
        f"Drawn for the copy {_widths(small)} ($P = {small.dimension}$), since "
        f"$P = {_tex_int(space.dimension)}$ is too large to draw and so is the "
        f"count-preserving reduced copy {_widths(reduced)} "
        f"($P = {_tex_int(reduced.dimension)}$): fixed widths are cut to 2 as well. The "
        "patterns are the same; each stands for fewer elements there, because fixed axes are "
        "dense parameter dimensions."
    )


def _widths(space: WeightSpace) -> str:
    return "-".join(str(s.size) for s in space.sets)


def draw_sharing(basis: Basis, path: Path, title: str) -> None:
    """The P x P matrix coloured by pattern (the DWSNets figure), tensor blocks outlined."""
    import matplotlib
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    space = basis.space
    matrix = sharing_matrix(basis)
    base = [matplotlib.colormaps[name].colors for name in ("tab20", "tab20b", "tab20c")]
    palette = [c for colours in base for c in colours]
    n = max(1, len(basis.linear))
    colours = ["#FFFFFF"] + [palette[k % len(palette)] for k in range(n)]
    offsets = space.offsets()
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(6.4, 6.8))
        ax = fig.add_axes((0.1, 0.04, 0.86, 0.86))
        ax.imshow(matrix, cmap=ListedColormap(colours), vmin=0, vmax=n, interpolation="nearest")
        edges = [offsets[t.name] - 0.5 for t in space.tensors] + [space.dimension - 0.5]
        for e in edges:
            ax.axhline(e, color="black", linewidth=0.6)
            ax.axvline(e, color="black", linewidth=0.6)
        # Label the tensors wide enough to hold a name (narrow ones would overprint).
        wide = [t for t in space.tensors if space.numel(t.name) >= space.dimension / 40]
        centres = [offsets[t.name] + space.numel(t.name) / 2 - 0.5 for t in wide]
        names = [t.name for t in wide]
        ax.set_xticks(centres, names)
        ax.set_yticks(centres, names)
        ax.xaxis.tick_top()
        ax.tick_params(length=0)
        ax.set_xlabel("input entry", labelpad=4)
        ax.xaxis.set_label_position("top")
        ax.set_ylabel("output entry")
        fig.suptitle(title, y=0.995, fontsize=9)
        _save(fig, path)


# -- sections ------------------------------------------------------------------------------------
def _architecture_section(space: WeightSpace, dims: Sequence[int], figure: str) -> list[str]:
    g = space.graph()
    depth = len(dims) - 1
    edges = ", ".join(
        f"${tensor_tex(d['tensor'])}$: ${set_tex(u)} \\to {set_tex(v)}$"
        for u, v, d in g.edges(data=True)
    )
    return [
        "## 1. Architecture",
        "",
        f"An MLP with $M = {depth}$ layers and widths "
        f"{', '.join(f'$d_{{{k}}} = {d}$' for k, d in enumerate(dims))}. In the architecture "
        f"graph the neuron sets are nodes and the weight matrices edges ({edges}); each bias "
        "lives on the set of its layer's outputs.",
        "",
        f"![Neuron-set graph]({figure})",
        "",
    ]


def _weight_space_section(space: WeightSpace) -> list[str]:
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
        f"The weight space is $V = \\bigoplus_m (W_m \\oplus b_m)$ of dimension "
        f"$P = {_tex_int(space.dimension)}$ (tensors in this order, C order inside).",
        "",
        "| neuron set | width | kind | axes of |",
        "|---|---|---|---|",
    ]
    for s in space.sets:
        users = [t.name for t in space.tensors if s.name in t.axes]
        lines.append(
            f"| ${set_tex(s.name)}$ | {s.size} | {s.kind.value} "
            f"| {', '.join(f'${tensor_tex(u)}$' for u in users)} |"
        )
    lines.append("")
    return lines


def _group_tex(space: WeightSpace) -> str:
    parts = []
    for s in space.sets:
        if s.kind is Kind.PERMUTED:
            parts.append(f"S_{{{s.size}}}")
        elif s.kind is Kind.SIGNED:
            parts.append(f"(\\{{\\pm 1\\}}^{{{s.size}}} \\rtimes S_{{{s.size}}})")
    return " \\times ".join(parts) if parts else "\\{e\\}"


def _action_tex(space: WeightSpace, tensor: str) -> str:
    """(g . T)_{i j} = s(i) s(j) T_{pi(i), pi(j)} with identity on fixed sets."""
    letters = "ijkl"
    axes = space.tensor(tensor).axes
    signs, index = [], []
    for k, name in enumerate(axes):
        i = letters[k] if k < len(letters) else f"i_{k}"
        s = space.set(name)
        if s.kind is Kind.FIXED:
            index.append(i)
        else:
            index.append(f"\\pi_{{{set_tex(name)}}}({i})")
        if s.kind is Kind.SIGNED:
            signs.append(f"s_{{{set_tex(name)}}}({i})")
    lhs = f"(g \\cdot {tensor_tex(tensor)})_{{{' '.join(letters[: len(axes)])}}}"
    entry = f"{{{tensor_tex(tensor)}}}_{{{', '.join(index)}}}"
    rhs = " ".join(signs) + " \\, " + entry if signs else entry
    return f"{lhs} = {rhs}"


def _group_section(space: WeightSpace, mode: str) -> list[str]:
    moving = [s for s in space.sets if s.kind is not Kind.FIXED]
    fixed = [s for s in space.sets if s.kind is Kind.FIXED]
    lines = [
        "## 3. Symmetry group",
        "",
        f"Mode `{mode}`: $G = {_group_tex(space)}$, one factor per "
        + ("permuted or signed neuron set" if moving else "set (none moves here)")
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
        + "; it acts on every axis of every tensor as a gather, so the function the MLP "
        "computes is unchanged"
        + (" (for an odd activation)" if any(s.kind is Kind.SIGNED for s in space.sets) else "")
        + ":",
        "",
    ]
    for t in space.tensors:  # one display each: adjacent $$ lines would merge into one
        lines += [f"$$ {_action_tex(space, t.name)} $$", ""]
    lines += [
        "The representation $\\rho(g)$ on $V$ is the block-diagonal matrix of these signed "
        "permutations.",
        "",
    ]
    return lines


def _proof_section(space: WeightSpace) -> list[str]:
    signed = any(s.kind is Kind.SIGNED for s in space.sets)
    rows = [
        "| neuron set | kind | width | " + " | ".join(f"$c({t})$" for t in range(3)) + " |",
        "|---|---|---|---|---|---|",
    ]
    for s in space.sets:
        values = " | ".join(str(set_factor(s.kind, s.size, t)) for t in range(3))
        rows.append(f"| ${set_tex(s.name)}$ | {s.kind.value} | {s.size} | {values} |")
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
        "The same argument with one side empty gives the equivariant bias (orbits on the "
        "indices of the output tensor) and the invariant functionals (orbits on the indices "
        "of each input tensor). The per-set factors of this space ($c(t)$ for $t \\leq 2$; an "
        "MLP block never puts more than two axes on one set):",
        "",
        *rows,
        "",
    ]


def _implementing_ops(plan: LayerPlan) -> dict[Pattern, list[str]]:
    """Each pattern -> the ops of the generated module that serve it, in emission order."""
    serving: dict[Pattern, list[str]] = {}
    for op in plan.ops:
        for p in op.patterns:
            names = serving.setdefault(p, [])
            if op.name not in names:
                names.append(op.name)
    return serving


def _block_section(basis: Basis, plan: LayerPlan) -> list[str]:
    space = basis.space
    counts = basis.block_counts()
    groups = _grouped_blocks(basis)
    lines = [
        "## 5. Equivariant linear basis, block by block",
        "",
        f"$L$ has $4M^2 = {len(counts)}$ blocks $A \\leftarrow B$. They fall into "
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
            f"| ${_block_tex(*rep)}$ | {', '.join(f'{c:,}' for c in per)} "
            f"| {sum(counts[b] for b in blocks):,} |"
        )
    lines.append("")
    for (relation, position), blocks in groups.items():
        out, inp = blocks[0]
        patterns = [p for p in basis.linear if (p.out, p.inp) == (out, inp)]
        by_set = "; ".join(
            f"{_set_line(space, name)}: {t} {'axis' if t == 1 else 'axes'}"
            for name, t in _set_counts(space, out, inp)
        )
        lines += [
            f"### {relation.replace('<-', '←')}, {position}: {_block_text(out, inp)}",
            "",
            f"Axes by neuron set: {by_set}. Count: ${_factor_tex(space, out, inp)}$ "
            f"({len(patterns)} pattern{'s' if len(patterns) != 1 else ''}).",
            "",
        ]
        if patterns:
            lines += _pattern_rows(space, patterns)
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
    for (out, inp), n in counts.items():
        relation, position = block_group(space, out, inp)
        block = [p for p in basis.linear if (p.out, p.inp) == (out, inp)]
        ops = list(dict.fromkeys(name for p in block for name in serving.get(p, [])))
        lines.append(
            f"| `{out} <- {inp}` | {relation.replace('<-', '←')}, {position} "
            f"| {_factor_text(space, out, inp)} | {', '.join(f'`{o}`' for o in ops) or '-'} "
            f"| {n:,} |"
        )
    lines += ["", f"Equivariant linear total: **{basis.equivariant_linear:,}**.", ""]
    return lines


def _tensor_section(basis: Basis, kind: str) -> list[str]:
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
        lines.append(f"| `{t.name}` | {_factor_text(space, out, inp)} | {counts[t.name]:,} |")
    lines += ["", f"Total: **{total:,}**.", ""]
    if patterns:
        lines += _pattern_rows(space, patterns)
    else:
        lines.append("No pattern survives.")
    lines.append("")
    return lines


def _totals_section(basis: Basis, channels: tuple[int, int]) -> list[str]:
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
        f"a $c_{{out}}$-vector: ${_tex_int(basis.equivariant_linear)} \\cdot {c_in} \\cdot "
        f"{c_out} + {_tex_int(basis.equivariant_bias)} \\cdot {c_out} = "
        f"{_tex_int(basis.parameter_count(c_in, c_out))}$ "
        "parameters.",
        "",
    ]


_ROUTE_TEXT = {
    "closed_form": "product over neuron sets of $c_k(t_k)$, computed with sympy",
    "orbit_count": "connected components of the index pairs under the generators "
    "(sign parity by a double cover)",
    "commutant": "dimension of $\\{L : \\rho(g) L = L \\rho(g)\\}$ over the generators, by "
    "dense linear algebra",
    "exact_commutation": "every dense 0/1 element commutes with every generator, in "
    "integer arithmetic",
    "independence": "rank of the dense elements of each block equals their number",
}


def _certificate_section(cert: Certificate) -> list[str]:
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
        widths = _widths(WeightSpace.parse(r.ran_on))
        why = r.note.removeprefix("reduced copy: ").removeprefix("reduced copy ")
        where = f"reduced copy {widths} ({why})" if r.reduced else f"full shape {widths}"
        lines.append(
            f"| `{r.name}` | {_ROUTE_TEXT.get(r.name, '')} | {where} | {r.value:,} "
            f"| {r.expected:,} | {'pass' if r.passed else 'FAIL'} |"
        )
        if r.mismatches:
            lines.append(f"| | disagrees on {', '.join(r.mismatches[:12])} | | | | |")
    lines += ["", f"Certificate: **{'PASSED' if cert.passed else 'FAILED'}**.", ""]
    return lines


def _sharing_section(basis: Basis, figures: Figures) -> list[str]:
    shown = (
        enumerate_basis(figures.sharing_space) if figures.sharing_space != basis.space else basis
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


def _op_kind(op: object) -> str:
    """'pool' or 'mix' (the plan's ops carry a `kind`; the class name is the fallback)."""
    return str(getattr(op, "kind", type(op).__name__)).lower()


def _op_layer(op: object) -> str:
    """The layer an op belongs to, read off its patterns: invariant patterns have no output."""
    patterns = op.patterns  # type: ignore[attr-defined]
    return (
        "InvariantLayer"
        if patterns and all(p.out is None for p in patterns)
        else ("EquivariantLayer")
    )


def _op_text(op: object) -> str:
    """What an op touches, read off the patterns it serves (the contract: name, patterns)."""
    patterns = op.patterns  # type: ignore[attr-defined]
    kind = _op_kind(op)
    if kind == "pool":
        tensors = sorted({p.inp for p in patterns if p.inp}, key=str)
        pooled = sorted({p.set_of(x) for p in patterns for x in p.in_labels if p.role(x) == "pool"})
        folded = sorted({p.set_of(x) for p in patterns for x in p.in_labels if x in p.fixed})
        text = f"reads {', '.join(f'`{t}`' for t in tensors)}"
        text += f"; mean over {', '.join(pooled)}" if pooled else ""
        text += f"; fixed {', '.join(folded)} folded into channels" if folded else ""
        return text
    outs = sorted({p.out for p in patterns if p.out}, key=str)
    target = ", ".join(f"`{t}`" for t in outs) or "the invariant output"
    if kind == "mix":
        return f"one channel mix holding these coefficients, for {target}"
    if kind == "add":
        return f"broadcast sum into {target}"
    return f"serves {target}"


_KIND_TEXT = {
    "pool": "a *pool* averages one input tensor over some neuron sets (once, shared by every "
    "pattern that reads it) and folds fixed axes into the channel axis",
    "mix": "a *mix* concatenates pooled features on the channel axis and applies one "
    "channel-mixing matrix that holds the coefficients of every pattern listed",
    "add": "an *add* broadcasts the mixed terms of one output tensor into its shape and sums "
    "them (with the bias orbit)",
}


def _codegen_section(dims: Sequence[int], mode: str, basis: Basis, plan: LayerPlan) -> list[str]:
    name = derivation_stem(dims, mode)
    kinds = list(dict.fromkeys(_op_kind(op) for op in plan.ops))
    # For each kind of op: how many ops of that kind serve each linear pattern.
    exactly_once = []
    for kind in kinds:
        served = {p: 0 for p in basis.linear}
        for op in plan.ops:
            if _op_kind(op) == kind:
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
    described = "; ".join(_KIND_TEXT[k] for k in kinds if k in _KIND_TEXT)
    lines = [
        "## 11. Generated code",
        "",
        f"`dws-theory generate {','.join(map(str, dims))} --symmetry {mode}` writes "
        f"`generated/{name}.py`. The code generator lowers the same basis into "
        f"{len(plan.ops)} ops: {described}. {coverage} The last column of the block table in "
        "section 5 names the ops that serve each block.",
        "",
    ]
    for layer in dict.fromkeys(_op_layer(op) for op in plan.ops):
        lines += [
            f"### `{layer}`",
            "",
            "| op | kind | reads or writes | patterns | elements |",
            "|---|---|---|---|---|",
        ]
        for op in plan.ops:
            if _op_layer(op) != layer:
                continue
            patterns = ", ".join(_pattern_code(p) for p in op.patterns)
            elements = sum(p.multiplicity(basis.space) for p in op.patterns)
            lines.append(
                f"| `{op.name}` | {_op_kind(op)} | {_op_text(op)} | {patterns} | {elements:,} |"
            )
        lines.append("")
    lines += [
        "*patterns* are the basis patterns an op serves (for a pool, those that read its "
        "feature); *elements* their basis elements.",
        "",
    ]
    return lines


# -- the document --------------------------------------------------------------------------------
def render_derivation(
    dims: Sequence[int],
    mode: str,
    basis: Basis,
    cert: Certificate,
    figures: Figures,
    plan: LayerPlan,
    channels: tuple[int, int] = (16, 16),
) -> str:
    """The Markdown page, from one basis, its certificate, figures and generated-code plan."""
    space = basis.space
    status = "passed" if cert.passed else "FAILED"
    lines = [
        f"# Derivation: MLP {_dims_text(dims)}, `{mode}` symmetry",
        "",
        f"<!-- Generated by `dws-theory docs {','.join(map(str, dims))} --symmetry {mode}`; "
        "do not edit by hand. -->",
        "",
        f"Weight space of dimension $P = {_tex_int(space.dimension)}$; "
        f"{basis.equivariant_linear:,} equivariant linear basis elements, "
        f"{basis.equivariant_bias:,} equivariant bias elements, {basis.invariant_linear:,} "
        f"invariant linear functionals; certificate {status} "
        f"({len(cert.results)} independent routes).",
        "",
    ]
    lines += _architecture_section(space, dims, figures.architecture)
    lines += _weight_space_section(space)
    lines += _group_section(space, mode)
    lines += _proof_section(space)
    lines += _block_section(basis, plan)
    lines += _tensor_section(basis, "bias")
    lines += _tensor_section(basis, "invariant")
    lines += _totals_section(basis, channels)
    lines += _certificate_section(cert)
    lines += _sharing_section(basis, figures)
    lines += _codegen_section(dims, mode, basis, plan)
    return "\n".join(lines).rstrip("\n") + "\n"


def write_figures(dims: Sequence[int], mode: str, basis: Basis, out_dir: Path) -> Figures:
    stem = derivation_stem(dims, mode)
    arch = f"{stem}_architecture.png"
    draw_architecture(basis.space, out_dir / arch, f"MLP {_dims_text(dims)} ({mode})")
    shown, reason = sharing_space(basis.space)
    sharing = f"{stem}_sharing.png"
    shown_basis = basis if shown == basis.space else enumerate_basis(shown)
    draw_sharing(shown_basis, out_dir / sharing, f"Parameter sharing, widths {_widths(shown)}")
    return Figures(arch, sharing, shown, reason)


def write_derivation(
    dims: Sequence[int] | str,
    mode: str = "hidden",
    out_dir: str | Path = DEFAULT_DOCS_DIR,
    channels: tuple[int, int] = (16, 16),
    basis: Basis | None = None,
    certificate: Certificate | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write the derivation page and its figures; returns the Markdown path."""
    say = progress or (lambda _msg: None)
    dims = parse_dims(dims)
    mode = parse_mode(mode)
    space = mlp(dims, mode)
    basis = basis if basis is not None else enumerate_basis(space)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if certificate is None:
        say("certifying")
        certificate = certify(space)
    say("drawing figures")
    figures = write_figures(dims, mode, basis, out_dir)
    say("writing the derivation")
    from .codegen import lower

    text = render_derivation(dims, mode, basis, certificate, figures, lower(basis), channels)
    path = out_dir / f"{derivation_stem(dims, mode)}.md"
    write_text(path, text)  # atomic: complete or absent
    return path


# -- command line --------------------------------------------------------------------------------
def _run_docs(args: argparse.Namespace) -> int:
    path = write_derivation(
        args.dims,
        args.symmetry,
        args.out,
        (args.in_channels, args.out_channels),
        progress=lambda m: print(f"  docs: {m}", file=sys.stderr),
    )
    print(path)
    return 0


def add_docs_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("docs", help="write the derivation document (Markdown + figures)")
    add_shape_arguments(p)
    p.add_argument(
        "--out",
        default=DEFAULT_DOCS_DIR,
        metavar="DIR",
        help=f"output directory (default {DEFAULT_DOCS_DIR})",
    )
    add_channel_arguments(p)
    p.set_defaults(func=_run_docs)
