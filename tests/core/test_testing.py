"""dws_theory.testing: the three checks pass on the emitted layers and catch broken ones.

Each check must be able to fail: a layer that breaks equivariance, an over-symmetric one (a
layer for a larger group, a tensor-by-tensor scaling) and an incomplete one (NFN's
HNPLinear, which misses the b_{M-1} -> W_M term) are each caught, with the numbers NFN's
published measurement gives (rank 81 of 82 on 2-32-32-1, 113 raw parameters).
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
from hypothesis import given, settings
from strategies import mlp_dims, modes
from torch import nn

from dws_theory.runtime import layer_classes
from dws_theory.spec import mlp
from dws_theory.testing import (
    WeightSpaceBatch,
    assert_complete,
    assert_equivariant,
    assert_not_over_symmetric,
    outside_transformations,
    random_inputs,
)


@settings(max_examples=10)
@given(dims=mlp_dims(max_depth=3, max_width=3, min_width=2), mode=modes)
def test_emitted_layers_pass_all_three_checks(dims, mode):
    space = mlp(dims, mode)
    equivariant, invariant = layer_classes(dims, mode)
    for layer in (equivariant(2, 1), invariant(1, 2)):
        assert_equivariant(layer, space)
        assert_complete(layer, space)
    assert assert_not_over_symmetric(equivariant(1, 2), space)


@pytest.mark.parametrize("which", ["cnn", "residual", "tied"])
def test_the_checks_run_on_general_spaces_against_their_own_complete_layer(which):
    """Not only MLPs: the reference of completeness and over-symmetry is the complete layer
    of the same space (a CNN's with kernel sets, a residual stream, a tied weight)."""
    from spaces import cnn_space, residual_space, tied_space

    space = {
        "cnn": cnn_space((1, 2, 2), ((2,), (2,)), 2, "hidden"),
        "residual": residual_space(2, 2, (2,), 1, "hidden"),
        "tied": tied_space(2, 2, 1, "signed"),
    }[which]
    equivariant, invariant = layer_classes(space)
    for layer in (equivariant(1, 1), invariant(1, 2)):
        assert_equivariant(layer, space)
        assert_complete(layer, space)
    assert assert_not_over_symmetric(equivariant(1, 1), space)
    # A layer that ignores one tensor's input is incomplete on that space too.
    half = _Zeroing(equivariant(1, 1), 0)
    with pytest.raises(AssertionError, match="basis direction"):
        assert_complete(half, space)


class _Zeroing(nn.Module):
    """A layer fed zeros in place of weights[index]: the blocks reading it are lost."""

    def __init__(self, layer: nn.Module, index: int) -> None:
        super().__init__()
        self.layer, self.index, self.in_channels = layer, index, layer.in_channels

    def forward(self, weights, biases):
        weights = list(weights)
        weights[self.index] = torch.zeros_like(weights[self.index])
        return self.layer(weights, biases)


class _BrokenRows(nn.Module):
    """An emitted layer whose W1 output rows are rolled by one: not equivariant."""

    def __init__(self, dims, mode):
        super().__init__()
        self.inner = layer_classes(dims, mode)[0](1, 1)
        self.in_channels = 1

    def forward(self, weights, biases):
        ws, bs = self.inner(weights, biases)
        return [ws[0].roll(1, dims=2), *ws[1:]], bs


def test_a_non_equivariant_layer_fails():
    with pytest.raises(AssertionError, match="expected the layer to be equivariant"):
        assert_equivariant(_BrokenRows((2, 3, 3, 1), "hidden"), "2,3,3,1")


class _Scale(nn.Module):
    """One scalar per tensor: equivariant under every permutation of every axis, so
    over-symmetric for any weight space (and far from complete)."""

    def __init__(self, depth: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(2 * depth))

    def forward(self, weights, biases):
        depth = len(weights)
        return (
            [w * self.scale[m] for m, w in enumerate(weights)],
            [b * self.scale[depth + m] for m, b in enumerate(biases)],
        )


@pytest.mark.parametrize("mode", ["hidden", "all", "signed"])
def test_an_over_symmetric_layer_is_caught(mode):
    space = mlp("2,3,3,2", mode)
    assert_equivariant(_Scale(3), space)  # equivariance alone cannot tell ...
    with pytest.raises(AssertionError, match="over-symmetric"):
        assert_not_over_symmetric(_Scale(3), space)  # ... this can
    with pytest.raises(AssertionError, match="basis direction"):
        assert_complete(_Scale(3), space)


def test_the_all_mode_layer_is_over_symmetric_for_the_hidden_group():
    """NFN's NP approximation used where HNP is meant: it also commutes with permuting the
    input coordinates, which an MLP does not allow."""
    space = mlp("3,4,4,2", "hidden")
    layer = layer_classes((3, 4, 4, 2), "all")[0](1, 1)
    assert_equivariant(layer, space)  # the hidden group is a subgroup of the `all` group
    with pytest.raises(AssertionError, match="fixed set n0 permuted"):
        assert_not_over_symmetric(layer, space)


def test_outside_transformations_of_a_three_layer_mlp():
    space = mlp("2,3,3,1", "hidden")
    found = {t.description for t in outside_transformations(space)}
    # n0 (width 2) is fixed; n3 has width 1, so nothing moves it. Every hidden axis can be
    # moved alone; n0's axis of W1 is not shared with another tensor, so moving it alone
    # is the same as moving the fixed set.
    assert "fixed set n0 permuted" in found
    assert "axis 0 of W1 (set n1) permuted alone" in found
    assert "axis 1 of W3 (set n2) permuted alone" in found
    assert not any("n3" in d for d in found)
    assert not any("axis 1 of W1" in d for d in found)


def test_layers_taking_one_features_argument_are_called_with_a_batch():
    class OneArgument(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = layer_classes((2, 3, 1), "hidden")[0](1, 1)

        def forward(self, features):
            assert isinstance(features, WeightSpaceBatch)
            weight, bias = features[0]
            assert len(features) == 2 and weight.shape[-2:] == (3, 2) and bias.shape[-1] == 3
            return WeightSpaceBatch(*self.inner(features.weights, features.biases))

    assert_equivariant(OneArgument(), "2,3,1")
    # 2,3,1 hidden, counted by hand block by block: 41 linear elements and 5 bias orbits.
    assert assert_complete(OneArgument(), "2,3,1") == 41 + 5


def test_checks_leave_the_layer_untouched():
    layer = layer_classes((2, 3, 1), "hidden")[0](1, 1)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    assert_equivariant(layer, "2,3,1")
    assert_complete(layer, "2,3,1")
    assert all(torch.equal(before[k], v) for k, v in layer.state_dict().items())
    assert next(layer.parameters()).dtype == torch.float32


_HAS_NFN = importlib.util.find_spec("nfn") is not None


@pytest.mark.skipif(not _HAS_NFN, reason="nfn is not installed (pip install -e '.[test]')")
def test_nfn_hnplinear_is_equivariant_but_misses_one_term():
    from nfn.common import WeightSpaceFeatures, network_spec_from_wsfeat
    from nfn.layers import HNPLinear

    space = mlp("2,32,32,1", "hidden")
    x = random_inputs(space, 1, 1, torch.Generator().manual_seed(0))
    layer = HNPLinear(network_spec_from_wsfeat(WeightSpaceFeatures(*x)), 1, 1)
    assert sum(p.numel() for p in layer.parameters()) == 113  # NFN's raw count
    assert_equivariant(layer, space)
    assert_not_over_symmetric(layer, space)
    with pytest.raises(AssertionError, match=r"rank 82 .* got 81: 1 basis direction"):
        assert_complete(layer, space)
    # The emitted layer reaches all 82.
    assert assert_complete(layer_classes("2,32,32,1")[0](1, 1), space) == 82
