"""The `triton` backend against plain PyTorch and the eager reference, without a GPU.

A triton module is the compiled module plus Triton kernels for each tensor's identity term
(one channel mix plus its broadcast terms) and for a tensor's two pools, behind torch custom
ops. Here Triton's interpreter (`TRITON_INTERPRET=1`, which tests/conftest.py sets before
Triton is imported, on machines without CUDA) runs them on CPU tensors: each op against
plain torch (float32, and the 16-bit dtypes to their precision, on shapes the tiles do not
divide), the layer against the eager layer in values and input and parameter gradients
(under aot_eager, and with inductor so that the graph passes run, and that they did),
`DWSNet(backend="triton")`, and the fallbacks: no CUDA device, no Triton, inputs the kernels
do not take, double backward, torch.func. tests/codegen/test_cuda.py runs the same layers on
a CUDA device where there is one. Skipped, and said so, where the `triton` package is not
installed (the `test` extras install it) or the interpreter is off (a CUDA machine)."""

from __future__ import annotations

import os
import sys
import types
import warnings

import pytest
import torch
from torch.profiler import profile

from dws_theory.codegen.files import source_for
from dws_theory.models import DWSNet
from dws_theory.runtime import layer_classes
from dws_theory.spec import mlp

pytest.importorskip("triton", reason="the triton package is not installed (pip install triton)")
pytestmark = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1",
    reason="Triton's interpreter is off (tests/conftest.py sets it only where torch sees no "
    "CUDA device; there tests/codegen/test_cuda.py runs the kernels)",
)

DIMS = (2, 3, 3, 1)  # a plan whose W2 has a fused identity term
WIDE = (2, 20, 33, 1)  # W2 [33, 20]: positions not a multiple of a tile, rows odd
NAMESPACE = "dws_triton_v1"


def fresh(name: str = "fresh_triton") -> types.ModuleType:
    """The module `generate --backend triton` writes, executed in a new namespace."""
    module = types.ModuleType(name)
    code = compile(source_for(DIMS, "hidden", "triton"), module.__name__, "exec")
    exec(code, module.__dict__)
    return module


@pytest.fixture(scope="module")
def ops():
    module = fresh()
    assert module._ops_ready(torch.float32), module._TRITON_STATE.get("failed")
    return getattr(torch.ops, NAMESPACE)


def reference(weight, x, terms):
    y = torch.einsum("ok,bk...->bo...", weight.double(), x.double())
    return sum((t.double() for t in terms), y)


CASES = [  # x shape, c_out, term shapes (broadcast to [B, O, *S])
    ((3, 5, 7, 9), 3, [(3, 3, 7, 1), (3, 3, 1, 9)]),
    ((2, 16, 32, 32), 16, [(2, 16, 1, 32), (2, 16, 32, 1)]),
    ((2, 9, 4, 33), 17, [(1, 17, 1, 1), (2, 17, 4, 33)]),  # a full-size term, 17 > one tile
    ((2, 4, 5, 6), 8, [(8, 5, 6), (2, 8, 5, 1)]),  # no batch axis on one
    ((3, 4, 17), 5, [(3, 5, 1), (5, 17)]),  # one position axis
    ((2, 20, 3, 3), 2, [(2, 2, 3, 1), (2, 2, 1, 3), (1, 2, 3, 3), (2, 1, 1, 1), (2, 2, 3, 1)]),
    ((0, 4, 3, 3), 2, [(0, 2, 3, 1), (0, 2, 1, 3)]),  # no samples
]
TOLERANCE = {  # against float64; the 16-bit ones relative to the largest entry
    torch.float32: (1e-5, 1e-4),
    torch.bfloat16: (2e-2, 2e-2),
    torch.float16: (2e-3, 2e-3),
}


def assert_near(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype) -> None:
    rtol, atol = TOLERANCE[dtype]
    scale = max(want.abs().max().item(), 1.0) if want.numel() else 1.0
    torch.testing.assert_close(got.double(), want, rtol=rtol, atol=atol * scale)


