"""The explicit routes: each works on index pairs or dense matrices, not on the enumeration.

- `orbit_count_counts`: orbits of G on explicit index pairs, as connected components of the
  graph whose edges are the generators' actions (scipy). Sign parity is handled by the
  double cover (index, sign): an orbit with consistent parity splits into two components,
  an inconsistent one (killed by a sign flip) stays one, so surviving = C(cover) - C(base).
- `commutant_counts`: dimension of the solution space of rho_A(g) L = L rho_B(g) for every
  generator g, per block, by dense linear algebra (tiny blocks only).
- `exact_commutation`: every dense 0/1 basis element commutes with every generator, in
  integer arithmetic.
- `independence_ranks`: the dense basis elements of each block have full rank.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from ..basis import Basis, pattern_entries
from ..group import generators, representation, signed_permutation
from ..spec import WeightSpace
from .counts import all_blocks, enumeration_counts
from .result import Counts, block_name

__all__ = [
    "commutant_counts",
    "dense_blocks",
    "exact_commutation",
    "generator_representations",
    "independence_ranks",
    "orbit_count_counts",
]


def _components(n_nodes: int, sources: list[np.ndarray], targets: list[np.ndarray]) -> int:
    rows = np.concatenate(sources) if sources else np.zeros(0, np.int64)
    cols = np.concatenate(targets) if targets else np.zeros(0, np.int64)
    graph = sp.coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(n_nodes, n_nodes))
    return connected_components(graph, directed=False)[0]


def orbit_count_counts(space: WeightSpace) -> Counts:
    """Orbits with consistent sign parity on index pairs of every block, under generators."""
    actions = [
        {t.name: signed_permutation(space, g, t.name) for t in space.tensors}
        for g in generators(space)
    ]
    unit = (np.zeros(1, np.int64), np.ones(1, np.int64))  # the missing side of bias/invariant

    def count(out: str | None, inp: str | None) -> int:
        n_in = space.numel(inp) if inp else 1
        n = (space.numel(out) if out else 1) * n_in
        base_src, base_dst, cover_src, cover_dst = [], [], [], []
        pair = np.arange(n)
        for act in actions:
            src_a, sign_a = act[out] if out else unit
            src_b, sign_b = act[inp] if inp else unit
            image = src_a[pair // n_in] * n_in + src_b[pair % n_in]
            sign = sign_a[pair // n_in] * sign_b[pair % n_in]
            base_src.append(pair)
            base_dst.append(image)
            # Cover node x + n*s: (x, +) -> (image, sign), (x, -) -> (image, -sign).
            flip = (sign < 0).astype(np.int64)
            cover_src += [pair, pair + n]
            cover_dst += [image + n * flip, image + n * (1 - flip)]
        return _components(2 * n, cover_src, cover_dst) - _components(n, base_src, base_dst)

    return all_blocks(space, count)


def generator_representations(space: WeightSpace) -> list[dict[str, np.ndarray]]:
    return [
        {t.name: representation(space, g, t.name) for t in space.tensors} for g in generators(space)
    ]


def commutant_counts(space: WeightSpace) -> Counts:
    """dim {L : rho_A(g) L = L rho_B(g) for all generators g}, per block, by SVD rank."""
    reps = generator_representations(space)
    one = np.ones((1, 1), dtype=np.int64)

    def count(out: str | None, inp: str | None) -> int:
        n_out = space.numel(out) if out else 1
        n_in = space.numel(inp) if inp else 1
        unknowns = n_out * n_in
        if not reps:
            return unknowns
        gram = np.zeros((unknowns, unknowns))
        for rep in reps:
            ra = rep[out] if out else one
            rb = rep[inp] if inp else one
            # vec(ra L - L rb) = (ra kron I - I kron rb^T) vec(L), row-major vec.
            k = np.kron(ra, np.eye(n_in)) - np.kron(np.eye(n_out), rb.T)
            gram += k.T @ k
        eig = np.linalg.eigvalsh(gram)
        return int(np.sum(eig < 1e-8 * max(1.0, eig.max())))

    return all_blocks(space, count)


def dense_blocks(basis: Basis) -> dict[tuple[str | None, str | None], list[np.ndarray]]:
    """Each dense 0/1 element as a matrix of its block only (out entries x in entries; a
    missing side is one row or column); every block of `enumeration_counts` is a key,
    possibly with no elements. Built from the pattern's non-zeros directly, so memory grows
    with the blocks, not with P^2 per element."""
    space = basis.space
    offsets = space.offsets()

    def extent(tensor: str | None) -> tuple[int, int]:
        return (offsets[tensor], space.numel(tensor)) if tensor else (0, 1)

    grouped: dict[tuple[str | None, str | None], list[np.ndarray]] = {
        key: [] for key in enumeration_counts(basis)
    }
    for p in basis.linear + basis.bias + basis.invariant:
        e = pattern_entries(space, p, False)
        (row0, rows), (col0, cols) = extent(p.out), extent(p.inp)
        local_rows = e.rows - row0 if p.out else np.zeros_like(e.rows)
        local_cols = e.cols - col0 if p.inp else np.zeros_like(e.cols)
        for k in range(p.multiplicity(space)):
            mask = e.element == k
            matrix = np.zeros((rows, cols), dtype=np.int64)
            matrix[local_rows[mask], local_cols[mask]] = 1
            grouped[(p.out, p.inp)].append(matrix)
    return grouped


def commutes(elements: list[np.ndarray], reps: list[tuple[np.ndarray, np.ndarray]]) -> bool:
    """Whether every element E of a block satisfies rho_A(g) E = E rho_B(g), exactly."""
    return all(np.array_equal(ra @ e, e @ rb) for e in elements for ra, rb in reps)


def rank(elements: list[np.ndarray]) -> int:
    """Rank of a block's stacked dense elements."""
    if not elements:
        return 0
    return int(np.linalg.matrix_rank(np.stack([e.ravel() for e in elements]).astype(float)))


def block_representations(
    space: WeightSpace, reps: list[dict[str, np.ndarray]], out: str | None, inp: str | None
) -> list[tuple[np.ndarray, np.ndarray]]:
    one = np.ones((1, 1), dtype=np.int64)
    return [(rep[out] if out else one, rep[inp] if inp else one) for rep in reps]


def exact_commutation(basis: Basis) -> tuple[int, tuple[str, ...]]:
    """Number of elements checked and the blocks with an element that fails rho E = E rho."""
    space = basis.space
    reps = generator_representations(space)
    checked, failures = 0, []
    for (out, inp), elements in dense_blocks(basis).items():
        checked += len(elements)
        if not commutes(elements, block_representations(space, reps, out, inp)):
            failures.append(block_name(out, inp))
    return checked, tuple(sorted(set(failures)))


def independence_ranks(basis: Basis) -> Counts:
    """Rank of the stacked dense elements of each block."""
    return {key: rank(elements) for key, elements in dense_blocks(basis).items()}
