"""The `compiled` backend against the eager reference.

A compiled module is the eager module plus a wrapper around each layer's forward; these tests
build it from the generator's source in a fresh namespace each time (so the torch.compile
backend can be swapped for a counting or failing one), and check that it computes what the
eager module computes (values, input and parameter gradients, gradcheck; double backward
needs the eager backend, as torch.compile's autograd does not support it),
that it really runs compiled where it should and eager where it should (an outer
torch.compile, torch.func transforms, a build failure with one warning), and the `generate`
and `DWSNet` ends of the choice.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import sys
import types
import warnings
from pathlib import Path

import pytest
import torch
from torch._dynamo.testing import CompileCounter, CompileCounterWithBackend

from dws_theory.cli import main
from dws_theory.codegen.backends import BACKENDS
from dws_theory.codegen.files import source_for
from dws_theory.models import DWSNet
from dws_theory.runtime import layer_classes
from dws_theory.spec import SpecError, WeightSpace

DIMS = (2, 3, 3, 1)  # a plan with a fused identity GEMM (`_mix_add`), the path that differs
CONV = WeightSpace.parse(
    "sets[c0:2:fixed c1:3:permuted c2:2:fixed k:3:fixed] "
    "tensors[W1(c1,c0,k) b1(c1) W2(c2,c1) b2(c2)]"
)
Tensors = list[torch.Tensor]


def fresh(shape, mode: str | None = "hidden", backend: str = "compiled") -> types.ModuleType:
    """The module `generate --backend` writes, executed in a new namespace."""
    module = types.ModuleType(f"fresh_{backend}")
    exec(compile(source_for(shape, mode, backend), module.__name__, "exec"), module.__dict__)
    return module


def inputs(space: WeightSpace, batch: int, channels: int, seed: int, dtype=torch.float32):
    """Random (weights, biases) for any space: tensors of two or more axes, then vectors."""
    gen = torch.Generator().manual_seed(seed)

    def draw(t):
        return torch.randn(batch, channels, *space.shape(t.name), generator=gen, dtype=dtype)

    weights = [draw(t) for t in space.tensors if len(t.axes) >= 2]
    biases = [draw(t) for t in space.tensors if len(t.axes) == 1]
    return weights, biases


def space_of(shape) -> WeightSpace:
    from dws_theory.spec import mlp

    return shape if isinstance(shape, WeightSpace) else mlp(shape, "hidden")


def outputs_and_grads(layer, weights: Tensors, biases: Tensors) -> Tensors:
    """Outputs, then gradients of a fixed random scalar w.r.t. the inputs and parameters."""
    leaves = [t.clone().requires_grad_() for t in weights + biases]
    out = layer(leaves[: len(weights)], leaves[len(weights) :])
    flat = list(out[0]) + list(out[1]) if isinstance(out, tuple) else [out]
    gen = torch.Generator().manual_seed(7)
    loss = sum((t * torch.randn(t.shape, generator=gen, dtype=t.dtype)).sum() for t in flat)
    params = [p for p in layer.parameters() if p.requires_grad]  # NormedDWSNet freezes some
    grads = torch.autograd.grad(loss, leaves + params)
    return [t.detach() for t in flat] + list(grads)


def pair(module: types.ModuleType, shape, c_in: int = 2, c_out: int = 3):
    """(compiled-backend layers, eager layers) with the same parameters."""
    mode = None if isinstance(shape, WeightSpace) else "hidden"
    eager_e, eager_i = layer_classes(shape, mode)
    torch.manual_seed(0)
    compiled = (module.EquivariantLayer(c_in, c_out), module.InvariantLayer(c_in, c_out))
    eager = (eager_e(c_in, c_out), eager_i(c_in, c_out))
    for a, b in zip(compiled, eager, strict=True):
        b.load_state_dict(a.state_dict())  # same names: the eager module's parameters
    return compiled, eager


def test_compiled_is_registered_and_is_the_eager_module_plus_a_wrapper():
    assert {"eager", "compiled"} <= set(BACKENDS)
    eager, compiled = source_for(DIMS, "hidden"), source_for(DIMS, "hidden", "compiled")
    assert "torch.compile(" not in eager and "BACKEND" not in eager
    assert 'BACKEND = "compiled"' in compiled and "--backend compiled" in compiled
    # The eager classes are printed unchanged; the wrapper only follows them.
    start = eager.index("class EquivariantLayer")
    assert eager[start:].rstrip() in compiled
    assert compiled.index(eager[start:].rstrip()) < compiled.index("_compiled_forward(")


@pytest.mark.parametrize("shape", [DIMS, CONV], ids=["mlp", "conv"])
def test_compiled_matches_eager_values_and_gradients(shape):
    module = fresh(shape, None if isinstance(shape, WeightSpace) else "hidden")
    counter = CompileCounter()
    module.COMPILE_BACKEND = counter
    compiled, eager = pair(module, shape)
    x = inputs(space_of(shape), 4, 2, seed=1)
    for got_layer, want_layer in zip(compiled, eager, strict=True):
        got, want = outputs_and_grads(got_layer, *x), outputs_and_grads(want_layer, *x)
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)
    assert counter.frame_count >= 2  # both forwards went through torch.compile
    assert "compiled" in module.EquivariantLayer.forward.compile_state
    assert "failed" not in module.EquivariantLayer.forward.compile_state


@pytest.mark.parametrize("sizes", [(2,), (3, 3), (4, 4), (1,)], ids=["2", "3x3", "4x4", "1"])
def test_fixed_last_matches_a_permuted_copy_eager_and_compiled(sizes):
    """`_fixed_last` moves the fixed axes built first behind the permuted ones: in eager
    mode one permuted copy, under torch.compile (fewer than 16 fixed entries) a stack of
    slices. Both give the permuted copy's values and gradients, contiguous."""
    module = fresh(DIMS)
    fixed = len(sizes)
    x = torch.randn(3, 2, *sizes, 5, 4, dtype=torch.float64)
    order = (0, 1, fixed + 2, fixed + 3, *range(2, fixed + 2))
    want = x.permute(order)
    upstream = torch.randn(want.shape, dtype=torch.float64)
    compiled = torch.compile(module._fixed_last, backend="aot_eager", fullgraph=True)
    for run in (module._fixed_last, compiled):
        leaf = x.clone().requires_grad_()
        got = run(leaf, fixed)
        assert got.is_contiguous() and got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=0, atol=0)
        (grad,) = torch.autograd.grad(got, leaf, upstream)
        torch.testing.assert_close(
            grad, upstream.permute(torch.argsort(torch.tensor(order)).tolist())
        )


