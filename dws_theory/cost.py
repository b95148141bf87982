"""What the engine can afford: one set of limits, checked on every path into it.

The engine keeps every orbit pattern of every block of a weight space, so its time and
memory grow with the number of blocks (tensors squared) and with the patterns per block
(set partitions of the block's axes per neuron set: Bell numbers, which explode with axes
on one set). `check_cost(space)` counts the patterns without enumerating them and raises
`CostError` ("expected at most ..., got ...") before any work when a space is over a limit.
`enumerate_basis` calls it, so the limits hold for the command line (DIMS, `--spec`,
`--module`) and for the Python API alike; the widths of neuron sets are bounded where every
set is made (`spec.MAX_WIDTH`).

Measured (`verify` on 2 busy cores): an MLP of 2, 499 hidden layers of 64, 1 (depth 500,
1,000 tensors, 1,000,000 blocks, 1,006,989 patterns) in 115 s and 830 MB.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from functools import cache
from math import comb

from .errors import SpecError
from .orbits import LABELS
from .spec import Kind, WeightSpace

__all__ = [
    "MAX_DEPTH",
    "MAX_LAYER_ELEMENTS",
    "MAX_PATTERNS",
    "MAX_TENSORS",
    "CostError",
    "check_cost",
    "check_layer",
    "check_parameter_count",
    "partition_count",
    "pattern_count",
]

# The deepest MLP the engine takes: it keeps all 4 M^2 blocks, about 1 KB each.
MAX_DEPTH = 500
# The same for any weight space: at most as many tensors as an MLP of MAX_DEPTH layers has
# (a weight and a bias per layer), so at most 4 MAX_DEPTH^2 blocks.
MAX_TENSORS = 2 * MAX_DEPTH
# Orbit patterns of all blocks together (linear, bias and invariant): twice what the
# deepest MLP needs, so every space within MAX_TENSORS whose blocks have few axes per set
# passes, and a tensor with many axes on one set (Bell numbers) does not.
MAX_PATTERNS = 2_000_000
# Basis elements of one layer (its parameters per input and output channel): every fixed
# axis makes its patterns dense, n^t elements each. Counting them costs nothing (`basis`
# and `verify` report any count); a layer with more than this many parameters per channel
# pair (4 GB in float32) cannot be built on any machine, so no module is made for it.
MAX_LAYER_ELEMENTS = 10**9


class CostError(SpecError):
    """A weight space the engine cannot afford; the message names the limit and the cost."""


@cache
def partition_count(t: int, max_blocks: int, even: bool) -> int:
    """Set partitions of t items into at most `max_blocks` blocks (with `even`: blocks of
    even size only), counted by the block that holds the first item, never listed."""
    if t == 0:
        return 1
    if max_blocks == 0:
        return 0
    sizes = range(2, t + 1, 2) if even else range(1, t + 1)
    return sum(comb(t - 1, s - 1) * partition_count(t - s, max_blocks - 1, even) for s in sizes)


def _set_patterns(space: WeightSpace, name: str, axes: int) -> int:
    """Patterns of `axes` axes on one neuron set: every fixed axis keeps its own label."""
    s = space.set(name)
    if s.kind is Kind.FIXED:
        return 1
    return partition_count(axes, s.size, s.kind is Kind.SIGNED)


def _patterns(space: WeightSpace, axes: Iterable[Counter]) -> int:
    per_set: Counter = Counter()
    for counter in axes:
        per_set.update(counter)
    count = 1
    for name, t in per_set.items():
        count *= _set_patterns(space, name, t)
    return count


def pattern_count(space: WeightSpace) -> int:
    """Orbit patterns of all blocks (linear, bias and invariant): exactly as many as
    `enumerate_basis` lists for sets that are not nested, at most that many where a child
    set's partitions are constrained by its parent's (nested sets count as if flat). Blocks
    of two tensors that share no neuron set count the product of their own patterns, so only
    pairs that share a set are visited one by one."""
    axes = [Counter(t.axes) for t in space.tensors]
    own = [_patterns(space, [a]) for a in axes]
    total = sum(own) ** 2 + 2 * sum(own)  # every pair as if it shared nothing; bias, invariant
    touching: dict[str, list[int]] = {}
    for i, a in enumerate(axes):
        for name in a:
            touching.setdefault(name, []).append(i)
    sharing = {(i, j) for members in touching.values() for i in members for j in members}
    for i, j in sharing:
        total += _patterns(space, [axes[i], axes[j]]) - own[i] * own[j]
    return total


def check_parameter_count(parameters: int) -> None:
    """Raise `CostError` for a module with more parameters than the engine takes tensors:
    each parameter is at least one tensor of its space, so a module over the limit is
    refused before it is traced (tracing a very deep module takes minutes)."""
    if parameters > MAX_TENSORS:
        raise CostError(
            f"expected a module of at most {MAX_TENSORS:,} parameters (each is a tensor of its "
            f"weight space; the engine keeps all blocks of pairs of them), got {parameters:,}"
        )


def check_cost(space: WeightSpace) -> None:
    """Raise `CostError` when enumerating `space` is over a limit; cheap (no enumeration)."""
    tensors = len(space.tensors)
    if tensors > MAX_TENSORS:
        raise CostError(
            f"expected at most {MAX_TENSORS:,} tensors (the engine keeps all blocks: "
            f"{MAX_TENSORS**2:,} at {MAX_TENSORS:,} tensors), got {tensors:,} tensors "
            f"({tensors**2:,} blocks)"
        )
    widest = max(len(t.axes) for t in space.tensors)
    if 2 * widest > len(LABELS):
        raise CostError(
            f"expected at most {len(LABELS) // 2} axes per tensor (a block holds two tensors' "
            f"axes, {len(LABELS)} at most), got {widest:,}"
        )
    patterns = pattern_count(space)
    if patterns > MAX_PATTERNS:
        raise CostError(
            f"expected at most {MAX_PATTERNS:,} orbit patterns (set partitions of each "
            f"block's axes per neuron set), got {_magnitude(patterns)}: too many tensors "
            "sharing sets, or too many axes on one permuted set (Bell numbers of them)"
        )


def check_layer(equivariant_linear: int, invariant_linear: int) -> None:
    """Raise `CostError` when a layer with these basis counts cannot be built (its
    parameters per channel pair over MAX_LAYER_ELEMENTS)."""
    largest = max(equivariant_linear, invariant_linear)
    if largest > MAX_LAYER_ELEMENTS:
        raise CostError(
            f"expected a layer of at most {MAX_LAYER_ELEMENTS:,} parameters per channel pair, "
            f"got {_magnitude(largest)} (dense over its fixed axes); `basis` and `verify` "
            "report such counts, but no layer of that size can be built"
        )


def _magnitude(n: int) -> str:
    """`1,234,567` up to 12 digits, else `about 4.5e+17`."""
    return f"{n:,}" if n < 10**12 else f"about {float(n):.2g}"
