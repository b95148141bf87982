"""The explicit certificate routes per block class, for deep spaces (hundreds of layers).

A deep MLP has 4 M^2 blocks and O(M) generators, so running the explicit routes on the
whole space costs O(M^3) (300 hidden layers: 362,404 blocks, 600 generators). But the count
of a block depends only on its own two tensors:

- The index pairs of block A <- B carry the action g.(i, j) = (rho_A(g) i, rho_B(g) j). A
  neuron set on no axis of A or B acts trivially on them, so the orbits (and the commutant
  {L : rho_A(g) L = L rho_B(g)}, and the equivariance and independence of the block's dense
  elements) are those of the product over the sets that A and B do touch.
- Renaming neuron sets changes nothing. So two blocks whose axes fall on sets of the same
  kinds and sizes in the same pattern (the `block_key`: the axes of A then of B, each set
  numbered by first appearance, with its kind, size and parent's number) have the same
  count. A child set's parent is on an earlier axis of the same tensor, so it is numbered
  first and the key keeps which set is whose parent; a parent's other children, on no
  axis of A or B, act trivially on the block like any other set it does not touch.

Each class of blocks with one key is therefore checked once, on its own space
(`block_space`: only A, B and their sets), and the result stands for every block of the
class. On that small space the routes then reduce widths exactly as on a whole space
(`reduce.explicit_space`): permuted and signed sets cut to t_max, which keeps every count.
The counting routes compare with the enumeration of the full shape block by block; the
dense routes check the enumeration run on the class's own (reduced) space. 300 hidden
layers of 64 fall into a few dozen classes. Classes whose reduced spaces coincide (a
ResNet's stages of 64 and of 512 channels, both cut to t_max) share one run of the
route, and a run counts only its own block, not every block of that small space.
"""

from __future__ import annotations

from collections.abc import Callable

from ..basis import Basis
from ..spec import Kind, NeuronSet, Tensor, WeightSpace
from .counts import enumeration_counts
from .explicit import (
    block_representations,
    commutes,
    dense_blocks,
    generator_representations,
    rank,
)
from .reduce import Fits, explicit_space, keeps_counts
from .result import Block, Counts, RouteResult, block_name

__all__ = [
    "BlockKey",
    "block_classes",
    "block_key",
    "block_space",
    "counting_route_per_block",
    "dense_route_per_block",
]

# (axes of the out tensor, axes of the in tensor) as set numbers, then per set (kind, size,
# number of its parent or None).
SetKey = tuple[Kind, int, int | None]
BlockKey = tuple[tuple[int, ...] | None, tuple[int, ...] | None, tuple[SetKey, ...]]


def block_key(space: WeightSpace, out: str | None, inp: str | None) -> BlockKey:
    """The isomorphism class of a block: blocks with equal keys have equal counts."""
    number: dict[str, int] = {}

    def axes(tensor: str | None) -> tuple[int, ...] | None:
        if tensor is None:
            return None
        return tuple(number.setdefault(a, len(number)) for a in space.tensor(tensor).axes)

    out_axes, in_axes = axes(out), axes(inp)
    sets = tuple(
        (s.kind, s.size, None if s.parent is None else number[s.parent])
        for s in map(space.set, number)
    )
    return out_axes, in_axes, sets


def block_space(key: BlockKey) -> tuple[WeightSpace, Block]:
    """The smallest space holding one block of the class: tensors A (out) and B (in) on
    sets k0, k1, ...; returns the space and the block's (out, in) names in it."""
    out_axes, in_axes, sets = key
    neuron_sets = tuple(
        NeuronSet(f"k{i}", size, kind, None if parent is None else f"k{parent}")
        for i, (kind, size, parent) in enumerate(sets)
    )
    tensors = []
    if out_axes is not None:
        tensors.append(Tensor("A", tuple(f"k{i}" for i in out_axes)))
    if in_axes is not None:
        tensors.append(Tensor("B", tuple(f"k{i}" for i in in_axes)))
    block = ("A" if out_axes is not None else None, "B" if in_axes is not None else None)
    return WeightSpace(neuron_sets, tuple(tensors)), block