@pytest.mark.parametrize("dtype", list(TOLERANCE), ids=["f32", "bf16", "f16"])
@pytest.mark.parametrize("shape, c_out, terms", CASES)
def test_mix_terms_matches_plain_torch(ops, shape, c_out, terms, dtype):
    gen = torch.Generator().manual_seed(len(shape) + c_out)
    x = torch.randn(shape, generator=gen).to(dtype)
    weight = torch.randn(c_out, shape[1], generator=gen).to(dtype)
    ts = [torch.randn(s, generator=gen).to(dtype) for s in terms]
    got = ops.mix_terms(weight, x, ts)
    want = reference(weight, x, ts)
    assert got.shape == want.shape and got.dtype == dtype
    assert_near(got, want, dtype)
    # the transposed mix with terms: the gradient of x with its pools' gradients
    grad = torch.randn(want.shape, generator=gen).to(dtype)
    pooled = torch.randn((*shape[:-2], 1, shape[-1]), generator=gen).to(dtype)
    got_x = ops.mix_input_grad(weight, grad, [pooled, x])
    assert_near(got_x, reference(weight.t(), grad, [pooled, x]), dtype)


@pytest.mark.parametrize("dtype", list(TOLERANCE), ids=["f32", "bf16", "f16"])
def test_mix_backward_matches_plain_torch_and_skips_what_is_not_asked(ops, dtype):
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(3, 6, 5, 33, generator=gen).to(dtype)
    weight = torch.randn(7, 6, generator=gen).to(dtype)
    grad = torch.randn(3, 7, 5, 33, generator=gen).to(dtype)
    grad_x, grad_w, rows, cols = ops.mix_backward(weight, x, grad, True, True, True)
    x64, w64, g64 = x.double(), weight.double(), grad.double()
    assert_near(grad_x, torch.einsum("ok,bo...->bk...", w64, g64), dtype)
    assert_near(grad_w, torch.einsum("bo...,bk...->ok", g64, x64), dtype)
    assert_near(rows, g64.sum(3), dtype)
    assert_near(cols, g64.sum(2), dtype)
    assert grad_w.dtype == weight.dtype and rows.dtype == dtype
    grad_x, grad_w2, rows, cols = ops.mix_backward(weight, x, grad, False, False, False)
    assert grad_x.numel() == rows.numel() == cols.numel() == 0
    torch.testing.assert_close(grad_w2, grad_w)


def test_mix_terms_gradients_are_autograd_of_plain_torch(ops):
    """The op's autograd (mix_backward, then the terms' gradients from its sums) against
    autograd through the plain expression, for every broadcast pattern of a term."""
    gen = torch.Generator().manual_seed(3)
    shapes = [(2, 3, 4, 1), (2, 3, 1, 5), (1, 3, 1, 1), (3, 4, 5), (2, 3, 4, 5)]

    def leaves() -> list[torch.Tensor]:
        gen.manual_seed(3)
        sizes = [(3, 2), (2, 2, 4, 5), *shapes]
        return [torch.randn(s, generator=gen).requires_grad_() for s in sizes]

    got_in, want_in = leaves(), [t.detach().double().requires_grad_() for t in leaves()]
    out = ops.mix_terms(got_in[0], got_in[1], got_in[2:])
    want = reference(want_in[0], want_in[1], want_in[2:])
    seed = torch.randn(want.shape, generator=gen)
    got_grads = torch.autograd.grad((out * seed).sum(), got_in)
    want_grads = torch.autograd.grad((want * seed.double()).sum(), want_in)
    for g, w in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g.double(), w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(3, 4, 7, 33), (2, 3, 32, 32), (1, 2, 1, 5), (2, 1, 70, 3)])
def test_plane_sums_are_the_two_pools(ops, shape):
    x = torch.randn(shape)
    rows, cols = ops.plane_sums(x)
    torch.testing.assert_close(rows, x.sum(3), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cols, x.sum(2), rtol=1e-5, atol=1e-5)


def test_double_backward_through_a_kernel_term_raises(ops):
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    weight = torch.randn(3, 3, requires_grad=True)
    y = ops.mix_terms(weight, x, [torch.zeros(1, 3, 1, 1)])
    with pytest.raises(RuntimeError, match="backend 'triton' does not support double backward"):
        torch.autograd.grad(y.square().sum(), x, create_graph=True)


def inputs(dims, batch, channels, seed, dtype=torch.float32):
    space = mlp(dims, "hidden")
    gen = torch.Generator().manual_seed(seed)

    def draw(name: str) -> torch.Tensor:
        return torch.randn(batch, channels, *space.shape(name), generator=gen).to(dtype)

    return [draw(t.name) for t in space.tensors if len(t.axes) == 2], [
        draw(t.name) for t in space.tensors if len(t.axes) == 1
    ]