@pytest.mark.parametrize(
    ("c_out", "c_in", "positions", "one_gemm"),
    [(12, 8, (3,), True), (6, 4, (2, 3), False), (3, 2, (9,), False), (5, 7, (1,), True)],
    ids=["few-positions", "2d", "many-positions", "one-position"],
)
def test_mix_matches_a_loop_over_samples_eager_and_compiled(c_out, c_in, positions, one_gemm):
    """`_mix` is weight @ x at every position; under torch.compile a mix with O K > (O + K) S
    runs `_MixFewPositions`, whose weight gradient is one GEMM over all columns: the
    compiled backward then has an `mm` and no reduction over the batch."""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    module = fresh(DIMS)
    weight = torch.randn(c_out, c_in, dtype=torch.float64)
    x = torch.randn(4, c_in, *positions, dtype=torch.float64)
    want = torch.stack([torch.einsum("ok,k...->o...", weight, sample) for sample in x])
    upstream = torch.randn(want.shape, dtype=torch.float64)
    want_grads = (
        torch.einsum("bo...,bk...->ok", upstream, x),
        torch.einsum("ok,bo...->bk...", weight, upstream),
    )
    backward_graphs: list[str] = []

    def keep_backward(gm, _inputs):
        backward_graphs.append(str(gm.graph))
        return make_boxed_func(gm.forward)

    def forward_as_is(gm, _inputs):
        return make_boxed_func(gm.forward)

    backend = aot_autograd(fw_compiler=forward_as_is, bw_compiler=keep_backward)
    compiled = torch.compile(module._mix, backend=backend, fullgraph=True, dynamic=False)
    for run in (module._mix, compiled):
        leaves = weight.clone().requires_grad_(), x.clone().requires_grad_()
        got = run(*leaves)
        torch.testing.assert_close(got, want)
        grads = torch.autograd.grad(got, leaves, upstream)
        for g, w in zip(grads, want_grads, strict=True):
            torch.testing.assert_close(g, w)
    (graph,) = backward_graphs
    assert ("aten.mm" in graph) == one_gemm
    assert ("aten.sum" in graph) != one_gemm  # the batched GEMM's rule sums over samples
    few = module._MixFewPositions.apply
    leaves = weight.clone().requires_grad_(), x.reshape(4, c_in, -1).clone().requires_grad_()
    assert torch.autograd.gradcheck(few, leaves)
    assert torch.autograd.gradgradcheck(few, leaves)


