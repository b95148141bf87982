"""How the engine's cost grows: every stage of a build on MLPs of growing depth and width and
on ResNet-18 at reduced and real widths, and what one emitted layer costs as tensors and
neuron sets grow.

Each case is a torch module taken through the stages `dws-theory build --module` runs:
  trace      `from_module(module, check=False)`: the fx trace and the derived space
  check      the module check (`run_module_check`: shapes, random group elements on the
             module's function in eval and, with BatchNorm, train mode, the notes)
  basis      `enumerate_basis`
  <route>    `certify(space, basis=basis, routes=[route])` for every registered route
             (closed_form, orbit_count, commutant, exact_commutation, independence, module)
  generate   the layer plan and the emitted module's source (`lower` + `render`)
  docs       with `--docs`: the derivation page and its figures, in a temporary folder
Times are wall seconds (best of `--repeats`). `peak MiB` is the process's peak resident
memory during the stage (Linux: VmHWM, reset before each stage through
/proc/self/clear_refs; elsewhere `ru_maxrss`, the peak since the process started), so it
includes what earlier stages left alive (the module, the trace, the basis).

Baseline: each family's first case runs first, in the same process; `x base` is a case's
total time over the baseline's. The default ResNet widths are 8 (the reduced copy of the
tests) and 64 (torchvision's ResNet-18: 64..512 channels, 1,000 classes, 11.7 M weights).

The layer table is one emitted EquivariantLayer with one channel in and out: tensors T and
neuron sets S of the space, the T^2 blocks, the ordered tensor pairs that share a permuted
or signed neuron set ("sharing pairs"), basis elements (equivariant linear + bias), ops of
the plan (pools, mixes, adds), multiply-adds of its channel mixes per sample
(`LayerPlan.multiply_adds`), its parameters and its emitted source; then what the basis
holds beyond one element per block and two per sharing pair (12 for every `hidden` MLP;
for a network with large fixed sets, the elements those sets multiply). With `--layer-memory`
the layer is built (`runtime.layer_classes`) and one forward at B = 1 is run for spaces up
to `--layer-memory-up-to` weights: `fwd MiB` is the peak net allocation (torch profiler),
against the 2 P floats of its input and output.

    python benchmarks/engine_scaling.py                   # MLPs, ResNet-18 at widths 8 and 64
    python benchmarks/engine_scaling.py --resnet-widths 64 --docs     # the real ResNet-18
    python benchmarks/engine_scaling.py --mlp-depths 3,4 --mlp-widths 4 --resnet-widths 2 \\
        --resnet-stages 1 --classes 10 --image 16 --layer-memory   # tiny (the test)
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import harness
import torch
from torch import nn

from dws_theory.basis import enumerate_basis
from dws_theory.certify import certify
from dws_theory.certify.registry import ROUTES
from dws_theory.codegen import render
from dws_theory.codegen.cli import target_plan
from dws_theory.codegen.plan import Add, Mix, Pool
from dws_theory.examples import ResNet, resnet18
from dws_theory.frontends.module_check import run_module_check
from dws_theory.frontends.target import Target, from_module
from dws_theory.spec import Kind, WeightSpace

MIB = 2**20


# -- peak memory of a stage ----------------------------------------------------------------
def _status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            found = re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.MULTILINE)
    except OSError:
        return None
    return int(found.group(1)) if found else None


def reset_peak() -> bool:
    """Reset the process's peak resident memory to its current size (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def peak_bytes() -> int:
    """Peak resident memory since the last reset (VmHWM), else since the process started."""
    hwm = _status_kib("VmHWM")
    if hwm is not None:
        return hwm * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


@dataclass
class Stage:
    name: str
    seconds: float
    peak: int  # bytes


def measure(name: str, fn: Callable[[], object], repeats: int = 1) -> tuple[object, Stage]:
    """(value, stage): best wall time of `repeats` calls, peak memory over all of them."""
    reset_peak()
    best, value = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return value, Stage(name, best, peak_bytes())


# -- cases -----------------------------------------------------------------------------------
@dataclass
class Case:
    family: str
    label: str
    module: nn.Module
    example: torch.Tensor
    stages: list[Stage] = field(default_factory=list)
    layer: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(s.seconds for s in self.stages)

    @property
    def peak(self) -> int:
        return max(s.peak for s in self.stages)


