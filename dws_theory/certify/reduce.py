"""Where an explicit route runs: the shape itself, or a reduced copy with the same counts.

Why a reduced copy keeps the count: c_k(t) = sum_{j <= min(t, n)} S(t, j) depends on n
only through min(t, n), and no block has more than t_max(k) axes on set k, so shrinking a
permuted or signed set to min(n, t_max(k)) keeps every count. Fixed sets contribute n^t
and are only shrunk when even the reduced copy would be too large; then the explicit routes
check the reduced copy and the closed form the full shape.

Nested sets keep their counts under the same cut. A family factor (counts.py) sums over
partitions P of the parent's axes into at most H blocks: P has at most t_p <= t_max(p)
blocks, so H enters only through min(H, t_max(p)). Inside a block B of P it multiplies
c_c(t_{c,B}) over the children, and t_{c,B} is at most the block's number of c-axes, at
most t_max(c), so d_c enters only through min(d_c, t_max(c)). Cutting the parent to its
t_max and each child to its own therefore keeps every count.
"""

from __future__ import annotations

from collections.abc import Callable

from ..spec import Kind, WeightSpace

__all__ = [
    "MAX_COMMUTANT_UNKNOWNS",
    "MAX_DENSE_P",
    "MAX_PAIRS",
    "MAX_TOTAL_PAIRS",
    "axes_bound",
    "explicit_space",
    "fits_commutant",
    "fits_dense",
    "fits_pairs",
    "reduce_space",
]

# Limits for explicit routes: index pairs for orbit counting, unknowns per commutant block,
# and P for dense element checks.
MAX_PAIRS = 4_000_000
MAX_TOTAL_PAIRS = 16_000_000  # all blocks together: about P^2 index pairs
MAX_COMMUTANT_UNKNOWNS = 1600
MAX_DENSE_P = 160

Fits = Callable[[WeightSpace], bool]


def _biggest(space: WeightSpace) -> int:
    return max(space.numel(t.name) for t in space.tensors)


def fits_pairs(space: WeightSpace) -> bool:
    """Orbit counting enumerates every index pair of every block."""
    return _biggest(space) ** 2 <= MAX_PAIRS and space.dimension**2 <= MAX_TOTAL_PAIRS


def fits_commutant(space: WeightSpace) -> bool:
    """The commutant solves a dense system with one unknown per index pair of a block."""
    return _biggest(space) ** 2 <= MAX_COMMUTANT_UNKNOWNS


def fits_dense(space: WeightSpace) -> bool:
    """The dense routes build every basis element as a matrix of its block."""
    return space.dimension <= MAX_DENSE_P


def axes_bound(space: WeightSpace) -> dict[str, int]:
    """t_max per neuron set: the most axes on that set in any block (twice the most in any
    one tensor, since a block has two tensors)."""
    return {s.name: 2 * max(t.axes.count(s.name) for t in space.tensors) or 1 for s in space.sets}


def reduce_space(space: WeightSpace, shrink_fixed: bool = False) -> WeightSpace:
    """The smallest copy with the same counts (permuted and signed sets cut to t_max); with
    `shrink_fixed`, fixed sets are cut to at most 2 as well (counts then change)."""
    bound = axes_bound(space)
    sizes = {}
    for s in space.sets:
        if s.kind is not Kind.FIXED:
            sizes[s.name] = min(s.size, max(bound[s.name], 1))
        elif shrink_fixed:
            sizes[s.name] = min(s.size, 2)
    return space.with_sizes(sizes)


def explicit_space(space: WeightSpace, fits: Fits) -> tuple[WeightSpace, str]:
    """The space a route with the size limit `fits` runs on, and a note when it is reduced."""
    if fits(space):
        return space, ""
    reduced = reduce_space(space)
    if fits(reduced):
        return reduced, "reduced copy: permuted/signed widths cut to t_max, counts unchanged"
    return reduce_space(space, shrink_fixed=True), (
        "reduced copy with fixed widths cut to 2: checks the enumeration there; "
        "the closed form checks the full shape"
    )


def keeps_counts(small: WeightSpace, target: WeightSpace) -> bool:
    """Whether a reduced copy has the counts of `small` (only fixed sets change counts)."""
    return all(target.set(s.name).size == s.size for s in small.sets if s.kind is Kind.FIXED)
