"""A hand-written backward for the whole 2,32,32,1 `hidden` layer: what would it gain?

The emitted layers leave their backward to autograd. The backward of a linear layer is its
adjoint (the same pools, mixes and broadcasts, transposed), so a generator could emit it
too: one node instead of about fifty, the pools' gradients written into the buffer that the
identity GEMM's input gradient accumulates into, no out-of-place gradient sums. This sketch
writes that backward by hand for the checked-in generated/dws_2_32_32_1_hidden.py (the
forward is the module's own ops without autograd, keeping the concatenated features for the
weight gradients), checks it against autograd, and times it in alternation with the
emitted layer under autograd and the floor of benchmarks/layer_speed.py. An experiment, not
a benchmark: it answers one question and is kept to rerun it. It uses the benchmarks'
harness, so benchmarks/ goes on the path:

    PYTHONPATH=benchmarks python experiments/adjoint_sketch.py   # B=256, C=16, 2 threads
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import harness
import layer_speed
import torch
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parent.parent
PARAMETERS = (
    "mix_on_n1",
    "mix_on_none",
    "mix_W2_on_n2_n1",
    "mix_on_n2",
    "bias_W1",
    "bias_b1",
    "bias_W2",
    "bias_b2",
    "bias_W3",
    "bias_b3",
)


def load_layer_module():
    """The checked-in module, imported from its file (no engine needed)."""
    import importlib.util

    path = ROOT / "generated" / "dws_2_32_32_1_hidden.py"
    spec = importlib.util.spec_from_file_location("dws_2_32_32_1_hidden", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.DIMS == (2, 32, 32, 1) and module.MODE == "hidden"
    return module


def _mix(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.bmm(weight.expand(x.shape[0], -1, -1), x)


def forward(p, W1, W2, W3, b1, b2, b3):
    """The emitted forward, op for op; returns the outputs and the mixes' inputs."""
    mix_n1, mix_none, mix_id, mix_n2, bias_W1, bias_b1, bias_W2, bias_b2, bias_W3, bias_b3 = p
    batch, c_in = W1.shape[:2]
    c_out = mix_id.shape[0]
    W2_on_n1 = W2.sum(2) / 32
    cat_n1 = torch.cat((W1.transpose(2, 3).reshape(batch, c_in * 2, 32), b1, W2_on_n1), 1)
    cat_none = torch.cat(
        (
            (W1.sum(2) / 32).reshape(batch, c_in * 2),
            b1.mean(2),
            W2_on_n1.mean(2),
            b2.mean(2),
            (W3.sum(3) / 32).reshape(batch, c_in),
            b3.reshape(batch, c_in),
        ),
        1,
    )
    cat_n2 = torch.cat((W2.sum(3) / 32, b2, W3.reshape(batch, c_in, 32)), 1)
    m1_W1, m1_b1, m1_W2 = _mix(mix_n1, cat_n1).split([c_out * 2, c_out, c_out], 1)
    m0 = F.linear(cat_none, mix_none).split([c_out * 2] + [c_out] * 5, 1)
    m0_W1, m0_b1, m0_W2, m0_b2, m0_W3, m0_b3 = m0
    m2_W2, m2_b2, m2_W3 = _mix(mix_n2, cat_n2).split(c_out, 1)
    W1_out = bias_W1.view(c_out, 1, 2) + m0_W1.view(batch, c_out, 2)[:, :, None]
    W1_out = (W1_out + m1_W1.view(batch, c_out, 2, 32).transpose(2, 3)).contiguous()
    b1_out = bias_b1.view(c_out, 1) + m0_b1[:, :, None] + m1_b1
    W2_out = bias_W2.view(c_out, 1, 1) + m0_W2[:, :, None, None] + m1_W2[:, :, None]
    W2_out = W2_out + m2_W2[:, :, :, None]
    W2_out.view(batch, c_out, -1).baddbmm_(
        mix_id.expand(batch, -1, -1), W2.reshape(batch, c_in, -1)
    )
    b2_out = bias_b2.view(c_out, 1) + m0_b2[:, :, None] + m2_b2
    W3_out = bias_W3.view(c_out, 1, 1) + m0_W3.view(batch, c_out, 1)[:, :, :, None]
    W3_out = W3_out + m2_W3.view(batch, c_out, 1, 32)
    b3_out = bias_b3.view(c_out, 1) + m0_b3.view(batch, c_out, 1)
    return (W1_out, W2_out, W3_out, b1_out, b2_out, b3_out), (cat_n1, cat_none, cat_n2)