def outputs_and_grads(layer, weights, biases):
    leaves = [t.clone().requires_grad_() for t in weights + biases]
    out = layer(leaves[: len(weights)], leaves[len(weights) :])
    flat = list(out[0]) + list(out[1])
    gen = torch.Generator().manual_seed(7)
    loss = sum((t * torch.randn(t.shape, generator=gen).to(t.dtype)).sum() for t in flat)
    grads = torch.autograd.grad(loss, leaves + list(layer.parameters()))
    return [t.detach() for t in flat] + list(grads)


def eager_twin(module: types.ModuleType, layer: torch.nn.Module, dims) -> torch.nn.Module:
    eager = layer_classes(dims, "hidden")[0](layer.in_channels, layer.out_channels)
    eager.load_state_dict(layer.state_dict())  # the eager module's parameters and names
    return eager.to(next(layer.parameters()).dtype)


def ran_ops(prof) -> set[str]:
    return {e.name.split("::")[1] for e in prof.events() if e.name.startswith(NAMESPACE)}


@pytest.mark.parametrize("dims", [DIMS, WIDE], ids=["2,3,3,1", "2,20,33,1"])
def test_layer_under_aot_eager_matches_eager_and_runs_the_kernels(dims, monkeypatch):
    """Without inductor (no graph passes): the custom ops inside a compiled graph."""
    module = types.ModuleType("fresh_triton_layer")
    exec(compile(source_for(dims, "hidden", "triton"), module.__name__, "exec"), module.__dict__)
    monkeypatch.setattr(module, "COMPILE_BACKEND", "aot_eager")
    torch.manual_seed(0)
    layer = module.EquivariantLayer(3, 4)
    x = inputs(dims, 5, 3, seed=2)
    with profile() as prof:
        got = outputs_and_grads(layer, *x)
    want = outputs_and_grads(eager_twin(module, layer, dims), *x)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)
    assert {"mix_terms", "mix_backward"} <= ran_ops(prof)
    assert "compiled" in layer.forward.compile_state


@pytest.mark.slow
def test_layer_with_inductor_runs_the_graph_passes_and_matches_eager():
    module = fresh("fresh_triton_inductor")
    torch.manual_seed(1)
    layer = module.EquivariantLayer(3, 4)
    x = inputs(DIMS, 4, 3, seed=3)
    with profile() as prof:
        got = outputs_and_grads(layer, *x)
    for g, w in zip(got, outputs_and_grads(eager_twin(module, layer, DIMS), *x), strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)
    # The identity term forward and backward; the graph passes' two ops.
    assert {"mix_terms", "mix_backward", "plane_sums", "mix_input_grad"} <= ran_ops(prof)
    state = layer.forward.compile_state
    assert "compiled" in state and "failed" not in state


def test_bfloat16_layer_is_the_float64_reference_to_its_precision(monkeypatch):
    module = fresh("fresh_triton_bf16")
    monkeypatch.setattr(module, "COMPILE_BACKEND", "aot_eager")
    torch.manual_seed(2)
    layer = module.EquivariantLayer(3, 4)
    eager = eager_twin(module, layer, DIMS).double()
    layer = layer.bfloat16()
    x = inputs(DIMS, 4, 3, seed=4)
    with profile() as prof:
        got = outputs_and_grads(layer, *[[t.bfloat16() for t in part] for part in x])
    want = outputs_and_grads(eager, *[[t.double() for t in part] for part in x])
    for g, w in zip(got, want, strict=True):  # bfloat16 keeps 8 bits of mantissa
        assert g.dtype == torch.bfloat16
        torch.testing.assert_close(g.double(), w, rtol=0.05, atol=0.05 * w.abs().max().item())
    assert "mix_terms" in ran_ops(prof)


