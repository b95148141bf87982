"""The spec: value objects, the MLP front end, and errors that say what was expected."""

import re

import pytest
from hypothesis import given
from strategies import mlp_dims, modes

from dws_theory.spec import Kind, NeuronSet, SpecError, Tensor, WeightSpace, mlp, parse_dims


@given(mlp_dims(max_width=40), modes)
def test_string_form_round_trips(dims, mode):
    space = mlp(dims, mode)
    assert WeightSpace.parse(str(space)) == space
    assert hash(WeightSpace.parse(str(space))) == hash(space)


@given(mlp_dims(max_width=9))
def test_mlp_layout(dims):
    space = mlp(dims)
    depth = len(dims) - 1
    names = [f"{k}{m}" for m in range(1, depth + 1) for k in "Wb"]
    assert [t.name for t in space.tensors] == names
    for m in range(1, depth + 1):
        assert space.shape(f"W{m}") == (dims[m], dims[m - 1])
        assert space.shape(f"b{m}") == (dims[m],)
    assert space.dimension == sum(dims[m] * dims[m - 1] + dims[m] for m in range(1, depth + 1))


def test_modes_assign_kinds():
    kinds = {
        mode: [s.kind for s in mlp("3,4,5,2", mode).sets] for mode in ("hidden", "all", "signed")
    }
    assert kinds["hidden"] == [Kind.FIXED, Kind.PERMUTED, Kind.PERMUTED, Kind.FIXED]
    assert kinds["all"] == [Kind.PERMUTED] * 4
    assert kinds["signed"] == [Kind.FIXED, Kind.SIGNED, Kind.SIGNED, Kind.FIXED]
    assert mlp("3,4,2", "hnp") == mlp("3,4,2", "hidden")
    assert mlp("3,4,2", "np") == mlp("3,4,2", "all")


def test_graph_has_a_node_per_layer_and_an_edge_per_weight():
    graph = mlp("2,32,32,1").graph()
    assert sorted(graph.nodes) == ["n0", "n1", "n2", "n3"]
    assert sorted((u, v, d["tensor"]) for u, v, d in graph.edges(data=True)) == [
        ("n0", "n1", "W1"),
        ("n1", "n2", "W2"),
        ("n2", "n3", "W3"),
    ]
    assert graph.nodes["n1"]["tensors"] == ["b1"]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("2", "at least two widths"),
        ("2,0,1", "positive integer"),
        ("2,-3,1", "positive integer"),
        ("2,a,1", "integer widths"),
        ("2,,1", "integer widths"),
        ("", "integer widths"),
    ],
)
def test_bad_dims_say_what_was_expected(text, fragment):
    with pytest.raises(SpecError, match=fragment):
        parse_dims(text)


def test_bad_mode_lists_the_modes():
    with pytest.raises(SpecError, match="hidden, all, signed"):
        mlp("2,3,1", "everything")


def test_bad_spaces_are_rejected():
    with pytest.raises(SpecError, match="positive integer size"):
        NeuronSet("a", 0, Kind.PERMUTED)
    with pytest.raises(SpecError, match="not a neuron set"):
        WeightSpace((NeuronSet("a", 2, Kind.PERMUTED),), (Tensor("X", ("a", "b")),))
    with pytest.raises(SpecError, match="distinct"):
        WeightSpace(
            (NeuronSet("a", 2, "fixed"), NeuronSet("a", 3, "fixed")), (Tensor("X", ("a",)),)
        )
    with pytest.raises(SpecError, match="name:size:kind"):
        WeightSpace.parse("sets[a:2] tensors[X(a)]")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("sets[a:²:permuted] tensors[T(a)]", "digits 0-9, got '²'"),  # isdigit() takes it
        ("sets[a:٣:permuted] tensors[T(a)]", "digits 0-9"),
        ("sets[a:3:permuted] tensors[T(a,,a)]", "got 'T(a,,a)'"),  # not T(a,a)
        ("sets[a:3:permuted] tensors[T(a,)]", "single commas"),
        ("sets[a:3:permuted] tensors[T(ａ)]", "expected a tensor"),  # a full-width letter
        ("sets[a:3:Permuted] tensors[T(a)]", "one of permuted, fixed, signed"),
        ("sets[a:3:permuted] tensors[T(a) T(a)]", "got 'T' twice"),
        (f"sets[a:{'9' * 5000}:permuted] tensors[T(a)]", "at most 1,000,000"),
    ],
)
def test_bad_specs_say_what_was_expected(text, fragment):
    with pytest.raises(SpecError, match=re.escape(fragment)):
        WeightSpace.parse(text)


@pytest.mark.parametrize(
    "text",
    [
        "sets[a:3:permuted] tensors[" + "x" * 100_000 + "]",
        "sets[" + "a" * 100_000 + ":3:permuted] tensors[T(a)]",
        "s" * 100_000,
        "sets[a:3:permuted] tensors[T(" + "b" * 100_000 + ")]",
    ],
    ids=["tensor", "set", "whole", "axis"],
)
def test_a_huge_spec_is_not_echoed_back(text):
    with pytest.raises(SpecError) as raised:
        WeightSpace.parse(text)
    assert len(str(raised.value)) < 300
    assert "characters)" in str(raised.value), "the message says how long the text was"


def test_a_deep_spec_is_checked_in_linear_time():
    """10,001 layers: 20,002 tensors, each axis looked up by name (not searched in a list)."""
    space = mlp([2] * 10_001)
    assert len(space.tensors) == 20_000
    with pytest.raises(SpecError, match="not a neuron set"):
        WeightSpace(space.sets, (*space.tensors, Tensor("X", ("missing",))))
