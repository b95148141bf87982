"""`from_module`: the weight space derived from a real torch module by tracing it.

- MLPs: `from_module(nn.Sequential(Linear, act, ...))` is exactly `mlp(dims, mode)`.
- CNNs, residual MLPs, tied networks: the derived space equals the one written down by hand
  (tests/spaces.py) up to names: same tensors, same sharing of sets, same kinds.
- The group is right, functionally: a random element of it applied to the module's
  parameters leaves the module's outputs unchanged, and the partition into sets is the
  coarsest that does: moving any part of a set alone (a two-part split of its axes) changes
  the outputs, and so does moving a fixed set (input, output, kernel positions).
- Everything it cannot derive exactly is refused with an error naming the node.
"""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given
from hypothesis import strategies as st
from modules import Residual, Tied, cnn_module, probe
from spaces import canonical, cnn_space, residual_space, tied_space
from strategies import mlp_dims
from torch import nn

from dws_theory.frontends import from_module, trace_module
from dws_theory.spec import Kind, SpecError, mlp

seeds = st.integers(0, 2**31 - 1)
widths = st.integers(1, 4)
ends = st.integers(1, 3)


@st.composite
def families(draw, modes=("hidden", "all", "signed")):
    """(module, hand-written space, mode) for a random CNN, residual MLP or tied network."""
    mode = draw(st.sampled_from(modes))
    family = draw(st.sampled_from(("cnn", "residual", "tied")))
    if family == "cnn":
        depth = draw(st.integers(1, 2))
        channels = (draw(ends), *draw(st.lists(widths, min_size=depth, max_size=depth)))
        axes = draw(st.integers(1, 2))
        kernels = tuple(
            tuple(draw(st.lists(st.integers(1, 3), min_size=axes, max_size=axes)))
            for _ in range(depth)
        )
        out = draw(ends)
        return (
            cnn_module(channels, kernels, out, mode),
            cnn_space(channels, kernels, out, mode),
            mode,
        )
    if family == "residual":
        args = (draw(ends), draw(widths), tuple(draw(st.lists(widths, min_size=1, max_size=2))))
        out = draw(ends)
        return Residual(*args, out, mode), residual_space(*args, out, mode), mode
    args = (draw(ends), draw(widths), draw(ends))
    return Tied(*args, mode), tied_space(*args, mode), mode


def double(module: nn.Module, seed: int) -> nn.Module:
    """A float64 copy with random parameters scaled by fan-in (no saturated units)."""
    module = copy.deepcopy(module).double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            fan = p[0].numel() if p.dim() >= 2 else 4
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) / fan**0.5)
    return module


def moved(module: nn.Module, trace, move) -> nn.Module:
    """A copy whose parameter axes are gathered (and signed) by `move(tensor, axis)`, which
    returns (perm, sign) or None for an axis left alone. Written here, not with the engine's
    group code."""
    out = copy.deepcopy(module)
    params = dict(out.named_parameters())
    with torch.no_grad():
        for tensor, name in trace.parameters:
            t = params[name].detach().clone()
            for axis in range(t.dim()):
                step = move(tensor, axis)
                if step is not None:
                    perm, sign = step
                    t = t.index_select(axis, torch.as_tensor(perm))
                    shape = [1] * t.dim()
                    shape[axis] = -1
                    t = t * torch.as_tensor(sign, dtype=t.dtype).view(shape)
            params[name].copy_(t)
    return out


def gap(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    """|| a(x) - b(x) || relative to how much b's output varies over the probes (a constant
    offset such as the last bias would otherwise hide a difference)."""
    with torch.no_grad():
        ya, yb = a(x), b(x)
    return float((ya - yb).norm() / (yb - yb.mean(0)).norm())


def random_group_move(space, rng: np.random.Generator):
    """A random element of the product group, as a per-axis move."""
    element = {}
    for s in space.sets:
        perm = rng.permutation(s.size) if s.kind is not Kind.FIXED else np.arange(s.size)
        sign = rng.choice([-1, 1], size=s.size) if s.kind is Kind.SIGNED else np.ones(s.size)
        element[s.name] = (perm, sign)
    return lambda tensor, axis: element[space.tensor(tensor).axes[axis]]


# -- MLPs ----------------------------------------------------------------------------------------
@given(dims=mlp_dims(max_depth=4), mode=st.sampled_from(("hidden", "all", "signed")))
def test_mlp_equals_from_module_of_the_same_sequential(dims, mode):
    layers: list[nn.Module] = []
    for m in range(1, len(dims)):
        layers += [nn.Linear(dims[m - 1], dims[m]), nn.Tanh()]
    seq = nn.Sequential(*layers[:-1])
    trace = trace_module(seq, mode)
    assert trace.space == mlp(dims, mode)
    assert [p for _, p in trace.parameters] == [n for n, _ in seq.named_parameters()]
    assert [t for t, _ in trace.parameters] == [t.name for t in mlp(dims, mode).tensors]


def test_signed_needs_odd_activations():
    """ReLU is not odd: in signed mode its hidden sets stay permuted (the hidden space)."""
    relu = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 1))
    space = from_module(relu, "signed")
    assert [s.kind for s in space.sets] == [Kind.FIXED, Kind.PERMUTED, Kind.SIGNED, Kind.FIXED]
    trace = trace_module(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)), "signed")
    assert trace.space == mlp((2, 3, 1), "hidden")


