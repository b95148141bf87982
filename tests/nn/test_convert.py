"""Converters between nn.Sequential MLPs and weight-space tensors (layout contract)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import mlp_dims
from torch import nn

from dws_theory.convert import (
    ConversionError,
    dims_of,
    layer_names,
    model_from_weights,
    state_dict_from_weights,
    validate_weights,
    weights_from_model,
    weights_from_models,
)
from dws_theory.group import random_element
from dws_theory.spec import mlp

seeds = st.integers(0, 2**31 - 1)


def has_hidden(dims: tuple[int, ...]) -> bool:
    return len(dims) >= 3


def make_mlp(
    dims: tuple[int, ...], seed: int, activation: type[nn.Module] = nn.ReLU
) -> nn.Sequential:
    """A real nn.Sequential(Linear, act, ..., Linear) in float64 with seeded random weights."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for m in range(1, len(dims)):
        if m > 1:
            layers.append(activation())
        layers.append(nn.Linear(dims[m - 1], dims[m], dtype=torch.float64))
    return nn.Sequential(*layers)


def assert_same_state(a: nn.Module | dict, b: nn.Module | dict) -> None:
    sa = a.state_dict() if isinstance(a, nn.Module) else a
    sb = b.state_dict() if isinstance(b, nn.Module) else b
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        assert torch.equal(sa[key], sb[key]), key


def inputs(dims: tuple[int, ...], seed: int, n: int = 7) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed + 1)
    return torch.randn(n, dims[0], dtype=torch.float64, generator=gen)


# -- round trips -----------------------------------------------------------------------------
@given(dims=mlp_dims(max_depth=4, max_width=6), seed=seeds)
def test_single_model_round_trip_is_exact(dims, seed):
    model = make_mlp(dims, seed)
    weights, biases = weights_from_model(model)
    assert [tuple(w.shape) for w in weights] == [
        (1, 1, dims[m], dims[m - 1]) for m in range(1, len(dims))
    ]
    assert [tuple(b.shape) for b in biases] == [(1, 1, dims[m]) for m in range(1, len(dims))]
    assert validate_weights(weights, biases) == dims
    assert dims_of(model) == dims
    rebuilt = model_from_weights(weights, biases)
    assert_same_state(model, rebuilt)
    assert [type(m) for m in rebuilt] == [type(m) for m in model]
    x = inputs(dims, seed)
    assert torch.equal(rebuilt(x), model(x))


@given(dims=mlp_dims(max_depth=4, max_width=6), seed=seeds)
def test_state_dict_round_trip_is_exact(dims, seed):
    state = make_mlp(dims, seed).state_dict()
    weights, biases = weights_from_model(state)
    assert dims_of(state) == dims
    assert_same_state(state, state_dict_from_weights(weights, biases, names=layer_names(state)))
    # The default names are those of model_from_weights with an activation.
    assert_same_state(state, state_dict_from_weights(weights, biases))


def test_nested_and_custom_keys_round_trip():
    model = nn.Sequential(
        nn.Flatten(),
        nn.Sequential(nn.Linear(3, 5, dtype=torch.float64), nn.Tanh()),
        nn.Dropout(0.0),
        nn.Linear(5, 2, dtype=torch.float64),
    )
    assert layer_names(model) == ("1.0", "3")
    assert dims_of(model) == (3, 5, 2)
    weights, biases = weights_from_model(model)
    rebuilt = state_dict_from_weights(weights, biases, names=layer_names(model))
    assert_same_state(model.state_dict(), rebuilt)
    x = torch.randn(4, 3, dtype=torch.float64)
    same = model_from_weights(weights, biases, activation=nn.Tanh)
    assert torch.equal(same(x), model(x))


@given(
    dims=mlp_dims(max_depth=3, max_width=5),
    seed=seeds,
    batch=st.integers(1, 4),
    as_state=st.booleans(),
)
def test_stacked_models_round_trip_each_member(dims, seed, batch, as_state):
    models = [make_mlp(dims, seed + i, nn.Tanh) for i in range(batch)]
    sources = [m.state_dict() for m in models] if as_state else models
    weights, biases = weights_from_models(sources)
    for m in range(1, len(dims)):
        assert tuple(weights[m - 1].shape) == (batch, 1, dims[m], dims[m - 1])
        assert tuple(biases[m - 1].shape) == (batch, 1, dims[m])
    for i, model in enumerate(models):
        rebuilt = model_from_weights(weights, biases, activation=nn.Tanh, index=i)
        assert_same_state(model, rebuilt)
        x = inputs(dims, seed + i)
        assert torch.equal(rebuilt(x), model(x))
        assert_same_state(model.state_dict(), state_dict_from_weights(weights, biases, index=i))
    # Negative indices count from the end, as for any Python sequence.
    assert_same_state(models[-1], model_from_weights(weights, biases, nn.Tanh, index=-1))


