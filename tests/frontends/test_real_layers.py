"""The layers real networks are made of: spaces checked against the modules themselves.

For every supported layer, on random small instances (hypothesis): the trace's space is a
true symmetry of the real module (the module check: random group elements applied to the
state leave the outputs unchanged, float64, eval and train mode), in a permutation mode and
in `signed`; every tensor's shape is its source's in the state; the converters round-trip
the state. On fixed small instances, the emitted layers of these spaces are equivariant,
complete and not over-symmetric. Then the modules that once got a wrong space, and the
module route failing on a deliberately wrong space.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from real_modules import (
    Bag,
    ConvBN,
    DeepSets,
    Depthwise,
    LeNet,
    PReLUNet,
    ResNet,
    Shuffle,
    TokenNorm,
    UNet,
    randomised,
    vgg,
)
from torch import nn

from dws_theory.certify import certify
from dws_theory.convert import module_from_weights, state_dict_from_weights, weights_from_models
from dws_theory.frontends.module import trace_module
from dws_theory.frontends.module_check import run_module_check
from dws_theory.models import DWSNet
from dws_theory.runtime import layer_classes
from dws_theory.spec import Kind, NeuronSet, SpecError, Tensor, WeightSpace
from dws_theory.testing import assert_complete, assert_equivariant, assert_not_over_symmetric

small = st.integers(1, 3)
width = st.integers(2, 4)


@st.composite
def layers(draw):
    """(name, module, example input or None) for a random small instance of one layer."""
    odd = draw(st.booleans())
    name = draw(
        st.sampled_from(
            [
                "batchnorm2d",
                "batchnorm1d",
                "layernorm",
                "embedding",
                "embeddingbag",
                "depthwise",
                "unet",
                "lenet",
                "deepsets",
                "prelu",
                "pixelshuffle",
            ]
        )
    )
    c_in, c, out = draw(small), draw(width), draw(small)
    if name == "batchnorm2d":
        return name, ConvBN(c_in, c, out, odd, 2), None
    if name == "batchnorm1d":
        return name, ConvBN(c_in, c, out, odd, 1), None
    if name == "layernorm":
        return name, TokenNorm(c_in, c, out, odd), None
    if name in ("embedding", "embeddingbag"):
        return name, Bag(draw(st.integers(2, 5)), c, out, odd, name == "embeddingbag"), None
    if name == "depthwise":
        return name, Depthwise(c_in, c, draw(small), out, odd), None
    if name == "unet":
        return name, UNet(c_in, c, out, odd), torch.randn(2, c_in, 4, 4)
    if name == "lenet":
        return name, LeNet(c_in, c, out, odd), torch.randn(2, c_in, 6, 6)
    if name == "deepsets":
        return name, DeepSets(c_in, c, out, odd), torch.randn(2, 4, c_in)
    if name == "prelu":
        return name, PReLUNet(c_in, c, out, draw(st.booleans())), None
    return name, Shuffle(c_in, c, out, odd), None


def _double(example):
    return example.double() if example is not None and example.is_floating_point() else example


@settings(max_examples=30, deadline=None)
@given(case=layers(), seed=st.integers(0, 2**31 - 1), mode=st.sampled_from(["hidden", "all"]))
def test_every_layer_gets_a_true_symmetry_and_shapes_of_its_state(case, seed, mode):
    name, module, example = case
    module = randomised(module, seed)
    for symmetry in (mode, "signed"):
        trace = trace_module(module, symmetry, _double(example), check=True)
        state = module.state_dict()
        for tensor, source in trace.sources:
            assert trace.space.shape(tensor) == source.shape
            assert source.read(state[source.state]).shape == source.shape
        result = run_module_check(module, trace, notes=False)
        assert result.passed and result.checks > len(trace.sources), (name, result.failures)


@settings(max_examples=20, deadline=None)
@given(case=layers(), seed=st.integers(0, 2**31 - 1))
def test_converters_round_trip_every_layer(case, seed):
    _, module, example = case
    module = randomised(module, seed)
    weights, biases = weights_from_models([module, module])
    assert all(w.shape[:2] == (2, 1) for w in weights + biases)
    rebuilt = module_from_weights(module, weights, biases, index=1)
    for key, value in module.state_dict().items():
        torch.testing.assert_close(rebuilt.state_dict()[key], value, rtol=0, atol=0)
    state = state_dict_from_weights(weights, biases, template=module)
    assert state.keys() == module.state_dict().keys()
    again_w, again_b = weights_from_models([rebuilt])
    for a, b in zip(again_w + again_b, weights + biases, strict=True):
        torch.testing.assert_close(a[0], b[1], rtol=0, atol=0)


FIXED_CASES = [
    ("batchnorm2d", ConvBN(1, 2, 1, False, 2), None),
    ("layernorm", TokenNorm(2, 2, 1, False), None),
    ("embedding", Bag(3, 2, 1, False, False), None),
    ("depthwise", Depthwise(1, 2, 2, 1, False), None),
    ("lenet", LeNet(1, 2, 1, False), torch.randn(2, 1, 6, 6)),
    ("deepsets", DeepSets(1, 2, 1, False), torch.randn(2, 3, 1)),
    ("unet", UNet(1, 2, 1, False), torch.randn(2, 1, 4, 4)),
]


@pytest.mark.parametrize("case", FIXED_CASES, ids=[c[0] for c in FIXED_CASES])
def test_emitted_layers_of_real_spaces_are_equivariant_complete_not_over_symmetric(case):
    _, module, example = case
    space = trace_module(module, "hidden", example).space
    equivariant, invariant = layer_classes(space)
    assert_equivariant(equivariant(2, 2), space)
    assert_equivariant(invariant(2, 3), space)
    assert_not_over_symmetric(equivariant(1, 1), space)
    assert_complete(equivariant(1, 1), space)


def test_a_small_resnet_with_batch_norm_end_to_end():
    """ResNet layout with batch norm: derived, checked against the module (eval and train
    mode), certified with the module route, converted both ways, read by DWSNet."""
    models = [randomised(ResNet((2, 4), blocks=1, classes=3), s) for s in range(3)]
    trace = trace_module(models[0], "hidden", check=True)
    space = trace.space
    bn = [t for t, s in trace.sources if s.state.endswith("running_var")]
    assert len(bn) == 6 and all(space.shape(t) in ((2,), (4,)) for t in bn)
    cert = certify(space, source=(models[0], trace))
    assert cert.passed and cert.route("module").passed
    weights, biases = weights_from_models(models)
    net = DWSNet(models[0], hidden_channels=2, num_layers=1, out_features=1).double()
    assert net(weights, biases).shape == (3, 1)
    rebuilt = module_from_weights(models[0], weights, biases, index=2)
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    torch.testing.assert_close(rebuilt.eval()(x), models[2].eval()(x))


def test_vgg_flatten_of_positions_splits_the_first_linear_into_channels_and_positions():
    model = randomised(vgg(3, (2, 3), 4), 0)
    trace = trace_module(model, "hidden", torch.randn(2, 3, 8, 8, dtype=torch.float64), True)
    fc = trace.space.tensor("classifier_1_weight")
    assert trace.space.shape("classifier_1_weight") == (4, 3, 2, 2)
    channel = trace.space.set(fc.axes[1])
    assert channel.kind is Kind.PERMUTED and channel.size == 3
    assert all(trace.space.set(a).kind is Kind.FIXED for a in fc.axes[2:])


# -- the modules that once got a wrong space ----------------------------------------------------
class ScalarOffset(nn.Module):
    """A learnable offset of one value added to every hidden neuron."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(3, 8), nn.Linear(8, 2)
        self.offset = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x) + self.offset))


