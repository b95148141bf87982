"""The emitted layers: equivariant, not over-symmetric, complete, equal to the dense reference.

Every check runs the code that `dws-theory generate` writes (built in memory by
`runtime.layer_classes`, or imported from generated/ by file path), in float64, with random
parameters (not the initialisation) and fresh random inputs per example.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_close, flat, random_inputs, randomise
from hypothesis import assume, given
from hypothesis import strategies as st
from strategies import mlp_dims, modes

from dws_theory.aliases import Tensors
from dws_theory.basis import enumerate_basis
from dws_theory.codegen import checked_in_modules, module_name
from dws_theory.runtime import layer_classes
from dws_theory.spec import mlp
from dws_theory.testing import assert_complete, assert_equivariant, assert_not_over_symmetric

GENERATED = Path(__file__).resolve().parents[2] / "generated"


def layer64(dims: Sequence[int], mode: str, c_in: int, c_out: int, gen: torch.Generator):
    equivariant, _ = layer_classes(dims, mode)
    layer = equivariant(c_in, c_out).double()
    randomise(layer, gen)
    return layer


seeds = st.integers(0, 2**31 - 1)
channels = st.integers(1, 3)


# -- equivariance and invariance: the project's own checks (dws_theory.testing) --------------------
@given(dims=mlp_dims(), mode=modes, seed=seeds, c_in=channels, c_out=channels)
def test_equivariant_layer_commutes_with_random_group_elements(dims, mode, seed, c_in, c_out):
    equivariant, _ = layer_classes(dims, mode)
    assert_equivariant(equivariant(c_in, c_out), mlp(dims, mode), seed=seed, trials=1)


@given(dims=mlp_dims(), mode=modes, seed=seeds, c_in=channels)
def test_invariant_layer_is_invariant(dims, mode, seed, c_in):
    _, invariant = layer_classes(dims, mode)
    assert_equivariant(invariant(c_in, 3), mlp(dims, mode), seed=seed, trials=1)


# -- not over-symmetric: what the theory says each layer must tell apart ---------------------------
def _alone(k: int, axis: int, set_name: str) -> str:
    """`testing.outside_transformations`' description of one axis of W_k moved alone."""
    return f"axis {axis} of W{k} (set {set_name}) permuted alone"


@given(dims=mlp_dims(), mode=modes, seed=seeds)
def test_permuting_rows_of_one_weight_alone_is_detected(dims, mode, seed):
    """Rows of W_k permuted without b_k and the columns of W_{k+1}: not a group element, so
    the layer must not commute with it, for every k where the theory says it can tell.

    In `signed` mode a W_k between two signed sets couples only to itself (every other block
    has an odd block on a signed set), so only W_1 and W_M can tell; in the other modes
    W_k <- b_k (rows kept, columns broadcast or dense) always exists."""
    depth = len(dims) - 1
    layers = range(1, depth + 1) if mode != "signed" else sorted({1, depth})
    expected = {_alone(k, 0, f"n{k}") for k in layers if dims[k] >= 2}
    assume(expected)
    layer = layer64(dims, mode, 1, 1, torch.Generator().manual_seed(seed))
    checked = assert_not_over_symmetric(layer, mlp(dims, mode), seed=seed)
    assert expected <= set(checked), "the complete layer tells every one of them apart"


@given(dims=mlp_dims(min_width=2), seed=seeds)
def test_hidden_mode_sees_input_coordinates(dims, seed):
    """Input coordinates (columns of W1, the fixed set n0) are not interchangeable."""
    layer = layer64(dims, "hidden", 1, 1, torch.Generator().manual_seed(seed))
    checked = assert_not_over_symmetric(layer, mlp(dims, "hidden"), seed=seed)
    assert "fixed set n0 permuted" in checked


# -- complete: the Jacobian with respect to the parameters has full rank ---------------------------
def test_parameter_jacobian_rank_equals_the_orbit_count_on_a_dense_example():
    """Fixed sets of width 3 at both ends: dense parameter blocks, the hardest case for rank."""
    raw, rank, orbits = _rank_counts((3, 2, 3), "hidden", 0)
    assert raw == orbits and rank == orbits


@given(dims=mlp_dims(max_depth=4), mode=modes, seed=seeds)
def test_parameter_jacobian_rank_equals_the_orbit_count(dims, mode, seed):
    raw, rank, orbits = _rank_counts(dims, mode, seed)
    assert raw == orbits  # nothing redundant ...
    assert rank == orbits  # ... and nothing missing


