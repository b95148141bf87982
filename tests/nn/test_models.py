"""DWSNet: invariant (classification) and equivariant (weight-to-weight) networks.

The functional check builds real MLPs from random `nn.Linear` stacks (no converter: those
live in another module), permutes their hidden neurons, confirms the MLP computes the same
function, and confirms DWSNet predicts the same thing for both copies.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from helpers import act, assert_close, random_inputs, randomise
from hypothesis import assume, given
from hypothesis import strategies as st
from strategies import mlp_dims, modes

from dws_theory.group import random_element
from dws_theory.models import DWSNet
from dws_theory.spec import mlp

seeds = st.integers(0, 2**31 - 1)


def net64(dims, mode, seed, **kwargs) -> DWSNet:
    """Small float64 network with random parameters; the head is wide enough (32) that its
    ReLUs are never all inactive, which would hide any difference in the features."""
    torch.manual_seed(seed)
    net = DWSNet(dims, mode, hidden_channels=3, num_layers=2, head_hidden=32, **kwargs)
    net = net.double().eval()
    randomise(net, torch.Generator().manual_seed(seed))
    return net


@given(dims=mlp_dims(max_depth=4), mode=modes, seed=seeds)
def test_prediction_is_invariant(dims, mode, seed):
    net = net64(dims, mode, seed, out_features=4)
    x = random_inputs(dims, 3, 1, torch.Generator().manual_seed(seed))
    g = random_element(mlp(dims, mode), np.random.default_rng(seed))
    out = net(*x)
    assert out.shape == (3, 4)
    assert_close([net(*act(mlp(dims, mode), g, *x))], [out])


@given(dims=mlp_dims(max_depth=4), mode=modes, seed=seeds)
def test_weight_to_weight_output_is_equivariant(dims, mode, seed):
    net = net64(dims, mode, seed, equivariant_output=True)
    space = mlp(dims, mode)
    x = random_inputs(dims, 2, 1, torch.Generator().manual_seed(seed))
    g = random_element(space, np.random.default_rng(seed))
    ws, bs = net(*x)
    assert [tuple(w.shape) for w in ws] == [tuple(w.shape) for w in x[0]]  # channel axis kept
    left = net(*act(space, g, *x))
    right = act(space, g, ws, bs)
    assert_close(left[0] + left[1], right[0] + right[1])


@given(dims=mlp_dims(max_depth=4, min_width=2), seed=seeds, data=st.data())
def test_mismatched_permutation_changes_the_prediction(dims, seed, data):
    """Rows of W_k permuted without the columns of W_{k+1}: the MLP changes, so must the
    prediction (random parameters; a gap far above float64 noise)."""
    assume(len(dims) >= 3)
    k = data.draw(st.integers(1, len(dims) - 2))
    net = net64(dims, "hidden", seed, out_features=3)
    weights, biases = random_inputs(dims, 2, 1, torch.Generator().manual_seed(seed))
    perm = torch.as_tensor(np.random.default_rng(seed).permutation(dims[k]))
    assume(not torch.equal(perm, torch.arange(dims[k])))
    moved = list(weights)
    moved[k - 1] = weights[k - 1][:, :, perm]
    with torch.no_grad():
        a, b = net(moved, biases), net(weights, biases)
    assert float((a - b).abs().max()) > 1e-6 * max(1.0, float(b.abs().max()))


def test_hidden_mode_sees_input_coordinates():
    dims = (3, 4, 4, 2)
    net = net64(dims, "hidden", 0, out_features=3)
    weights, biases = random_inputs(dims, 2, 1, torch.Generator().manual_seed(0))
    moved = [weights[0][:, :, :, [2, 0, 1]]] + weights[1:]
    with torch.no_grad():
        assert float((net(moved, biases) - net(weights, biases)).abs().max()) > 1e-6


# -- real models ------------------------------------------------------------------------------
def random_mlp(dims, activation, gen: torch.Generator) -> torch.nn.Sequential:
    layers = []
    for m in range(1, len(dims)):
        linear = torch.nn.Linear(dims[m - 1], dims[m]).double()
        with torch.no_grad():
            linear.weight.copy_(torch.randn(linear.weight.shape, generator=gen))
            linear.bias.copy_(torch.randn(linear.bias.shape, generator=gen))
        layers.append(linear)
        if m < len(dims) - 1:
            layers.append(activation())
    return torch.nn.Sequential(*layers)


def stacked(models) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """[B, 1, d_m, d_{m-1}] and [B, 1, d_m] from a list of Sequential models."""
    linears = [[m for m in model if isinstance(m, torch.nn.Linear)] for model in models]
    depth = len(linears[0])
    weights = [torch.stack([ls[i].weight for ls in linears])[:, None] for i in range(depth)]
    biases = [torch.stack([ls[i].bias for ls in linears])[:, None] for i in range(depth)]
    return [w.detach() for w in weights], [b.detach() for b in biases]


@pytest.mark.parametrize(
    "mode,activation",
    [("hidden", torch.nn.ReLU), ("signed", torch.nn.Tanh), ("all", torch.nn.ReLU)],
)
def test_permuting_hidden_neurons_of_real_models_keeps_the_prediction(mode, activation):
    dims = (3, 5, 4, 2)
    gen = torch.Generator().manual_seed(7)
    rng = np.random.default_rng(7)
    models = [random_mlp(dims, activation, gen) for _ in range(4)]
    weights, biases = stacked(models)
    # A function-preserving rearrangement of each model: permute (and, for an odd
    # activation, flip) the hidden neurons.
    moved_w, moved_b = [w.clone() for w in weights], [b.clone() for b in biases]
    for k in range(1, len(dims) - 1):
        perm = torch.as_tensor(rng.permutation(dims[k]))
        sign = torch.ones(dims[k], dtype=torch.float64)
        if mode == "signed":
            sign = torch.as_tensor(rng.choice([-1.0, 1.0], size=dims[k]))
        moved_w[k - 1] = moved_w[k - 1][:, :, perm] * sign[:, None]
        moved_b[k - 1] = moved_b[k - 1][:, :, perm] * sign
        moved_w[k] = moved_w[k][:, :, :, perm] * sign
    # The rearranged MLPs compute the same functions ...
    probe = torch.randn(11, dims[0], generator=gen, dtype=torch.float64)
    for i, model in enumerate(models):
        h = probe
        for m in range(len(dims) - 1):
            h = h @ moved_w[m][i, 0].T + moved_b[m][i, 0]
            if m < len(dims) - 2:
                h = activation()(h)
        torch.testing.assert_close(h, model(probe).detach(), rtol=1e-12, atol=1e-12)
    # ... so the network predicts the same for them.
    net = net64(dims, mode, 7, out_features=3)
    assert_close([net(moved_w, moved_b)], [net(weights, biases)])


# -- construction ----------------------------------------------------------------------------------
def test_defaults_and_training_step():
    net = DWSNet("2,8,8,1", dropout=0.1)
    assert isinstance(net.activation, torch.nn.ReLU)
    assert isinstance(DWSNet("2,8,8,1", "signed").activation, torch.nn.Tanh)
    weights, biases = random_inputs((2, 8, 8, 1), 6, 1, torch.Generator().manual_seed(0))
    weights, biases = [w.float() for w in weights], [b.float() for b in biases]
    net.train()
    loss = torch.nn.functional.cross_entropy(net(weights, biases), torch.arange(6) % 10)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_layers"):
        DWSNet("2,8,1", num_layers=0)
    with pytest.raises(ValueError, match="hidden_channels"):
        DWSNet("2,8,1", hidden_channels=0)
    with pytest.warns(UserWarning, match="odd activation"):
        DWSNet("2,8,8,1", "signed", activation=torch.nn.ReLU())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DWSNet("2,8,8,1", "signed", activation=torch.sin)


def test_signed_readout_sees_more_than_the_output_bias() -> None:
    # Signed linear maps with odd activations keep hidden entries odd; an invariant linear
    # map alone could read only b_M. The magnitude readout must make W2 matter, and stay
    # invariant to sign flips of hidden neurons.
    torch.manual_seed(0)
    net = DWSNet((2, 6, 5, 1), mode="signed", hidden_channels=4, num_layers=2, out_features=3)
    net = net.double().eval()
    gen = torch.Generator().manual_seed(1)
    ws = [
        torch.randn(4, 1, 6, 2, generator=gen, dtype=torch.float64),
        torch.randn(4, 1, 5, 6, generator=gen, dtype=torch.float64),
        torch.randn(4, 1, 1, 5, generator=gen, dtype=torch.float64),
    ]
    bs = [torch.randn(4, 1, d, generator=gen, dtype=torch.float64) for d in (6, 5, 1)]
    with torch.no_grad():
        out = net(ws, bs)
        changed = net([ws[0], ws[1] * 2.0, ws[2]], bs)
        s1 = torch.randint(0, 2, (4, 1, 6), generator=gen).double() * 2 - 1
        s2 = torch.randint(0, 2, (4, 1, 5), generator=gen).double() * 2 - 1
        flipped = net(
            [
                ws[0] * s1[..., None],
                ws[1] * s2[..., None] * s1[..., None, :],
                ws[2] * s2[..., None, :],
            ],
            [bs[0] * s1, bs[1] * s2, bs[2]],
        )
    assert (changed - out).abs().max() > 1e-3
    torch.testing.assert_close(flipped, out, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("mode", ["hidden", "all", "signed"])
def test_dwsnet_passes_the_packaged_equivariance_checks(mode):
    """dws_theory.testing on the whole network: the prediction is invariant, the
    weight-to-weight output equivariant."""
    from dws_theory.testing import assert_equivariant

    space = mlp("2,4,3,2", mode)
    assert_equivariant(DWSNet("2,4,3,2", mode, hidden_channels=2, num_layers=2), space)
    assert_equivariant(
        DWSNet("2,4,3,2", mode, hidden_channels=2, num_layers=2, equivariant_output=True), space
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"hidden_channels": 2.5}, TypeError, "hidden_channels must be a positive integer"),
        ({"num_layers": "3"}, TypeError, "num_layers must be a positive integer, got '3'"),
        ({"in_channels": True}, TypeError, "in_channels must be a positive integer"),
        ({"out_features": 0}, ValueError, "out_features must be a positive integer, got 0"),
        ({"head_hidden": -4}, ValueError, "head_hidden must be a positive integer"),
        ({"dropout": 1.0}, ValueError, r"dropout must be a number in \[0, 1\), got 1.0"),
        ({"dropout": float("nan")}, ValueError, "dropout must be a number"),
        ({"equivariant_output": "yes"}, TypeError, "equivariant_output must be True or False"),
        ({"activation": 3}, TypeError, "activation must be a module or function"),
        ({"mode": "hiden"}, ValueError, "unknown symmetry mode 'hiden'"),
    ],
)
def test_constructor_arguments_are_validated(kwargs, error, message):
    with pytest.raises(error, match=message):
        DWSNet("2,8,1", **kwargs)
    assert DWSNet("2,8,1", hidden_channels=np.int64(3)).layers[0].out_channels == 3
