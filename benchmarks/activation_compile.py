"""ReLU under torch.compile: the built-in against `activations.ReLU` (gradient from the output).

The measured pattern is what ends an equivariant layer of a 2,32,32,1 DWSNet with 32
channels at B=512: a broadcast sum into W2's shape `[B, C, 32, 32]` followed by the
activation, forward and backward (fixed output gradient).
  eager          nn.ReLU, eager
  compiled       nn.ReLU under torch.compile (inductor): saves a boolean mask
  compiled-ours  activations.ReLU under torch.compile: saves the float output
Medians over interleaved blocks and paired ratios against `eager`, under the steady
allocator (the machinery of layer_speed.py).

    python benchmarks/activation_compile.py             # CPU, 2 threads, B=512
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence

import harness
import torch
from torch import nn

from dws_theory.activations import ReLU


def candidate(act: nn.Module, compiled: bool, batch: int, channels: int) -> Callable[[], None]:
    """fwd+bwd of act(x + a + b + c), broadcast into [batch, channels, 32, 32]."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, channels, 32, 32, generator=g, requires_grad=True)
    a = torch.randn(batch, channels, generator=g, requires_grad=True)
    b = torch.randn(batch, channels, 32, generator=g, requires_grad=True)
    c = torch.randn(batch, channels, 32, generator=g, requires_grad=True)
    grad = torch.randn(batch, channels, 32, 32, generator=g)

    def block(x, a, b, c):
        return act(x + a[:, :, None, None] + b[:, :, None, :] + c[:, :, :, None])

    fn = torch.compile(block) if compiled else block

    def step() -> None:
        fn(x, a, b, c).backward(grad)

    return step


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--min-block", type=float, default=0.2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    steps = {
        "eager": candidate(nn.ReLU(), False, args.batch, args.channels),
        "compiled": candidate(nn.ReLU(), True, args.batch, args.channels),
        "compiled-ours": candidate(ReLU(), True, args.batch, args.channels),
    }
    timed = harness.interleaved_medians(steps, "cpu", args.repeats, args.min_block)
    print(
        f"torch {torch.__version__}, threads={args.threads}, B={args.batch}, "
        f"C={args.channels}, allocator={harness.allocator(dict(os.environ))}"
    )
    print("| candidate | fwd+bwd ms (median) | x eager (paired) |")
    print("|---|---|---|")
    for name, t in timed.items():
        ratio = harness.paired_ratio(t.rounds, timed["eager"].rounds)
        print(f"| {name} | {t.median * 1e3:.1f} | {ratio:.2f} |")
    return 0


if __name__ == "__main__":
    harness.rerun_under_steady_malloc()
    raise SystemExit(main())
