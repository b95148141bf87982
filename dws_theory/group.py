"""The symmetry group of a weight space, as signed permutations of each neuron set.

An element acts on every tensor by gathering along each axis: for an axis on neuron set k,
`y[.., i, ..] = sign_k[i] * x[.., perm_k[i], ..]`. Rows of W_k and columns of W_{k+1} are
gathered by the same permutation, so the MLP's function is unchanged (for signed sets, with
an odd activation). Fixed sets carry the identity. The module is numpy-only; layers and
tests apply the same element to torch tensors with `testing.act`.

Nested sets (a child `c` of size d inside the H blocks of a parent `p`): the element holds
one permutation and sign vector per block, `perm(c)` and `sign(c)` of shape [H, d], and an
axis on `c` is gathered by the row of its parent axis's *output* index:

    (g x)[.., h, .., i, ..] = s_p[h] s_c[h, i] x[.., sigma(h), .., tau_h(i), ..]

with sigma = perm(p), tau_h = perm(c)[h]. This is a group action: applying g2 then g1 gives
x[sigma2(sigma1(h)), tau2_{sigma1(h)}(tau1_h(i))] (signs alike), again of this form, so the
maps are closed under composition (a finite set of invertible maps closed under composition
is a group) and `compose` computes the product. The group is S_d wr S_H = S_d^H x| S_H per
child (with sign flips where signed), all children of one parent sharing sigma.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .spec import Kind, WeightSpace

__all__ = [
    "GroupElement",
    "compose",
    "generators",
    "identity",
    "random_element",
    "representation",
    "signed_permutation",
]

Rows = tuple[int, ...] | tuple[tuple[int, ...], ...]  # one permutation, or one per block


@dataclass(frozen=True)
class GroupElement:
    """Per neuron set: a permutation and a sign vector (all +1 unless the set is signed);
    per child set one of each per block of its parent ([H, d])."""

    perms: tuple[tuple[str, Rows], ...]
    signs: tuple[tuple[str, Rows], ...]

    def perm(self, name: str) -> np.ndarray:
        return np.array(dict(self.perms)[name], dtype=np.int64)

    def sign(self, name: str) -> np.ndarray:
        return np.array(dict(self.signs)[name], dtype=np.int64)


def _rows(values: object) -> Rows:
    array = np.asarray(values, dtype=np.int64)
    if array.ndim == 1:
        return tuple(int(i) for i in array)
    return tuple(tuple(int(i) for i in row) for row in array)


def _shape(space: WeightSpace, name: str) -> tuple[int, ...]:
    """[d] for a plain set, [H, d] for a child of a parent of size H."""
    s = space.set(name)
    return (space.set(s.parent).size, s.size) if s.parent is not None else (s.size,)


def _element(space: WeightSpace, perms: dict, signs: dict) -> GroupElement:
    p, s = [], []
    for ns in space.sets:
        shape = _shape(space, ns.name)
        unit = np.broadcast_to(np.arange(ns.size), shape)
        p.append((ns.name, _rows(perms.get(ns.name, unit))))
        s.append((ns.name, _rows(signs.get(ns.name, np.ones(shape, np.int64)))))
    return GroupElement(tuple(p), tuple(s))


def identity(space: WeightSpace) -> GroupElement:
    return _element(space, {}, {})


def _in_first_block(space: WeightSpace, name: str, row: list[int]) -> np.ndarray | list[int]:
    """`row` itself for a plain set; for a child, [H, d] with `row` in block 0 and the
    identity in every other block."""
    if space.set(name).parent is None:
        return row
    table = np.tile(np.arange(space.set(name).size), (_shape(space, name)[0], 1))
    table[0] = row
    return table


def _first_flip(space: WeightSpace, name: str) -> np.ndarray:
    """Signs with -1 at the first position (of block 0, for a child), +1 elsewhere."""
    signs = np.ones(_shape(space, name), dtype=np.int64)
    signs.flat[0] = -1
    return signs


def generators(space: WeightSpace) -> Iterator[GroupElement]:
    """Generators of G: per permuted or signed set a transposition and an n-cycle (they
    generate S_n), and per signed set one sign flip (with S_n it generates all flips).

    A child set gets the same generators acting inside block 0 only. With the parent's
    generators they generate the whole wreath product: the parent's generate the block
    permutations S_H; conjugating an element that acts inside block 0 by a block
    permutation sigma gives the same element acting inside block sigma(0) (apply
    sigma^-1, act in block 0, apply sigma back), so every block's S_d (and sign flips) is
    reached, and S_d^H together with S_H is S_d wr S_H."""
    for ns in space.sets:
        if ns.kind is Kind.FIXED or (ns.size == 1 and ns.kind is Kind.PERMUTED):
            continue
        n = ns.size
        if n >= 2:
            swap = list(range(n))
            swap[0], swap[1] = 1, 0
            yield _element(space, {ns.name: _in_first_block(space, ns.name, swap)}, {})
            if n >= 3:
                cycle = [(i + 1) % n for i in range(n)]
                yield _element(space, {ns.name: _in_first_block(space, ns.name, cycle)}, {})
        if ns.kind is Kind.SIGNED:
            yield _element(space, {}, {ns.name: _first_flip(space, ns.name)})


def random_element(space: WeightSpace, rng: np.random.Generator) -> GroupElement:
    """A uniformly random element of G (a child: an independent permutation per block)."""
    perms, signs = {}, {}
    for ns in space.sets:
        if ns.kind is Kind.FIXED:
            continue
        shape = _shape(space, ns.name)
        blocks = [rng.permutation(ns.size) for _ in range(int(np.prod(shape[:-1])))]
        perms[ns.name] = np.array(blocks).reshape(shape)
        if ns.kind is Kind.SIGNED:
            signs[ns.name] = rng.choice([-1, 1], size=shape)
    return _element(space, perms, signs)


def compose(space: WeightSpace, first: GroupElement, then: GroupElement) -> GroupElement:
    """The element acting as `first` followed by `then`: act(compose(a, b), x) ==
    act(b, act(a, x)). With the gather convention, (then . (first . x))[i] =
    x[p_first[p_then[i]]] for a plain set, and for a child
    tau_h = tau_first[sigma_then(h)] o tau_then[h] (the sign rows alike)."""
    perms, signs = {}, {}
    for ns in space.sets:
        p1, p2 = first.perm(ns.name), then.perm(ns.name)
        s1, s2 = first.sign(ns.name), then.sign(ns.name)
        if ns.parent is None:
            perms[ns.name], signs[ns.name] = p1[p2], s2 * s1[p2]
            continue
        outer = then.perm(ns.parent)  # the block each output block reads from
        rows = np.arange(p2.shape[0])[:, None]
        perms[ns.name] = p1[outer[rows], p2]
        signs[ns.name] = s2 * s1[outer[rows], p2]
    return _element(space, perms, signs)


def signed_permutation(
    space: WeightSpace, g: GroupElement, tensor: str
) -> tuple[np.ndarray, np.ndarray]:
    """(source, sign) over the flat indices of one tensor: (g x)[r] = sign[r] x[source[r]].

    An axis on a child set is gathered by the permutation of the block its parent axis
    indexes in the output (`index[parent]`), per the convention in the module docstring."""
    axes = space.tensor(tensor).axes
    parents = space.parent_axes(tensor)
    shape = space.shape(tensor)
    index = np.indices(shape).reshape(len(shape), -1) if shape else np.zeros((0, 1), np.int64)
    source = np.zeros(index.shape[1], dtype=np.int64)
    sign = np.ones(index.shape[1], dtype=np.int64)
    for axis, (name, size) in enumerate(zip(axes, shape, strict=True)):
        perm, flips = g.perm(name), g.sign(name)
        at = index[axis] if parents[axis] is None else (index[parents[axis]], index[axis])
        source = source * size + perm[at]
        sign = sign * flips[at]
    return source, sign


def representation(space: WeightSpace, g: GroupElement, tensor: str) -> np.ndarray:
    """rho(g) restricted to one tensor, as a dense integer signed-permutation matrix."""
    source, sign = signed_permutation(space, g, tensor)
    matrix = np.zeros((len(source), len(source)), dtype=np.int64)
    matrix[np.arange(len(source)), source] = sign
    return matrix
