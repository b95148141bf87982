"""The engine's cost guard: patterns counted without enumerating them, and limits that hold
on every path into the engine (the Python API, a spec string, a module, the command line)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from strategies import mlp_dims, modes, small_spaces

from dws_theory import cost
from dws_theory.basis import enumerate_basis
from dws_theory.certify import certify
from dws_theory.codegen.lower import lower
from dws_theory.cost import MAX_PATTERNS, MAX_TENSORS, CostError, partition_count, pattern_count
from dws_theory.frontends.module import from_module
from dws_theory.runtime import layer_classes
from dws_theory.spec import MAX_WIDTH, Kind, NeuronSet, SpecError, WeightSpace, mlp

# 12 axes on one permuted set: its block T <- T has Bell(24) (about 4.5e17) patterns.
TWELVE_AXES = f"sets[a:30:permuted] tensors[T({','.join(['a'] * 12)})]"


# Three axes on one fixed set of 10**6: one pattern per block, but 10**36 dense elements.
DENSE = "sets[k:1000000:fixed] tensors[T(k,k,k)]"


def test_a_layer_too_large_to_build_is_counted_but_not_made():
    basis = enumerate_basis(WeightSpace.parse(DENSE))  # counting it is cheap
    assert basis.equivariant_linear == 10**36
    with pytest.raises(CostError, match="no layer of that size can be built"):
        lower(basis)


def _enumerated(space: WeightSpace) -> int:
    basis = enumerate_basis(space)
    return len(basis.linear) + len(basis.bias) + len(basis.invariant)


@given(small_spaces())
def test_pattern_count_is_what_enumeration_lists(space):
    assert pattern_count(space) == _enumerated(space)


def test_pattern_count_bounds_nested_spaces():
    """A child set's partitions are constrained by its parent's: the count is an upper bound."""
    space = WeightSpace.parse("sets[h:2:permuted g:3:permuted@h] tensors[T(h,g) U(h,g,h,g)]")
    assert pattern_count(space) >= _enumerated(space)


@given(mlp_dims(max_depth=4), modes)
def test_pattern_count_of_mlps(dims, mode):
    space = mlp(dims, mode)
    assert pattern_count(space) == _enumerated(space)


def test_partition_counts_are_stirling_sums_and_even_partitions():
    # Bell numbers 1, 1, 2, 5, 15, 52; partitions of 4 into at most 2 blocks: 1 + 7.
    assert [partition_count(t, t, False) for t in range(6)] == [1, 1, 2, 5, 15, 52]
    assert partition_count(4, 2, False) == 8
    # Even blocks only: 4 items as {4} or three pairings; 6 items as {6}, one of 15 4+2
    # splits, or one of 15 pairings.
    assert partition_count(4, 4, True) == 4
    assert partition_count(6, 6, True) == 31
    assert partition_count(3, 3, True) == 0


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: enumerate_basis(mlp([2] * 10001)), "expected at most 1,000 tensors"),
        (lambda: certify(mlp([2] * 10001)), "expected at most 1,000 tensors"),
        (lambda: layer_classes([2] * 10001), "expected at most 1,000 tensors"),
        (
            lambda: enumerate_basis(WeightSpace.parse(TWELVE_AXES)),
            f"expected at most {MAX_PATTERNS:,} orbit patterns",
        ),
        (lambda: layer_classes(WeightSpace.parse(TWELVE_AXES)), "orbit patterns"),
        (lambda: layer_classes(WeightSpace.parse(DENSE)), "at most 1,000,000,000 parameters"),
    ],
    ids=["basis-deep", "certify-deep", "layers-deep", "basis-12-axes", "layers-12-axes", "dense"],
)
def test_the_python_api_refuses_what_the_engine_cannot_afford(call, fragment):
    with pytest.raises(CostError, match=fragment) as raised:
        call()
    assert isinstance(raised.value, SpecError), "one kind of error for every bad space"


def test_a_traced_module_is_held_to_the_same_limit(monkeypatch):
    """The limit, lowered to 10 tensors, is met by a traced 6-layer network (12 tensors), so
    the test needs no 501-layer trace."""
    monkeypatch.setattr(cost, "MAX_TENSORS", 10)
    layers = [torch.nn.Linear(2, 2) for _ in range(6)]
    space = from_module(torch.nn.Sequential(*layers), "hidden")
    with pytest.raises(CostError, match="expected at most 10 tensors .* got 12 tensors"):
        enumerate_basis(space)


def test_a_module_over_the_limit_is_refused_before_it_is_traced(monkeypatch):
    import dws_theory.frontends.module as module_frontend
    from dws_theory.frontends.target import from_module as target_of_module

    def never(*args, **kwargs):
        raise AssertionError("traced a module the engine cannot take")

    monkeypatch.setattr(cost, "MAX_TENSORS", 10)
    monkeypatch.setattr(module_frontend, "trace_module", never)
    layers = torch.nn.Sequential(*[torch.nn.Linear(2, 2) for _ in range(6)])
    with pytest.raises(CostError, match="at most 10 parameters .* got 12"):
        target_of_module(layers, "deep")


def test_the_limits_let_the_deepest_mlp_through():
    space = mlp([2] + [64] * 499 + [1])
    assert len(space.tensors) == MAX_TENSORS
    assert pattern_count(space) <= MAX_PATTERNS


def test_every_neuron_set_is_bounded_in_width_however_it_is_made():
    with pytest.raises(SpecError, match=f"at most {MAX_WIDTH:,}"):
        NeuronSet("a", 10**20, Kind.PERMUTED)
    with pytest.raises(SpecError, match=f"at most {MAX_WIDTH:,}"):
        WeightSpace.parse("sets[a:100000000000000000000:permuted] tensors[T(a,a)]")
    with pytest.raises(SpecError, match="positive integer size"):
        NeuronSet("a", True, Kind.PERMUTED)