def _rank_counts(dims, mode, seed) -> tuple[int, int, int]:
    """(raw parameters, rank of the parameter Jacobian (`testing.assert_complete`), orbit
    count), one channel in and out."""
    basis = enumerate_basis(mlp(dims, mode))
    layer = layer64(dims, mode, 1, 1, torch.Generator().manual_seed(seed))
    raw = sum(p.numel() for p in layer.parameters())
    rank = assert_complete(layer, mlp(dims, mode), seed=seed)
    return raw, rank, basis.equivariant_linear + basis.equivariant_bias


# Wider than the strategies draw (widths up to 4), like the odd shapes users bring: in every mode
# the layer commutes with several random group elements, is complete and non-redundant, and is
# not invariant to the rows of W1 moved alone (in `signed` mode too: W1 can always tell).
WIDE_SHAPES = [(5, 7, 3), (10, 3, 10), (2, 6, 1, 6, 2), (4, 5, 6, 7, 3)]


@pytest.mark.parametrize("mode", ["hidden", "all", "signed"])
@pytest.mark.parametrize("dims", WIDE_SHAPES)
def test_wide_odd_shapes_are_equivariant_complete_and_not_over_symmetric(dims, mode):
    space = mlp(dims, mode)
    layer = layer64(dims, mode, 2, 3, torch.Generator().manual_seed(7))
    assert_equivariant(layer, space, seed=7, trials=3)
    assert _alone(1, 0, "n1") in assert_not_over_symmetric(layer, space, seed=7)
    raw, rank, orbits = _rank_counts(dims, mode, 7)
    assert raw == orbits and rank == orbits


@pytest.mark.parametrize("dims", [(2, 3, 6, 5), (1, 8, 4, 7, 7, 3), (4, 2, 6, 1)])
def test_signed_mode_interior_weights_are_isolated_blocks(dims):
    """Why the over-symmetry check moves only W1 in `signed` mode: an interior W_k (both axes
    hidden) has sign s_i s_j, which no other entry and no pooled sum carries, so the only
    equivariant term touching it is W_k <- W_k itself. Every equivariant layer, complete or
    not, then commutes with permuting the rows of W_k alone; the rank test above shows ours
    is complete. Checked here on the emitted layer: nothing else reads W_k, and W_k's output
    is one scalar times W_k."""
    gen = torch.Generator().manual_seed(0)
    layer = layer64(dims, "signed", 1, 1, gen)
    weights, biases = random_inputs(dims, 2, 1, gen)
    for k in range(2, len(dims) - 1):
        w_k = weights[k - 1].clone().requires_grad_(True)
        ws = weights[: k - 1] + [w_k] + weights[k:]
        out_w, out_b = layer(ws, biases)
        others = [o for m, o in enumerate(out_w) if m != k - 1] + list(out_b)
        for o in others:
            (grad,) = torch.autograd.grad(o.sum(), w_k, retain_graph=True, allow_unused=True)
            assert grad is None or float(grad.abs().max()) == 0.0
        ratio = (out_w[k - 1] / weights[k - 1]).detach()
        assert float(ratio.max() - ratio.min()) < 1e-12 and float(ratio.abs().max()) > 0


# -- differential: the dense reference -------------------------------------------------------------
@given(dims=mlp_dims(max_depth=4), mode=modes, seed=seeds, c_in=channels, c_out=channels)
def test_layer_equals_dense_parameter_sharing_matrix(dims, mode, seed, c_in, c_out):
    basis = enumerate_basis(mlp(dims, mode))
    rng = np.random.default_rng(seed)
    theta = rng.standard_normal((basis.equivariant_linear, c_out, c_in))
    theta_bias = rng.standard_normal((basis.equivariant_bias, c_out))
    equivariant, _ = layer_classes(dims, mode)
    layer = equivariant(c_in, c_out).double()
    layer.load_theta(torch.from_numpy(theta), torch.from_numpy(theta_bias))
    x = random_inputs(dims, 3, c_in, torch.Generator().manual_seed(seed))
    got = flat(*layer(*x)).detach().numpy()  # [B, c_out, P]
    xs = flat(*x).numpy()  # [B, c_in, P]
    for o in range(c_out):
        want = basis.dense_bias(theta_bias[:, o])[None, :].repeat(3, 0)
        for c in range(c_in):
            want = want + xs[:, c] @ basis.dense(theta[:, o, c]).T
        np.testing.assert_allclose(got[:, o], want, rtol=1e-10, atol=1e-10)