def block_classes(space: WeightSpace, blocks: list[Block]) -> dict[BlockKey, list[Block]]:
    """The blocks grouped by `block_key`, in first-seen order."""
    classes: dict[BlockKey, list[Block]] = {}
    for out, inp in blocks:
        classes.setdefault(block_key(space, out, inp), []).append((out, inp))
    return classes


def _note(classes: int, blocks: int, runs: int, shrunk: int, dense: bool) -> str:
    text = (
        f"per block class: {blocks:,} blocks in {classes:,} classes, each class checked once "
        "on a space holding only the block's tensors and their neuron sets, permuted/signed "
        "widths cut to t_max (counts unchanged"
        + ("; the enumeration is run on that space)" if dense else ")")
    )
    if runs < classes:
        text += f"; classes whose cut copies coincide share one run ({runs:,} runs)"
    if shrunk:
        text += (
            f"; in {shrunk:,} classes fixed widths were cut to 2 as well: there the route "
            "checks the enumeration on the cut copy and the closed form the full shape"
        )
    return text


Run = tuple[WeightSpace, Block]  # the (reduced) block space a route runs on, and the block


def _runs(
    space: WeightSpace, blocks: list[Block], fits: Fits
) -> tuple[dict[BlockKey, list[Block]], dict[Run, list[tuple[BlockKey, bool]]]]:
    """The block classes, and the classes grouped by the space their route runs on (with
    whether that space keeps the class's counts). Classes that differ only in widths the cut
    removes (a stage of 64 channels and one of 512, both cut to t_max) share one run."""
    classes = block_classes(space, blocks)
    runs: dict[Run, list[tuple[BlockKey, bool]]] = {}
    for key in classes:
        small, block = block_space(key)
        target, _ = explicit_space(small, fits)
        runs.setdefault((target, block), []).append((key, keeps_counts(small, target)))
    return classes, runs


def counting_route_per_block(
    name: str,
    route: Callable[..., Counts],
    fits: Fits,
    space: WeightSpace,
    full_counts: Counts,
    basis_of: Callable[[WeightSpace], Basis],
) -> RouteResult:
    """A counting route (orbit_count, commutant) once per distinct (reduced) block space;
    `route(space, blocks)` counts the given blocks of a space."""
    classes, runs = _runs(space, list(full_counts), fits)
    value = expected = shrunk = 0
    mismatches: list[str] = []
    for (target, block), members in runs.items():
        counted = route(target, [block])[block]
        for key, keeps in members:
            blocks = classes[key]
            if keeps:
                wanted = [full_counts[b] for b in blocks]
            else:
                shrunk += 1
                wanted = [enumeration_counts(basis_of(target))[block]] * len(blocks)
            value += counted * len(blocks)
            expected += sum(wanted)
            mismatches += [
                block_name(*b) for b, n in zip(blocks, wanted, strict=True) if n != counted
            ]
    note = _note(len(classes), len(full_counts), len(runs), shrunk, dense=False)
    return RouteResult(
        name, str(space), True, value, expected, tuple(mismatches), note, len(classes)
    )


def dense_route_per_block(
    name: str,
    fits: Fits,
    space: WeightSpace,
    full_counts: Counts,
    basis_of: Callable[[WeightSpace], Basis],
) -> RouteResult:
    """exact_commutation or independence once per distinct reduced block space."""
    classes, runs = _runs(space, list(full_counts), fits)
    value = expected = shrunk = 0
    failures: list[str] = []
    for (target, block), members in runs.items():
        basis = basis_of(target)
        count = enumeration_counts(basis)[block]
        matrices = dense_blocks(basis, [block])[block]
        if name == "exact_commutation":
            reps = block_representations(target, generator_representations(target), *block)
            ok = commutes(matrices, reps) and len(matrices) == count
            got = len(matrices)
        else:
            got = rank(matrices)
            ok = got == count
        for key, keeps in members:
            shrunk += not keeps
            value += got
            expected += count
            if not ok:
                failures += [block_name(*b) for b in classes[key]]
    note = _note(len(classes), len(full_counts), len(runs), shrunk, dense=True)
    return RouteResult(name, str(space), True, value, expected, tuple(failures), note, len(classes))
