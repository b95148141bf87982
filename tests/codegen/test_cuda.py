"""Every backend's layers and a model's training step on CUDA, against the eager layer on the
CPU in float64 (skipped, and said so, where torch sees no CUDA device).

The `fused` backend's C kernels are CPU-only: on CUDA tensors its layers run the compiled
forward without them, which these tests check computes the same as the reference. The
`triton` backend's kernels run on CUDA: its layers are checked against the reference in
float32 and bfloat16, and that its custom ops ran.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.profiler import profile

from dws_theory.models import DWSNet
from dws_theory.runtime import layer_classes

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; none here"),
]

DIMS = (2, 5, 6, 1)  # its W2 has a fused identity term (no fixed axis)
Tensors = list[torch.Tensor]


def inputs(batch: int, channels: int, seed: int) -> tuple[Tensors, Tensors]:
    gen = torch.Generator().manual_seed(seed)
    weights = [torch.randn(batch, channels, DIMS[m], DIMS[m - 1], generator=gen) for m in (1, 2, 3)]
    biases = [torch.randn(batch, channels, DIMS[m], generator=gen) for m in (1, 2, 3)]
    return weights, biases


def outputs_and_grads(layer: nn.Module, weights: Tensors, biases: Tensors) -> Tensors:
    """Outputs, then gradients of a fixed weighted sum of them w.r.t. inputs and parameters."""
    leaves = [t.clone().requires_grad_() for t in weights + biases]
    out = layer(leaves[: len(weights)], leaves[len(weights) :])
    flat = list(out[0]) + list(out[1]) if isinstance(out, tuple) else [out]
    gen = torch.Generator().manual_seed(7)
    loss = sum((t * torch.randn(t.shape, generator=gen).to(t)).sum() for t in flat)
    grads = torch.autograd.grad(loss, leaves + list(layer.parameters()))
    return [t.detach().cpu().double() for t in flat + list(grads)]


@pytest.mark.parametrize("backend", ["eager", "compiled", "fused", "triton"])
@pytest.mark.parametrize("kind", [0, 1], ids=["equivariant", "invariant"])
def test_each_backend_on_cuda_matches_the_cpu_reference(backend: str, kind: int):
    reference = layer_classes(DIMS, "hidden")[kind](3, 4).double()
    layer = layer_classes(DIMS, "hidden", backend=backend)[kind](3, 4)
    layer.load_state_dict(reference.state_dict())  # every backend has the eager names
    weights, biases = inputs(6, 3, seed=1)
    want = outputs_and_grads(reference, [t.double() for t in weights], [t.double() for t in biases])
    got = outputs_and_grads(layer.cuda(), [t.cuda() for t in weights], [t.cuda() for t in biases])
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", ["eager", "triton"])
def test_bfloat16_on_cuda_is_the_reference_to_bfloat16_precision(backend: str):
    reference = layer_classes(DIMS, "hidden")[0](3, 4).double()
    layer = layer_classes(DIMS, "hidden", backend=backend)[0](3, 4)
    layer.load_state_dict(reference.state_dict())
    weights, biases = inputs(6, 3, seed=2)
    want = outputs_and_grads(reference, [t.double() for t in weights], [t.double() for t in biases])
    half = [[t.cuda().bfloat16() for t in part] for part in (weights, biases)]
    got = outputs_and_grads(layer.cuda().bfloat16(), *half)
    for g, w in zip(got, want, strict=True):  # bfloat16 keeps 8 bits of mantissa
        scale = w.abs().max().item()
        torch.testing.assert_close(g, w, rtol=0.05, atol=0.05 * scale)


@pytest.mark.parametrize("dims", [DIMS, (2, 20, 33, 1)], ids=["2,5,6,1", "2,20,33,1"])
def test_triton_layer_runs_its_kernels_on_cuda(dims):
    """Values and gradients against the reference, and the four custom ops ran (the graph
    passes' two with inductor), on a shape whose tiles leave edges."""
    reference = layer_classes(dims, "hidden")[0](5, 17).double()
    layer = layer_classes(dims, "hidden", backend="triton")[0](5, 17)
    layer.load_state_dict(reference.state_dict())
    gen = torch.Generator().manual_seed(4)
    weights = [torch.randn(7, 5, dims[m], dims[m - 1], generator=gen) for m in (1, 2, 3)]
    biases = [torch.randn(7, 5, dims[m], generator=gen) for m in (1, 2, 3)]
    want = outputs_and_grads(reference, [t.double() for t in weights], [t.double() for t in biases])
    with profile() as prof:
        got = outputs_and_grads(
            layer.cuda(), [t.cuda() for t in weights], [t.cuda() for t in biases]
        )
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4)
    ran = {e.name for e in prof.events()}
    for op in ("mix_terms", "mix_backward", "plane_sums", "mix_input_grad"):
        assert f"dws_triton_v1::{op}" in ran, op


@pytest.mark.parametrize("backend", ["eager", "compiled", "triton"])
def test_a_training_step_on_cuda_matches_the_cpu(backend: str):
    torch.manual_seed(0)
    cpu = DWSNet(DIMS, hidden_channels=4, num_layers=2, out_features=3).double()
    gpu = DWSNet(DIMS, hidden_channels=4, num_layers=2, out_features=3, backend=backend)
    gpu.load_state_dict(cpu.state_dict())
    gpu.cuda()
    weights, biases = inputs(8, 1, seed=3)
    labels = torch.arange(8) % 3
    for model, to in ((cpu, lambda t: t.double()), (gpu, lambda t: t.cuda())):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for _ in range(2):
            opt.zero_grad(set_to_none=True)
            logits = model([to(t) for t in weights], [to(t) for t in biases])
            nn.functional.cross_entropy(logits, labels.to(logits.device)).backward()
            opt.step()
    for name, want in cpu.state_dict().items():
        got = gpu.state_dict()[name].cpu().double()
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("backend", ["compiled", "triton"])
def test_graphed_training_steps_match_the_ungraphed_ones(backend: str):
    """DWSNet with a compiling backend on CUDA replays its steps as CUDA graphs (the default):
    three AdamW steps end where the same steps without graphs end, and no graph was skipped."""
    from torch._dynamo.utils import counters

    def trained(graphs: bool) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        net = DWSNet(DIMS, hidden_channels=4, num_layers=2, out_features=3, backend=backend)
        net.cuda_graphs = graphs
        net.cuda()
        opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
        weights, biases = inputs(8, 1, seed=5)
        labels = (torch.arange(8) % 3).cuda()
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            logits = net([t.cuda() for t in weights], [t.cuda() for t in biases])
            nn.functional.cross_entropy(logits, labels).backward()
            opt.step()
        return {k: v.detach().cpu() for k, v in net.state_dict().items()}

    counters.clear()
    graphed = trained(True)
    assert counters["inductor"]["cudagraph_skips"] == 0
    plain = trained(False)
    for name, want in plain.items():
        torch.testing.assert_close(graphed[name], want, rtol=1e-4, atol=1e-5, msg=name)