def mlp_module(dims: Sequence[int]) -> nn.Module:
    layers: list[nn.Module] = []
    for m in range(1, len(dims)):
        layers.append(nn.Linear(dims[m - 1], dims[m]))
        if m < len(dims) - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def cases(args: argparse.Namespace) -> list[Case]:
    gen = torch.Generator().manual_seed(0)
    out = []
    for width in args.mlp_widths:
        for depth in args.mlp_depths:
            dims = (2, *([width] * (depth - 1)), 1)
            label = f"MLP M={depth} w={width}"
            out.append(Case("mlp", label, mlp_module(dims), torch.randn(2, 2, generator=gen)))
    side = args.image
    for width in args.resnet_widths:
        if args.resnet_stages == 4:
            module = resnet18(args.classes, width)
            label = f"ResNet-18 w={width} ({width}..{8 * width} ch, {args.classes} cl)"
        else:  # ResNet-18's first stages only (a tiny run)
            widths = tuple(width * 2**k for k in range(args.resnet_stages))
            module = ResNet(widths, blocks=2, classes=args.classes)
            stages = f"{args.resnet_stages} stage{'s' if args.resnet_stages > 1 else ''}"
            label = f"ResNet-18's first {stages} w={width} ({args.classes} cl)"
        out.append(Case("resnet", label, module, torch.randn(2, 3, side, side, generator=gen)))
    return out


def run_stages(case: Case, repeats: int, docs: bool) -> Target:
    module = case.module

    def trace() -> Target:
        return from_module(module, "case", "hidden", "", case.example, check=False)

    target, stage = measure("trace", trace, repeats)
    case.stages.append(stage)
    result, stage = measure("check", lambda: run_module_check(module, target.trace), repeats)
    if result.failures:
        raise SystemExit(f"{case.label}: the module check failed: {result.failures[0]}")
    case.stages.append(stage)
    basis, stage = measure("basis", lambda: enumerate_basis(target.space), repeats)
    case.stages.append(stage)
    for route in ROUTES:

        def run(route: str = route):
            return certify(target.space, basis=basis, routes=[route], source=target.source)

        cert, stage = measure(route, run, repeats)
        if not cert.results:
            continue  # the route does not apply
        if not cert.passed:
            raise SystemExit(f"{case.label}: route {route} failed")
        case.stages.append(stage)
    plan_source, stage = measure(
        "generate", lambda: (lambda p: (p, render(p)))(target_plan(target, basis)), repeats
    )
    case.stages.append(stage)
    plan, source = plan_source
    if docs:
        from dws_theory.report.page import write_page

        full = certify(target.space, basis=basis, source=target.source)
        with tempfile.TemporaryDirectory() as folder:

            def page(folder: str = folder) -> object:
                return write_page(target, folder, basis=basis, certificate=full, plan=plan)

            _, stage = measure("docs", page)
        case.stages.append(stage)
    case.layer.update(layer_cost(target.space, basis, plan, source))
    return target


# -- one emitted layer -----------------------------------------------------------------------
def sharing_pairs(space: WeightSpace) -> int:
    """Ordered pairs of tensors (a tensor with itself included) with a permuted or signed
    neuron set in common."""
    moving = {s.name for s in space.sets if s.kind is not Kind.FIXED}
    sets = [set(t.axes) & moving for t in space.tensors]
    return sum(1 for a in sets for b in sets if a & b)


def layer_cost(space: WeightSpace, basis, plan, source: str) -> dict[str, float]:
    ops = plan.equivariant_ops
    return {
        "P": space.dimension,
        "T": len(space.tensors),
        "S": len(space.sets),
        "blocks": len(space.tensors) ** 2,
        "sharing": sharing_pairs(space),
        "basis": basis.equivariant_linear + basis.equivariant_bias,
        "pools": sum(isinstance(op, Pool) for op in ops),
        "mixes": sum(isinstance(op, Mix) for op in ops),
        "adds": sum(isinstance(op, Add) for op in ops),
        "macs": plan.multiply_adds(1, 1),
        "params": plan.parameter_count(1, 1),
        "source": len(source),
    }


def layer_memory(space: WeightSpace) -> int:
    """Peak net allocation of one forward of the emitted layer, B = 1, one channel."""
    from dws_theory.action import split_names
    from dws_theory.runtime import layer_classes

    layer = layer_classes(space)[0](1, 1)
    gen = torch.Generator().manual_seed(0)
    names_w, names_b = split_names(space)
    weights = [torch.randn(1, 1, *space.shape(n), generator=gen) for n in names_w]
    biases = [torch.randn(1, 1, *space.shape(n), generator=gen) for n in names_b]

    def step() -> None:
        with torch.no_grad():
            layer(weights, biases)

    step()
    return harness.cpu_peak_bytes(step)


