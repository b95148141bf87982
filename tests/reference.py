"""A fourth, test-only route: character theory over the whole group (tiny shapes).

dim Hom_G(V_B, V_A) = (1/|G|) sum_g chi_A(g) chi_B(g) for real representations, where the
character of a signed permutation representation is the signed number of fixed indices.
The group is enumerated in full, so nothing here shares code with the engine's routes.
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np

from dws_theory.spec import Kind, WeightSpace


def all_elements(space: WeightSpace):
    """Every (perm, sign) per neuron set, as dicts name -> arrays."""
    per_set = []
    for s in space.sets:
        n = s.size
        perms = (
            list(itertools.permutations(range(n)))
            if s.kind is not Kind.FIXED
            else [tuple(range(n))]
        )
        signs = list(itertools.product((1, -1), repeat=n)) if s.kind is Kind.SIGNED else [(1,) * n]
        per_set.append([(s.name, np.array(p), np.array(g)) for p in perms for g in signs])
    for combo in itertools.product(*per_set):
        yield {name: (p, g) for name, p, g in combo}


def character(space: WeightSpace, element, tensor: str) -> int:
    """Signed count of indices fixed by the element on one tensor."""
    axes = space.tensor(tensor).axes
    total = 0
    for index in itertools.product(*(range(space.set(a).size) for a in axes)):
        sign = 1
        for axis, i in zip(axes, index, strict=True):
            perm, signs = element[axis]
            if perm[i] != i:
                sign = 0
                break
            sign *= signs[i]
        total += sign
    return total


def burnside_counts(space: WeightSpace) -> dict:
    """Counts for every block (a, b), bias (a, None) and invariant (None, b)."""
    names = [t.name for t in space.tensors]
    sums = {}
    order = 0
    for element in all_elements(space):
        order += 1
        chi = {t: character(space, element, t) for t in names}
        chi[None] = 1
        for a in [*names, None]:
            for b in [*names, None]:
                if a is None and b is None:
                    continue
                sums[(a, b)] = sums.get((a, b), 0) + chi[a] * chi[b]
    counts = {key: Fraction(value, order) for key, value in sums.items()}
    assert all(c.denominator == 1 for c in counts.values())
    return {key: int(c) for key, c in counts.items()}


def group_order(space: WeightSpace) -> int:
    order = 1
    for s in space.sets:
        if s.kind is not Kind.FIXED:
            order *= int(np.prod(range(1, s.size + 1)))
        if s.kind is Kind.SIGNED:
            order *= 2**s.size
    return order