class SpatialGate(nn.Module):
    """h * sigmoid(conv(h)) with a one-channel gate."""

    def __init__(self) -> None:
        super().__init__()
        self.c, self.gate, self.fc = (
            nn.Conv2d(3, 8, 3, padding=1),
            nn.Conv2d(8, 1, 1),
            nn.Linear(8, 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.c(x))
        return self.fc((h * torch.sigmoid(self.gate(h))).mean(dim=(2, 3)))


class PerToken(nn.Module):
    """A per-token Linear on [B, T, C], then a flatten of tokens and features."""

    def __init__(self, view: bool) -> None:
        super().__init__()
        self.a, self.b, self.view = nn.Linear(4, 8), nn.Linear(24, 2), view

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x))
        return self.b(h.view(-1, 24) if self.view else h.flatten(1))


class FunctionalReLU6(nn.Module):
    def __init__(self, low: float, high: float) -> None:
        super().__init__()
        self.a, self.b, self.bounds = nn.Linear(3, 5), nn.Linear(5, 2), (low, high)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(F.hardtanh(self.a(x), *self.bounds))


def test_a_broadcast_scalar_is_its_own_fixed_set_of_size_one():
    space = trace_module(randomised(ScalarOffset(), 0), check=True).space
    assert space.dimension == 59
    assert space.set(space.tensor("offset").axes[0]) == NeuronSet("k1", 1, Kind.FIXED)
    assert space.set(space.tensor("a_weight").axes[0]).size == 8


