"""The `fused` backend against the eager reference.

A fused module is the compiled module plus C kernels for each tensor's identity term (one
channel mix plus its broadcast terms), behind torch custom ops. These tests check each op
against plain PyTorch (values in float32 and float64, gradcheck in float64, shapes the
kernels' vector tiles do not divide), the layer against the eager layer (with inductor, so
that the graph passes run, and that they did), and the fallbacks: no C compiler, a compiler
without OpenMP or native code, inputs the kernels do not take, double backward, torch.func.
"""

from __future__ import annotations

import os
import stat
import types
import warnings

import pytest
import torch
from torch.profiler import profile

from dws_theory.codegen.files import source_for
from dws_theory.models import DWSNet
from dws_theory.runtime import layer_classes
from dws_theory.spec import mlp

DIMS = (2, 3, 3, 1)  # a plan whose W2 has a fused identity term
WIDE = (2, 20, 33, 1)  # W2 [33, 20]: columns not a multiple of a vector, rows not of 8


def fresh() -> types.ModuleType:
    """The module `generate --backend fused` writes, executed in a new namespace."""
    module = types.ModuleType("fresh_fused")
    code = compile(source_for(DIMS, "hidden", "fused"), module.__name__, "exec")
    exec(code, module.__dict__)
    return module


@pytest.fixture(scope="module")
def ops():
    module = fresh()
    assert module._fused_ready(torch.float32), module._FUSED_STATE.get("failed")
    assert module._fused_ready(torch.float64)
    return torch.ops.dws_fused_v1


def reference(weight, x, terms):
    y = torch.einsum("ok,bk...->bo...", weight.double(), x.double())
    return sum((t.double() for t in terms), y)


CASES = [  # x shape, c_out, term shapes (broadcast to [B, O, *S])
    ((3, 5, 7, 9), 3, [(3, 3, 7, 1), (3, 3, 1, 9)]),
    ((2, 16, 32, 32), 16, [(2, 16, 1, 32), (2, 16, 32, 1)]),
    ((2, 9, 4, 33), 17, [(1, 17, 1, 1), (2, 17, 4, 33)]),  # a full-size term
    ((2, 4, 5, 6), 8, [(8, 5, 6), (2, 8, 5, 1)]),  # no batch axis on one
    ((3, 4, 17), 5, [(3, 5, 1), (5, 17)]),  # one position axis
    ((0, 4, 3, 3), 2, [(0, 2, 3, 1), (0, 2, 1, 3)]),  # no samples
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape, c_out, terms", CASES)
def test_mix_terms_matches_plain_torch(ops, shape, c_out, terms, dtype):
    gen = torch.Generator().manual_seed(len(shape) + c_out)
    x = torch.randn(shape, generator=gen, dtype=dtype)
    weight = torch.randn(c_out, shape[1], generator=gen, dtype=dtype)
    ts = [torch.randn(s, generator=gen, dtype=dtype) for s in terms]
    got = ops.mix_terms(weight, x, ts)
    want = reference(weight, x, ts)
    assert got.shape == want.shape and got.dtype == dtype
    tol = {"rtol": 1e-5, "atol": 1e-4} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}
    torch.testing.assert_close(got.double(), want, **tol)
    # the transposed mix, with terms broadcast along the last axis but one: the gradient of
    # x with its pools' gradients
    grad = torch.randn(want.shape, generator=gen, dtype=dtype)
    pooled = torch.randn((*shape[:-2], 1, shape[-1]), generator=gen, dtype=dtype)
    got_x = ops.mix_input_grad(weight, grad, [pooled, x])
    torch.testing.assert_close(got_x.double(), reference(weight.t(), grad, [pooled, x]), **tol)


GRADCHECK = [  # small: x shape, c_out, term shapes
    ((2, 3, 4, 5), 2, [(2, 2, 4, 1), (2, 2, 1, 5)]),
    ((2, 3, 2, 3), 4, [(1, 4, 1, 1), (2, 4, 2, 3)]),
    ((2, 2, 5), 3, [(2, 3, 1), (3, 5)]),
]


@pytest.mark.parametrize("shape, c_out, terms", GRADCHECK)
def test_mix_terms_gradcheck(ops, shape, c_out, terms):
    gen = torch.Generator().manual_seed(3)

    def leaf(s) -> torch.Tensor:
        return torch.randn(s, generator=gen, dtype=torch.float64).requires_grad_()

    x, weight, ts = leaf(shape), leaf((c_out, shape[1])), [leaf(s) for s in terms]
    assert torch.autograd.gradcheck(lambda w, x, *t: ops.mix_terms(w, x, list(t)), (weight, x, *ts))


