"""One AdamW training step of a weight-space classifier: DWSNet against the same-size NFN model.

Both models take a batch of MLPs (default 2,32,32,1, as the INR tasks' networks) with one
input channel and predict 10 classes, with the DWSNets paper's classifier sizes: 32 hidden
channels, 5 equivariant layers, a 64-wide head, batch 512.
  dws            DWSNet: emitted `hidden` EquivariantLayers + ReLU, InvariantLayer, MLP head
  dws-compiled   torch.compile(DWSNet), inductor                    (`--compile`); its
                 ReLUs are `activations.ReLU`, whose compiled gradient reads the output
  dws-backend-compiled  DWSNet(backend="compiled"): the same whole-model compilation,
                 built by the model itself (with the eager fallback) (`--compile`)
  dws-compiled-layers  each layer's forward compiled on its own (the compiled backend's
                 layers in an eager model), activations and head eager (`--compile`)
  dws-backend-fused  DWSNet(backend="fused"): the whole-model compilation with the fused
                 backend's C kernels for each tensor's identity term (`--compile`; on CUDA,
                 where the kernels do not run, the compiled model)
  dws-backend-triton  DWSNet(backend="triton"): the whole-model compilation with the triton
                 backend's kernels for each tensor's identity term and pools (`--compile`;
                 where Triton or CUDA is missing, the compiled model, after one warning)
  dws-compiled-cudagraphs  torch.compile(DWSNet, mode="reduce-overhead"): inductor's kernels
                 replayed as CUDA graphs (`--compile --cudagraphs`, CUDA); the optimiser eager
  On CUDA the `dws-backend-*` models replay their steps as CUDA graphs (DWSNet's default,
  `cuda_graphs=True`); with `--cudagraphs`, `dws-backend-compiled-nographs` and
  `dws-backend-triton-nographs` are the same models with `cuda_graphs=False`, and
  `nfn-cudagraphs` is NFN's model under torch.compile(mode="reduce-overhead").
  bound          not a model: DWSNet with each equivariant layer cut down to the one term
                 every equivariant layer has, the channel mix of each entry (one batched
                 GEMM per tensor); what no layer of the complete basis can undercut
  gemms          not a model: the GEMMs of the complete basis alone, as the plan runs them
                 (plan_passes.py, each tensor's identity term one batched GEMM), forward
                 and both gradients, for the layers of `channels` in and out (all but the
                 first); what no model of the complete basis whose GEMMs run at the BLAS's
                 speed can undercut, where the mixes are compute-bound
  nfn            NFN's HNPLinear + ReLU, HNPPool and an MLP head: the project's `nfn` model
                 (dws_theory.inr.equivariant.NFNNet), same channels, layers and head width
A step is forward, cross-entropy against fixed labels, backward and `AdamW.step()`. Times are
medians over interleaved timed blocks and paired ratios against dws in the same rounds (the
machinery of layer_speed.py, whose docstring says why); `peak MB` is the highest net
allocation during one step (CPU: profiler memory timeline; CUDA: max_memory_allocated above
a warm step's start); on CUDA `first peak MB` is the same over each model's first three
steps, where compilation and CUDA-graph capture allocate (a graphed warm step allocates
nothing new, so its `peak MB` reads about 0).

    python benchmarks/model_speed.py                  # CPU, 2 threads, B=512
    python benchmarks/model_speed.py --compile        # also the compiled DWSNet
    python benchmarks/model_speed.py --device cuda    # on a GPU
    python benchmarks/model_speed.py --device cuda --compile --cudagraphs --models dws \
        dws-compiled dws-compiled-cudagraphs dws-backend-triton bound nfn  # a subset
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import layer_speed  # noqa: E402  (timing, pairing, allocator and memory helpers)

from dws_theory.models import DWSNet  # noqa: E402


class IdentityMix(nn.Module):
    """The identity term alone: every weight and bias tensor's channels mixed by one [C_out,
    C_in] matrix (one batched GEMM per tensor, as the emitted layers run it). Not
    equivariant-complete; a lower bound on any layer that has the identity term."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels) / in_channels**0.5)

    def _mix(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        y = torch.bmm(self.weight.expand(batch, -1, -1), x.reshape(batch, x.shape[1], -1))
        return y.view(batch, self.weight.shape[0], *x.shape[2:])

    def forward(self, weights, biases):
        return [self._mix(w) for w in weights], [self._mix(b) for b in biases]


def bound_model(dws: DWSNet) -> DWSNet:
    """A copy of `dws` whose equivariant layers are `IdentityMix` (same channels)."""
    bound = copy.deepcopy(dws)
    bound.layers = nn.ModuleList(
        IdentityMix(layer.in_channels, layer.out_channels) for layer in dws.layers
    )
    return bound


def make_models(
    dims: tuple[int, ...], channels: int, layers: int, compiled: bool, cudagraphs: bool = False
) -> dict[str, nn.Module]:
    """The candidates, each from its own seed-0 init (their speed does not depend on it)."""
    models: dict[str, nn.Module] = {}
    torch.manual_seed(0)
    sizes = {"hidden_channels": channels, "num_layers": layers, "out_features": 10}
    dws = DWSNet(dims, **sizes)
    models["dws"] = dws
    if compiled:
        models["dws-compiled"] = torch.compile(dws)
        whole = DWSNet(dims, **sizes, backend="compiled")
        models["dws-backend-compiled"] = whole
        layers_only = copy.deepcopy(whole)
        layers_only.backend = "eager"  # the model's own forward eager, its layers compiled
        models["dws-compiled-layers"] = layers_only
        models["dws-backend-fused"] = DWSNet(dims, **sizes, backend="fused")
        models["dws-backend-triton"] = DWSNet(dims, **sizes, backend="triton")
    if compiled and cudagraphs:
        models["dws-compiled-cudagraphs"] = torch.compile(dws, mode="reduce-overhead")
        for backend in ("compiled", "triton"):
            plain = DWSNet(dims, **sizes, backend=backend, cuda_graphs=False)
            models[f"dws-backend-{backend}-nographs"] = plain
    models["bound"] = bound_model(dws)
    try:
        from dws_theory.inr.equivariant import NFNNet

        models["nfn"] = NFNNet(dims, **sizes)
        if compiled and cudagraphs:
            nfn_graphed = torch.compile(NFNNet(dims, **sizes), mode="reduce-overhead")
            models["nfn-cudagraphs"] = nfn_graphed
    except ImportError as exc:
        print(f"nfn is not available ({exc}); timing the rest", file=sys.stderr)
    return models


def gemms_step(
    dims: tuple[int, ...], batch: int, channels: int, layers: int, device: str
) -> Callable[[], None]:
    """The `gemms` candidate: `layers - 1` layers' plan GEMMs, C -> C, forward and backward."""
    from plan_passes import plan_passes  # beside this script, like layer_speed

    work = plan_passes(dims, "hidden", batch, channels, device, full_size_passes=False)

    def step() -> None:
        for _ in range(layers - 1):
            work.step()

    return step


def train_step(
    model: nn.Module,
    weights: list[torch.Tensor],
    biases: list[torch.Tensor],
    labels: torch.Tensor,
    graphed: bool = False,
) -> Callable[[], None]:
    """forward + cross-entropy + backward + AdamW step, with the optimiser made once;
    `graphed`: the model replays CUDA graphs, and each step is marked as a new one."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> None:
        if graphed:  # a new step: the graphs may overwrite the last step's outputs
            torch.compiler.cudagraph_mark_step_begin()
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(weights, biases), labels)
        loss.backward()
        opt.step()

    return step


def build_parser() -> argparse.ArgumentParser:
    """The command line (benchmarks/gpu_check.sh's commands are checked against it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--dims", default="2,32,32,1")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also the compiled DWSNet")
    parser.add_argument(
        "--cudagraphs",
        action="store_true",
        help="with --compile on CUDA: also torch.compile(DWSNet, mode='reduce-overhead')",
    )
    parser.add_argument("--models", nargs="+", default=None, help="time only these models")
    parser.add_argument("--repeats", type=int, default=9, help="timed blocks per candidate")
    parser.add_argument("--min-block", type=float, default=0.2, help="seconds per timed block")
    parser.add_argument("--system-malloc", action="store_true", help="glibc's default allocator")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device available", file=sys.stderr)
        return 2
    if args.cudagraphs and (args.device != "cuda" or not args.compile):
        print("--cudagraphs needs --device cuda and --compile", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    dims = layer_speed.parse_shape(args.dims)
    weights, biases = layer_speed.random_weight_space(
        dims, args.batch, 1, args.device, torch.float32
    )
    labels = torch.randint(10, (args.batch,), generator=torch.Generator().manual_seed(0))
    labels = labels.to(args.device)
    models = make_models(dims, args.channels, args.layers, args.compile, args.cudagraphs)
    known = [*models, "gemms"]
    if args.models is not None:
        unknown = sorted(set(args.models) - set(known))
        if unknown:
            print(f"--models: {unknown} are not among {known}", file=sys.stderr)
            return 2
        if "dws" not in args.models:
            print("--models: dws is needed (the ratios are against it)", file=sys.stderr)
            return 2
        models = {name: m for name, m in models.items() if name in args.models}
    graphed = args.device == "cuda"  # mark each step: any compiled model may replay graphs
    steps = {
        name: train_step(m.to(args.device), weights, biases, labels, graphed)
        for name, m in models.items()
    }
    first = {}  # CUDA: peaks over each fresh model's first steps (capture included)
    for name in steps if args.device == "cuda" else ():
        first[name] = layer_speed.cuda_peak_bytes(steps[name], calls=3)
    if args.layers > 1 and (args.models is None or "gemms" in args.models):
        steps["gemms"] = gemms_step(dims, args.batch, args.channels, args.layers, args.device)
    timed = layer_speed.interleaved_medians(steps, args.device, args.repeats, args.min_block)
    peak = layer_speed.cuda_peak_bytes if args.device == "cuda" else layer_speed.cpu_peak_bytes
    device = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor()
    print(
        f"device={args.device} ({device or platform.machine()}), torch {torch.__version__}, "
        f"threads={args.threads}, dims={args.dims}, B={args.batch}, C={args.channels}, "
        f"layers={args.layers}, repeats={args.repeats}, "
        f"allocator={layer_speed.allocator(dict(os.environ))}"
    )
    cuda = args.device == "cuda"
    extra = " first peak MB |" if cuda else ""
    print(f"| model | parameters | step ms (median) | min ms | x dws (paired) | peak MB |{extra}")
    print("|---|---|---|---|---|---|" + ("---|" if cuda else ""))
    base = timed["dws"].rounds
    for name in steps:
        t = timed[name]
        count = f"{sum(p.numel() for p in models[name].parameters()):,}" if name in models else "-"
        ratio = layer_speed.paired_ratio(t.rounds, base)
        tail = f" {first[name] / 2**20:.1f} |" if name in first else (" - |" if cuda else "")
        print(
            f"| {name} | {count} | {t.median * 1e3:.1f} | {t.minimum * 1e3:.1f} | "
            f"{ratio:.2f} | {peak(steps[name]) / 2**20:.1f} |{tail}"
        )
    if "nfn" in models:
        print()
        for name in (n for n in models if n.startswith("dws")):
            ratio = layer_speed.paired_ratio(timed["nfn"].rounds, timed[name].rounds)
            print(f"nfn step / {name} step = {ratio:.2f}x (paired)")
            if "nfn-cudagraphs" in timed:
                graphed = timed["nfn-cudagraphs"].rounds
                ratio = layer_speed.paired_ratio(graphed, timed[name].rounds)
                print(f"nfn-cudagraphs step / {name} step = {ratio:.2f}x (paired)")
        if "bound" in timed:
            bound = layer_speed.paired_ratio(timed["nfn"].rounds, timed["bound"].rounds)
            print(f"nfn step / bound step = {bound:.2f}x (paired): the most any layer can gain")
        if "gemms" in timed:
            gemms = layer_speed.paired_ratio(timed["nfn"].rounds, timed["gemms"].rounds)
            print(
                f"nfn step / gemms = {gemms:.2f}x (paired): the most a model of the complete "
                "basis can gain where its GEMMs set the time"
            )
    return 0


if __name__ == "__main__":
    layer_speed.rerun_under_steady_malloc()
    raise SystemExit(main())