@given(dims=mlp_dims(max_depth=4), mode=modes, seed=seeds)
def test_one_channel_theta_vector_matches_dense(dims, mode, seed):
    basis = enumerate_basis(mlp(dims, mode))
    rng = np.random.default_rng(seed)
    theta = rng.standard_normal(basis.equivariant_linear)
    theta_bias = rng.standard_normal(basis.equivariant_bias)
    equivariant, _ = layer_classes(dims, mode)
    layer = equivariant(1, 1).double()
    layer.load_theta(theta, theta_bias)
    x = random_inputs(dims, 2, 1, torch.Generator().manual_seed(seed))
    got = flat(*layer(*x)).detach().numpy()[:, 0]
    want = flat(*x).numpy()[:, 0] @ basis.dense(theta).T + basis.dense_bias(theta_bias)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


@given(dims=mlp_dims(max_depth=4), mode=modes, seed=seeds, c_in=channels)
def test_invariant_layer_equals_dense_invariant(dims, mode, seed, c_in):
    basis = enumerate_basis(mlp(dims, mode))
    _, invariant = layer_classes(dims, mode)
    layer = invariant(c_in, 2).double()
    rng = np.random.default_rng(seed)
    theta = rng.standard_normal((basis.invariant_linear, 2, c_in))
    bias = rng.standard_normal(2)
    layer.load_theta(torch.from_numpy(theta), torch.from_numpy(bias))
    x = random_inputs(dims, 3, c_in, torch.Generator().manual_seed(seed))
    features = flat(*x).numpy() @ basis.dense_invariant().T  # [B, c_in, invariant]
    np.testing.assert_allclose(
        layer.features(*x).detach().numpy(),
        features.transpose(0, 2, 1).reshape(3, -1)[:, _feature_order(basis, c_in)],
        rtol=1e-10,
        atol=1e-12,
    )
    want = np.einsum("eoc,bce->bo", theta, features) + bias
    np.testing.assert_allclose(layer(*x).detach().numpy(), want, rtol=1e-10, atol=1e-10)


def _feature_order(basis, c_in: int) -> list[int]:
    """Column order of InvariantLayer.features: per pattern, channel-major over its elements.

    From [element, channel] (element-major) to the layer's [pattern, channel, element-in-
    pattern] order, computed from the pattern multiplicities alone."""
    order, start = [], 0
    for p in basis.invariant:
        n = p.multiplicity(basis.space)
        order += [(start + e) * c_in + c for c in range(c_in) for e in range(n)]
        start += n
    return order


@given(dims=mlp_dims(), mode=modes, c_in=st.integers(1, 5), c_out=st.integers(1, 5))
def test_parameter_count_is_the_basis_count(dims, mode, c_in, c_out):
    basis = enumerate_basis(mlp(dims, mode))
    equivariant, invariant = layer_classes(dims, mode)
    assert sum(p.numel() for p in equivariant(c_in, c_out).parameters()) == (
        basis.parameter_count(c_in, c_out)
    )
    assert sum(p.numel() for p in invariant(c_in, c_out).parameters()) == (
        basis.invariant_linear * c_in * c_out + c_out
    )