def test_mix_backward_matches_autograd_and_skips_what_is_not_asked(ops):
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(3, 6, 5, 33, generator=gen, dtype=torch.float64)
    weight = torch.randn(7, 6, generator=gen, dtype=torch.float64)
    grad = torch.randn(3, 7, 5, 33, generator=gen, dtype=torch.float64)
    grad_x, grad_w, rows, cols = ops.mix_backward(weight, x, grad, True, True, True)
    torch.testing.assert_close(grad_x, torch.einsum("ok,bo...->bk...", weight, grad))
    torch.testing.assert_close(grad_w, torch.einsum("bo...,bk...->ok", grad, x))
    torch.testing.assert_close(rows, grad.sum(3))
    torch.testing.assert_close(cols, grad.sum(2))
    grad_x, grad_w2, rows, cols = ops.mix_backward(weight, x, grad, False, False, False)
    assert grad_x.numel() == rows.numel() == cols.numel() == 0
    torch.testing.assert_close(grad_w2, grad_w)


@pytest.mark.parametrize("shape", [(3, 4, 7, 33), (2, 3, 32, 32), (1, 2, 1, 5)])
def test_plane_sums_are_the_two_pools(ops, shape):
    x = torch.randn(shape)
    rows, cols = ops.plane_sums(x)
    torch.testing.assert_close(rows, x.sum(3), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cols, x.sum(2), rtol=1e-5, atol=1e-5)


def test_double_backward_through_a_fused_term_raises(ops):
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    weight = torch.randn(3, 3, requires_grad=True)
    y = ops.mix_terms(weight, x, [torch.zeros(1, 3, 1, 1)])
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(y.square().sum(), x, create_graph=True)


def inputs(dims, batch, channels, seed, dtype=torch.float32):
    space = mlp(dims, "hidden")
    gen = torch.Generator().manual_seed(seed)

    def draw(name: str) -> torch.Tensor:
        return torch.randn(batch, channels, *space.shape(name), generator=gen, dtype=dtype)

    return [draw(t.name) for t in space.tensors if len(t.axes) == 2], [
        draw(t.name) for t in space.tensors if len(t.axes) == 1
    ]


def outputs_and_grads(layer, weights, biases):
    leaves = [t.clone().requires_grad_() for t in weights + biases]
    out = layer(leaves[: len(weights)], leaves[len(weights) :])
    flat = list(out[0]) + list(out[1])
    gen = torch.Generator().manual_seed(7)
    loss = sum((t * torch.randn(t.shape, generator=gen, dtype=t.dtype)).sum() for t in flat)
    grads = torch.autograd.grad(loss, leaves + list(layer.parameters()))
    return [t.detach() for t in flat] + list(grads)


def fused_and_eager(dims, c_in=3, c_out=4):
    fused_cls, _ = layer_classes(dims, "hidden", backend="fused")
    eager_cls, _ = layer_classes(dims, "hidden")
    torch.manual_seed(0)
    fused = fused_cls(c_in, c_out)
    eager = eager_cls(c_in, c_out)
    eager.load_state_dict(fused.state_dict())  # the eager module's parameters and names
    return fused, eager


@pytest.mark.slow
@pytest.mark.parametrize("dims", [DIMS, WIDE], ids=["2,3,3,1", "2,20,33,1"])
def test_fused_layer_with_inductor_matches_eager_and_runs_the_kernels(dims):
    fused, eager = fused_and_eager(dims)
    x = inputs(dims, 5, 3, seed=1)
    with profile() as prof:
        got = outputs_and_grads(fused, *x)
    want = outputs_and_grads(eager, *x)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)
    ran = {e.name for e in prof.events()}
    # The identity term forward and backward; the graph passes' two ops.
    for op in ("mix_terms", "mix_backward", "plane_sums", "mix_input_grad"):
        assert f"dws_fused_v1::{op}" in ran, op
    state = fused.forward.compile_state
    assert "compiled" in state and "failed" not in state


def test_fused_layer_under_aot_eager_matches_eager_in_float64(monkeypatch):
    """Without inductor (no graph passes): the custom ops inside a compiled graph."""
    module = fresh()
    monkeypatch.setattr(module, "COMPILE_BACKEND", "aot_eager")
    torch.manual_seed(0)
    fused = module.EquivariantLayer(2, 3).double()
    eager_cls, _ = layer_classes(DIMS, "hidden")
    eager = eager_cls(2, 3).double()
    eager.load_state_dict(fused.state_dict())
    x = inputs(DIMS, 4, 2, seed=2, dtype=torch.float64)
    with profile() as prof:
        got = outputs_and_grads(fused, *x)
    for g, w in zip(got, outputs_and_grads(eager, *x), strict=True):
        torch.testing.assert_close(g, w)
    assert "dws_fused_v1::mix_terms" in {e.name for e in prof.events()}


