"""The basis of equivariant linear, equivariant bias and invariant linear maps.

`enumerate_basis(space)` walks every ordered pair of tensors (out, in) and collects the
orbit patterns of `orbits.block_patterns`. Counts are per single input and output channel.

Dense forms (small spaces only): every basis element is a P x P matrix. The engine uses the
*non-strict* element of each pattern: entry 1 wherever the indices that share a label are
equal (different labels may still coincide). Its strict counterpart, the orbit indicator,
differs by a unit-triangular change of basis over the partition lattice (a coarser
partition has fewer blocks, so it is in the basis too), hence both span the same space. The
non-strict form is what pooling, diagonals and broadcasting compute, so it is what the
layers implement. `normalised=True` divides by the size of each pooled label (mean pooling).

Nested sets keep the argument. Write a nested pattern x as (P, Q): P partitions the parent
axes, Q partitions, inside each block of P, the child axes attached there (orbits.py). Its
non-strict element N_x is 1 wherever axes sharing a label are equal; the tuples it covers
are exactly those whose own orbit y = (P', Q') is *coarser*: P' merges blocks of P, and
inside each block B' of P' the child partition Q'_{B'} merges blocks of the union of Q_B
over the blocks B of P inside B' (child labels of different blocks of P were free to
coincide once their blocks coincide). Every such y is realised by a tuple, so it is an
orbit, and has at most H parent blocks and d child blocks per parent block (merging even
blocks keeps them even, for signed sets): it is in the basis. Hence N_x = O_x + sum over
strictly coarser orbits O_y, unit triangular in the coarsening order, and the N_x span the
orbit indicators' space and are independent.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .orbits import Pattern, block_patterns
from .spec import WeightSpace, require_space

__all__ = ["Basis", "Entries", "enumerate_basis", "pattern_entries"]


@dataclass(frozen=True)
class Basis:
    space: WeightSpace
    linear: tuple[Pattern, ...]  # equivariant linear: out <- in, all ordered pairs
    bias: tuple[Pattern, ...]  # equivariant bias: out <- (nothing)
    invariant: tuple[Pattern, ...]  # invariant linear: (nothing) <- in

    # -- counts ----------------------------------------------------------------------------
    def _count(self, patterns: tuple[Pattern, ...]) -> int:
        return sum(p.multiplicity(self.space) for p in patterns)

    @property
    def equivariant_linear(self) -> int:
        return self._count(self.linear)

    @property
    def equivariant_bias(self) -> int:
        return self._count(self.bias)

    @property
    def invariant_linear(self) -> int:
        return self._count(self.invariant)

    def block_counts(self) -> dict[tuple[str, str], int]:
        """Basis elements per ordered pair (out, in), for all pairs, in tensor order."""
        names = [t.name for t in self.space.tensors]
        counts = {(a, b): 0 for a in names for b in names}
        for p in self.linear:
            counts[(p.out, p.inp)] += p.multiplicity(self.space)
        return counts

    def bias_counts(self) -> dict[str, int]:
        counts = {t.name: 0 for t in self.space.tensors}
        for p in self.bias:
            counts[p.out] += p.multiplicity(self.space)
        return counts

    def invariant_counts(self) -> dict[str, int]:
        counts = {t.name: 0 for t in self.space.tensors}
        for p in self.invariant:
            counts[p.inp] += p.multiplicity(self.space)
        return counts

    def parameter_count(self, in_channels: int = 1, out_channels: int = 1) -> int:
        """Parameters of one equivariant layer: c_in*c_out per linear element, c_out per bias."""
        return self.equivariant_linear * in_channels * out_channels + (
            self.equivariant_bias * out_channels
        )

    # -- dense reference -------------------------------------------------------------------
    def dense(self, theta: np.ndarray, normalised: bool = True) -> np.ndarray:
        """The P x P matrix sum_e theta[e] E_e over the linear elements (in `linear` order)."""
        theta = np.asarray(theta, dtype=np.float64)
        if theta.shape != (self.equivariant_linear,):
            raise ValueError(f"theta needs shape ({self.equivariant_linear},), got {theta.shape}")
        size = self.space.dimension
        matrix = np.zeros((size, size))
        for start, p in self._offsets(self.linear):
            e = pattern_entries(self.space, p, normalised)
            np.add.at(matrix, (e.rows, e.cols), theta[start + e.element] * e.values)
        return matrix

    def dense_bias(self, theta: np.ndarray) -> np.ndarray:
        """The P-vector sum_e theta[e] e_e over the bias elements."""
        theta = np.asarray(theta, dtype=np.float64)
        if theta.shape != (self.equivariant_bias,):
            raise ValueError(f"theta needs shape ({self.equivariant_bias},), got {theta.shape}")
        vector = np.zeros(self.space.dimension)
        for start, p in self._offsets(self.bias):
            e = pattern_entries(self.space, p, False)
            np.add.at(vector, e.rows, theta[start + e.element])
        return vector

    def dense_invariant(self, normalised: bool = True) -> np.ndarray:
        """The invariant_linear x P matrix of invariant functionals (mean over pooled labels)."""
        matrix = np.zeros((self.invariant_linear, self.space.dimension))
        for start, p in self._offsets(self.invariant):
            e = pattern_entries(self.space, p, normalised)
            np.add.at(matrix, (start + e.element, e.cols), e.values)
        return matrix

    def elements(self, patterns: tuple[Pattern, ...] | None = None) -> Iterator[np.ndarray]:
        """Each linear basis element as a plain 0/1 integer P x P matrix (tiny spaces only)."""
        size = self.space.dimension
        for _, p in self._offsets(self.linear if patterns is None else patterns):
            e = pattern_entries(self.space, p, False)
            for k in range(p.multiplicity(self.space)):
                mask = e.element == k
                matrix = np.zeros((size, size), dtype=np.int64)
                matrix[e.rows[mask], e.cols[mask]] = 1
                yield matrix

    def _offsets(self, patterns: tuple[Pattern, ...]) -> Iterator[tuple[int, Pattern]]:
        start = 0
        for p in patterns:
            yield start, p
            start += p.multiplicity(self.space)


@dataclass(frozen=True)
class Entries:
    """Non-zeros of one pattern: element index (over fixed values), flat row, col, value."""

    element: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray


def pattern_entries(space: WeightSpace, p: Pattern, normalised: bool) -> Entries:
    """Coordinates of a pattern's non-zeros in the flattened weight space.

    Rows index the output tensor, columns the input tensor; a bias pattern has column 0 and
    an invariant pattern row 0 (callers place them). Elements are numbered by the values of
    the fixed labels in C order.
    """
    sizes = {label: space.set(name).size for label, name in p.label_sets}
    labels = p.labels
    grid = np.array(list(itertools.product(*(range(sizes[x]) for x in labels))), dtype=np.int64)
    grid = grid.reshape(-1, len(labels)) if labels else np.zeros((1, 0), dtype=np.int64)
    column = {x: grid[:, i] for i, x in enumerate(labels)}
    offsets = space.offsets()

    def flat(tensor: str | None, tensor_labels: str) -> np.ndarray:
        if tensor is None:
            return np.zeros(len(grid), dtype=np.int64)
        shape = space.shape(tensor)
        index = np.zeros(len(grid), dtype=np.int64)
        for axis_size, label in zip(shape, tensor_labels, strict=True):
            index = index * axis_size + column[label]
        return offsets[tensor] + index

    element = np.zeros(len(grid), dtype=np.int64)
    for label in p.fixed:
        element = element * sizes[label] + column[label]
    scale = 1.0
    if normalised:
        for label in p.permuted_labels:
            if p.role(label) == "pool":
                scale /= sizes[label]
    values = np.full(len(grid), scale)
    return Entries(element, flat(p.out, p.out_labels), flat(p.inp, p.in_labels), values)


def enumerate_basis(space: WeightSpace) -> Basis:
    """All equivariant linear, bias and invariant patterns of a weight space."""
    require_space(space, "enumerate_basis")
    names = [t.name for t in space.tensors]
    linear = tuple(p for a in names for b in names for p in block_patterns(space, a, b))
    bias = tuple(p for a in names for p in block_patterns(space, a, None))
    invariant = tuple(p for b in names for p in block_patterns(space, None, b))
    return Basis(space, linear, bias, invariant)