# -- gradients, compilation, devices ---------------------------------------------------------------
@pytest.mark.parametrize("mode", ["hidden", "all", "signed"])
def test_gradcheck_float64(mode):
    """First and second derivatives; 2-3-3-1 has a middle W2, so hidden and all modes run
    the hand-written backward of the fused identity GEMM (_MixAdd)."""
    dims = (2, 3, 3, 1)
    gen = torch.Generator().manual_seed(0)
    layer = layer64(dims, mode, 2, 2, gen)
    weights, biases = random_inputs(dims, 2, 2, gen)
    inputs = [t.requires_grad_() for t in weights + biases] + list(layer.parameters())
    names = [name for name, _ in layer.named_parameters()]

    def fn(*args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        depth = len(dims) - 1
        ws, bs, ps = args[:depth], args[depth : 2 * depth], args[2 * depth :]
        out = torch.func.functional_call(layer, dict(zip(names, ps, strict=True)), (ws, bs))
        return tuple(out[0] + out[1])

    assert torch.autograd.gradcheck(fn, tuple(inputs))
    assert torch.autograd.gradgradcheck(fn, tuple(inputs))


def test_outputs_may_be_modified_in_place():
    """Every output, the fused identity GEMM's (_MixAdd) included, is a fresh tensor that a
    following in-place op (ReLU) may overwrite: the gradients equal those of the
    out-of-place op."""
    dims = (2, 3, 3, 1)
    gen = torch.Generator().manual_seed(3)
    layer = layer64(dims, "hidden", 2, 2, gen)
    weights, biases = random_inputs(dims, 2, 2, gen)
    grads = []
    for inplace in (False, True):
        leaves = [t.clone().requires_grad_() for t in weights + biases]
        out_w, out_b = layer(leaves[:3], leaves[3:])
        outs = [t.relu_() if inplace else t.relu() for t in out_w + out_b]
        loss = sum((t * (k + 1)).sum() for k, t in enumerate(outs))
        grads.append(torch.autograd.grad(loss, leaves + list(layer.parameters())))
    assert any(g.abs().sum() > 0 for g in grads[0])
    for got, want in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("mode", ["hidden", "all"])
def test_torch_func_vmap_over_inputs_and_over_parameters(mode):
    """vmap over a stack of inputs, and over a stack of parameter sets (an ensemble)."""
    dims = (2, 3, 4, 2)
    gen = torch.Generator().manual_seed(5)
    layer = layer64(dims, mode, 2, 2, gen)
    stack = [random_inputs(dims, 3, 2, gen) for _ in range(4)]
    ws = [torch.stack([x[0][m] for x in stack]) for m in range(3)]
    bs = [torch.stack([x[1][m] for x in stack]) for m in range(3)]
    mapped = torch.func.vmap(layer)(ws, bs)
    for i, x in enumerate(stack):
        one = layer(*x)
        assert_close([t[i] for t in mapped[0] + mapped[1]], one[0] + one[1])
    params = {
        n: torch.randn((4, *p.shape), generator=gen, dtype=p.dtype)
        for n, p in layer.named_parameters()
    }
    ensemble = torch.func.vmap(lambda p: torch.func.functional_call(layer, p, stack[0]))(params)
    for i in range(4):
        one = torch.func.functional_call(layer, {n: p[i] for n, p in params.items()}, stack[0])
        assert_close([t[i] for t in ensemble[0] + ensemble[1]], one[0] + one[1])


def _grads(layer, weights, biases, compiled=None) -> Tensors:
    """Gradients of a fixed scalar of the outputs w.r.t. the inputs and every parameter."""
    leaves = [t.clone().requires_grad_() for t in weights + biases]
    out = (layer if compiled is None else compiled)(leaves[: len(weights)], leaves[len(weights) :])
    scale = torch.Generator().manual_seed(5)
    loss = sum((t * torch.randn(t.shape, generator=scale)).sum() for t in out[0] + out[1])
    return list(torch.autograd.grad(loss, leaves + list(layer.parameters())))


COMPILE_DIMS = (2, 3, 3, 1)  # a shape whose plan fuses an identity GEMM (`_mix_add`)


def _compiled_and_eager(backend: str) -> tuple[Tensors, Tensors]:
    """(compiled, eager): outputs, then the gradients w.r.t. the inputs and every parameter.
    The fused identity GEMM is the `_MixAdd` Function in eager mode and plain ops compiled."""
    equivariant, _ = layer_classes(COMPILE_DIMS, "hidden")
    torch.manual_seed(0)
    layer = equivariant(2, 3)
    weights, biases = random_inputs(COMPILE_DIMS, 4, 2, torch.Generator().manual_seed(1))
    weights, biases = [w.float() for w in weights], [b.float() for b in biases]
    compiled = torch.compile(layer, backend=backend, fullgraph=True)  # fullgraph: no breaks
    got, want = compiled(weights, biases), layer(weights, biases)
    return (
        got[0] + got[1] + _grads(layer, weights, biases, compiled),
        want[0] + want[1] + _grads(layer, weights, biases),
    )


def _fuses_an_identity_gemm() -> bool:
    equivariant, _ = layer_classes(COMPILE_DIMS, "hidden")
    return "_mix_add(" in inspect.getsource(equivariant.forward)


def test_torch_compile_traces_one_graph_with_autograd():
    assert _fuses_an_identity_gemm()  # the path that differs under compilation is exercised
    compiled, eager = _compiled_and_eager("aot_eager")
    assert len(compiled) == len(eager)
    assert_close(compiled, eager, rtol=1e-5)


@pytest.mark.slow
def test_torch_compile_inductor():
    assert _fuses_an_identity_gemm()
    compiled, eager = _compiled_and_eager("inductor")
    assert len(compiled) == len(eager)
    assert_close(compiled, eager, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; none here")
def test_cuda_matches_cpu():
    dims = (2, 8, 8, 1)
    gen = torch.Generator().manual_seed(2)
    layer = layer64(dims, "hidden", 3, 4, gen)
    x = random_inputs(dims, 5, 3, gen)
    want = layer(*x)
    got = layer.cuda()(*([t.cuda() for t in part] for part in x))
    assert_close([t.cpu() for t in got[0] + got[1]], want[0] + want[1])


# -- shapes and errors -----------------------------------------------------------------------------
def test_shape_errors_name_the_expected_shape():
    equivariant, invariant = layer_classes((2, 4, 1), "hidden")
    layer = equivariant(3, 5)
    weights = [torch.zeros(7, 3, 4, 2), torch.zeros(7, 3, 1, 4)]
    biases = [torch.zeros(7, 3, 4), torch.zeros(7, 3, 1)]
    out_w, out_b = layer(weights, biases)
    assert [tuple(t.shape) for t in out_w] == [(7, 5, 4, 2), (7, 5, 1, 4)]
    assert [tuple(t.shape) for t in out_b] == [(7, 5, 4), (7, 5, 1)]
    assert tuple(invariant(3, 6)(weights, biases).shape) == (7, 6)
    with pytest.raises(ValueError, match=r"weights\[0\] must have shape \[B, C, d_1, d_0\]"):
        layer([torch.zeros(7, 3, 2, 4), weights[1]], biases)
    with pytest.raises(ValueError, match=r"\[7, 3, 4\]"):
        layer(weights, [torch.zeros(7, 2, 4), biases[1]])
    with pytest.raises(ValueError, match="expects 2 weight and 2 bias tensors"):
        layer(weights[:1], biases[:1])
    with pytest.raises(ValueError, match="theta_linear needs shape"):
        layer.load_theta(torch.zeros(3), torch.zeros(3))


def test_output_layout_is_contiguous():
    """Outputs are plain contiguous tensors (a fixed axis after a kept one is transposed back)."""
    equivariant, _ = layer_classes((3, 4, 4, 2), "hidden")
    out = equivariant(2, 2).double()(*random_inputs((3, 4, 4, 2), 2, 2, torch.Generator()))
    assert all(t.is_contiguous() for t in out[0] + out[1])


# -- checked-in modules import standalone ----------------------------------------------------------
def _import_by_path(path: Path):
    spec = importlib.util.spec_from_file_location(f"_standalone_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("dims,mode", checked_in_modules())
def test_checked_in_module_imports_standalone_and_matches_runtime(dims, mode):
    path = GENERATED / f"{module_name(dims, mode)}.py"
    before = set(sys.modules)
    module = _import_by_path(path)
    new = {name.split(".")[0] for name in set(sys.modules) - before}
    assert "dws_theory" not in new
    assert tuple(dims) == module.DIMS
    assert mode == module.MODE
    gen = torch.Generator().manual_seed(3)
    standalone = module.EquivariantLayer(2, 2).double()
    randomise(standalone, gen)
    runtime = layer_classes(dims, mode)[0](2, 2).double()
    runtime.load_state_dict(standalone.state_dict())
    x = random_inputs(dims, 2, 2, gen)
    a, b = standalone(*x), runtime(*x)
    assert_close(a[0] + a[1], b[0] + b[1], rtol=0.0)


# -- initialisation --------------------------------------------------------------------------------
def init_variance_ratio(dims: Sequence[int], mode: str, channels: int = 16, batch: int = 64):
    """Var(output) / Var(input) of a freshly initialised layer on i.i.d. N(0, 1) inputs."""
    torch.manual_seed(0)
    equivariant, _ = layer_classes(dims, mode)
    layer = equivariant(channels, channels)
    weights, biases = random_inputs(dims, batch, channels, torch.Generator().manual_seed(0))
    x = flat(weights, biases).float()
    with torch.no_grad():
        y = flat(*layer([w.float() for w in weights], [b.float() for b in biases]))
    return float(y.var() / x.var())


@pytest.mark.parametrize("mode", ["hidden", "all", "signed"])
def test_initialisation_keeps_the_variance(mode):
    assert 0.5 < init_variance_ratio((2, 32, 32, 1), mode) < 2.0