def test_a_one_channel_gate_keeps_its_one_channel():
    space = trace_module(randomised(SpatialGate(), 0), check=True).space
    assert space.shape("gate_weight") == (1, 8, 1, 1)
    assert space.tensor("gate_weight").axes[1] == space.tensor("c_weight").axes[0]


@pytest.mark.parametrize("view", [False, True])
def test_a_flatten_of_tokens_and_features_reads_every_token(view):
    trace = trace_module(randomised(PerToken(view), 0), check=True)
    assert trace.space.shape("b_weight") == (2, 3, 8)
    tokens, hidden = trace.space.tensor("b_weight").axes[1:]
    assert hidden == trace.space.tensor("a_weight").axes[0]
    assert trace.space.set(tokens).kind is Kind.FIXED  # the network's input tokens


def test_function_forms_of_activations_are_odd_only_with_symmetric_bounds():
    relu6 = trace_module(randomised(FunctionalReLU6(0, 6), 0), "signed", check=True)
    assert relu6.space.set("n1").kind is Kind.PERMUTED
    assert dict(relu6.not_odd)["n1"] == "hardtanh"
    clip = trace_module(randomised(FunctionalReLU6(-1, 1), 0), "signed", check=True)
    assert clip.space.set("n1").kind is Kind.SIGNED


def test_the_module_route_fails_on_a_wrong_space_naming_the_set():
    module = randomised(SpatialGate(), 0)
    trace = trace_module(module)
    space = trace.space
    # Over-claim: the one-channel gate's set declared permuted together with a kernel row.
    wrong_sets = tuple(
        dataclasses.replace(s, kind=Kind.PERMUTED) if s.name == "k2" else s for s in space.sets
    )
    wrong = dataclasses.replace(trace, space=WeightSpace(wrong_sets, space.tensors))
    result = run_module_check(module, wrong, notes=False)
    assert not result.passed and any("set k2" in f for f in result.failures)
    cert = certify(wrong.space, source=(module, wrong))
    assert not cert.passed and not cert.route("module").passed
    # A shape that is not the source's is named with its tensor.
    tensors = tuple(
        Tensor(t.name, t.axes[:-1]) if t.name == "gate_weight" else t for t in space.tensors
    )
    short = dataclasses.replace(trace, space=WeightSpace(space.sets, tensors))
    assert any("gate_weight" in f for f in run_module_check(module, short).failures)


def test_merging_axes_of_different_sizes_is_refused_naming_the_node():
    class Mismatch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(2, 4)
            self.scale = nn.Parameter(torch.ones(4, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.a(x) @ self.scale  # [B, 4] @ [4, 1]: the parameter reads the 4 set

    space = trace_module(Mismatch(), check=True).space
    assert space.shape("scale") == (4, 1)
    from dws_theory.frontends.layout import LayoutError, Slots

    slots = Slots()
    a, b = slots.new("x", 3), slots.new("y", 4)
    with pytest.raises(LayoutError, match="different sizes"):
        slots.union(a, b)


def test_example_inputs_are_derived_or_refused_clearly():
    with pytest.raises(SpecError, match="forward takes 2 inputs; pass example_input"):

        class Two(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.a = nn.Linear(2, 2)

            def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
                return self.a(x) + y

        trace_module(Two())
    with pytest.raises(SpecError, match="does not run on the example input"):
        trace_module(nn.Sequential(nn.Linear(3, 2)), example_input=torch.randn(2, 4))
    lenet = trace_module(LeNet(1, 2, 1, False))  # finds the 6x6 input LeNet needs
    assert tuple(lenet.example[0].shape) == (2, 1, 6, 6)
