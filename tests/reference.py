"""Test-only routes over the whole group, enumerated element by element (tiny shapes).

- `burnside_counts`: character theory. dim Hom_G(V_B, V_A) = (1/|G|) sum_g chi_A(g) chi_B(g)
  for real representations, where the character of a signed permutation representation is
  the signed number of fixed indices.
- `brute_orbit_counts`: the orbits of every element's action on the explicit index pairs of
  each block, merged with union-find; an orbit survives unless some element fixes one of
  its pairs with sign -1.

The group is enumerated in full, nested sets included (a child of a parent of size H: one
permutation, and sign vector, per block, S_d wr S_H), and the action is written here from
its definition, (g x)[.., h, .., i, ..] = s_p(h) s_c(h, i) x[.., sigma(h), .., tau_h(i), ..],
so nothing here shares code with the engine's routes or its group module.
"""

from __future__ import annotations

import itertools
from fractions import Fraction
from math import factorial

import numpy as np

from dws_theory.spec import Kind, WeightSpace


def _blocks(space: WeightSpace, name: str) -> int:
    """How many independent permutations a set has: H for a child, 1 for a plain set."""
    parent = space.set(name).parent
    return space.set(parent).size if parent is not None else 1


def _set_elements(space: WeightSpace, name: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every (perm, sign) of one set: [d] arrays, or [H, d] for a child."""
    s = space.set(name)
    n, blocks = s.size, _blocks(space, name)
    one = list(itertools.permutations(range(n))) if s.kind is not Kind.FIXED else [tuple(range(n))]
    perms = list(itertools.product(one, repeat=blocks))
    flips = [(1,) * n]
    if s.kind is Kind.SIGNED:
        flips = list(itertools.product((1, -1), repeat=n))
    signs = list(itertools.product(flips, repeat=blocks))
    shape = (blocks, n) if s.parent is not None else (n,)
    return [(np.array(p).reshape(shape), np.array(g).reshape(shape)) for p in perms for g in signs]


def all_elements(space: WeightSpace):
    """Every group element as a dict name -> (perm, sign)."""
    per_set = [[(s.name, *e) for e in _set_elements(space, s.name)] for s in space.sets]
    for combo in itertools.product(*per_set):
        yield {name: (p, g) for name, p, g in combo}


def _parent_positions(space: WeightSpace, tensor: str) -> list[int | None]:
    """Per axis, its parent axis: the last earlier axis on the parent set."""
    axes = space.tensor(tensor).axes
    out = []
    for pos, name in enumerate(axes):
        parent = space.set(name).parent
        out.append(None if parent is None else max(q for q in range(pos) if axes[q] == parent))
    return out


def _image(space: WeightSpace, element, tensor: str, index: tuple[int, ...]):
    """(source index, sign): (g x)[index] = sign * x[source]."""
    axes = space.tensor(tensor).axes
    parents = _parent_positions(space, tensor)
    source, sign = [], 1
    for pos, (name, i) in enumerate(zip(axes, index, strict=True)):
        perm, signs = element[name]
        if parents[pos] is not None:  # the row of the block the output index sits in
            perm, signs = perm[index[parents[pos]]], signs[index[parents[pos]]]
        source.append(int(perm[i]))
        sign *= int(signs[i])
    return tuple(source), sign


def _indices(space: WeightSpace, tensor: str | None):
    if tensor is None:
        return [()]
    return list(itertools.product(*(range(n) for n in space.shape(tensor))))


def character(space: WeightSpace, element, tensor: str) -> int:
    """Signed count of indices fixed by the element on one tensor."""
    total = 0
    for index in _indices(space, tensor):
        source, sign = _image(space, element, tensor, index)
        total += sign if source == index else 0
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


def _find(root: dict, p):
    while root[p] != p:
        root[p] = root[root[p]]
        p = root[p]
    return p


def _block_orbits(space: WeightSpace, elements: list, a: str | None, b: str | None) -> int:
    pairs = [(r, c) for r in _indices(space, a) for c in _indices(space, b)]
    root = {p: p for p in pairs}
    killed = set()
    for element in elements:
        for r, c in pairs:
            rs, sr = _image(space, element, a, r) if a else ((), 1)
            cs, sc = _image(space, element, b, c) if b else ((), 1)
            root[_find(root, (r, c))] = _find(root, (rs, cs))
            if (rs, cs) == (r, c) and sr * sc == -1:
                killed.add((r, c))
    dead = {_find(root, p) for p in killed}
    return len({_find(root, p) for p in pairs} - dead)


def brute_orbit_counts(space: WeightSpace) -> dict:
    """Surviving orbits of the whole group on the index pairs of every block."""
    names = [t.name for t in space.tensors]
    elements = list(all_elements(space))
    return {
        (a, b): _block_orbits(space, elements, a, b)
        for a in [*names, None]
        for b in [*names, None]
        if a is not None or b is not None
    }


def group_order(space: WeightSpace) -> int:
    order = 1
    for s in space.sets:
        blocks = _blocks(space, s.name)
        if s.kind is not Kind.FIXED:
            order *= factorial(s.size) ** blocks
        if s.kind is Kind.SIGNED:
            order *= 2 ** (s.size * blocks)
    return order
