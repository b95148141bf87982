"""Emitted layers for block symmetries: attention heads, gate blocks, channel groups.

The layers of spaces with nested sets (tests/spaces.py: attention blocks, gated recurrent
layers, grouped channels, and random nested spaces) pass the project's three checks
(`dws_theory.testing`), in float64 with random parameters:

- equivariant under random elements of S_d wr S_H (and the invariant layer invariant);
- not over-symmetric: a position moved from one head to another, the query dims permuted
  without the key dims, one gate block's hidden units permuted alone, each change L's
  output where a group element would not;
- complete: the parameter Jacobian's rank is the orbit count;

and they equal the dense parameter-sharing reference `Basis.dense`. The torch action that
`testing` applies is checked against the engine's numpy action (`group.signed_permutation`)
and the test-only one (tests/reference.py). The compiled and fused backends give the eager
values and gradients (under `aot_eager`, which traces and runs the same graph). The op
count grows linearly in the number of encoder layers.
"""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from reference import _image
from spaces import (
    attention_space,
    block_spaces,
    gated_space,
    grouped_space,
    nested_spaces,
    random_tensors,
    split,
)

from dws_theory.basis import enumerate_basis
from dws_theory.codegen import lower
from dws_theory.codegen.files import source_for
from dws_theory.examples import encoder_layers
from dws_theory.group import random_element, signed_permutation
from dws_theory.models import DWSNet
from dws_theory.runtime import layer_classes
from dws_theory.spec import Kind, WeightSpace
from dws_theory.testing import (
    act,
    assert_complete,
    assert_equivariant,
    assert_not_over_symmetric,
)

seeds = st.integers(0, 2**31 - 1)
layered = st.one_of(nested_spaces(), block_spaces())


def _has_weight(space: WeightSpace) -> bool:
    """`testing`'s checks read the output channels off the first weight (two or more axes)."""
    return any(len(t.axes) >= 2 for t in space.tensors)


def flat(space: WeightSpace, weights, biases) -> torch.Tensor:
    """[B, C, P] in the space's tensor order (weights and biases interleaved as declared)."""
    by_name = dict(
        zip(
            [t.name for t in space.tensors if len(t.axes) >= 2]
            + [t.name for t in space.tensors if len(t.axes) == 1],
            [*weights, *biases],
            strict=True,
        )
    )
    first = by_name[space.tensors[0].name]
    return torch.cat([by_name[t.name].reshape(*first.shape[:2], -1) for t in space.tensors], 2)


# -- the action ------------------------------------------------------------------------------
@given(space=layered, seed=seeds)
def test_the_torch_action_is_the_engines_and_the_references(space, seed):
    rng = np.random.default_rng(seed)
    g = random_element(space, rng)
    x = split(space, random_tensors(space, 1, 1, torch.Generator().manual_seed(seed % 1000)))
    moved = flat(space, *act(space, g, *x))[0, 0].numpy()
    original = flat(space, *x)[0, 0].numpy()
    element = {s.name: (g.perm(s.name), g.sign(s.name)) for s in space.sets}
    start = 0
    for t in space.tensors:
        n = space.numel(t.name)
        source, sign = signed_permutation(space, g, t.name)
        np.testing.assert_array_equal(moved[start : start + n], sign * original[start + source])
        for flat_index, index in enumerate(np.ndindex(*space.shape(t.name))):
            src, s = _image(space, element, t.name, index)
            assert source[flat_index] == np.ravel_multi_index(src, space.shape(t.name))
            assert sign[flat_index] == s
        start += n


# -- equivariant, complete, not over-symmetric ------------------------------------------------
@given(space=layered, seed=st.integers(0, 1000), c_in=st.integers(1, 2))
def test_equivariant_under_random_wreath_elements(space, seed, c_in):
    equivariant, invariant = layer_classes(space)
    assert_equivariant(equivariant(c_in, 2), space, seed=seed, trials=2)
    assert_equivariant(invariant(c_in, 2), space, seed=seed, trials=2)


