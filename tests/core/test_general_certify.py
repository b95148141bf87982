"""Certificates and formulas for general spaces: CNN kernels, residual links, tied weights.

The enumeration agrees block by block with the test-only Burnside route (tests/reference.py,
character averaging over the whole enumerated group: no code shared with the engine), every
certificate route passes, and the sympy formula of every pattern (diagonals included) equals
the dense basis element.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import SPACE_ROUTES, _check_linear
from hypothesis import given
from hypothesis import strategies as st
from reference import burnside_counts, group_order
from spaces import cnn_space, modes, residual_space, tied_space

from dws_theory.basis import enumerate_basis
from dws_theory.certify import certify, enumeration_counts
from dws_theory.orbits import set_partitions
from dws_theory.spec import Kind, NeuronSet, Tensor, WeightSpace

tiny = st.integers(1, 3)


@st.composite
def tiny_spaces(draw) -> WeightSpace:
    """Small enough to enumerate the whole group (at most a few hundred elements)."""
    mode = draw(modes)
    family = draw(st.sampled_from(("cnn", "residual", "tied")))
    if family == "cnn":
        kernel = (draw(st.integers(1, 2)),)
        return cnn_space((1, draw(tiny)), (kernel,), draw(st.integers(1, 2)), mode)
    if family == "residual":
        return residual_space(1, draw(tiny), (draw(st.integers(1, 2)),), 1, mode)
    return tied_space(1, draw(tiny), 1, mode)


@given(space=tiny_spaces())
def test_enumeration_equals_burnside_block_by_block(space):
    assert group_order(space) <= 2**3 * 6 * 2**2 * 2
    assert burnside_counts(space) == enumeration_counts(enumerate_basis(space))


def test_a_set_of_width_three_on_four_axes_has_fourteen_patterns():
    """A tied square weight to itself puts four axes on one set: sum_{j <= 3} S(4, j) = 14,
    not Bell(4) = 15 (UNF's count)."""
    space = WeightSpace((NeuronSet("s", 3, Kind.PERMUTED),), (Tensor("T", ("s", "s")),))
    assert enumerate_basis(space).block_counts()[("T", "T")] == 14
    assert len(set_partitions(4, 4, False)) == 15
    assert burnside_counts(space)[("T", "T")] == 14


@pytest.mark.parametrize(
    "space",
    [
        cnn_space((1, 3, 2), ((3, 3), (2,)), 2, "hidden"),
        residual_space(2, 3, (2, 2), 2, "all"),
        tied_space(2, 3, 1, "signed"),
    ],
    ids=["cnn", "residual", "tied"],
)
def test_every_route_passes_on_general_spaces(space):
    cert = certify(space)
    assert [r.name for r in cert.results] == SPACE_ROUTES
    assert cert.passed, [(r.name, r.mismatches) for r in cert.results]
    # Small enough that every route ran on the space itself or a count-preserving copy.
    assert all("counts unchanged" in r.note or not r.reduced for r in cert.results)


@pytest.mark.parametrize(
    "space",
    [
        tied_space(1, 2, 1, "hidden"),
        WeightSpace((NeuronSet("s", 2, Kind.SIGNED),), (Tensor("T", ("s", "s")),)),
        cnn_space((1, 2), ((2,),), 1, "all"),
        residual_space(1, 2, (1,), 1, "hidden"),
    ],
    ids=["tied", "tied-signed", "cnn", "residual"],
)
def test_formulas_match_dense_on_general_spaces(space):
    """sympy is slow: a few small spaces, every element of every pattern (diagonals in the
    tied ones) checked against Basis.dense."""
    basis = enumerate_basis(space)
    assert _check_linear(basis, np.random.default_rng(0)) == basis.equivariant_linear
