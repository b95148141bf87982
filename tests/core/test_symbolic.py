"""The sympy formula of every pattern, evaluated by sympy, equals the dense basis element."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import _check_linear, _fixed_shape, _tensor
from hypothesis import given
from hypothesis import strategies as st
from strategies import modes

from dws_theory.basis import enumerate_basis
from dws_theory.spec import mlp
from dws_theory.symbolic import evaluate_formula, pattern_formula


@pytest.mark.parametrize("mode", ["hidden", "all", "signed"])
def test_every_linear_formula_matches_dense(mode: str) -> None:
    basis = enumerate_basis(mlp("2,2,2,1", mode))
    assert _check_linear(basis, np.random.default_rng(1)) == basis.equivariant_linear


@given(
    dims=st.lists(st.integers(1, 3), min_size=2, max_size=3).map(tuple),
    mode=modes,
    seed=st.integers(0, 2**32 - 1),
)
def test_formulas_match_dense_on_random_small_shapes(dims, mode, seed) -> None:
    basis = enumerate_basis(mlp(dims, mode))
    assert _check_linear(basis, np.random.default_rng(seed)) == basis.equivariant_linear


def test_bias_and_invariant_formulas_match_dense() -> None:
    space = mlp("2,3,1", "hidden")
    basis = enumerate_basis(space)
    rng = np.random.default_rng(2)
    start = 0
    for p in basis.bias:
        m = p.multiplicity(space)
        theta = rng.normal(size=m)
        full = np.zeros(basis.equivariant_bias)
        full[start : start + m] = theta
        expected = _tensor(space, basis.dense_bias(full), p.out)
        got = evaluate_formula(
            space, pattern_formula(space, p), None, theta.reshape(_fixed_shape(space, p))
        )
        np.testing.assert_allclose(got, expected, rtol=1e-12)
        start += m
    x = rng.normal(size=space.dimension)
    rows = basis.dense_invariant(normalised=True) @ x
    start = 0
    for p in basis.invariant:
        m = p.multiplicity(space)
        theta = rng.normal(size=m)
        got = evaluate_formula(
            space,
            pattern_formula(space, p),
            _tensor(space, x, p.inp),
            theta.reshape(_fixed_shape(space, p)),
        )
        np.testing.assert_allclose(got, rows[start : start + m] @ theta, rtol=1e-12)
        start += m


def test_latex_of_a_pooling_pattern() -> None:
    """W2[ab] <- W2[ac] on a 3-layer hidden MLP: mean over the in-axis of W2, written out."""
    space = mlp("2,4,4,1", "hidden")
    p = next(
        q
        for q in enumerate_basis(space).linear
        if q.out == "W2" and q.inp == "W2" and q.out_labels == "ab" and q.in_labels == "ac"
    )
    tex = pattern_formula(space, p, "7").latex()
    assert tex == (
        r"{y^{W_{2}}}_{a,b} = \frac{1}{d_{1}} \sum_{c=0}^{d_{1} - 1} \theta^{(7)} {x^{W_{2}}}_{a,c}"
    )


def test_fixed_labels_index_the_coefficient() -> None:
    """W1 <- W1 in hidden mode: the fixed input axis is a dense contraction, not a mean."""
    space = mlp("3,4,1", "hidden")
    p = next(q for q in enumerate_basis(space).linear if str(q) == "W1[ab] <- W1[ac]")
    tex = pattern_formula(space, p).latex()
    assert r"{\theta^{(1)}}_{b,c}" in tex and r"\frac" not in tex