# -- general spaces equal the hand-written ones ---------------------------------------------------
@given(case=families())
def test_derived_space_equals_the_hand_written_one_up_to_names(case):
    module, space, mode = case
    assert canonical(from_module(module, mode)) == canonical(space)


def test_the_zoo_cnn():
    cnn = cnn_module((1, 8, 8, 8), ((3, 3),) * 3, 10, "hidden")
    trace = trace_module(cnn)
    space = trace.space
    assert [t.name for t in space.tensors][:2] == ["p0_weight", "p0_bias"]
    assert space.shape("p0_weight") == (8, 1, 3, 3)
    assert [s.kind for s in space.sets if s.size == 8] == [Kind.PERMUTED] * 3
    kernels = {a for t in space.tensors for a in t.axes[2:]}
    assert len(kernels) == 6 and all(space.set(k).kind is Kind.FIXED for k in kernels)
    assert dict(trace.parameters)["p8_weight"] == "8.weight"


def test_residual_links_merge_the_stream_and_are_recorded():
    trace = trace_module(Residual(2, 4, (3, 3), 1, "hidden"))
    stream = trace.space.tensor("inp_weight").axes[0]
    on_stream = [t.name for t in trace.space.tensors if stream in t.axes]
    assert on_stream == [
        "inp_weight",
        "inp_bias",
        "blocks_0_0_weight",
        "blocks_0_2_weight",
        "blocks_0_2_bias",
        "blocks_1_0_weight",
        "blocks_1_2_weight",
        "blocks_1_2_bias",
        "out_weight",
    ]
    adds = [link for link in trace.links if link.reason == "residual addition"]
    assert len(adds) == 2 and {link.set for link in adds} == {stream}


def test_a_layer_called_twice_is_one_tied_square_weight():
    trace = trace_module(Tied(2, 3, 1, "signed"), "signed")
    axes = trace.space.tensor("tied_weight").axes
    assert axes[0] == axes[1] and trace.space.set(axes[0]).kind is Kind.SIGNED
    assert any(link.reason == "tied use of tied.weight" for link in trace.links)


# -- the group is right, functionally ------------------------------------------------------------
@given(case=families(modes=("hidden", "signed")), seed=seeds)
def test_random_group_elements_keep_the_function(case, seed):
    module, _, mode = case
    module = double(module, seed)
    trace = trace_module(module, mode)
    x = probe(module, 4, torch.Generator().manual_seed(seed))
    for k in range(3):
        g = random_group_move(trace.space, np.random.default_rng([seed, k]))
        assert gap(moved(module, trace, g), module, x) < 1e-10


def _occurrences(space, name: str) -> list[tuple[str, int]]:
    return [(t.name, pos) for t in space.tensors for pos, a in enumerate(t.axes) if a == name]


def _splits(occurrences: list, rng: np.random.Generator, limit: int = 128):
    """Two-part splits (the part holding the first occurrence is moved): all, or `limit`."""
    rest = occurrences[1:]
    if 2 ** len(rest) - 1 <= limit:
        masks = list(itertools.product((0, 1), repeat=len(rest)))[:-1]
    else:
        masks = [tuple(rng.integers(0, 2, len(rest))) for _ in range(limit)]
        masks = [m for m in masks if not all(m)]
    for mask in masks:
        yield {occurrences[0]} | {o for o, bit in zip(rest, mask, strict=True) if bit}


@given(case=families(modes=("hidden", "signed")), seed=seeds)
def test_the_set_partition_is_the_coarsest_that_keeps_the_function(case, seed):
    """For every moving set: a permutation of only part of its axes changes the outputs, so
    no finer partition keeps the function (a finer one would contain such an element)."""
    module, _, mode = case
    module = double(module, seed)
    trace = trace_module(module, mode)
    space = trace.space
    sets = [s for s in space.sets if s.kind is not Kind.FIXED and s.size >= 2]
    assume(sets)
    x = probe(module, 32, torch.Generator().manual_seed(seed))
    rng = np.random.default_rng(seed)
    for s in sets:
        perm = rng.permutation(s.size)
        while np.all(perm == np.arange(s.size)):
            perm = rng.permutation(s.size)
        for part in _splits(_occurrences(space, s.name), rng):

            def move(tensor, axis, part=part, perm=perm):
                return (perm, np.ones(len(perm))) if (tensor, axis) in part else None

            assert gap(moved(module, trace, move), module, x) > 1e-6, (s.name, sorted(part))