def backward(p, inputs, saved, grads):
    """The adjoint: gradients of the parameters (PARAMETERS order) and of the inputs."""
    mix_n1, mix_none, mix_id, mix_n2 = p[:4]
    W2 = inputs[1]
    cat_n1, cat_none, cat_n2 = saved
    gW1, gW2, gW3, gb1, gb2, gb3 = grads
    batch, c_out = gW1.shape[:2]
    c_in = W2.shape[1]
    # Broadcast terms -> the mixes' output gradients (sums over the broadcast axes).
    g_rows, g_cols = gW2.sum(2), gW2.sum(3)  # W2's terms kept along n1, along n2
    g_m1 = torch.cat((gW1.transpose(2, 3).reshape(batch, c_out * 2, 32), gb1, g_rows), 1)
    g_m0 = torch.cat(
        (
            gW1.sum(2).reshape(batch, c_out * 2),
            gb1.sum(2),
            g_rows.sum(2),
            gb2.sum(2),
            gW3.sum(3).reshape(batch, c_out),
            gb3.reshape(batch, c_out),
        ),
        1,
    )
    g_m2 = torch.cat((g_cols, gb2, gW3.reshape(batch, c_out, 32)), 1)
    g_bias = [g.sum(0) for g in g_m0.split([c_out * 2] + [c_out] * 5, 1)]
    g_bias[0] = gW1.sum((0, 2)).reshape(-1)  # bias_W1 varies along n0 only
    # The mixes: weight gradients and the features' gradients.
    g_mix_n1 = torch.bmm(g_m1, cat_n1.transpose(1, 2)).sum(0)
    g_mix_none = g_m0.t() @ cat_none
    g_mix_n2 = torch.bmm(g_m2, cat_n2.transpose(1, 2)).sum(0)
    g3 = gW2.reshape(batch, c_out, -1)
    g_mix_id = torch.bmm(g3, W2.reshape(batch, c_in, -1).transpose(1, 2)).sum(0)
    f_W1_n1, f_b1, f_W2_n1 = _mix(mix_n1.t(), g_m1).split([c_in * 2, c_in, c_in], 1)
    f_none = (g_m0 @ mix_none).split([c_in * 2] + [c_in] * 5, 1)
    f_W1_none, f_b1_none, f_W2_none, f_b2_none, f_W3_none, f_b3_none = f_none
    f_W2_n2, f_b2, f_W3_n2 = _mix(mix_n2.t(), g_m2).split(c_in, 1)
    # The pools, transposed: broadcasts; W2's go into its identity GEMM's gradient buffer.
    f_W2_n1 = f_W2_n1 + f_W2_none[:, :, None] / 32
    grad_W1 = f_W1_n1.view(batch, c_in, 2, 32).transpose(2, 3)
    grad_W1 = (grad_W1 + f_W1_none.view(batch, c_in, 1, 2) / 32).contiguous()
    grad_W2 = f_W2_n1[:, :, None, :] / 32 + f_W2_n2[:, :, :, None] / 32
    grad_W2.view(batch, c_in, -1).baddbmm_(mix_id.t().expand(batch, -1, -1), g3)
    grad_W3 = f_W3_n2.view(batch, c_in, 1, 32) + f_W3_none.view(batch, c_in, 1, 1) / 32
    grad_b1 = f_b1 + f_b1_none[:, :, None] / 32
    grad_b2 = f_b2 + f_b2_none[:, :, None] / 32
    grad_b3 = f_b3_none.view(batch, c_in, 1)
    g_bias_W1, g_bias_b1, g_bias_W2, g_bias_b2, g_bias_W3, g_bias_b3 = g_bias
    return (
        (g_mix_n1, g_mix_none, g_mix_id, g_mix_n2, g_bias_W1, g_bias_b1)
        + (g_bias_W2, g_bias_b2, g_bias_W3, g_bias_b3),
        (grad_W1, grad_W2, grad_W3, grad_b1, grad_b2, grad_b3),
    )


