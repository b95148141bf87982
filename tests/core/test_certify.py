"""Certificates: every route agrees on random shapes, and each route catches broken bases."""

import dataclasses

import pytest
from helpers import SPACE_ROUTES
from hypothesis import given
from strategies import mlp_dims, modes

from dws_theory.basis import Basis, enumerate_basis
from dws_theory.certify import certify, commutant_counts, orbit_count_counts
from dws_theory.orbits import block_patterns
from dws_theory.spec import Kind, NeuronSet, Tensor, WeightSpace, mlp


@given(mlp_dims(max_depth=5, max_width=4), modes)
def test_all_routes_agree_block_by_block(dims, mode):
    cert = certify(mlp(dims, mode))
    assert [r.name for r in cert.results] == SPACE_ROUTES
    assert cert.passed, [r for r in cert.results if not r.passed]


@pytest.mark.parametrize("mode", ["hidden", "all", "signed"])
def test_dwsnets_inr_shape_certifies(mode):
    cert = certify(mlp("2,32,32,1", mode))
    assert cert.passed
    by_name = {r.name: r for r in cert.results}
    # Orbit counting runs on the full shape; the dense routes on the reduced copy.
    assert not by_name["orbit_count"].reduced
    assert by_name["commutant"].reduced
    assert "2:" in by_name["commutant"].ran_on and "32:" not in by_name["commutant"].ran_on


def test_huge_fixed_widths_say_they_shrank():
    cert = certify(mlp("784,128,128,10"))
    assert cert.passed
    dense = {r.name: r for r in cert.results}["exact_commutation"]
    assert dense.reduced and "fixed widths cut" in dense.note


def _general_spaces():
    a = NeuronSet("a", 3, Kind.PERMUTED)
    s = NeuronSet("s", 2, Kind.SIGNED)
    f = NeuronSet("f", 2, Kind.FIXED)
    return [
        # A tied square weight (both axes on one set) and a vector: t_max = 4 on `a`.
        WeightSpace((a,), (Tensor("X", ("a", "a")), Tensor("v", ("a",)))),
        # A 3-axis kernel over a signed set, a fixed channel axis and a permuted set.
        WeightSpace((a, s, f), (Tensor("K", ("s", "a", "f")), Tensor("c", ("s",)))),
        # A scalar tensor alongside (no axes at all).
        WeightSpace((s,), (Tensor("X", ("s", "s")), Tensor("z", ()))),
    ]


@pytest.mark.parametrize("space", _general_spaces(), ids=str)
def test_routes_agree_beyond_mlps(space):
    cert = certify(space)
    assert cert.passed, [r for r in cert.results if not r.passed]


def _bell_enumerator(space: WeightSpace) -> Basis:
    """UNF's mistake: enumerate Bell(t) partitions whatever the widths."""
    wide = space.with_sizes({s.name: 99 for s in space.sets if s.kind is not Kind.FIXED})
    basis = enumerate_basis(wide)
    return Basis(space, basis.linear, basis.bias, basis.invariant)


def _dropping_enumerator(space: WeightSpace) -> Basis:
    """NFN's mistake: one pattern of one block (b_{M-1} -> W_M) goes missing."""
    basis = enumerate_basis(space)
    depth = len(space.tensors) // 2
    missing = block_patterns(space, f"W{depth}", f"b{depth - 1}")[0]
    return dataclasses.replace(basis, linear=tuple(p for p in basis.linear if p != missing))


COUNT_ROUTES = {"closed_form", "orbit_count", "commutant"}


@pytest.mark.parametrize(
    ("enumerator", "dims", "must_fail"),
    [
        # Redundant: on width 1 two partitions give the same matrix, so the rank drops too.
        (_bell_enumerator, "2,1,2,1", COUNT_ROUTES | {"independence"}),
        # Incomplete: every counting route sees the missing element in block W3 <- b2.
        (_dropping_enumerator, "2,3,3,2", COUNT_ROUTES),
    ],
)
def test_broken_enumerations_fail_the_certificate(enumerator, dims, must_fail):
    cert = certify(mlp(dims), enumerator=enumerator)
    assert not cert.passed
    failing = {r.name for r in cert.results if not r.passed}
    assert must_fail <= failing


def test_sign_parity_kills_odd_orbits():
    space = mlp("2,3,3,1", "signed")
    assert orbit_count_counts(space)[("b1", "W2")] == 0  # one axis on signed set n2: odd
    assert orbit_count_counts(space)[("W1", "W1")] == 4  # d_0^2 kept by the diagonal
    assert commutant_counts(space)[("W1", "W1")] == 4


# -- the registry ------------------------------------------------------------------------------
def test_routes_are_chosen_by_name_and_an_unknown_name_lists_the_registered_ones():
    space = mlp("2,3,1", "hidden")
    cert = certify(space, routes=["commutant", "closed_form"])
    assert [r.name for r in cert.results] == ["closed_form", "commutant"]  # registry order
    with pytest.raises(ValueError, match="expected one of.*closed_form.*orbit_count"):
        certify(space, routes=["closed_from"])


def test_a_registered_route_runs_and_a_failing_one_fails_the_certificate():
    from dws_theory.certify import Route, RouteResult, register_route
    from dws_theory.certify.registry import ROUTES

    def wrong(check):
        return RouteResult("always_one_short", str(check.space), False, 0, 1, ("W1<-W1",))

    register_route(Route("always_one_short", "a route that is always wrong", wrong))
    try:
        cert = certify(mlp("2,3,1", "hidden"))
        assert cert.results[-1].name == "always_one_short"
        assert cert.results[-1].description == "a route that is always wrong"
        assert not cert.passed and all(r.passed for r in cert.results[:-1])
    finally:
        del ROUTES["always_one_short"]
    assert certify(mlp("2,3,1", "hidden")).passed
