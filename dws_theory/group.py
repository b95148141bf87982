"""The symmetry group of a weight space, as signed permutations of each neuron set.

An element acts on every tensor by gathering along each axis: for an axis on neuron set k,
`y[.., i, ..] = sign_k[i] * x[.., perm_k[i], ..]`. Rows of W_k and columns of W_{k+1} are
gathered by the same permutation, so the MLP's function is unchanged (for signed sets, with
an odd activation). Fixed sets carry the identity. The module is numpy-only; layers and
tests apply the same element to torch tensors through `apply_torch`-style gathers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .spec import Kind, WeightSpace

__all__ = [
    "GroupElement",
    "generators",
    "identity",
    "random_element",
    "representation",
    "signed_permutation",
]


@dataclass(frozen=True)
class GroupElement:
    """Per neuron set: a permutation and a sign vector (all +1 unless the set is signed)."""

    perms: tuple[tuple[str, tuple[int, ...]], ...]
    signs: tuple[tuple[str, tuple[int, ...]], ...]

    def perm(self, name: str) -> np.ndarray:
        return np.array(dict(self.perms)[name], dtype=np.int64)

    def sign(self, name: str) -> np.ndarray:
        return np.array(dict(self.signs)[name], dtype=np.int64)


def _element(space: WeightSpace, perms: dict, signs: dict) -> GroupElement:
    p, s = [], []
    for ns in space.sets:
        p.append((ns.name, tuple(int(i) for i in perms.get(ns.name, range(ns.size)))))
        s.append((ns.name, tuple(int(i) for i in signs.get(ns.name, [1] * ns.size))))
    return GroupElement(tuple(p), tuple(s))


def identity(space: WeightSpace) -> GroupElement:
    return _element(space, {}, {})


def generators(space: WeightSpace) -> Iterator[GroupElement]:
    """Generators of G: per permuted or signed set a transposition and an n-cycle (they
    generate S_n), and per signed set one sign flip (with S_n it generates all flips)."""
    for ns in space.sets:
        if ns.kind is Kind.FIXED or (ns.size == 1 and ns.kind is Kind.PERMUTED):
            continue
        n = ns.size
        if n >= 2:
            swap = list(range(n))
            swap[0], swap[1] = 1, 0
            yield _element(space, {ns.name: swap}, {})
            if n >= 3:
                yield _element(space, {ns.name: [(i + 1) % n for i in range(n)]}, {})
        if ns.kind is Kind.SIGNED:
            yield _element(space, {}, {ns.name: [-1] + [1] * (n - 1)})


def random_element(space: WeightSpace, rng: np.random.Generator) -> GroupElement:
    """A uniformly random element of G."""
    perms, signs = {}, {}
    for ns in space.sets:
        if ns.kind is Kind.FIXED:
            continue
        perms[ns.name] = rng.permutation(ns.size)
        if ns.kind is Kind.SIGNED:
            signs[ns.name] = rng.choice([-1, 1], size=ns.size)
    return _element(space, perms, signs)


def signed_permutation(
    space: WeightSpace, g: GroupElement, tensor: str
) -> tuple[np.ndarray, np.ndarray]:
    """(source, sign) over the flat indices of one tensor: (g x)[r] = sign[r] x[source[r]]."""
    axes = space.tensor(tensor).axes
    shape = space.shape(tensor)
    index = np.indices(shape).reshape(len(shape), -1) if shape else np.zeros((0, 1), np.int64)
    source = np.zeros(index.shape[1], dtype=np.int64)
    sign = np.ones(index.shape[1], dtype=np.int64)
    for axis, (name, size) in enumerate(zip(axes, shape, strict=True)):
        source = source * size + g.perm(name)[index[axis]]
        sign = sign * g.sign(name)[index[axis]]
    return source, sign


def representation(space: WeightSpace, g: GroupElement, tensor: str) -> np.ndarray:
    """rho(g) restricted to one tensor, as a dense integer signed-permutation matrix."""
    source, sign = signed_permutation(space, g, tensor)
    matrix = np.zeros((len(source), len(source)), dtype=np.int64)
    matrix[np.arange(len(source)), source] = sign
    return matrix