def setup(batch: int, channels: int, dtype: torch.dtype = torch.float32):
    """The emitted layer with random parameters, inputs and output gradients."""
    module = load_layer_module()
    torch.manual_seed(0)
    layer = module.EquivariantLayer(channels, channels).to(dtype)
    with torch.no_grad():
        for name in PARAMETERS:  # biases too, so that their gradients are not trivially 0
            getattr(layer, name).normal_(std=0.3)
    weights, biases = harness.random_weight_space(module.DIMS, batch, channels, dtype=dtype)
    inputs = [t.requires_grad_(True) for t in weights + biases]
    with torch.no_grad():
        grads = [torch.randn_like(t) for t in sum(layer(weights, biases), [])]
    return layer, inputs, grads


def max_gap(batch: int = 3, channels: int = 2) -> float:
    """Largest |adjoint - autograd| over every gradient and output, float64."""
    layer, inputs, grads = setup(batch, channels, torch.float64)
    params = [getattr(layer, n) for n in PARAMETERS]
    outs = sum(layer(inputs[:3], inputs[3:]), [])  # W1, W2, W3, b1, b2, b3 as `forward`
    reference = torch.autograd.grad(outs, params + inputs, grads)
    with torch.no_grad():
        detached = [t.detach() for t in inputs]
        mine, saved = forward([q.detach() for q in params], *detached)
        g_params, g_inputs = backward(params, detached, saved, grads)
    pairs = list(zip(mine, outs, strict=True))
    pairs += list(zip([*g_params, *g_inputs], reference, strict=True))
    return max((a - b).abs().max().item() for a, b in pairs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--min-block", type=float, default=0.05)
    parser.add_argument("--system-malloc", action="store_true", help="see layer_speed.py")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    gap = max_gap()
    print(f"adjoint against autograd (float64, B=3, C=2): max |difference| {gap:.2e}")
    if gap > 1e-9:
        print("the hand-written backward is wrong", file=sys.stderr)
        return 1
    layer, inputs, grads = setup(args.batch, args.channels)
    params = [getattr(layer, n) for n in PARAMETERS]
    emitted = layer_speed.module_candidate("emitted", layer, inputs[:3], inputs[3:])
    floor = layer_speed.floor_candidate(inputs[:3], inputs[3:], args.channels)
    detached_params = [q.detach() for q in params]
    detached = [t.detach() for t in inputs]

    def adjoint() -> None:
        with torch.no_grad():
            outs, saved = forward(detached_params, *detached)
            backward(detached_params, detached, saved, grads)

    fns = {
        "floor": layer_speed.step_fn(floor),
        "emitted layer, autograd": layer_speed.step_fn(emitted),
        "hand-written adjoint": adjoint,
    }
    timed = harness.interleaved_medians(fns, "cpu", args.repeats, args.min_block)
    base = timed["floor"].rounds
    auto = timed["emitted layer, autograd"].rounds
    print(
        f"2,32,32,1 hidden, fwd+bwd, B={args.batch}, C={args.channels}, "
        f"threads={args.threads}, allocator={harness.allocator(dict(os.environ))}"
    )
    print("| step | median ms | x floor (paired) | x autograd (paired) |")
    print("|---|---:|---:|---:|")
    for name, t in timed.items():
        print(
            f"| {name} | {t.median * 1e3:.2f} | {harness.paired_ratio(t.rounds, base):.2f} "
            f"| {harness.paired_ratio(t.rounds, auto):.2f} |"
        )
    return 0


if __name__ == "__main__":
    harness.rerun_under_steady_malloc()
    raise SystemExit(main())
