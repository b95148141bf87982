"""The enumerated basis: reference values, the traps of earlier libraries, and agreement with
independent routes on random shapes."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from reference import burnside_counts, group_order
from strategies import mlp_dims, modes

from dws_theory.basis import enumerate_basis
from dws_theory.certify import (
    closed_form_counts,
    enumeration_counts,
    reduce_space,
)
from dws_theory.group import random_element, representation
from dws_theory.orbits import set_partitions
from dws_theory.spec import Kind, NeuronSet, Tensor, WeightSpace, mlp

# The reference values (one channel in and out) of the DWSNets shapes, and the remarks on
# narrow widths that go with them (docs/theory.md, section 4).
REFERENCE = [
    ("2,32,32,1", "hidden", 75, 7, 7),
    ("2,32,32,1", "all", 57, 6, 6),
    ("2,32,32,1", "signed", 15, 1, 1),
    ("2,32,32,32,1", "hidden", 117, 9, 9),
    ("2,2,2,1", "hidden", 75, 7, 7),
    ("2,1,2,1", "hidden", 58, 7, 7),
    ("784,128,128,10", "hidden", 1_269_190, None, None),
]


@pytest.mark.parametrize(("dims", "mode", "linear", "bias", "invariant"), REFERENCE)
def test_reference_values(dims, mode, linear, bias, invariant):
    basis = enumerate_basis(mlp(dims, mode))
    assert basis.equivariant_linear == linear
    if bias is not None:
        assert basis.equivariant_bias == bias
        assert basis.invariant_linear == invariant


def test_large_fixed_input_explodes_as_two_d0_squared():
    counts = enumerate_basis(mlp("784,128,128,10")).block_counts()
    assert counts[("W1", "W1")] == 2 * 784**2


def _matrix_space(n: int, m: int, same_set: bool = False) -> WeightSpace:
    sets = (NeuronSet("a", n, Kind.PERMUTED),)
    if not same_set:
        sets += (NeuronSet("b", m, Kind.PERMUTED),)
    return WeightSpace(sets, (Tensor("X", ("a", "a" if same_set else "b")),))


def test_matrix_under_two_symmetric_groups_has_four_elements():
    # Hartford et al.: S_n x S_m acting on rows and columns: identity, row/col/all pooling.
    assert enumerate_basis(_matrix_space(5, 7)).equivariant_linear == 4


def test_equal_widths_stay_separate_groups():
    # The emlp trap: S_3 x S_3 is not S_3 acting on both axes (that gives 15, Bell(4)).
    assert enumerate_basis(_matrix_space(3, 3)).equivariant_linear == 4
    assert enumerate_basis(_matrix_space(4, 4, same_set=True)).equivariant_linear == 15


def test_small_widths_are_below_the_bell_count():
    # X(a, a) with |a| = n: partitions of 4 axes into at most n blocks:
    # S(4,1)=1, S(4,2)=7, S(4,3)=6, S(4,4)=1 (Bell(4) = 15 only from n = 4).
    expected = {1: 1, 2: 8, 3: 14, 4: 15, 5: 15}
    for n, count in expected.items():
        assert enumerate_basis(_matrix_space(n, n, same_set=True)).equivariant_linear == count


def test_set_partitions_match_stirling_and_even_counts():
    # Bell numbers 1, 1, 2, 5, 15, 52 and the even-block counts 1, 0, 1, 0, 4, 0, 31.
    assert [len(set_partitions(t, t, False)) for t in range(6)] == [1, 1, 2, 5, 15, 52]
    assert [len(set_partitions(t, t, True)) for t in range(7)] == [1, 0, 1, 0, 4, 0, 31]
    assert len(set_partitions(4, 2, False)) == 8


@given(mlp_dims(max_depth=2, max_width=3), modes)
def test_enumeration_matches_burnside_over_the_whole_group(dims, mode):
    space = mlp(dims, mode)
    assume(group_order(space) <= 5000)
    assert enumeration_counts(enumerate_basis(space)) == burnside_counts(space)


@given(mlp_dims(max_depth=6, max_width=300), modes)
def test_closed_form_matches_enumeration_on_large_shapes(dims, mode):
    space = mlp(dims, mode)
    assert closed_form_counts(space) == enumeration_counts(enumerate_basis(space))


@given(mlp_dims(max_depth=5, max_width=40), modes)
def test_reduced_copy_has_the_same_counts(dims, mode):
    space = mlp(dims, mode)
    reduced = reduce_space(space)
    assert all(s.size <= 2 or s.kind is Kind.FIXED for s in reduced.sets)
    assert enumeration_counts(enumerate_basis(reduced)) == enumeration_counts(
        enumerate_basis(space)
    )


@given(mlp_dims(max_depth=3, max_width=3), modes, st.integers(0, 2**32 - 1))
def test_every_dense_element_commutes_with_random_group_elements(dims, mode, seed):
    space = mlp(dims, mode)
    basis = enumerate_basis(space)
    rng = np.random.default_rng(seed)
    rho = np.zeros((space.dimension, space.dimension), dtype=np.int64)
    g = random_element(space, rng)
    for name, start in space.offsets().items():
        size = space.numel(name)
        rho[start : start + size, start : start + size] = representation(space, g, name)
    for element in basis.elements():  # exact integer arithmetic, no tolerance
        assert np.array_equal(rho @ element, element @ rho)
    # Bias vectors are fixed by rho; invariant functionals are unchanged by it.
    theta = rng.integers(-3, 4, size=basis.equivariant_bias).astype(float)
    bias = basis.dense_bias(theta)
    assert np.array_equal(rho @ bias, bias)
    functionals = basis.dense_invariant(normalised=False)
    assert np.array_equal(functionals @ rho, functionals)


@given(mlp_dims(max_depth=3, max_width=3), modes, st.integers(0, 2**32 - 1))
def test_normalised_dense_matrix_is_equivariant_and_mean_pools(dims, mode, seed):
    space = mlp(dims, mode)
    basis = enumerate_basis(space)
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=basis.equivariant_linear)
    matrix = basis.dense(theta)
    rho = np.zeros_like(matrix)
    g = random_element(space, rng)
    for name, start in space.offsets().items():
        size = space.numel(name)
        rho[start : start + size, start : start + size] = representation(space, g, name)
    np.testing.assert_allclose(rho @ matrix, matrix @ rho, atol=1e-12)
    # Mean pooling: every dense element maps the all-ones input of its in-tensor to entries
    # that are at most 1 (sums are divided by the pooled sizes).
    ones = np.ones(space.dimension)
    for k in range(basis.equivariant_linear):
        one_hot = np.zeros(basis.equivariant_linear)
        one_hot[k] = 1.0
        assert np.abs(basis.dense(one_hot) @ ones).max() <= 1.0 + 1e-12


def test_dense_theta_shape_is_checked():
    basis = enumerate_basis(mlp("2,3,1"))
    with pytest.raises(ValueError, match=r"theta needs shape \(" + str(basis.equivariant_linear)):
        basis.dense(np.zeros(3))


def test_deep_mlp_enumerates_every_block():
    dims = (2, *([64] * 63), 1)
    basis = enumerate_basis(mlp(dims))
    depth = len(dims) - 1
    assert len(basis.block_counts()) == (2 * depth) ** 2
    assert basis.block_counts() == {
        k: v for k, v in closed_form_counts(mlp(dims)).items() if None not in k
    }
