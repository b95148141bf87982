"""Counts per block: the enumeration's, and the closed form's (a route with no index pairs).

The closed form is the product over neuron sets of c_k(t_k): Stirling sums (sympy) for
permuted sets, even-block partition numbers from the exponential generating function
(cosh x - 1)^j / j! for signed sets, and n^t for fixed sets.

A set with moving children (a block symmetry S_d wr S_H) contributes one factor together
with them, its *family factor*: the sum over the set partitions P of its axes into at
most H blocks (even blocks if signed; enumerated by sympy's `multiset_partitions`, not by
the engine's partitions) of the product over blocks B of P and children c of
c_c(t_{c,B}), the per-set factor of c at the number of c-axes attached to B. A fixed child
is a fixed set and contributes d^t on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache

import sympy
from sympy.utilities.iterables import multiset_partitions

from ..basis import Basis
from ..spec import Kind, WeightSpace
from .result import Block, Counts

__all__ = [
    "Factor",
    "all_blocks",
    "block_factors",
    "closed_form_counts",
    "enumeration_counts",
    "family_factor",
    "set_factor",
]


def all_blocks(
    space: WeightSpace,
    count: Callable[[str | None, str | None], int],
    blocks: Iterable[Block] | None = None,
) -> Counts:
    """`count` of every block: every ordered pair of tensors, every bias and invariant block
    (only `blocks`, in their order, when given)."""
    if blocks is not None:
        return {block: count(*block) for block in blocks}
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


@dataclass(frozen=True)
class Factor:
    """One factor of a block's closed form: a set with `t` axes in the block, and for a set
    with moving children, per axis of the set the child axes attached to it
    (`attached[k]`: child set names, in axis order). `count` is c(t) or the family factor."""

    name: str
    t: int
    attached: tuple[tuple[str, ...], ...]
    count: int


def family_factor(space: WeightSpace, name: str, attached: tuple[tuple[str, ...], ...]) -> int:
    """Orbits of a set and its children on the axes of a block: per axis of the set (a
    block index), the child axes attached to it (`attached`, one tuple per axis)."""
    s = space.set(name)
    total = 0
    for partition in multiset_partitions(list(range(len(attached)))):
        if len(partition) > s.size or (
            s.kind is Kind.SIGNED and any(len(b) % 2 for b in partition)
        ):
            continue
        term = 1
        for b in partition:
            inside = [c for k in b for c in attached[k]]
            for child in dict.fromkeys(inside):
                c = space.set(child)
                term *= set_factor(c.kind, c.size, inside.count(child))
        total += term
    return total


def block_factors(space: WeightSpace, out: str | None, inp: str | None) -> list[Factor]:
    """The factors of a block's closed form, one per set or family, in order of first axis."""
    axes: list[str] = []
    parents: list[int | None] = []
    for tensor in (out, inp):
        if tensor is not None:
            start = len(axes)
            axes += space.tensor(tensor).axes
            parents += [None if q is None else start + q for q in space.parent_axes(tensor)]

    def moving_child(name: str) -> bool:
        s = space.set(name)
        return s.parent is not None and s.kind is not Kind.FIXED

    factors = []
    for name in dict.fromkeys(axes):  # a set on no axis contributes c_k(0) = 1
        if moving_child(name):
            continue  # counted in its parent's family
        s = space.set(name)
        own = [i for i, a in enumerate(axes) if a == name]
        attached = tuple(
            tuple(axes[j] for j in range(len(axes)) if parents[j] == i and moving_child(axes[j]))
            for i in own
        )
        if any(attached):
            count = family_factor(space, name, attached)
        else:
            count, attached = set_factor(s.kind, s.size, len(own)), ()
        factors.append(Factor(name, len(own), attached, count))
    return factors


def _closed_form_block(space: WeightSpace, out: str | None, inp: str | None) -> int:
    count = 1
    for factor in block_factors(space, out, inp):
        count *= factor.count
    return count


def closed_form_counts(space: WeightSpace) -> Counts:
    return all_blocks(space, lambda out, inp: _closed_form_block(space, out, inp))