@pytest.mark.parametrize(
    ("shape", "pooled", "folded"),
    [
        ((3, 2, 5, 2), (2,), (3,)),
        ((3, 2, 4, 5, 3, 3), (2, 3), (4, 5)),
        ((2, 3, 2, 4, 3), (3,), (2, 4)),
    ],
    ids=["mlp-W1", "kernel", "outer-and-inner"],
)
def test_pool_folded_matches_a_loop_over_folded_entries_eager_and_compiled(shape, pooled, folded):
    """`_pool_folded`: mean over the pooled axes, the folded ones moved into channels (channel
    c * F + f), eager (reduce, then fold) and under torch.compile (fold, then reduce): the
    values and gradients of a loop over the folded entries."""
    module = fresh(DIMS)
    x = torch.randn(shape, dtype=torch.float64)
    kept = [shape[a] for a in range(2, len(shape)) if a not in pooled and a not in folded]

    def reference(t: torch.Tensor) -> torch.Tensor:
        means = t.mean(pooled, keepdim=True)
        blocks = []
        for entry in itertools.product(*(range(shape[a]) for a in folded)):
            index = [slice(None)] * len(shape)
            for a, i in zip(folded, entry, strict=True):
                index[a] = i
            blocks.append(means[tuple(index)].reshape(shape[0], shape[1], *kept))
        return torch.stack(blocks, 2).reshape(shape[0], shape[1] * len(blocks), *kept)

    leaf = x.clone().requires_grad_()
    want = reference(leaf)
    upstream = torch.randn(want.shape, dtype=torch.float64)
    (want_grad,) = torch.autograd.grad(want, leaf, upstream)
    # dynamic=False: the axes are literals in the emitted call, never traced as inputs
    compiled = torch.compile(
        module._pool_folded, backend="aot_eager", fullgraph=True, dynamic=False
    )
    for run in (module._pool_folded, compiled):
        leaf = x.clone().requires_grad_()
        got = run(leaf, pooled, folded)
        torch.testing.assert_close(got, want)
        (grad,) = torch.autograd.grad(got, leaf, upstream)
        torch.testing.assert_close(grad, want_grad)


def has_cpp_compiler() -> bool:
    """Whether inductor finds a C++ compiler here (it needs one for CPU code)."""
    from torch._inductor.cpp_builder import get_cpp_compiler

    try:
        get_cpp_compiler()
    except Exception:  # noqa: BLE001 - torch raises its own InvalidCxxCompiler
        return False
    return True


def inductor_against_eager(seed: int) -> types.ModuleType:
    """Compare an inductor-compiled layer with eager, under whatever warnings it gives."""
    module = fresh(DIMS)
    assert module.COMPILE_BACKEND == "inductor"  # the default the user gets
    compiled, eager = pair(module, DIMS)
    x = inputs(space_of(DIMS), 4, 2, seed=seed)
    got, want = outputs_and_grads(compiled[0], *x), outputs_and_grads(eager[0], *x)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)
    return module


@pytest.mark.slow
def test_compiled_with_inductor_matches_eager():
    if has_cpp_compiler():
        module = inductor_against_eager(seed=2)
        assert "failed" not in module.EquivariantLayer.forward.compile_state
    else:  # the machine this runs on has none: then the fallback is what a user gets
        with pytest.warns(RuntimeWarning, match="compiled forward cannot be built"):
            module = inductor_against_eager(seed=2)
        assert "failed" in module.EquivariantLayer.forward.compile_state


@pytest.mark.slow
def test_inductor_without_a_cpp_compiler_falls_back_with_one_warning():
    from torch._inductor import config as inductor_config

    no_compiler = {"cpp.cxx": ("no-such-c++",), "fx_graph_cache": False}
    with (
        inductor_config.patch(no_compiler),
        torch._functorch.config.patch(enable_autograd_cache=False),  # no cached build
        pytest.warns(RuntimeWarning, match="cannot be built.*C\\+\\+ compiler"),
    ):
        module = inductor_against_eager(seed=10)
    assert "failed" in module.EquivariantLayer.forward.compile_state