@pytest.mark.parametrize(
    "space",
    [
        attention_space(1, 2, 2, 2, "all"),
        attention_space(2, 3, 2, 1, "signed", biases=False),
        gated_space(2, 2, 1, "hidden"),
        grouped_space(2, 2, 1, 1, "hidden"),
        WeightSpace.parse("sets[h:2:signed d:2:permuted@h e:2:permuted] tensors[T(h,d,e) b(h,d)]"),
    ],
    ids=["attention", "attention-signed", "lstm", "groupnorm", "signed-parent"],
)
def test_complete_and_not_over_symmetric(space):
    equivariant, invariant = layer_classes(space)
    basis = enumerate_basis(space)
    assert assert_complete(equivariant(1, 1), space) == basis.parameter_count(1, 1)
    assert assert_complete(invariant(2, 3), space) == basis.invariant_linear * 2 * 3 + 3
    checked = assert_not_over_symmetric(equivariant(1, 1), space)
    for child in (s.name for s in space.sets if s.parent and space.set(s.parent).size >= 2):
        if space.set(child).kind is Kind.PERMUTED:  # signed: no layer can tell (see below)
            assert any(f"position 0 of {child} moved between blocks" in c for c in checked)


@given(space=nested_spaces(st.integers(1, 2)), seed=st.integers(0, 100))
def test_jacobian_rank_is_the_orbit_count_on_random_nested_spaces(space, seed):
    assume(_has_weight(space) and space.dimension <= 40)
    equivariant, _ = layer_classes(space)
    assert assert_complete(equivariant(1, 1), space, seed=seed) == enumerate_basis(
        space
    ).parameter_count(1, 1)


def _gap(space, layer, h) -> float:
    """|| L(h x) - h L(x) || / || h L(x) ||, float64, random parameters and input."""
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
        x = split(space, random_tensors(space, 2, 1, gen))
        left = flat(space, *layer(*h(*x)))
        right = flat(space, *h(*layer(*x)))
    return float((left - right).norm() / right.norm())


def _on(space: WeightSpace, names: set[str], axis_of: dict[str, int], perm: np.ndarray):
    """Permute axis `axis_of[name]` of the tensors in `names` by `perm`, the rest alone."""
    order = [t.name for t in space.tensors if len(t.axes) >= 2] + [
        t.name for t in space.tensors if len(t.axes) == 1
    ]

    def h(weights, biases):
        out = []
        for name, t in zip(order, [*weights, *biases], strict=True):
            if name in names:
                t = t.index_select(2 + axis_of[name], torch.as_tensor(perm))
            out.append(t)
        return out[: len(weights)], out[len(weights) :]

    return h


def test_query_dims_permuted_without_the_key_dims_are_noticed():
    """q and k of one head share the child set `qk`: moving q's dims (weights and bias)
    alone is not a group element, and the layer sees it; moving q's and k's together in
    every head is one, and it does not."""
    space = attention_space(2, 2, 3, 2, "hidden")
    layer = layer_classes(space)[0](1, 1).double()
    perm = np.array([1, 2, 0])
    axes = {"q_w": 1, "q_b": 1, "k_w": 1, "k_b": 1}
    assert _gap(space, layer, _on(space, {"q_w", "q_b"}, axes, perm)) > 1e-6
    assert _gap(space, layer, _on(space, set(axes), axes, perm)) < 1e-12


def test_a_permutation_of_the_flattened_heads_that_mixes_blocks_is_noticed():
    """Position 0 of head 0 swapped with position 0 of head 1 on every tensor (the [H * d]
    axis permuted as one set) is no element of S_d wr S_H; swapping whole heads is."""
    space = attention_space(2, 2, 2, 2, "hidden")
    layer = layer_classes(space)[0](1, 1).double()
    g = random_element(space, np.random.default_rng(3))
    from dws_theory.testing import outside_transformations

    across = [h for h in outside_transformations(space) if h.across_blocks]
    assert [h.set_name for h in across] == ["qk", "v"]
    for h in across:
        assert _gap(space, layer, lambda w, b, h=h: h(space, w, b)) > 1e-6
    assert _gap(space, layer, lambda w, b: act(space, g, w, b)) < 1e-12


def test_one_gate_block_permuted_alone_is_noticed():
    """An LSTM's hidden units move in all four gate blocks together (one set h beside the
    fixed gate set g); permuting h in gate block 0 only changes the layer's output."""
    space = gated_space(4, 3, 2, "hidden")
    layer = layer_classes(space)[0](1, 1).double()
    perm = torch.as_tensor([1, 2, 0])

    def first_gate(weights, biases):
        def one(t):
            t = t.clone()
            t[:, :, 0] = t[:, :, 0].index_select(2, perm)  # axis h of gate block 0
            return t

        return [one(t) for t in weights], biases

    assert _gap(space, layer, first_gate) > 1e-6
    assert _gap(space, layer, lambda w, b: _all_gates(space, perm, w, b)) < 1e-12


