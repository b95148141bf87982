"""Where one layer's time goes: wall time per aten op (and input shapes), summed over steps.

    python benchmarks/op_breakdown.py                       # 2,32,32,1 hidden, fwd+bwd
    python benchmarks/op_breakdown.py --forward-only --dims 2,32,32,32,32,1

Each aten call is timed inside a TorchDispatchMode (CPU ops are synchronous). The mode holds
references to the arguments while an op runs, so autograd accumulates gradients out of place
(`add`) where a plain step adds in place (`add_`): totals run a little above a plain step,
which is printed first for comparison. Like layer_speed.py it re-runs itself under the
steady allocator (`--system-malloc` keeps glibc's defaults); run it on an idle machine.
"""

from __future__ import annotations

import argparse
import collections
import os
import time
from collections.abc import Callable, Sequence

import harness
import layer_speed
import torch
from torch.utils._python_dispatch import TorchDispatchMode

Key = tuple[str, tuple[tuple[int, ...], ...]]


class OpTimer(TorchDispatchMode):
    """Accumulates wall seconds and calls per (op, input shapes)."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: dict[Key, float] = collections.defaultdict(float)
        self.calls: collections.Counter[Key] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        start = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        shapes = tuple(tuple(a.shape) for a in args if isinstance(a, torch.Tensor))
        key = (str(func), shapes)
        self.seconds[key] += time.perf_counter() - start
        self.calls[key] += 1
        return out


def breakdown(run: Callable[[], None], steps: int) -> tuple[float, OpTimer]:
    """(plain seconds per step, per-op timer over `steps` timed steps), after a warm-up."""
    for _ in range(3):
        run()
    start = time.perf_counter()
    for _ in range(steps):
        run()
    plain = (time.perf_counter() - start) / steps
    timer = OpTimer()
    with timer:
        for _ in range(steps):
            run()
    return plain, timer


def report(plain: float, timer: OpTimer, steps: int, top: int) -> str:
    total = sum(timer.seconds.values()) / steps
    lines = [f"plain step {plain * 1e3:.2f} ms; sum over ops {total * 1e3:.2f} ms", ""]
    lines += ["| ms per step | calls | op | input shapes |", "|---:|---:|---|---|"]
    ranked = sorted(timer.seconds.items(), key=lambda kv: -kv[1])[:top]
    for key, seconds in ranked:
        op, shapes = key
        calls = timer.calls[key] // steps
        shown = ", ".join("x".join(map(str, s)) for s in shapes)
        lines.append(f"| {seconds / steps * 1e3:.3f} | {calls} | {op} | {shown} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dims", default="2,32,32,1")
    parser.add_argument("--mode", default="hidden")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--top", type=int, default=15, help="rows to print")
    parser.add_argument("--forward-only", action="store_true")
    parser.add_argument("--system-malloc", action="store_true", help="see layer_speed.py")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from dws_theory.runtime import layer_classes

    dims = harness.parse_shape(args.dims)
    weights, biases = harness.random_weight_space(dims, args.batch, args.channels)
    equivariant, _ = layer_classes(dims, args.mode)
    layer = equivariant(args.channels, args.channels)
    candidate = layer_speed.module_candidate(args.mode, layer, weights, biases)
    if args.forward_only:

        def run() -> None:
            with torch.no_grad():
                candidate.forward()
    else:
        run = layer_speed.step_fn(candidate)
    plain, timer = breakdown(run, args.steps)
    what = "forward" if args.forward_only else "forward+backward"
    print(
        f"{args.dims} {args.mode}, {what}, B={args.batch}, C={args.channels}, "
        f"threads={args.threads}, {args.steps} steps, "
        f"allocator={harness.allocator(dict(os.environ))}"
    )
    print(report(plain, timer, args.steps, args.top))
    return 0


if __name__ == "__main__":
    harness.rerun_under_steady_malloc()
    raise SystemExit(main())