def test_gradcheck_through_the_compiled_forward_and_double_backward_needs_eager():
    module = fresh(DIMS)
    module.COMPILE_BACKEND = "aot_eager"
    compiled, eager = pair(module, DIMS)
    for layer in (*compiled, *eager):
        layer.double()
    weights, biases = inputs(space_of(DIMS), 2, 2, seed=3, dtype=torch.float64)

    def every_output(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = compiled[0](list(tensors[: len(weights)]), list(tensors[len(weights) :]))
        return (*out[0], *out[1])

    x = weights[0].clone().requires_grad_()

    def second(layer) -> torch.Tensor:
        out = layer([x, *weights[1:]], biases)
        flat = list(out[0]) + list(out[1]) if isinstance(out, tuple) else [out]
        (g,) = torch.autograd.grad(sum((t**2).sum() for t in flat), x, create_graph=True)
        (gg,) = torch.autograd.grad((g * g.detach().sin()).sum(), x)
        return gg

    leaves = tuple(t.clone().requires_grad_() for t in weights + biases)
    # gradcheck runs backward several times through one graph (retain_graph=True), which
    # torch's compiled autograd allows only without donated buffers (the module docstring).
    with torch._functorch.config.patch(donated_buffer=False):
        assert torch.autograd.gradcheck(every_output, leaves)
        assert "compiled" in module.EquivariantLayer.forward.compile_state  # not eager
        # The eager layers support double backward; torch.compile's autograd does not (torch
        # says so), which the module docstring states: backend "eager" is the one for it.
        assert second(eager[0]).abs().sum() > 0 and second(eager[1]).abs().sum() > 0
        with pytest.raises(RuntimeError, match="double backward"):
            second(compiled[0])


def test_a_build_failure_warns_once_and_runs_eager():
    module = fresh(DIMS)

    def no_compiler(graph, example_inputs):
        raise RuntimeError("no C++ compiler found")

    module.COMPILE_BACKEND = no_compiler
    compiled, eager = pair(module, DIMS)
    x = inputs(space_of(DIMS), 3, 2, seed=4)
    message = "compiled forward cannot be built.*no C\\+\\+ compiler"
    with pytest.warns(RuntimeWarning, match=message):
        got = outputs_and_grads(compiled[0], *x)
    for g, w in zip(got, outputs_and_grads(eager[0], *x), strict=True):
        torch.testing.assert_close(g, w)
    assert isinstance(module.EquivariantLayer.forward.compile_state["failed"], Exception)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second call neither warns nor tries again
        compiled[0](*x)


def test_bad_input_raises_the_eager_error():
    module = fresh(DIMS)
    module.COMPILE_BACKEND = "aot_eager"
    layer = module.EquivariantLayer(2, 3)
    weights, biases = inputs(space_of(DIMS), 3, 2, seed=5)
    with pytest.raises(ValueError, match=r"weights\[0\] must have shape \[B, C, d_1, d_0\]"):
        layer([weights[0].transpose(2, 3), *weights[1:]], biases)


def test_outer_compile_and_vmap_see_the_eager_forward():
    module = fresh(DIMS)
    counter = CompileCounter()
    module.COMPILE_BACKEND = counter  # counts the layer's own compilations
    compiled, eager = pair(module, DIMS)
    weights, biases = inputs(space_of(DIMS), 3, 2, seed=6)
    outer = torch.compile(compiled[0], backend="aot_eager", fullgraph=True)
    got, want = outer(weights, biases), eager[0](weights, biases)
    torch.testing.assert_close(list(got[0]) + list(got[1]), list(want[0]) + list(want[1]))

    def one(ws: Tensors, bs: Tensors) -> torch.Tensor:  # one sample, as a batch of one
        return compiled[1]([w[None] for w in ws], [b[None] for b in bs])[0]

    mapped = torch.func.vmap(one)(weights, biases)
    torch.testing.assert_close(mapped, eager[1](weights, biases))
    assert counter.frame_count == 0  # neither call compiled the layer on its own


def test_generate_backend_writes_a_standalone_module_beside_the_eager_one(tmp_path):
    def run(args: list[str]) -> str:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(args) == 0
        return out.getvalue().strip()

    eager = Path(run(["generate", "2,3,1", "--out", str(tmp_path)]))
    compiled = Path(run(["generate", "2,3,1", "--out", str(tmp_path), "--backend", "compiled"]))
    assert eager.name == "dws_2_3_1_hidden.py" and compiled.name == "dws_2_3_1_hidden_compiled.py"
    text = compiled.read_text()
    assert text == source_for((2, 3, 1), "hidden", "compiled")
    assert "#   regenerate: dws-theory generate 2,3,1 --symmetry hidden --backend compiled" in text
    heads = [line for line in text.splitlines() if line.startswith(("import ", "from "))]
    imports = {line.split()[1].split(".")[0] for line in heads}
    assert imports == {"__future__", "functools", "math", "torch", "warnings"}  # standalone
    namespace: dict = {"__name__": "standalone"}
    exec(compile(text, str(compiled), "exec"), namespace)
    namespace["COMPILE_BACKEND"] = "aot_eager"
    torch.manual_seed(0)
    layer = namespace["EquivariantLayer"](1, 2)
    reference = layer_classes((2, 3, 1))[0](1, 2)
    reference.load_state_dict(layer.state_dict())
    x = inputs(space_of((2, 3, 1)), 2, 1, seed=9)
    got, want = layer(*x), reference(*x)
    torch.testing.assert_close(list(got[0]) + list(got[1]), list(want[0]) + list(want[1]))
    state = namespace["EquivariantLayer"].forward.compile_state
    assert "compiled" in state and "failed" not in state
    with pytest.raises(SystemExit):
        main(["generate", "2,3,1", "--backend", "fused-typo"])


@pytest.fixture
def whole_model_compile(monkeypatch):
    """DWSNet's compiled forward built afresh with a counting aot_eager backend (the wrapper
    is per class and reads the backend at its first call), and dropped again afterwards."""
    from dws_theory import models
    from dws_theory.codegen.preludes import compiled as compiled_prelude

    counter = CompileCounterWithBackend("aot_eager")
    monkeypatch.setattr(compiled_prelude, "COMPILE_BACKEND", counter)
    monkeypatch.setattr(models, "_COMPILED", {})
    return counter


def test_dwsnet_backend_compiles_the_whole_model_and_matches_eager(whole_model_compile):
    torch.manual_seed(0)
    net = DWSNet((2, 3, 1), hidden_channels=2, num_layers=2, backend="compiled")
    ref = DWSNet((2, 3, 1), hidden_channels=2, num_layers=2)
    ref.load_state_dict(net.state_dict())
    module = sys.modules[type(net.layers[0]).__module__]
    assert module.__name__.endswith("_compiled")
    layer_counter = CompileCounter()
    module.COMPILE_BACKEND, saved = layer_counter, module.COMPILE_BACKEND
    try:
        x = inputs(space_of((2, 3, 1)), 3, 1, seed=8)
        got, want = outputs_and_grads(net, *x), outputs_and_grads(ref, *x)
    finally:
        module.COMPILE_BACKEND = saved
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)
    # one graph for the whole forward (layers, activations, invariant layer and head); the
    # layers ran their eager forward inside it and did not compile on their own
    assert whole_model_compile.frame_count == 1
    assert whole_model_compile.op_count > 0
    assert layer_counter.frame_count == 0
    for batch in (5, 2):  # other batch sizes (a training run's last batch): one more graph
        x = inputs(space_of((2, 3, 1)), batch, 1, seed=batch)
        with torch.no_grad():
            torch.testing.assert_close(net(*x), ref(*x), rtol=1e-5, atol=1e-6)
    assert whole_model_compile.frame_count == 2  # then dynamic in the batch size
    with pytest.raises(SpecError, match="unknown backend 'cuda'.*compiled.*fused.*triton"):
        DWSNet((2, 3, 1), backend="cuda")


