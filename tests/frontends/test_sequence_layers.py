"""Attention, transformer layers, recurrent nets, group norm and grouped convolution, traced.

On random small instances (hypothesis): the derived group is a true symmetry of the real
module in every mode (the module check: random elements applied to its state leave its
outputs unchanged); it is not larger than the module's (moving one occurrence of a set
alone, a query dim without its key dim, the hidden units of one gate block alone, changes
the outputs); the converters round-trip the state, split parameters (`in_proj_weight`)
included. On tiny fixed instances, the emitted layers are equivariant, complete and not
over-symmetric.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from real_modules import randomised
from torch import nn

from dws_theory.convert import module_from_weights, weights_from_models
from dws_theory.frontends.module import trace_module
from dws_theory.frontends.module_check import run_module_check
from dws_theory.runtime import layer_classes
from dws_theory.spec import Kind, SpecError
from dws_theory.testing import assert_complete, assert_equivariant, assert_not_over_symmetric

small = st.integers(1, 3)


class Attention(nn.Module):
    """Hand-written attention (timm style): one qkv Linear, a reshape to heads, softmax."""

    def __init__(self, d_in: int, heads: int, dims: int, out: int) -> None:
        super().__init__()
        width = heads * dims
        self.heads = heads
        self.inp = nn.Linear(d_in, width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.head = nn.Linear(width, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inp(x)
        b, t, c = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        scores = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        y = (scores @ v).transpose(1, 2).reshape(b, t, c)
        return self.head((x + self.proj(y)).mean(dim=1))


class Recurrent(nn.Module):
    """A recurrent net read at its last step, or through its final states."""

    def __init__(self, rnn: nn.Module, out: int, finals: bool) -> None:
        super().__init__()
        self.rnn, self.finals, self.lstm = rnn, finals, isinstance(rnn, nn.LSTM)
        directions = 2 if rnn.bidirectional else 1
        width = getattr(rnn, "proj_size", 0) or rnn.hidden_size
        self.head = nn.Linear(width * directions, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output, states = self.rnn(x)
        if self.finals:
            h = states[0] if self.lstm else states  # (h_n, c_n) or h_n
            last = h[-1] if not self.rnn.bidirectional else torch.cat([h[-2], h[-1]], dim=1)
            return self.head(last)
        return self.head(output[:, -1] if self.rnn.batch_first else output[-1])


class Grouped(nn.Module):
    """Conv, GroupNorm, a grouped convolution with the same groups, pooling, a head."""

    def __init__(self, groups: int, width: int, out: int, odd: bool) -> None:
        super().__init__()
        c = groups * width
        self.conv = nn.Conv2d(2, c, 3, padding=1)
        self.norm = nn.GroupNorm(groups, c)
        self.grouped = nn.Conv2d(c, c, 3, padding=1, groups=groups)
        self.head = nn.Linear(c, out)
        self.act = torch.tanh if odd else F.silu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.grouped(self.act(self.norm(self.conv(x)))))
        return self.head(h.mean(dim=(2, 3)))


class Encoder(nn.Module):
    def __init__(self, heads: int, dims: int, hidden: int, norm_first: bool, gelu: bool):
        super().__init__()
        width = heads * dims
        self.embed = nn.Embedding(5, width)
        layer = nn.TransformerEncoderLayer(
            width, heads, hidden, dropout=0.0, batch_first=True, norm_first=norm_first,
            activation="gelu" if gelu else "relu",
        )  # fmt: skip
        self.encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.head = nn.Linear(width, 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(tokens)).mean(dim=1))


@st.composite
def sequence_modules(draw):
    """(name, module) for a random small sequence or grouped layer in context."""
    name = draw(
        st.sampled_from(
            ["attention", "mha", "encoder", "decoder", "lstm", "gru", "rnn", "grouped", "hand"]
        )
    )
    heads, dims = draw(small), draw(small)
    if name == "mha":
        kdim = draw(st.sampled_from([None, 2]))
        module = nn.MultiheadAttention(
            heads * dims,
            heads,
            bias=draw(st.booleans()),
            add_bias_kv=draw(st.booleans()),
            kdim=kdim,
            vdim=kdim,
            batch_first=draw(st.booleans()),
        )
        return name, module
    if name in ("attention", "hand"):
        return name, Attention(draw(small), heads, dims, draw(small))
    if name in ("encoder", "decoder"):
        # a LayerNorm over 2 features is sign(a - b) * (1, -1): nearly constant, it would
        # hide what a layer before it does (so widths of at least 3)
        dims = max(dims, -(-3 // heads))
    if name == "encoder":
        return name, Encoder(heads, dims, draw(small), draw(st.booleans()), draw(st.booleans()))
    if name == "decoder":
        width = heads * dims
        return name, nn.TransformerDecoderLayer(width, heads, draw(small), dropout=0.0)
    if name == "grouped":
        return name, Grouped(draw(st.integers(1, 3)), draw(small), draw(small), draw(st.booleans()))
    layers, bidirectional, batch_first = draw(st.integers(1, 2)), draw(st.booleans()), True
    batch_first = draw(st.booleans())
    hidden = draw(st.integers(2, 3))
    kwargs = dict(num_layers=layers, bidirectional=bidirectional, batch_first=batch_first)
    if name == "lstm":
        rnn = nn.LSTM(draw(small), hidden, proj_size=draw(st.integers(0, hidden - 1)), **kwargs)
    elif name == "gru":
        rnn = nn.GRU(draw(small), hidden, **kwargs)
    else:
        nonlinearity = draw(st.sampled_from(["tanh", "relu"]))
        rnn = nn.RNN(draw(small), hidden, nonlinearity=nonlinearity, **kwargs)
    return name, Recurrent(rnn, draw(small), draw(st.booleans()))


@settings(max_examples=20, deadline=None)
@given(case=sequence_modules(), seed=st.integers(0, 2**31 - 1))
def test_the_derived_group_is_a_symmetry_in_every_mode(case, seed):
    name, module = case
    module = randomised(module, seed)
    for mode in ("hidden", "signed", "all"):
        trace = trace_module(module, mode)
        result = run_module_check(module, trace, notes=False)
        assert result.passed, (name, mode, result.failures)
    if name in ("lstm", "gru", "mha", "encoder", "decoder", "hand", "attention"):
        assert not any(s.kind is Kind.SIGNED for s in trace_module(module, "hidden").space.sets)


def _gap(a: nn.Module, b: nn.Module, inputs: tuple) -> float:
    with torch.no_grad():
        ya, yb = a(*inputs), b(*inputs)
    ya = ya[0] if isinstance(ya, tuple) else ya
    yb = yb[0] if isinstance(yb, tuple) else yb
    return float((ya - yb).norm() / max(float(yb.norm()), 1e-12))


def _moved_one_occurrence(module: nn.Module, trace, tensor: str, axis: int, rng) -> nn.Module:
    """A copy with one axis of one tensor of the space permuted alone (a derangement; for a
    set inside blocks, the same one in every block)."""
    out = copy.deepcopy(module)
    state = out.state_dict()
    source = trace.source_of(tensor)
    value = source.read(state[source.state]).clone()
    n = value.shape[axis]
    order = rng.permutation(n)
    cycle = np.empty(n, dtype=np.int64)
    cycle[order] = np.roll(order, -1)
    source.write(state[source.state], value.index_select(axis, torch.as_tensor(cycle)))
    out.load_state_dict(state)
    return out


def _randomised_tensor(module: nn.Module, trace, tensor: str) -> nn.Module:
    """A copy with one tensor of the space replaced by random values (the key projection's
    bias, for one, never reaches the outputs: softmax ignores a shift common to all keys)."""
    out = copy.deepcopy(module)
    state = out.state_dict()
    source = trace.source_of(tensor)
    value = source.read(state[source.state])
    source.write(state[source.state], torch.randn(value.shape, dtype=value.dtype))
    out.load_state_dict(state)
    return out


@settings(max_examples=15, deadline=None)
@given(case=sequence_modules(), seed=st.integers(0, 2**31 - 1))
def test_no_set_moves_in_pieces(case, seed):
    """Every occurrence of a moving set moved alone changes the outputs (the query dims of
    the query projection without the key projection's, one layer's hidden units in
    weight_ih without weight_hh): the space does not over-claim by splitting sets."""
    _, module = case
    module = randomised(module, seed).eval()
    trace = trace_module(module)
    rng = np.random.default_rng(seed)
    # several draws: on one small input a ReLU unit can be dead everywhere, and moving its
    # row alone would then change nothing
    gen = torch.Generator().manual_seed(seed)
    draws = [
        tuple(
            torch.randn(x.shape, generator=gen, dtype=torch.float64) if x.is_floating_point() else x
            for x in trace.example
        )
        for _ in range(8)
    ]
    space = trace.space
    for s in space.sets:
        if s.kind is Kind.FIXED or s.size < 2:
            continue
        occurrences = [
            (t.name, i) for t in space.tensors for i, a in enumerate(t.axes) if a == s.name
        ]
        if len(occurrences) < 2:
            continue
        tensor, axis = occurrences[int(rng.integers(len(occurrences)))]
        moved = _moved_one_occurrence(module, trace, tensor, axis, rng)
        if max(_gap(moved, module, x) for x in draws) <= 1e-7:  # only an ignored tensor may stay
            randomised_tensor = _randomised_tensor(module, trace, tensor)
            assert max(_gap(randomised_tensor, module, x) for x in draws) <= 1e-7, (
                s.name,
                tensor,
                axis,
            )


def test_one_gate_block_moved_alone_changes_an_lstm():
    module = randomised(Recurrent(nn.LSTM(2, 3, batch_first=True), 1, False), 0).eval()
    trace = trace_module(module, check=True)
    gates, hidden, _ = trace.space.tensor("rnn_weight_ih_l0").axes
    assert trace.space.set(gates).kind is Kind.FIXED and trace.space.set(gates).size == 4
    moved = copy.deepcopy(module)
    with torch.no_grad():
        moved.rnn.weight_ih_l0[:3] = moved.rnn.weight_ih_l0[:3][[1, 2, 0]]  # input gate only
    x = trace.example[0].double()
    assert _gap(moved, module, (x,)) > 1e-6


def test_attention_heads_are_blocks_and_a_query_dim_needs_its_key_dim():
    module = randomised(nn.MultiheadAttention(6, 2, batch_first=True), 0)
    trace = trace_module(module, check=True)
    space = trace.space
    q, k, v = (space.tensor(f"in_proj_weight_{i}") for i in range(3))
    assert q.axes[:2] == k.axes[:2] and q.axes[0] == v.axes[0] and q.axes[1] != v.axes[1]
    heads, qk, vd = space.set(q.axes[0]), space.set(q.axes[1]), space.set(v.axes[1])
    assert (heads.size, qk.size, vd.size) == (2, 3, 3)
    assert qk.parent == vd.parent == heads.name
    assert space.shape("out_proj_weight") == (6, 2, 3)


def test_the_converters_round_trip_split_parameters():
    models = [randomised(Encoder(2, 2, 3, False, False), s) for s in range(2)]
    weights, biases = weights_from_models(models)
    rebuilt = module_from_weights(models[0], weights, biases, index=1)
    for key, value in models[1].state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value), key


TINY = [
    ("mha", nn.MultiheadAttention(4, 2, batch_first=True)),
    ("lstm", Recurrent(nn.LSTM(1, 2, batch_first=True), 1, False)),
    ("grouped", Grouped(2, 2, 1, False)),
]


@pytest.mark.parametrize("case", TINY, ids=[c[0] for c in TINY])
def test_emitted_layers_of_block_spaces_are_exact(case):
    _, module = case
    space = trace_module(module).space
    equivariant, invariant = layer_classes(space)
    assert_equivariant(equivariant(2, 2), space)
    assert_equivariant(invariant(2, 2), space)
    assert_not_over_symmetric(equivariant(1, 1), space)
    assert_complete(equivariant(1, 1), space)


def test_a_computed_initial_state_and_mixed_group_counts_are_refused():
    class FromInput(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn, self.init = nn.GRU(2, 2, batch_first=True), nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.rnn(x, self.init(x[:, 0]).unsqueeze(0))[0]

    # a 3-d input: with the default [2, 2] the GRU would run unbatched on one sequence
    with pytest.raises(SpecError, match="initial state computed"):
        trace_module(FromInput(), example_input=torch.randn(4, 5, 2))

    class Mixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.norm = nn.Conv2d(1, 6, 1), nn.GroupNorm(3, 6)
            self.grouped = nn.Conv2d(6, 2, 1, groups=2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.grouped(self.norm(self.conv(x))).mean(dim=(2, 3))

    with pytest.raises(SpecError, match="2 groups of channels already cut"):
        trace_module(Mixed())
