"""Converters and DWSNet for general modules: CNNs, residual MLPs, tied networks.

Real models are converted with `weights_from_models`, rearranged by a random element of the
group `from_module` derives (the models then compute the same functions: checked), and
DWSNet, built from an example module, predicts the same for both copies.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from modules import Residual, Tied, cnn_module, probe
from spaces import act, joined, random_tensors, split
from torch import nn

from dws_theory.convert import ConversionError, module_from_weights, weights_from_models
from dws_theory.frontends import from_module, trace_module
from dws_theory.group import random_element
from dws_theory.models import DWSNet
from dws_theory.runtime import layer_classes


def zoo(make, count: int, seed: int) -> list[nn.Module]:
    torch.manual_seed(seed)
    return [make().double() for _ in range(count)]


ARCHITECTURES = {
    "cnn": lambda: cnn_module((1, 3, 3), ((3, 3), (2, 2)), 4, "hidden"),
    "residual": lambda: Residual(2, 4, (3, 3), 1, "hidden"),
    "tied": lambda: Tied(2, 3, 2, "signed"),
}
MODE = {"cnn": "hidden", "residual": "hidden", "tied": "signed"}


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_round_trip_and_layout(name):
    models = zoo(ARCHITECTURES[name], 3, 0)
    weights, biases = weights_from_models(models)
    space = from_module(models[0], MODE[name])
    expected = split(space, {t.name: None for t in space.tensors})
    assert len(weights) == len(expected[0]) and len(biases) == len(expected[1])
    named = [t.name for t in space.tensors if len(t.axes) >= 2]
    for w, tensor in zip(weights, named, strict=True):
        assert tuple(w.shape) == (3, 1, *space.shape(tensor))
    x = probe(models[0], 5, torch.Generator().manual_seed(1))
    for i, model in enumerate(models):
        rebuilt = module_from_weights(models[0], weights, biases, index=i)
        assert torch.equal(rebuilt(x), model(x))
    equivariant, _ = layer_classes(space)
    out = equivariant(1, 2).double()(weights, biases)  # the layout the layers take
    assert [tuple(w.shape[2:]) for w in out[0]] == [tuple(w.shape[2:]) for w in weights]


def test_stacking_needs_one_architecture():
    a = cnn_module((1, 3), ((3, 3),), 2, "hidden")
    b = cnn_module((1, 4), ((3, 3),), 2, "hidden")
    with pytest.raises(ConversionError, match="model 1 has parameters .* expected"):
        weights_from_models([a, b])
    with pytest.raises(ConversionError, match="grouped convolution"):
        weights_from_models([nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Flatten())])
    weights, biases = weights_from_models([a])
    with pytest.raises(ConversionError, match=r"weights\[0\] \(0.weight\): expected \[B, 1, 3, 1"):
        module_from_weights(a, [w[:, :, :2] for w in weights], biases)


def moved_models(models, trace, rng):
    """Each model rearranged by its own random group element (written out here)."""
    out = []
    for model in models:
        element = {}
        for s in trace.space.sets:
            perm = rng.permutation(s.size) if s.kind.value != "fixed" else np.arange(s.size)
            sign = rng.choice([-1, 1], size=s.size) if s.kind.value == "signed" else None
            element[s.name] = (perm, sign)
        copy_ = copy.deepcopy(model)
        params = dict(copy_.named_parameters())
        with torch.no_grad():
            for tensor, name in trace.parameters:
                t = params[name].detach().clone()
                for axis, set_name in enumerate(trace.space.tensor(tensor).axes):
                    perm, sign = element[set_name]
                    t = t.index_select(axis, torch.as_tensor(perm))
                    if sign is not None:
                        shape = [1] * t.dim()
                        shape[axis] = -1
                        t = t * torch.as_tensor(sign, dtype=t.dtype).view(shape)
                params[name].copy_(t)
        out.append(copy_)
    return out


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_dwsnet_from_an_example_module_is_invariant_on_real_models(name):
    models = zoo(ARCHITECTURES[name], 4, 2)
    trace = trace_module(models[0], MODE[name])
    moved = moved_models(models, trace, np.random.default_rng(3))
    x = probe(models[0], 7, torch.Generator().manual_seed(4))
    for a, b in zip(models, moved, strict=True):  # the same functions ...
        torch.testing.assert_close(a(x), b(x), rtol=1e-10, atol=1e-10)
    torch.manual_seed(5)
    net = DWSNet(models[0], MODE[name], hidden_channels=3, num_layers=2, out_features=2)
    net = net.double().eval()
    assert net.space == trace.space
    before = net(*weights_from_models(models))
    after = net(*weights_from_models(moved))
    torch.testing.assert_close(after, before, rtol=1e-9, atol=1e-9)  # ... the same prediction


def test_dwsnet_sees_kernel_positions():
    """Moving one conv's kernel positions is no group element: the prediction changes."""
    models = zoo(ARCHITECTURES["cnn"], 2, 6)
    net = DWSNet(models[0], hidden_channels=3, num_layers=2, out_features=2, head_hidden=32)
    net = net.double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_()
    weights, biases = weights_from_models(models)
    flipped = [weights[0].flip(-1)] + weights[1:]
    with torch.no_grad():
        gap = (net(flipped, biases) - net(weights, biases)).abs().max()
    assert float(gap) > 1e-6


@pytest.mark.parametrize("name", ["residual", "tied"])
def test_weight_to_weight_dwsnet_of_a_space_is_equivariant(name):
    space = from_module(ARCHITECTURES[name](), MODE[name])
    torch.manual_seed(7)
    net = DWSNet(space, hidden_channels=3, num_layers=2, equivariant_output=True).double()
    assert net.dims is None and net.space == space
    x = random_tensors(space, 2, 1, torch.Generator().manual_seed(8))
    g = random_element(space, np.random.default_rng(9))
    left = joined(space, *net(*split(space, act(space, g, x))))
    right = act(space, g, joined(space, *net(*split(space, x))))
    for key in right:
        torch.testing.assert_close(left[key], right[key], rtol=1e-9, atol=1e-9)
    if MODE[name] == "signed":
        assert isinstance(net.activation, nn.Tanh)  # odd by default where a set is signed


def test_nfn_takes_the_layout_of_a_cnn_zoo_unchanged():
    """The layout is NFN's (`[B, C, out, in, *kernel]`): its CNN layers and its StatNN
    featurizer read `weights_from_models` of a CNN zoo as they are (the peer for a zoo task)."""
    from nfn.common import WeightSpaceFeatures, network_spec_from_wsfeat
    from nfn.layers import HNPLinear, HNPPool

    models = zoo(ARCHITECTURES["cnn"], 3, 8)
    features = WeightSpaceFeatures(*weights_from_models(models))
    spec = network_spec_from_wsfeat(features)
    out = HNPLinear(spec, 1, 4).double()(features)
    assert [tuple(w.shape) for w in out.weights] == [
        (3, 4, 3, 1, 3, 3),
        (3, 4, 3, 3, 2, 2),
        (3, 4, 4, 3),
    ]
    assert HNPPool(spec)(out).shape[0] == 3