def test_dwsnet_backend_compiled_falls_back_with_one_warning(monkeypatch):
    from dws_theory import models
    from dws_theory.codegen.preludes import compiled as compiled_prelude

    def no_compiler(graph, example_inputs):
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(compiled_prelude, "COMPILE_BACKEND", no_compiler)
    monkeypatch.setattr(models, "_COMPILED", {})
    torch.manual_seed(1)
    net = DWSNet((2, 3, 1), hidden_channels=2, num_layers=2, backend="compiled")
    ref = DWSNet((2, 3, 1), hidden_channels=2, num_layers=2)
    ref.load_state_dict(net.state_dict())
    weights, biases = inputs(space_of((2, 3, 1)), 3, 1, seed=11)
    with pytest.warns(RuntimeWarning, match="DWSNet: the compiled forward cannot be built"):
        got = net(weights, biases)
    torch.testing.assert_close(got, ref(weights, biases))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second call neither warns nor tries again
        torch.testing.assert_close(net(weights, biases), got)


def test_a_dwsnet_subclass_compiles_its_own_forward(whole_model_compile):
    from dws_theory.inr.equivariant import NormedDWSNet

    torch.manual_seed(2)
    net = NormedDWSNet((2, 3, 1), hidden_channels=2, num_layers=2, backend="compiled")
    ref = NormedDWSNet((2, 3, 1), hidden_channels=2, num_layers=2)
    ref.load_state_dict(net.state_dict())
    x = inputs(space_of((2, 3, 1)), 4, 1, seed=12)
    got, want = outputs_and_grads(net, *x), outputs_and_grads(ref, *x)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)
    assert whole_model_compile.frame_count == 1  # the subclass's norms ran compiled too
