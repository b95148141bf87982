"""Block classification: how two tensors share neuron sets and where a block sits.

The derivation page groups the blocks A <- B by these two facts and writes one
representative of each group out in full.
"""

from __future__ import annotations

from ..basis import Basis
from ..spec import WeightSpace

__all__ = ["POSITIONS", "RELATIONS", "block_group", "ends", "grouped_blocks", "letter"]


RELATIONS = (
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


POSITIONS = ("interior", "first layer", "last layer", "first and last layer")


def letter(space: WeightSpace, tensor: str) -> str:
    """b, W or T by the number of axes, not counting axes on child sets (a [H * d] bias
    stored as (heads, hd) is still a bias)."""
    main = sum(p is None for p in space.parent_axes(tensor))
    return {1: "b", 2: "W"}.get(main, "T")


def ends(space: WeightSpace) -> tuple[set[str], set[str]]:
    """Input-side and output-side neuron sets: sources and sinks of the architecture graph
    (sets on no weight's first two axes, such as conv kernel sets, are neither)."""
    g = space.graph()
    used = {n for n in g if g.degree(n) > 0 or g.nodes[n]["tensors"]}
    sources = {n for n in used if g.in_degree(n) == 0}
    return sources, {n for n in used if g.out_degree(n) == 0}


def _relation(space: WeightSpace, out: str, inp: str) -> str:
    """How two tensors share neuron sets, named by which axes meet (rows = axis 1)."""
    a, b = letter(space, out), letter(space, inp)
    axes_a, axes_b = space.tensor(out).axes, space.tensor(inp).axes
    meets = {(i, j) for i, x in enumerate(axes_a) for j, y in enumerate(axes_b) if x == y}
    if out == inp:
        return "same layer"
    if not meets:
        return {("W", "W"): "non-neighbours", ("b", "b"): "other layer"}.get((a, b), "disjoint")
    if len(meets) > 1 or "T" in (a, b):  # residual links, tied weights, kernels
        return "shares " + ", ".join(f"out {i} = in {j}" for i, j in sorted(meets))
    if a == b == "W":
        return {(0, 1): "neighbours, next layer", (1, 0): "neighbours, previous layer"}.get(
            min(meets), "shares sets"
        )
    if (a, b) == ("W", "b"):
        return "bias on its rows" if (0, 0) in meets else "bias on its columns"
    if (a, b) == ("b", "W"):
        return "on its rows" if (0, 0) in meets else "on its columns"
    return "shares sets"


def block_group(
    space: WeightSpace,
    out: str,
    inp: str,
    sides: tuple[set[str], set[str]] | None = None,
) -> tuple[str, str]:
    """(relation, position) of a block: how the two tensors share neuron sets, and whether
    the block touches the first (input) or last (output) set of the network. `sides` is
    `ends(space)` when the caller has it (it builds the architecture graph: once per page,
    not once per block)."""
    relation = f"{letter(space, out)} <- {letter(space, inp)}, {_relation(space, out, inp)}"
    axes = set(space.tensor(out).axes) | set(space.tensor(inp).axes)
    sources, sinks = ends(space) if sides is None else sides
    first, last = bool(axes & sources), bool(axes & sinks)
    if first and last:
        return relation, "first and last layer"
    if first or last:
        return relation, "first layer" if first else "last layer"
    return relation, "interior"


def _group_order(key: tuple[str, str]) -> tuple[int, int, str]:
    relation, position = key
    r = RELATIONS.index(relation) if relation in RELATIONS else len(RELATIONS)
    return r, POSITIONS.index(position), relation


def grouped_blocks(basis: Basis) -> dict[tuple[str, str], list[tuple[str, str]]]:
    groups: dict[tuple[str, str], list[tuple[str, str]]] = {}
    sides = ends(basis.space)
    for out, inp in basis.block_counts():
        groups.setdefault(block_group(basis.space, out, inp, sides), []).append((out, inp))
    return dict(sorted(groups.items(), key=lambda item: _group_order(item[0])))
