"""Counts per block: the enumeration's, and the closed form's (a route with no index pairs).

The closed form is the product over neuron sets of c_k(t_k): Stirling sums (sympy) for
permuted sets, even-block partition numbers from the exponential generating function
(cosh x - 1)^j / j! for signed sets, and n^t for fixed sets.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import sympy

from ..basis import Basis
from ..spec import Kind, WeightSpace
from .result import Counts

__all__ = ["all_blocks", "closed_form_counts", "enumeration_counts", "set_factor"]


def all_blocks(space: WeightSpace, count: Callable[[str | None, str | None], int]) -> Counts:
    """`count` of every block: every ordered pair of tensors, every bias and invariant block."""
    names = [t.name for t in space.tensors]
    result: Counts = {}
    for a in names:
        for b in names:
            result[(a, b)] = count(a, b)
        result[(a, None)] = count(a, None)
        result[(None, a)] = count(None, a)
    return result


def enumeration_counts(basis: Basis) -> Counts:
    counts: Counts = dict(basis.block_counts())
    counts.update({(a, None): n for a, n in basis.bias_counts().items()})
    counts.update({(None, b): n for b, n in basis.invariant_counts().items()})
    return counts


@cache
def _even_partitions(t: int, j: int) -> int:
    """Partitions of t labelled items into j blocks of even size: t! [x^t] (cosh x - 1)^j / j!."""
    x = sympy.Symbol("x")
    series = sympy.series((sympy.cosh(x) - 1) ** j / sympy.factorial(j), x, 0, t + 1).removeO()
    return int(series.coeff(x, t) * sympy.factorial(t))


@cache
def set_factor(kind: Kind, n: int, t: int) -> int:
    """c_k(t): orbits of one neuron set of size n acting on t axes."""
    if kind is Kind.FIXED:
        return n**t
    if kind is Kind.PERMUTED:
        return int(
            sum(sympy.functions.combinatorial.numbers.stirling(t, j) for j in range(min(t, n) + 1))
        )
    return sum(_even_partitions(t, j) for j in range(min(t, n) + 1))


def _closed_form_block(space: WeightSpace, out: str | None, inp: str | None) -> int:
    axes = list(space.tensor(out).axes if out else ()) + list(space.tensor(inp).axes if inp else ())
    count = 1
    for name in dict.fromkeys(axes):  # a set on no axis contributes c_k(0) = 1
        s = space.set(name)
        count *= set_factor(s.kind, s.size, axes.count(name))
    return count


def closed_form_counts(space: WeightSpace) -> Counts:
    return all_blocks(space, lambda out, inp: _closed_form_block(space, out, inp))
