"""Figures of the derivation page: the neuron-set graph and the parameter-sharing matrix.

PNGs are drawn with fixed rcParams and without the Software metadata, so the bytes are
reproducible and a drift test can compare them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import networkx as nx
import numpy as np

from ..atomic import replacing
from ..basis import Basis, enumerate_basis, pattern_entries
from ..certify import reduce_space
from ..spec import Kind, WeightSpace
from .text import tex_int, widths_text

if TYPE_CHECKING:  # matplotlib is imported where used: the CLI starts faster
    from matplotlib.figure import Figure

__all__ = [
    "SHARING_MAX_P",
    "Figures",
    "draw_architecture",
    "draw_sharing",
    "sharing_matrix",
    "sharing_space",
    "write_figures",
]


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


@dataclass(frozen=True)
class Figures:
    architecture: str  # file names, relative to the Markdown page
    sharing: str
    sharing_space: WeightSpace
    sharing_reason: str
    sharing_basis: Basis | None = None  # the basis drawn (of sharing_space), when known


def _save(fig: Figure, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    with replacing(path) as temporary:  # atomic: complete or absent
        fig.savefig(temporary, format="png", metadata={"Software": None})


def _layout(g: nx.MultiDiGraph) -> dict[str, tuple[float, float]]:
    """Neuron sets left to right by topological generation (layer), stacked within one; a
    graph with cycles (residual links, tied weights) by distance from its sources."""
    step = 1.0
    try:
        generations = [sorted(gen) for gen in nx.topological_generations(g)]
    except nx.NetworkXUnfeasible:
        generations, step = _distance_layers(g), 1.5  # room for the bent edges
    return {
        n: (float(x), step * (float(len(gen) - 1) / 2 - y))
        for x, gen in enumerate(generations)
        for y, n in enumerate(gen)
    }


def _distance_layers(g: nx.MultiDiGraph) -> list[list[str]]:
    """Columns by shortest distance from the sources (sets nothing writes to, self-loops
    aside); sets no source reaches come last, in the space's order."""
    loops = set(nx.selfloop_edges(g))
    plain = nx.DiGraph((u, v) for u, v in g.edges() if (u, v) not in loops)
    plain.add_nodes_from(g)
    sources = [n for n in g if plain.in_degree(n) == 0] or [next(iter(g))]
    distance: dict[str, int] = {}
    for source in sources:
        for node, d in nx.single_source_shortest_path_length(plain, source).items():
            distance[node] = min(d, distance.get(node, d))
    last = max(distance.values(), default=-1) + 1
    columns: dict[int, list[str]] = {}
    for n in g:
        columns.setdefault(distance.get(n, last), []).append(n)
    return [columns[k] for k in sorted(columns)]


def _drawn_graph(space: WeightSpace) -> nx.MultiDiGraph:
    """The architecture graph without sets that only carry extra axes (conv kernels): they
    are listed on their weight's edge instead."""
    g = space.graph()
    idle = [n for n in g if g.degree(n) == 0 and not g.nodes[n]["tensors"]]
    g.remove_nodes_from(idle)
    return g