def fake_compiler(tmp_path, refuse: tuple[str, ...]) -> str:
    """A `cc` that fails on any of the flags `refuse`, else runs the real one."""
    script = tmp_path / "cc"
    checks = "".join(f'  [ "$a" = "{flag}" ] && exit 1\n' for flag in refuse)
    script.write_text(f'#!/bin/sh\nfor a in "$@"; do\n{checks}done\nexec cc "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_kernels_build_without_openmp_or_native_code(tmp_path, monkeypatch):
    if os.name != "posix":
        pytest.skip("the fake compiler is a POSIX shell script")
    module = fresh()
    monkeypatch.setenv("CC", fake_compiler(tmp_path, ("-fopenmp", "-march=native")))
    monkeypatch.setenv("DWS_FUSED_CACHE", str(tmp_path / "cache"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fallback would warn
        assert module._fused_ready(torch.float64)
    lib = module._FUSED_STATE["torch.float64"]
    assert lib.dws_threads(4) == 1  # no OpenMP: one thread
    built = list((tmp_path / "cache").glob("dws_fused_f64_*.so"))
    assert len(built) == 1
    # The kernels of this library (not the first module's) against plain torch.
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(3, 5, 4, 21, generator=gen, dtype=torch.float64)
    weight = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    monkeypatch.setitem(module._FUSED_STATE, "torch.float64", lib)
    terms = [torch.randn(3, 6, 4, 1, generator=gen, dtype=torch.float64)]
    torch.testing.assert_close(module._mix_terms(weight, x, terms), reference(weight, x, terms))


def test_no_c_compiler_warns_once_and_runs_the_plain_ops(tmp_path, monkeypatch):
    module = fresh()
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("DWS_FUSED_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(module, "COMPILE_BACKEND", "aot_eager")
    with pytest.warns(RuntimeWarning, match="backend 'fused': cannot run the C compiler"):
        fused = module.EquivariantLayer(2, 3)  # the kernels are built at construction
    eager_cls, _ = layer_classes(DIMS, "hidden")
    eager = eager_cls(2, 3)
    eager.load_state_dict(fused.state_dict())
    x = inputs(DIMS, 3, 2, seed=6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module.EquivariantLayer(2, 3)
        got = outputs_and_grads(fused, *x)
    assert "failed" in module._FUSED_STATE
    assert not [w for w in caught if "fused" in str(w.message)]  # warned once, before
    for g, w in zip(got, outputs_and_grads(eager, *x), strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)


def test_vmap_and_inputs_the_kernels_do_not_take_run_the_eager_terms():
    module = fresh()
    weight, x = torch.randn(3, 2), torch.randn(4, 2, 3, 3)
    a, b = torch.randn(4, 3, 3, 1), torch.randn(4, 3, 1, 3)
    assert module._fused_takes(weight, x, a, b)
    assert not module._fused_takes(weight.half(), x.half(), a.half(), b.half())
    assert not module._fused_takes(weight, x[:, :, :, :, None], a, b)  # three position axes
    assert not module._fused_takes(weight, x, 1.0, b)
    # Under vmap the eager term runs, and maps like it.
    got = torch.func.vmap(module._mix_add, in_dims=(None, 0, 0, 0))(
        weight, x[None], a[None], b[None]
    )
    torch.testing.assert_close(got[0], reference(weight, x, [a, b]).float(), rtol=1e-5, atol=1e-5)


def test_dwsnet_backend_fused_matches_eager(monkeypatch):
    from dws_theory import models
    from dws_theory.codegen.preludes import compiled as compiled_prelude

    monkeypatch.setattr(compiled_prelude, "COMPILE_BACKEND", "aot_eager")
    monkeypatch.setattr(models, "_COMPILED", {})
    torch.manual_seed(0)
    fused = DWSNet(DIMS, hidden_channels=4, num_layers=2, out_features=3, backend="fused")
    eager = DWSNet(DIMS, hidden_channels=4, num_layers=2, out_features=3)
    eager.load_state_dict(fused.state_dict())
    x = inputs(DIMS, 3, 1, seed=8)
    got, want = fused(*x), eager(*x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert (DWSNet, "fused", False) in models._COMPILED
