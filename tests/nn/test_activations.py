"""activations.ReLU: nn.ReLU eagerly, a gradient-from-output form under torch.compile."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dws_theory.activations import ReLU, relu_from_output
from dws_theory.models import DWSNet, default_activation


def _input(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Negatives, exact zeros and positives, so both sides of the kink and the kink count."""
    x = torch.randn(4, 3, 5, 7, dtype=dtype, generator=torch.Generator().manual_seed(0))
    x[0, 0] = 0.0
    x[1, :, 2] = -0.0
    return x


def _value_and_grad(fn, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    out = fn(x)
    weight = torch.linspace(-2.0, 3.0, out.numel(), dtype=out.dtype).view(out.shape)
    (grad,) = torch.autograd.grad((out * weight).sum(), x)
    return out.detach(), grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_relu_from_output_has_relus_values_and_gradient_including_at_zero(dtype):
    x = _input(dtype)
    value, grad = _value_and_grad(relu_from_output, x)
    ref_value, ref_grad = _value_and_grad(torch.relu, x)
    assert torch.equal(value, ref_value)
    assert torch.equal(grad, ref_grad)
    # at x == 0 the gradient is 0, as for torch.relu: not a half from a symmetric formula
    assert torch.all(grad[0, 0] == 0) and torch.all(grad[1, :, 2] == 0)


def test_relu_from_output_passes_gradcheck_and_gradgradcheck():
    x = _input().abs().add_(0.1) * torch.sign(torch.randn(4, 3, 5, 7, dtype=torch.float64))
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(relu_from_output, (x,))
    assert torch.autograd.gradgradcheck(relu_from_output, (x,))


def test_relu_is_an_nn_relu_and_runs_the_builtin_eagerly():
    act = ReLU()
    assert isinstance(act, nn.ReLU) and repr(act) == "ReLU()"
    x = _input(torch.float32).requires_grad_(True)
    out = act(x)
    assert out.grad_fn is not None and "Relu" in type(out.grad_fn).__name__
    assert isinstance(default_activation("hidden"), ReLU)
    assert isinstance(default_activation("all"), ReLU)


def _backward_graphs(fn, x: torch.Tensor) -> list[str]:
    """The backward graphs torch.compile builds for fn, as text (aot_autograd, no C++)."""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    graphs: list[str] = []

    def forward_compiler(gm, _inputs):
        return make_boxed_func(gm.forward)

    def backward_compiler(gm, _inputs):
        graphs.append(gm.code)
        return make_boxed_func(gm.forward)

    backend = aot_autograd(fw_compiler=forward_compiler, bw_compiler=backward_compiler)
    torch._dynamo.reset()
    out = torch.compile(fn, backend=backend, fullgraph=True)(x)
    out.sum().backward()
    return graphs


def test_under_compile_the_backward_reads_the_output_not_a_boolean_mask():
    x = _input(torch.float32).requires_grad_(True)
    ours = _backward_graphs(ReLU(), x)
    builtin = _backward_graphs(nn.ReLU(), x)
    assert len(ours) == 1 and len(builtin) == 1
    assert "threshold_backward" in builtin[0]  # what the compiled built-in runs
    assert "threshold_backward" not in ours[0] and "sign" in ours[0]


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compiled_relu_matches_eager_values_and_gradients(backend):
    x = _input(torch.float32)
    torch._dynamo.reset()
    compiled = torch.compile(ReLU(), backend=backend, fullgraph=True)
    value, grad = _value_and_grad(compiled, x)
    ref_value, ref_grad = _value_and_grad(torch.relu, x)
    assert torch.equal(value, ref_value)
    assert torch.equal(grad, ref_grad)


def test_a_compiled_dwsnet_matches_eager_values_and_parameter_gradients():
    torch.manual_seed(0)
    net = DWSNet("2,5,4,1", hidden_channels=3, num_layers=2, out_features=2)
    g = torch.Generator().manual_seed(1)
    weights = [torch.randn(6, 1, 5, 2, generator=g), torch.randn(6, 1, 4, 5, generator=g)]
    weights.append(torch.randn(6, 1, 1, 4, generator=g))
    biases = [torch.randn(6, 1, n, generator=g) for n in (5, 4, 1)]

    def grads(model) -> tuple[torch.Tensor, list[torch.Tensor]]:
        net.zero_grad()
        out = model(weights, biases)
        (out * torch.arange(out.numel()).view(out.shape)).sum().backward()
        return out.detach(), [p.grad.clone() for p in net.parameters()]

    ref_out, ref_grads = grads(net)
    torch._dynamo.reset()
    out, got = grads(torch.compile(net, backend="aot_eager"))
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)
    assert len(got) == len(ref_grads)
    for a, b in zip(got, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
