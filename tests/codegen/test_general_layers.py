"""Emitted layers for general weight spaces: CNN kernels, residual links, tied square weights.

The same four checks as for MLPs (tests/codegen/test_layers.py), on random small spaces written down
by hand (tests/spaces.py, no front end involved), in float64 with random parameters:

- equivariant under random group elements (and the invariant layer invariant);
- not over-symmetric: moving kernel positions, permuting one axis of a set that other axes
  share, or permuting one side of a residual link changes the output;
- complete and non-redundant: the parameter Jacobian's rank = orbit count = raw parameters;
- equal to the dense parameter-sharing reference `Basis.dense` for the same coefficients.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from spaces import (
    act,
    cnn_space,
    cnn_spaces,
    flat,
    general_spaces,
    joined,
    permute_axis,
    random_tensors,
    relative_gap,
    residual_space,
    residual_spaces,
    split,
    tied_space,
    tied_spaces,
)

from dws_theory.basis import enumerate_basis
from dws_theory.group import random_element
from dws_theory.runtime import layer_classes
from dws_theory.spec import WeightSpace
from dws_theory.testing import assert_complete, assert_equivariant

seeds = st.integers(0, 2**31 - 1)
channels = st.integers(1, 2)


def randomise(module: torch.nn.Module, gen: torch.Generator) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))


def layer64(space: WeightSpace, c_in: int, c_out: int, gen: torch.Generator):
    equivariant, _ = layer_classes(space)
    layer = equivariant(c_in, c_out).double()
    randomise(layer, gen)
    return layer


def apply(layer, space: WeightSpace, x):
    return joined(space, *layer(*split(space, x)))


def assert_close(a, b, rtol: float = 1e-10) -> None:
    assert a.keys() == b.keys()
    for k in b:
        x, y = a[k].detach(), b[k].detach()
        scale = max(1.0, float(y.abs().max()))
        assert float((x - y).abs().max()) <= rtol * scale, k


# -- equivariance: the project's own check (dws_theory.testing) ----------------------------------
@given(space=general_spaces(), seed=seeds, c_in=channels, c_out=channels)
def test_equivariant_under_random_group_elements(space, seed, c_in, c_out):
    equivariant, _ = layer_classes(space)
    assert_equivariant(equivariant(c_in, c_out), space, seed=seed, trials=1)


@given(space=general_spaces(), seed=seeds, c_in=channels)
def test_invariant_layer_is_invariant(space, seed, c_in):
    _, invariant = layer_classes(space)
    assert_equivariant(invariant(c_in, 3), space, seed=seed, trials=1)


# -- the dense reference ---------------------------------------------------------------------------
@given(space=general_spaces(), seed=seeds, c_in=channels, c_out=channels)
def test_layer_equals_dense_parameter_sharing_matrix(space, seed, c_in, c_out):
    basis = enumerate_basis(space)
    rng = np.random.default_rng(seed)
    theta = rng.standard_normal((basis.equivariant_linear, c_out, c_in))
    theta_bias = rng.standard_normal((basis.equivariant_bias, c_out))
    equivariant, _ = layer_classes(space)
    layer = equivariant(c_in, c_out).double()
    layer.load_theta(torch.from_numpy(theta), torch.from_numpy(theta_bias))
    x = random_tensors(space, 3, c_in, torch.Generator().manual_seed(seed))
    out = apply(layer, space, x)
    assert all(t.is_contiguous() for t in out.values())
    got = flat(space, out).detach().numpy()
    xs = flat(space, x).numpy()
    for o in range(c_out):
        want = np.repeat(basis.dense_bias(theta_bias[:, o])[None, :], 3, 0)
        for c in range(c_in):
            want = want + xs[:, c] @ basis.dense(theta[:, o, c]).T
        np.testing.assert_allclose(got[:, o], want, rtol=1e-10, atol=1e-10)


@given(space=general_spaces(), seed=seeds, c_in=channels)
def test_invariant_layer_equals_dense_invariant(space, seed, c_in):
    basis = enumerate_basis(space)
    _, invariant = layer_classes(space)
    layer = invariant(c_in, 2).double()
    rng = np.random.default_rng(seed)
    theta = rng.standard_normal((basis.invariant_linear, 2, c_in))
    bias = rng.standard_normal(2)
    layer.load_theta(torch.from_numpy(theta), torch.from_numpy(bias))
    x = random_tensors(space, 3, c_in, torch.Generator().manual_seed(seed))
    features = flat(space, x).numpy() @ basis.dense_invariant().T  # [B, c_in, invariant]
    want = np.einsum("eoc,bce->bo", theta, features) + bias
    np.testing.assert_allclose(
        layer(*split(space, x)).detach().numpy(), want, rtol=1e-10, atol=1e-10
    )


# -- complete and non-redundant --------------------------------------------------------------------
def rank_counts(space: WeightSpace, seed: int) -> tuple[int, int, int]:
    """(raw parameters, rank of the parameter Jacobian (`testing.assert_complete`), orbit
    count), one channel."""
    basis = enumerate_basis(space)
    layer = layer64(space, 1, 1, torch.Generator().manual_seed(seed))
    raw = sum(p.numel() for p in layer.parameters())
    rank = assert_complete(layer, space, seed=seed)
    return raw, rank, basis.equivariant_linear + basis.equivariant_bias


@given(space=st.one_of(cnn_spaces(max_kernel_axes=1), residual_spaces(), tied_spaces()), seed=seeds)
def test_parameter_jacobian_rank_equals_the_orbit_count(space, seed):
    assume(space.dimension <= 120)
    raw, rank, orbits = rank_counts(space, seed)
    assert raw == orbits  # nothing redundant ...
    assert rank == orbits  # ... and nothing missing


@pytest.mark.parametrize(
    "space",
    [
        cnn_space((1, 2, 2), ((3, 3), (2, 2)), 2, "hidden"),
        cnn_space((2, 3), ((2, 3),), 2, "all"),
        residual_space(2, 3, (2, 2), 1, "signed"),
        tied_space(2, 4, 2, "hidden"),
    ],
    ids=["cnn-3x3-2x2", "cnn-2x3-all", "residual-signed", "tied-4"],
)
def test_rank_on_two_dimensional_kernels_and_signed_links(space):
    raw, rank, orbits = rank_counts(space, 0)
    assert raw == orbits and rank == orbits


# -- not over-symmetric ----------------------------------------------------------------------------
def _non_identity(n: int, rng: np.random.Generator) -> np.ndarray:
    perm = rng.permutation(n)
    while n > 1 and np.all(perm == np.arange(n)):
        perm = rng.permutation(n)
    return perm


def _gap(space, layer, h) -> float:
    """|| L(h x) - h L(x) || / || h L(x) || for a random x."""
    x = random_tensors(space, 2, 1, torch.Generator().manual_seed(11))
    return relative_gap(apply(layer, space, h(x)), h(apply(layer, space, x)))


@given(space=cnn_spaces(), seed=seeds, data=st.data())
def test_moving_kernel_positions_is_detected(space, seed, data):
    """Permuting the kernel positions of one conv weight (input and output alike) is no group
    element: the kernel axes are fixed, each position its own parameter dimension."""
    axes = [
        (t.name, pos)
        for t in space.tensors
        for pos, a in enumerate(t.axes)
        if pos >= 2 and space.set(a).size >= 2
    ]
    assume(axes)
    name, pos = data.draw(st.sampled_from(axes))
    perm = _non_identity(space.shape(name)[pos], np.random.default_rng(seed))
    layer = layer64(space, 1, 1, torch.Generator().manual_seed(seed))
    assert _gap(space, layer, lambda x: permute_axis(x, name, pos, perm)) > 1e-6


def _shared_axes(space: WeightSpace) -> list[tuple[str, int]]:
    """(tensor, axis) on a moving set of width >= 2 whose values some basis pattern carries to
    another axis of that set (the same label on an input axis here and an output axis
    elsewhere): permuting it alone is then no group element, and that term sees it. Without
    such a pattern no equivariant layer can tell (in signed mode an axis can be isolated,
    as an MLP's interior weight is: every coupling would need an odd block)."""
    out = set()
    for p in enumerate_basis(space).linear:
        for pos, label in enumerate(p.in_labels):
            if p.role(label) != "keep" or space.set(p.set_of(label)).size < 2:
                continue
            targets = {(p.out, q) for q, x in enumerate(p.out_labels) if x == label}
            if targets - {(p.inp, pos)}:
                out.add((p.inp, pos))
    return sorted(out)


@given(space=general_spaces(), seed=seeds, data=st.data())
def test_permuting_one_axis_of_a_shared_set_is_detected(space, seed, data):
    """The rows of a weight without its bias, one side of a tied square weight, the stream
    axis of one tensor of a residual network: each is part of one set, so moving it alone
    changes L(h x) - h L(x)."""
    candidates = _shared_axes(space)
    assume(candidates)
    name, pos = data.draw(st.sampled_from(candidates))
    perm = _non_identity(space.shape(name)[pos], np.random.default_rng(seed))
    layer = layer64(space, 1, 1, torch.Generator().manual_seed(seed))
    assert _gap(space, layer, lambda x: permute_axis(x, name, pos, perm)) > 1e-6


@pytest.mark.parametrize("mode", ["hidden", "all", "signed"])
def test_permuting_one_side_of_a_residual_link_is_detected(mode):
    """The stream set s moved on the tensors before the first block (in_w, in_b) and the first
    block's input (f0_w1) but not on the rest: a permutation of s that only one side of the
    addition sees."""
    space = residual_space(2, 4, (3, 3), 2, mode)
    perm = _non_identity(4, np.random.default_rng(1))
    sides = (("in_w", 0), ("in_b", 0), ("f0_w1", 1))

    def h(x):
        for name, pos in sides:
            x = permute_axis(x, name, pos, perm)
        return x

    layer = layer64(space, 1, 1, torch.Generator().manual_seed(3))
    assert _gap(space, layer, h) > 1e-6
    # ... while the whole set moved together is a group element.
    g = random_element(space, np.random.default_rng(2))
    x = random_tensors(space, 2, 1, torch.Generator().manual_seed(4))
    assert_close(apply(layer, space, act(space, g, x)), act(space, g, apply(layer, space, x)))


@given(space=general_spaces(), c_in=st.integers(1, 4), c_out=st.integers(1, 4))
def test_parameter_count_is_the_basis_count(space, c_in, c_out):
    basis = enumerate_basis(space)
    equivariant, invariant = layer_classes(space)
    assert sum(p.numel() for p in equivariant(c_in, c_out).parameters()) == (
        basis.parameter_count(c_in, c_out)
    )
    assert sum(p.numel() for p in invariant(c_in, c_out).parameters()) == (
        basis.invariant_linear * c_in * c_out + c_out
    )


def test_shape_errors_name_the_tensor_and_its_axes():
    space = cnn_space((1, 3), ((3, 3),), 2, "hidden")
    equivariant, _ = layer_classes(space)
    layer = equivariant(1, 1)
    x = random_tensors(space, 2, 1, torch.Generator().manual_seed(0))
    weights, biases = split(space, x)
    bad = [weights[0][:, :, :, :, :2]] + weights[1:]
    with pytest.raises(
        ValueError, match=r"weights\[0\] must have shape \[B, C, c1, c0, k1_0, k1_1\]"
    ):
        layer([w.float() for w in bad], [b.float() for b in biases])
    with pytest.raises(ValueError, match="tensor conv1_w"):
        layer([w.float() for w in bad], [b.float() for b in biases])
    with pytest.raises(ValueError, match="expects 2 weight and 2 bias tensors"):
        layer(weights[:1], biases)


# -- op count --------------------------------------------------------------------------------------
def _ops(space: WeightSpace) -> int:
    from dws_theory.codegen import lower

    return len(lower(enumerate_basis(space)).equivariant_ops)


def test_op_count_grows_linearly_with_convs_and_residual_blocks():
    """A constant number of ops per conv layer (its kernel and bias) and per residual block
    (its four tensors): the ops never multiply over the T^2 blocks. What a residual block
    adds to the stream is width: the mix on the stream set reads one more feature per tensor
    on it (the basis grows quadratically there, the op count does not)."""
    cnn = [
        _ops(cnn_space((1,) + (4,) * depth, ((3, 3),) * depth, 3, "hidden"))
        for depth in range(1, 7)
    ]
    res = [_ops(residual_space(2, 4, (4,) * blocks, 1, "hidden")) for blocks in range(1, 7)]
    assert len({b - a for a, b in zip(cnn, cnn[1:], strict=False)}) == 1, cnn
    assert len({b - a for a, b in zip(res, res[1:], strict=False)}) == 1, res
    assert res[-1] < 4 * 28  # 28 tensors at 6 blocks: far below one op per block (784)
