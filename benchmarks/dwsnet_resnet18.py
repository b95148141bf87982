"""A DWSNet over real ResNet-18 weights: build time, and forward+backward time and peak
memory per network, at a few hidden channel counts.

    python benchmarks/dwsnet_resnet18.py                    # width 64, 1000 classes; C = 2, 8
    python benchmarks/dwsnet_resnet18.py --width 8 --classes 10 --channels 2

The model is `DWSNet(resnet18(), hidden_channels=C, num_layers=L)` (torchvision's ResNet-18
with batch norm, `dws_theory.examples.resnet18`); its input is one network's weights and
buffers as `weights_from_models` stacks them (one channel). One step is forward, a scalar
loss and backward; the model's step and the floor's are timed round-robin, `--repeats`
rounds after warm-up (harness.interleaved_medians), the ratio is the median of per-round
ratios (harness.paired_ratio), peak memory the highest net CPU allocation during one step
(harness.cpu_peak_bytes). The baseline in
the same process is the step of the cheapest model that reads every weight once: one
channel-mixing GEMM per tensor (C_in -> C) and back (C -> 1), no pooling, so a ratio near 1
would mean the equivariant layers cost no more than touching every weight twice per layer.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import harness
import torch

from dws_theory.convert import weights_from_models
from dws_theory.examples import resnet18
from dws_theory.models import DWSNet


def _mix_floor(inputs: list[torch.Tensor], channels: int, layers: int) -> Callable[[], None]:
    """Per layer: every tensor mixed from its channels to `channels` (a 1x1 GEMM)."""
    mixes = [torch.nn.Linear(1 if i == 0 else channels, channels) for i in range(layers)]

    def step() -> None:
        total = 0.0
        for t in inputs:
            x = t.movedim(1, -1)
            for mix in mixes:
                x = torch.relu(mix(x))
            total = total + x.sum()
        total.backward()

    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--channels", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--layers", type=int, default=2, help="equivariant layers")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    net = resnet18(args.classes, args.width).eval()
    weights, biases = weights_from_models([net])
    inputs = [*weights, *biases]
    entries = sum(t.numel() for t in inputs)
    print(
        f"ResNet-18 width {args.width}, {args.classes} classes: {len(inputs)} tensors, "
        f"{entries:,} entries; {torch.get_num_threads()} threads"
    )
    print(f"{'C':>3} {'build s':>8} {'step s':>8} {'floor s':>8} {'ratio':>6} {'peak MB':>8}")
    for channels in args.channels:
        start = time.perf_counter()
        model = DWSNet(net, hidden_channels=channels, num_layers=args.layers, out_features=1)
        build = time.perf_counter() - start

        def step(model: DWSNet = model) -> None:
            model(weights, biases).sum().backward()

        floor = _mix_floor(inputs, channels, args.layers)
        timed = harness.interleaved_medians({"dws": step, "floor": floor}, "cpu", args.repeats, 0.0)
        ratio = harness.paired_ratio(timed["dws"].rounds, timed["floor"].rounds)
        peak = harness.cpu_peak_bytes(step)
        print(
            f"{channels:>3} {build:>8.1f} {timed['dws'].median:>8.2f} "
            f"{timed['floor'].median:>8.2f} {ratio:>6.1f} {peak / 2**20:>8.0f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