# -- output ----------------------------------------------------------------------------------
def stage_table(done: list[Case]) -> list[str]:
    names = list(dict.fromkeys(s.name for c in done for s in c.stages))
    head = "| case | " + " | ".join(f"{n} s" for n in names) + " | total s | x base | peak MiB |"
    rows = [head, "|---" * (len(names) + 4) + "|"]
    base: dict[str, float] = {}
    for c in done:
        base.setdefault(c.family, c.total)
        by = {s.name: s for s in c.stages}
        cells = [f"{by[n].seconds:.2f}" if n in by else "-" for n in names]
        rows.append(
            f"| {c.label} | " + " | ".join(cells) + f" | {c.total:.2f} "
            f"| {c.total / base[c.family]:.2f} | {c.peak / MIB:,.0f} |"
        )
    return rows


def memory_table(done: list[Case]) -> list[str]:
    names = list(dict.fromkeys(s.name for c in done for s in c.stages))
    rows = ["| case | " + " | ".join(f"{n} MiB" for n in names) + " |"]
    rows.append("|---" * (len(names) + 1) + "|")
    for c in done:
        by = {s.name: s for s in c.stages}
        cells = [f"{by[n].peak / MIB:,.0f}" if n in by else "-" for n in names]
        rows.append(f"| {c.label} | " + " | ".join(cells) + " |")
    return rows


LAYER_COLUMNS = ("P", "T", "S", "blocks", "sharing", "basis", "pools", "mixes", "adds")
LAYER_COLUMNS += ("macs", "params", "source")


def layer_table(done: list[Case]) -> list[str]:
    cols = LAYER_COLUMNS + (("fwd MiB", "2P MiB") if any("fwd" in c.layer for c in done) else ())
    rows = ["| case | " + " | ".join(cols) + " | basis - T^2 - 2 sharing | macs / P |"]
    rows.append("|---" * (len(cols) + 3) + "|")
    for c in done:
        x = c.layer
        cells = [f"{int(x[k]):,}" for k in LAYER_COLUMNS]
        rest = int(x["basis"] - x["blocks"] - 2 * x["sharing"])  # 12 for every hidden MLP
        if "fwd MiB" in cols:
            fwd = x.get("fwd")
            cells += [f"{fwd / MIB:,.2f}" if fwd is not None else "-", f"{8 * x['P'] / MIB:,.2f}"]
        rows.append(
            f"| {c.label} | " + " | ".join(cells) + f" | {rest:,} | {x['macs'] / x['P']:.2f} |"
        )
    return rows


def sizes(text: str) -> tuple[int, ...]:
    return harness.parse_shape(text) if text.strip() else ()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mlp-depths", type=sizes, default=(4, 16, 64), help="'' for none")
    p.add_argument("--mlp-widths", type=sizes, default=(64,))
    p.add_argument("--resnet-widths", type=sizes, default=(8, 64), help="'' for none")
    p.add_argument("--resnet-stages", type=int, default=4, choices=(1, 2, 3, 4))
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--image", type=int, default=32, help="ResNet input side (default 32)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--docs", action="store_true", help="also time the derivation page")
    p.add_argument("--layer-memory", action="store_true", help="run the emitted layer once")
    p.add_argument("--layer-memory-up-to", type=int, default=2_000_000, metavar="P")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(
        f"# engine scaling: torch {torch.__version__}, {args.threads} threads, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the start, "
        f"per-stage peak: {'VmHWM reset per stage' if reset_peak() else 'ru_maxrss'}"
    )
    done = []
    for case in cases(args):
        target = run_stages(case, args.repeats, args.docs)
        if args.layer_memory and case.layer["P"] <= args.layer_memory_up_to:
            case.layer["fwd"] = layer_memory(target.space)
        done.append(case)
        c = case
        print(
            f"{c.label}: {c.total:.2f} s, peak {c.peak / MIB:,.0f} MiB "
            f"(load average {os.getloadavg()[0]:.2f})",
            flush=True,
        )
    print("\n## Stage times (wall seconds; x base: total over the family's first case)\n")
    print("\n".join(stage_table(done)))
    print("\n## Peak resident memory during each stage\n")
    print("\n".join(memory_table(done)))
    print("\n## One emitted EquivariantLayer, one channel in and out\n")
    print("\n".join(layer_table(done)))
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