def test_single_model_in_a_list_is_a_batch_of_one():
    model = make_mlp((2, 4, 1), 0)
    single = weights_from_model(model)
    listed = weights_from_models([model])
    for a, b in zip(single[0] + single[1], listed[0] + listed[1], strict=True):
        assert a.shape == b.shape and torch.equal(a, b)


def test_converted_tensors_do_not_alias_the_model():
    model = make_mlp((2, 3, 1), 0)
    weights, biases = weights_from_model(model)
    weights[0].zero_()
    biases[0].zero_()
    assert model[0].weight.abs().sum() > 0 and model[0].bias.abs().sum() > 0
    assert not weights[1].requires_grad
    rebuilt = model_from_weights(weights, biases)
    weights[1].add_(1.0)
    assert not torch.equal(rebuilt[2].weight, weights[1][0, 0])


def test_dtype_and_device_follow_the_tensors():
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))  # float32
    weights, biases = weights_from_model(model)
    assert weights[0].dtype == torch.float32
    rebuilt = model_from_weights(weights, biases, activation=None)
    assert [type(m) for m in rebuilt] == [nn.Linear, nn.Linear]
    assert rebuilt[0].weight.dtype == torch.float32
    assert torch.equal(rebuilt[1].bias, model[2].bias)


def test_activation_instance_is_copied_per_gap():
    weights, biases = weights_from_model(make_mlp((2, 3, 3, 1), 0))
    act = nn.LeakyReLU(0.3)
    rebuilt = model_from_weights(weights, biases, activation=act)
    leaky = [m for m in rebuilt if isinstance(m, nn.LeakyReLU)]
    assert len(leaky) == 2 and all(m is not act and m.negative_slope == 0.3 for m in leaky)