def _edge_bends(g: nx.MultiDiGraph) -> list[tuple[str, str, dict, float]]:
    """(u, v, data, rad) per edge: 0 for the only edge between two sets, else a bend that
    keeps reciprocal and parallel edges (residual links) apart."""
    pairs: dict[frozenset, list[tuple[str, str]]] = {}
    for u, v in g.edges():
        pairs.setdefault(frozenset((u, v)), []).append((u, v))
    seen: dict[frozenset, int] = {}
    out = []
    for u, v, data in g.edges(data=True):
        key = frozenset((u, v))
        k = seen.get(key, 0)
        seen[key] = k + 1
        rad = 0.0 if len(pairs[key]) == 1 or u == v else 0.35 * (1 + k // 2)
        out.append((u, v, data, rad))
    return out


def _label_position(ax, start, end, rad: float) -> tuple[float, float]:
    """Where an edge's label goes: above its middle; for a bent edge (matplotlib's arc3, a
    quadratic curve whose control point lies `rad` times the chord off the middle, in
    display coordinates) above the curve's middle; for a loop above the loop."""
    (x0, y0), (x1, y1) = start, end
    if start == end:
        return x0, y0 + 0.45
    if rad == 0:
        return (x0 + x1) / 2, (y0 + y1) / 2 + 0.12
    to_display, to_data = ax.transData, ax.transData.inverted()
    (a, b), (c, d) = to_display.transform([start, end])
    middle = ((a + c) / 2 + rad / 2 * (d - b), (b + d) / 2 - rad / 2 * (c - a))
    x, y = to_data.transform(middle)
    return float(x), float(y) + 0.04


def _edge_label(space: WeightSpace, data: dict) -> str:
    shape = "x".join(str(d) for d in space.shape(data["tensor"]))
    return f"{data['tensor']} ({shape})"


def _wrapped(names: list[str], per_line: int = 2) -> str:
    return "\n".join(", ".join(names[i : i + per_line]) for i in range(0, len(names), per_line))


def draw_architecture(space: WeightSpace, path: Path, title: str) -> None:
    """The neuron-set graph: sets as nodes (shape and colour by kind), weights as edges (a
    square weight on one set as a loop, residual links as bent edges), biases written under
    their set."""
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    g = _drawn_graph(space)
    pos = _layout(g)
    bends = _edge_bends(g)
    with matplotlib.rc_context(_RC):
        columns = len({x for x, _ in pos.values()})
        width = 1.3 * len(g) + 1.5 if columns == len(g) else 2.2 * columns + 2.5
        rows = max(sum(1 for p in pos.values() if p[0] == x) for x, _ in pos.values())
        fig = Figure(figsize=(width, 2.6 + 1.6 * (rows - 1)))
        ax = fig.add_axes((0.02, 0.02, 0.96, 0.74))
        for rad in sorted({r for *_, r in bends}):
            part = nx.MultiDiGraph()
            part.add_nodes_from(g)
            part.add_edges_from((u, v) for u, v, _, r in bends if r == rad)
            style = {"connectionstyle": f"arc3,rad={rad}"} if rad else {}
            nx.draw_networkx_edges(
                part, pos, ax=ax, arrows=True, arrowsize=14, node_size=900, edge_color="#555555",
                **style,
            )  # fmt: skip
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
                ax.text(x, y - 0.32, _wrapped(g.nodes[n]["tensors"]), ha="center", va="top")
        xs = [p[0] for p in pos.values()]
        ys = [p[1] for p in pos.values()]
        ax.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
        ax.set_ylim(min(ys) - 0.55, max(ys) + 0.4 + 0.3 * any(u == v for u, v, *_ in bends))
        for u, v, data, rad in bends:
            x, y = _label_position(ax, pos[u], pos[v], rad)
            ax.text(x, y, _edge_label(space, data), ha="center", va="bottom")
        handles = [
            Line2D([], [], marker=shape, color=colour, linestyle="", markersize=9, label=kind.value)
            for kind, (shape, colour) in _KIND_STYLE.items()
        ]
        ax.legend(
            handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False
        )
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
            f"Drawn for the reduced copy {widths_text(reduced)} ($P = {reduced.dimension}$), "
            f"since $P = {tex_int(space.dimension)}$ is too large to draw: permuted and signed "
            "widths are cut to the most axes a block puts on one set, which keeps every pattern "
            "and every count."
        )
    small = reduce_space(space, shrink_fixed=True)
    return small, (
        f"Drawn for the copy {widths_text(small)} ($P = {small.dimension}$), since "
        f"$P = {tex_int(space.dimension)}$ is too large to draw and so is the "
        f"count-preserving reduced copy {widths_text(reduced)} "
        f"($P = {tex_int(reduced.dimension)}$): fixed widths are cut to 2 as well. The "
        "patterns are the same; each stands for fewer elements there, because fixed axes are "
        "dense parameter dimensions."
    )


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


def write_figures(stem: str, title: str, basis: Basis, out_dir: Path) -> Figures:
    """Draw `{stem}_architecture.png` and `{stem}_sharing.png` under out_dir."""
    arch = f"{stem}_architecture.png"
    draw_architecture(basis.space, out_dir / arch, title)
    shown, reason = sharing_space(basis.space)
    sharing = f"{stem}_sharing.png"
    shown_basis = basis if shown == basis.space else enumerate_basis(shown)
    draw_sharing(shown_basis, out_dir / sharing, f"Parameter sharing, widths {widths_text(shown)}")
    return Figures(arch, sharing, shown, reason, shown_basis)