@given(case=families(modes=("hidden",)), seed=seeds)
def test_fixed_sets_cannot_move(case, seed):
    """Input and output sets and kernel positions are fixed: moving one changes the outputs."""
    module, _, mode = case
    module = double(module, seed)
    trace = trace_module(module, mode)
    space = trace.space
    fixed = [s for s in space.sets if s.kind is Kind.FIXED and s.size >= 2]
    assume(fixed)
    x = probe(module, 32, torch.Generator().manual_seed(seed))
    for s in fixed:
        perm = np.roll(np.arange(s.size), 1)
        occurrences = set(_occurrences(space, s.name))

        def move(tensor, axis, occurrences=occurrences, perm=perm):
            return (perm, np.ones(len(perm))) if (tensor, axis) in occurrences else None

        assert gap(moved(module, trace, move), module, x) > 1e-6, s.name


# -- other ways of writing the same networks -----------------------------------------------------
class FunctionalCNN(nn.Module):
    """Functional calls, a mean over the spatial axes instead of a pooling module."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(2, 3, 3)
        self.c2 = nn.Conv2d(3, 4, 2)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.c1(x))
        h = torch.sigmoid(self.c2(h))
        return self.fc(h.mean(dim=(-2, -1)))


class TiedAutoencoder(nn.Module):
    """Decoder weight = the encoder's, transposed (F.linear with weight.t())."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(3, 4)
        self.dec_bias = nn.Parameter(torch.zeros(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(torch.tanh(self.enc(x)), self.enc.weight.t(), self.dec_bias)


class Gated(nn.Module):
    """An elementwise product of two branches: one permutation must act on both."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(2, 3)
        self.b = nn.Linear(2, 3)
        self.out = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.a(x)) * torch.sigmoid(self.b(x)))


class ResidualCNN(nn.Module):
    """A conv block with a skip inside an nn.Sequential, strided pooling, log-softmax."""

    def __init__(self) -> None:
        super().__init__()

        class Skip(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.conv = nn.Conv2d(3, 3, 3, padding=1, bias=False)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return torch.add(x, F.gelu(self.conv(x)))

        self.net = nn.Sequential(
            nn.Conv2d(2, 3, 3, padding=1),
            nn.Tanh(),
            Skip(),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Flatten(1),
            nn.Linear(3, 3),
            nn.LogSoftmax(dim=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Recurrent(nn.Module):
    """An RNN cell unrolled three times: W_hh and W_ih reused at every step."""

    def __init__(self) -> None:
        super().__init__()
        self.w_ih = nn.Linear(2, 4)
        self.w_hh = nn.Linear(4, 4, bias=False)
        self.head = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.w_ih(x))
        for _ in range(3):
            h = torch.tanh(self.w_ih(x) + self.w_hh(h))
        return self.head(h)


@pytest.mark.parametrize(
    "module", [FunctionalCNN(), TiedAutoencoder(), Gated(), ResidualCNN(), Recurrent()]
)
def test_functional_styles_keep_the_function_and_are_coarsest(module):
    module = double(module, 1)
    trace = trace_module(module, "hidden")
    x = probe(module, 5, torch.Generator().manual_seed(2))
    g = random_group_move(trace.space, np.random.default_rng(3))
    assert gap(moved(module, trace, g), module, x) < 1e-10
    rng = np.random.default_rng(4)
    for s in trace.space.sets:
        if s.kind is Kind.FIXED or s.size < 2:
            continue
        perm = np.roll(np.arange(s.size), 1)
        for part in _splits(_occurrences(trace.space, s.name), rng):

            def move(tensor, axis, part=part, perm=perm):
                return (perm, np.ones(len(perm))) if (tensor, axis) in part else None

            assert gap(moved(module, trace, move), module, x) > 1e-6


def test_tied_autoencoder_puts_both_uses_on_one_tensor():
    space = from_module(TiedAutoencoder())
    enc = space.tensor("enc_weight").axes
    assert space.tensor("dec_bias").axes == (enc[1],)  # the decoder writes the input set
    assert space.set(enc[1]).kind is Kind.FIXED  # it is the network's input and output


# -- refusals ------------------------------------------------------------------------------------
class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) if x.sum() > 0 else x


class Attention(nn.Module):
    """Scores from a product of two activations (attention): block symmetries, not here."""

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.q(x) @ self.k(x).transpose(-2, -1), dim=-1)


class Unused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc, self.spare = nn.Linear(2, 2), nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


REFUSED = [
    (nn.Sequential(nn.Conv2d(4, 4, 3, groups=2)), r"node '_0'.*grouped convolution \(groups=2"),
    (nn.Sequential(nn.Linear(2, 3), nn.Softmax2d()), "unsupported module Softmax2d"),
    (Branchy(), "data-dependent branch"),
    (Attention(), r"node 'matmul'.*two activations"),
    (Unused(), "never used by forward: spare.weight, spare.bias"),
    (
        nn.Sequential(nn.Linear(2, 2), nn.LocalResponseNorm(2)),
        "unsupported module LocalResponseNorm",
    ),
]


@pytest.mark.parametrize("module,match", REFUSED, ids=[type(m).__name__ for m, _ in REFUSED])
def test_unsupported_modules_are_refused_naming_the_node(module, match):
    with pytest.raises(SpecError, match=match):
        from_module(module)


def test_bad_arguments():
    with pytest.raises(SpecError, match="expects a torch.nn.Module"):
        from_module("not a module")  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="unknown symmetry mode"):
        from_module(nn.Linear(2, 2), "rotations")