def _all_gates(space: WeightSpace, perm: torch.Tensor, weights, biases):
    """h permuted everywhere (every gate block, both axes of w_hh): a group element."""
    names = [t.name for t in space.tensors if len(t.axes) >= 2]
    out = []
    for name, t in zip(names, weights, strict=True):
        for axis, set_name in enumerate(space.tensor(name).axes):
            if set_name == "h":
                t = t.index_select(2 + axis, perm)
        out.append(t)
    return out, biases


# -- the dense reference ---------------------------------------------------------------------
@given(space=layered, seed=seeds, c_in=st.integers(1, 2), c_out=st.integers(1, 2))
def test_layer_equals_dense_parameter_sharing_matrix(space, seed, c_in, c_out):
    assume(space.dimension <= 80)
    basis = enumerate_basis(space)
    rng = np.random.default_rng(seed)
    theta = rng.standard_normal((basis.equivariant_linear, c_out, c_in))
    theta_bias = rng.standard_normal((basis.equivariant_bias, c_out))
    layer = layer_classes(space)[0](c_in, c_out).double()
    layer.load_theta(torch.from_numpy(theta), torch.from_numpy(theta_bias))
    x = split(space, random_tensors(space, 3, c_in, torch.Generator().manual_seed(seed % 1000)))
    got = flat(space, *layer(*x)).detach().numpy()
    xs = flat(space, *x).numpy()
    for o in range(c_out):
        want = np.repeat(basis.dense_bias(theta_bias[:, o])[None, :], 3, 0)
        for c in range(c_in):
            want = want + xs[:, c] @ basis.dense(theta[:, o, c]).T
        np.testing.assert_allclose(got[:, o], want, rtol=1e-10, atol=1e-10)


# -- other backends --------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["compiled", "fused"])
def test_compiled_and_fused_backends_match_eager(backend):
    space = attention_space(2, 2, 2, 3, "all")
    module = types.ModuleType(f"fresh_{backend}_heads")
    exec(compile(source_for(space, None, backend), module.__name__, "exec"), module.__dict__)
    module.COMPILE_BACKEND = "aot_eager"
    eager_cls = layer_classes(space)[0]
    torch.manual_seed(0)
    layer = module.EquivariantLayer(2, 3).double()
    eager = eager_cls(2, 3).double()
    eager.load_state_dict(layer.state_dict())
    x = split(space, random_tensors(space, 4, 2, torch.Generator().manual_seed(1)))
    results = []
    for run in (layer, eager):
        leaves = [t.clone().requires_grad_() for t in x[0] + x[1]]
        out = run(leaves[: len(x[0])], leaves[len(x[0]) :])
        loss = sum((t * t).sum() for t in out[0] + out[1])
        results.append([*out[0], *out[1], *torch.autograd.grad(loss, leaves)])
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    assert "compiled" in module.EquivariantLayer.forward.compile_state
    assert "failed" not in module.EquivariantLayer.forward.compile_state


# -- op count --------------------------------------------------------------------------------
def test_op_count_grows_linearly_with_encoder_layers():
    """16 tensors per encoder layer; the ops grow by a constant per layer, far below one op
    per block (256 L^2 blocks)."""
    spaces = [WeightSpace.parse(encoder_layers(n, 4, 2, 2, 4)) for n in range(1, 5)]
    ops = [len(lower(enumerate_basis(space)).equivariant_ops) for space in spaces]
    assert len({b - a for a, b in zip(ops, ops[1:], strict=False)}) == 1, ops
    assert ops[-1] < 8 * 16 * 4


# -- the model -------------------------------------------------------------------------------
def test_dwsnet_on_a_signed_nested_space_is_invariant():
    """DWSNet reads a signed space through |x| and the invariant layer of the unsigned
    group: that group must keep the nesting (a child with its own permutation per block),
    or a tensor with two head axes is pooled as if every head were permuted alike."""
    space = WeightSpace.parse(
        "sets[e:2:fixed p:2:permuted c:2:signed@p] tensors[S(p,c,p,c) A(p,c,e)]"
    )
    net = DWSNet(space, out_features=3, activation=torch.tanh)
    assert_equivariant(net, space, trials=5)