# -- the symmetry the project is about -------------------------------------------------------
def permute_hidden(
    weights: list[torch.Tensor], biases: list[torch.Tensor], perms: dict[int, torch.Tensor]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Permute neurons of hidden layer k: rows of W_k, entries of b_k, columns of W_{k+1}."""
    weights, biases = list(weights), list(biases)
    for k, perm in perms.items():
        weights[k - 1] = weights[k - 1][:, :, perm, :]
        biases[k - 1] = biases[k - 1][:, :, perm]
        weights[k] = weights[k][:, :, :, perm]
    return weights, biases


@given(
    dims=mlp_dims(max_depth=4, max_width=6, min_width=2).filter(lambda d: len(d) >= 3), seed=seeds
)
def test_permuting_hidden_neurons_keeps_the_function(dims, seed):
    model = make_mlp(dims, seed)
    weights, biases = weights_from_model(model)
    gen = torch.Generator().manual_seed(seed)
    perms = {k: torch.randperm(dims[k], generator=gen) for k in range(1, len(dims) - 1)}
    pw, pb = permute_hidden(weights, biases, perms)
    permuted = model_from_weights(pw, pb)
    x = inputs(dims, seed, n=16)
    torch.testing.assert_close(permuted(x), model(x), rtol=1e-12, atol=1e-12)
    if any(not torch.equal(p, torch.arange(len(p))) for p in perms.values()):
        # The permuted tensors are really different, so the equality above is not trivial.
        assert not all(torch.equal(a, b) for a, b in zip(pw, weights, strict=True))


def test_permuting_the_input_neurons_changes_the_function():
    """The negative control: set 0 is not in the group, so the check above can fail."""
    dims = (3, 8, 8, 2)
    model = make_mlp(dims, 5)
    weights, biases = weights_from_model(model)
    pw = list(weights)
    pw[0] = weights[0][:, :, :, torch.tensor([1, 2, 0])]
    x = inputs(dims, 5, n=16)
    assert not torch.allclose(model_from_weights(pw, biases)(x), model(x), atol=1e-6)
    # Permuting only the rows of W1 (without the matching columns of W2) also breaks it.
    half = permute_hidden(weights, biases, {1: torch.arange(8).roll(1)})
    broken = [half[0][0], weights[1], weights[2]]
    assert not torch.allclose(model_from_weights(broken, half[1])(x), model(x), atol=1e-6)


@given(
    dims=mlp_dims(max_depth=4, max_width=5).filter(has_hidden),
    seed=seeds,
    mode=st.sampled_from(["hidden", "signed"]),
)
def test_engine_group_elements_keep_the_function(dims, seed, mode):
    """The engine's gather convention, applied to real models, is a symmetry of the MLP
    (signed mode with an odd activation)."""
    space = mlp(dims, mode)
    g = random_element(space, np.random.default_rng(seed))
    model = make_mlp(dims, seed, nn.Tanh)
    weights, biases = weights_from_model(model)
    tensors = [t for pair in zip(weights, biases, strict=True) for t in pair]
    moved = []
    for tensor, spec in zip(tensors, space.tensors, strict=True):
        y = tensor
        for axis, name in enumerate(spec.axes, start=2):
            perm = torch.from_numpy(g.perm(name))
            sign = torch.from_numpy(g.sign(name)).to(y.dtype)
            shape = [1] * y.dim()
            shape[axis] = -1
            y = y.index_select(axis, perm) * sign.reshape(shape)
        moved.append(y)
    rebuilt = model_from_weights(moved[0::2], moved[1::2], activation=nn.Tanh)
    x = inputs(dims, seed, n=16)
    torch.testing.assert_close(rebuilt(x), model(x), rtol=1e-12, atol=1e-12)


# -- errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "match"),
    [
        (nn.Sequential(nn.Linear(2, 3), nn.LocalResponseNorm(3)), "'_1' .*LocalResponseNorm"),
        (nn.Sequential(nn.Conv1d(4, 4, 1, groups=2)), "grouped convolution"),
        (nn.Sequential(nn.Linear(2, 3), nn.Linear(4, 1)), "takes 4 inputs .* has 3 outputs"),
        (nn.Sequential(nn.ReLU()), "at least one nn.Linear"),
        (nn.Identity(), "no parameters"),  # other modules go through from_module
        ([1, 2], "expected a torch.nn.Sequential"),
    ],
)
def test_bad_models_are_rejected_clearly(model, match):
    with pytest.raises(ConversionError, match=match):
        weights_from_model(model)


@pytest.mark.parametrize(
    ("state", "match"),
    [
        ({"0.weight": torch.zeros(3, 2), "0.running_mean": torch.zeros(3)}, "'0.running_mean'"),
        ({"0.weight": torch.zeros(3, 2, 1), "0.bias": torch.zeros(3)}, "2-D Linear weight"),
        ({"0.weight": torch.zeros(3, 2), "0.bias": torch.zeros(4)}, r"bias of shape \(3,\)"),
        ({"0.bias": torch.zeros(3)}, "no 0.weight"),
        (
            {
                "0.weight": torch.zeros(3, 2),
                "0.bias": torch.zeros(3),
                "2.weight": torch.zeros(1, 5),
            },
            "takes 5 inputs",
        ),
        ({}, "at least one"),
    ],
)
def test_bad_state_dicts_are_rejected_clearly(state, match):
    with pytest.raises(ConversionError, match=match):
        weights_from_model(OrderedDict(state))


def test_missing_bias_as_zeros_when_asked():
    model = nn.Sequential(nn.Linear(2, 3, bias=False), nn.ReLU(), nn.Linear(3, 1))
    weights, biases = weights_from_model(model, missing_bias="zeros")
    assert torch.equal(biases[0], torch.zeros(1, 1, 3))
    x = torch.randn(5, 2)
    assert torch.equal(model_from_weights(weights, biases)(x), model(x))
    assert dims_of(model) == (2, 3, 1)  # widths do not need the bias
    with pytest.raises(ConversionError, match="missing_bias must be"):
        weights_from_model(model, missing_bias="ignore")


def test_stacking_needs_one_architecture_and_dtype():
    a, b = make_mlp((2, 3, 1), 0), make_mlp((2, 4, 1), 1)
    with pytest.raises(ConversionError, match=r"model 1 has widths \(2, 4, 1\), expected"):
        weights_from_models([a, b])
    c = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))  # float32
    with pytest.raises(ConversionError, match="model 1 layer '0' is torch.float32"):
        weights_from_models([a, c])
    with pytest.raises(ConversionError, match="non-empty list"):
        weights_from_models([])
    with pytest.raises(ConversionError, match="non-empty list"):
        weights_from_models(a)


def test_bad_weight_lists_are_rejected_clearly():
    weights, biases = weights_from_models([make_mlp((2, 3, 1), s) for s in range(2)])
    cases = [
        (([], []), "at least one weight"),
        ((weights, biases[:1]), "2 weights and 1 biases"),
        (([weights[0][0]] + weights[1:], biases), r"weights\[0\]: expected \[B, C, d_1, d_0\]"),
        (([weights[0], weights[1][..., :2]], biases), r"weights\[1\]: .*\[2, 1, d_2, 3\]"),
        (([weights[0], weights[1][:1]], biases), r"weights\[1\]: .*\[2, 1, d_2, 3\]"),
        ((weights, [biases[0][..., :2], biases[1]]), r"biases\[0\]: .*\[2, 1, 3\]"),
    ]
    for (w, b), match in cases:
        with pytest.raises(ConversionError, match=match):
            model_from_weights(w, b)
    two_channels = [w.expand(-1, 2, -1, -1) for w in weights]
    two_bias = [b.expand(-1, 2, -1) for b in biases]
    with pytest.raises(ConversionError, match="one channel"):
        model_from_weights(two_channels, two_bias)
    with pytest.raises(ConversionError, match="index 2 out of range for a batch of 2"):
        model_from_weights(weights, biases, index=2)
    with pytest.raises(ConversionError, match="expected 2 layer names, got 1"):
        state_dict_from_weights(weights, biases, names=["a"])
    with pytest.raises(ConversionError, match="activation must build an nn.Module"):
        model_from_weights(weights, biases, activation=torch.tanh)