def test_without_a_cuda_device_one_warning_and_the_plain_ops(monkeypatch):
    module = fresh("fresh_triton_no_cuda")
    monkeypatch.delenv("TRITON_INTERPRET")  # this machine has no CUDA device (checked below)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(module, "COMPILE_BACKEND", "aot_eager")
    with pytest.warns(RuntimeWarning, match="backend 'triton': torch sees no CUDA device"):
        layer = module.EquivariantLayer(2, 3)  # the kernels are readied at construction
    x = inputs(DIMS, 3, 2, seed=6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module.EquivariantLayer(2, 3)
        with profile() as prof:
            got = outputs_and_grads(layer, *x)
    assert "failed" in module._TRITON_STATE and not ran_ops(prof)
    assert not [w for w in caught if "triton" in str(w.message)]  # warned once, before
    for g, w in zip(got, outputs_and_grads(eager_twin(module, layer, DIMS), *x), strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)


def test_without_triton_one_warning(monkeypatch):
    module = fresh("fresh_triton_missing")
    monkeypatch.setitem(sys.modules, "triton", None)  # `import triton` raises ImportError
    with pytest.warns(RuntimeWarning, match="backend 'triton': triton does not import"):
        assert not module._ops_ready(torch.float32)
    assert not module._ops_take(
        torch.ones(2, 2), torch.ones(1, 2, 2, 2), torch.ones(1, 2, 2, 1), torch.ones(1, 2, 1, 2)
    )


def test_inputs_the_kernels_do_not_take_and_vmap_run_the_eager_terms(ops):
    module = fresh("fresh_triton_takes")
    weight, x = torch.randn(3, 2), torch.randn(4, 2, 3, 3)
    a, b = torch.randn(4, 3, 3, 1), torch.randn(4, 3, 1, 3)
    assert module._ops_take(weight, x, a, b)
    assert module._ops_take(weight.half(), x.half(), a.half(), b.half())
    assert not module._ops_take(weight.double(), x.double(), a.double(), b.double())
    assert not module._ops_take(weight, x[:, :, :, :, None], a, b)  # three position axes
    assert not module._ops_take(weight, x, 1.0, b)
    assert not module._ops_take(weight, x.half(), a, b)  # mixed dtypes
    got = torch.func.vmap(module._mix_add, in_dims=(None, 0, 0, 0))(
        weight, x[None], a[None], b[None]
    )
    torch.testing.assert_close(got[0], reference(weight, x, [a, b]).float(), rtol=1e-5, atol=1e-5)


def test_dwsnet_backend_triton_matches_eager(monkeypatch):
    from dws_theory import models
    from dws_theory.codegen.preludes import compiled as compiled_prelude

    monkeypatch.setattr(compiled_prelude, "COMPILE_BACKEND", "aot_eager")
    monkeypatch.setattr(models, "_COMPILED", {})
    torch.manual_seed(0)
    fast = DWSNet(DIMS, hidden_channels=4, num_layers=2, out_features=3, backend="triton")
    eager = DWSNet(DIMS, hidden_channels=4, num_layers=2, out_features=3)
    eager.load_state_dict(fast.state_dict())
    x = inputs(DIMS, 3, 1, seed=8)
    with profile() as prof:
        got = fast(*x)
    torch.testing.assert_close(got, eager(*x), rtol=1e-5, atol=1e-6)
    assert (DWSNet, "triton", False) in models._COMPILED
    assert "mix_terms" in ran_ops(prof)


def test_generate_backend_triton_carries_the_kernels_and_names_itself():
    text = source_for(DIMS, "hidden", "triton")
    assert 'BACKEND = "triton"' in text and "--backend triton" in text
    assert "\n_TRITON_SOURCE = r" in text and "def mix_terms_kernel(" in text
    assert "\nimport triton" not in text.split("_TRITON_SOURCE")[0]  # torch only until used


def test_autotuning_keeps_the_tiles_a_shape_fills():
    """On a GPU every config is timed once per shape; the pruning leaves out tiles wider
    than a shape's next power of two (16 at least), and keeps the first config where none
    fits. (Under the interpreter only the first config is listed, so it is checked here on
    the configs of a GPU run.)"""
    import triton

    from dws_theory.codegen.preludes import triton_kernels

    configs = [
        triton.Config({"BLOCK_O": o, "BLOCK_K": k, "BLOCK_S": s})
        for o, k, s in [(16, 16, 64), (32, 16, 128), (16, 32, 256), (64, 64, 64)]
    ]

    def kept(c_out: int, c_in: int, size: int) -> list[tuple[int, int, int]]:
        sizes = {"C_OUT": c_out, "C_IN": c_in, "S": size}
        chosen = triton_kernels._prune(configs, sizes)
        return [(c.kwargs["BLOCK_O"], c.kwargs["BLOCK_K"], c.kwargs["BLOCK_S"]) for c in chosen]

    assert kept(16, 16, 1024) == [(16, 16, 64)]
    assert kept(32, 32, 1024) == [(16, 16, 64), (32, 16, 128), (16, 32, 256)]
    assert kept(64, 64, 1024) == [(16, 16, 64), (32, 16, 128), (16, 32, 256), (64, 64, 64)]
    assert kept(3, 2, 5) == [(16, 16, 64)]  # none fits: the first
    assert triton_kernels.MIX_CONFIGS and triton_kernels.WEIGHT_GRAD_CONFIGS
