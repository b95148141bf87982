"""Forward+backward speed and memory of one equivariant weight-space layer, side by side.

Candidates, all in the layout [B, C, d_m, d_{m-1}] / [B, C, d_m]:
  floor     one channel-mixing GEMM over every weight-space entry, x [B*P, C] @ w [C, C]:
            the identity term no equivariant layer can avoid, measured here
  ours      the emitted `hidden` EquivariantLayer(C, C) (`--layer-factory`, default
            dws_theory.runtime:layer_classes)
  gemms     the plan's GEMMs alone (plan_passes.py, each fused identity mix as a plain
            batched GEMM): the least time at the BLAS's speed (`--no-passes` leaves it out)
  passes    the work an eager implementation of our plan cannot skip (plan_passes.py): the
            plan's GEMMs and the full-size passes of its fused tensors, without autograd,
            concatenations or small broadcasts; a lower bound for any eager PyTorch layer
            built from this plan (`--no-passes` leaves it out)
  ours-*-compiled  (`--compile`) the same layer under torch.compile (inductor)
  ours-*-compiled-cudagraphs  (`--compile --cudagraphs`, CUDA) the same layer under
            torch.compile(mode="reduce-overhead"): inductor's kernels replayed as CUDA graphs
  ours-*-<backend> (`--backends fused triton ...`) the layer of another backend, same
            parameters; with `--cudagraphs`, a compiling backend's layer also as
  ours-*-<backend>-cudagraphs  under an outer torch.compile with CUDA graphs and the
            module's own inductor options (the kernel backends' graph passes)
  nfn-hnp   NFN's HNPLinear (PyPI nfn==0.1.2), the same symmetry group
  nfn-np    NFN's NPLinear, the larger `all` group (fewer terms), for reference

Each step is forward, then backward from a fixed output gradient to the inputs and every
parameter (`torch.autograd.grad`, so nothing accumulates between runs). Times are medians
over `--repeats` timed blocks (time.perf_counter, CUDA synchronised) after a warm-up; the
blocks of all candidates of one shape alternate, so load on a shared machine hits all alike.
The minimum over blocks and the median CPU time (time.process_time: all threads, not
counting time descheduled) are reported too: on a loaded machine they are the closer
estimates of the uncontended cost. "x floor (paired)" is the median over rounds of a
candidate's block time divided by the floor's block time in the same round: a slow spell
of the machine slows both sides of each ratio, so it is the steadiest of the ratios.

Allocator. On Linux with glibc the script re-runs itself with a steady allocator
(STEADY_MALLOC: no mmap for large buffers, no trimming of the heap), so that after warm-up
every candidate reuses its memory, as PyTorch's caching allocator does on CUDA. With glibc's
defaults a buffer above the (dynamic) mmap threshold comes back from the kernel as fresh
pages, each zeroed on its first touch: on a 2-CPU VM a fresh 16 MB buffer in our layer's
step cost 6-7 ms of page faults against 0.8-1.0 ms to write it into reused memory. Which
candidate pays how many depends on the allocation history of the whole process, so ratios
drift with the order of the candidates.
`--system-malloc` measures with glibc's defaults instead; either way the table reports the
minor page faults per step (getrusage), so the effect is visible.

Memory. CPU: `saved` is the bytes of the tensors autograd keeps for backward, counted once
per storage, excluding the inputs and parameters themselves (saved_tensors_hooks); `peak`
is the highest net allocation above the starting point during forward+backward, from the
profiler's per-allocation memory timeline. CUDA: `peak` is torch.cuda.max_memory_allocated above the
allocation before a warm step, which cannot see what CUDA graphs allocated once, at capture,
in a pool of their own; `first peak` (the JSON's `first_peak_mb`) is the same over the first
three steps of a fresh candidate, capture, compilation and Triton's autotuning included,
which can. With `--device cuda` a device-to-device copy of one input (B*P*C elements) is
timed with CUDA events as a memory roofline.

    python benchmarks/layer_speed.py                       # CPU, B=256, C=16, 2 threads
    python benchmarks/layer_speed.py --device cuda         # fp32 and bf16, B=1024
    python benchmarks/layer_speed.py --system-malloc       # glibc's default allocator
    python benchmarks/layer_speed.py --compile --no-passes --shapes 2,32,32,1 2,32,32,32,32,1
    python benchmarks/layer_speed.py --compile --backends fused --shapes 2,32,32,1
    python benchmarks/layer_speed.py --device cuda --compile --cudagraphs --backends triton
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

try:
    import resource
except ImportError:  # not Unix: no page-fault counts
    resource = None

# glibc tunables (read at process start): serve every allocation from the heap and never
# hand freed memory back to the kernel, so repeated steps fault no fresh pages.
STEADY_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(2**32), "MALLOC_TRIM_THRESHOLD_": str(2**40)}
SHAPES = ("2,32,32,1", "2,32,32,32,32,1", "2," + "64," * 8 + "1")
Tensors = list[torch.Tensor]


# -- inputs and outputs ----------------------------------------------------------------------
def parse_shape(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(","))


def weight_space_size(dims: Sequence[int]) -> int:
    """P = sum_m d_m d_{m-1} + d_m."""
    return sum(dims[m] * dims[m - 1] + dims[m] for m in range(1, len(dims)))


def random_weight_space(
    dims: Sequence[int],
    batch: int,
    channels: int,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> tuple[Tensors, Tensors]:
    """Random features in the layout contract."""
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).to(device=device, dtype=dtype)

    weights = [rand(batch, channels, dims[m], dims[m - 1]) for m in range(1, len(dims))]
    biases = [rand(batch, channels, dims[m]) for m in range(1, len(dims))]
    return weights, biases


def output_tensors(out: object) -> Tensors:
    """Every tensor of a layer's output, weights then biases per layer (W1, b1, W2, ...)."""
    if isinstance(out, torch.Tensor):
        return [out]
    if hasattr(out, "weights") and hasattr(out, "biases"):  # nfn WeightSpaceFeatures
        out = (list(out.weights), list(out.biases))
    if (
        isinstance(out, (tuple, list))
        and len(out) == 2
        and all(isinstance(o, (tuple, list)) for o in out)
        and len(out[0]) == len(out[1])
    ):
        return [t for pair in zip(out[0], out[1], strict=True) for t in output_tensors(pair)]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in output_tensors(o)]
    raise TypeError(f"cannot read tensors from a layer output of type {type(out).__name__}")


def flat_weight_space(tensors: Tensors) -> torch.Tensor:
    """[B, C, ...] tensors in order W1, b1, W2, ... -> [B, C * P] (channel-major per tensor)."""
    return torch.cat([t.reshape(t.shape[0], -1) for t in tensors], dim=1)


def allocator(environ: dict[str, str]) -> str:
    """'steady' when this process started with STEADY_MALLOC, else 'system'."""
    steady = all(environ.get(k) == v for k, v in STEADY_MALLOC.items())
    return "steady" if steady else "system"


def steady_malloc_env(environ: dict[str, str], libc: str) -> dict[str, str] | None:
    """The environment to re-run this script under for a steady allocator, or None when
    it already runs under one or the C library is not glibc (the tunables are glibc's)."""
    if libc != "glibc" or allocator(environ) == "steady":
        return None
    return {**environ, **STEADY_MALLOC}


def rerun_under_steady_malloc() -> None:
    """Replace this process by the same command under STEADY_MALLOC, unless it runs under it
    already, was given --system-malloc, or the C library is not glibc. For `__main__` only:
    the tunables take effect at process start."""
    if "--system-malloc" in sys.argv[1:]:
        return
    env = steady_malloc_env(dict(os.environ), platform.libc_ver()[0])
    if env is not None:
        os.execve(sys.executable, [sys.executable, *sys.argv], env)


def minor_faults() -> int:
    """Minor page faults of this process so far (0 where getrusage is unavailable)."""
    if resource is None:
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


# -- candidates ------------------------------------------------------------------------------
@dataclass
class Candidate:
    """A module (or None) and a closure running its forward on fixed inputs."""

    name: str
    forward: Callable[[], Tensors]
    inputs: Tensors
    parameters: Tensors
    note: str = ""
    step: Callable[[], None] | None = None  # its own step instead of autograd.grad
    layout: bool = True  # returns the weight-space layout (checked)


def load_factory(path: str) -> Callable:
    """'package.module:function' -> the function (e.g. dws_theory.runtime:layer_classes)."""
    module_name, _, attr = path.partition(":")
    return getattr(importlib.import_module(module_name), attr or "layer_classes")


def nfn_layers() -> tuple[type, type, type, Callable] | None:
    """(HNPLinear, NPLinear, WeightSpaceFeatures, network_spec_from_wsfeat), or None."""
    try:
        from nfn.common import WeightSpaceFeatures, network_spec_from_wsfeat
        from nfn.layers import HNPLinear, NPLinear
    except ImportError:
        return None
    return HNPLinear, NPLinear, WeightSpaceFeatures, network_spec_from_wsfeat


def plan_multiply_adds(dims: Sequence[int], mode: str) -> int | None:
    """Multiply-adds of our layer's channel mixes per sample and c_in * c_out (None if the
    engine is not importable): the floor does weight_space_size(dims) of them."""
    try:
        from dws_theory.basis import enumerate_basis
        from dws_theory.codegen import lower
        from dws_theory.spec import mlp
    except ImportError:
        return None
    return lower(enumerate_basis(mlp(dims, mode)), mode=mode).multiply_adds()


def floor_candidate(weights: Tensors, biases: Tensors, channels: int) -> Candidate:
    """x [B*P, C] @ w [C, C]: every entry mixed over channels once, nothing else."""
    batch = weights[0].shape[0]
    size = sum(t[0, 0].numel() for t in weights + biases)
    like = weights[0]
    gen = torch.Generator(device="cpu").manual_seed(1)
    x = torch.randn(batch * size, channels, generator=gen).to(like.device, like.dtype)
    w = (torch.randn(channels, channels, generator=gen) / math.sqrt(channels)).to(x)
    x.requires_grad_(True)
    w.requires_grad_(True)
    return Candidate("floor", lambda: [x @ w], [x], [w], "x[B*P,C] @ w[C,C]", layout=False)


def passes_candidate(
    dims: tuple[int, ...], mode: str, like: torch.Tensor, full_size_passes: bool = True
) -> Candidate | None:
    """The plan's unavoidable work (plan_passes.py), or None without the engine; without
    `full_size_passes`, its GEMMs alone (`gemms-<mode>`)."""
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:  # plan_passes.py sits beside this script
        sys.path.insert(0, here)
    from plan_passes import plan_passes

    batch, channels = like.shape[:2]
    try:
        work = plan_passes(
            dims, mode, batch, channels, str(like.device), like.dtype, full_size_passes
        )
    except ImportError:  # dws_theory not importable
        return None
    if full_size_passes:
        name, note = f"passes-{mode}", f"plan GEMMs + full-size passes, {work.macs} macs/sample"
    else:
        name, note = f"gemms-{mode}", f"plan GEMMs only, {work.macs} macs/sample"
    return Candidate(name, work.forward, work.tensors, [], note, step=work.step, layout=False)


def module_candidate(
    name: str,
    module: nn.Module,
    weights: Tensors,
    biases: Tensors,
    wrap: Callable[[Tensors, Tensors], tuple] = lambda w, b: (w, b),
) -> Candidate:
    w = [t.detach().clone().requires_grad_(True) for t in weights]
    b = [t.detach().clone().requires_grad_(True) for t in biases]
    args = wrap(w, b)
    params = [p for p in module.parameters() if p.requires_grad]
    count = sum(p.numel() for p in params)
    return Candidate(name, lambda: output_tensors(module(*args)), w + b, params, f"{count} params")


GRAPHED_BACKENDS = ("compiled", "fused", "triton")  # backends whose layers compile


def cudagraph_candidate(
    name: str, layer: nn.Module, weights: Tensors, biases: Tensors
) -> Candidate:
    """`layer` under torch.compile with CUDA graphs (mode="reduce-overhead"; with the
    layer's module's own inductor options, such as a kernel backend's graph passes, where it
    has them): its kernels captured and replayed as CUDA graphs."""
    module = sys.modules[type(layer).__module__]
    options = getattr(module, "COMPILE_OPTIONS", None)
    if options:
        fast = torch.compile(layer, options={**options, "triton.cudagraphs": True})
    else:
        fast = torch.compile(layer, mode="reduce-overhead")
    c = module_candidate(name, fast, weights, biases)
    forward = c.forward

    def replay() -> Tensors:
        # Each call is a new step: the graphs may overwrite the outputs of the last one.
        torch.compiler.cudagraph_mark_step_begin()
        return forward()

    c.forward = replay
    return c


def candidates(
    dims: tuple[int, ...],
    weights: Tensors,
    biases: Tensors,
    channels: int,
    factory: Callable | None,
    modes: Sequence[str],
    passes: bool = True,
    compiled: bool = False,
    backends: Sequence[str] = (),
    cudagraphs: bool = False,
) -> list[Candidate]:
    like = weights[0]
    out = [floor_candidate(weights, biases, channels)]
    if factory is not None:
        for mode in modes:
            equivariant, _ = factory(dims, mode)
            layer = equivariant(channels, channels).to(like.device, like.dtype)
            out.append(module_candidate(f"ours-{mode}", layer, weights, biases))
            if compiled:  # the same layer (same parameters) under torch.compile (inductor)
                fast = torch.compile(layer)
                out.append(module_candidate(f"ours-{mode}-compiled", fast, weights, biases))
            if compiled and cudagraphs:
                name = f"ours-{mode}-compiled-cudagraphs"
                out.append(cudagraph_candidate(name, layer, weights, biases))
            for backend in backends:  # another backend's layer, with the same parameters
                other = factory(dims, mode, backend=backend)[0](channels, channels)
                other = other.to(like.device, like.dtype)
                other.load_state_dict(layer.state_dict())
                out.append(module_candidate(f"ours-{mode}-{backend}", other, weights, biases))
                if cudagraphs and backend in GRAPHED_BACKENDS:
                    name = f"ours-{mode}-{backend}-cudagraphs"
                    out.append(cudagraph_candidate(name, other, weights, biases))
    for mode in modes if passes else ():
        for full in (True, False):
            bound = passes_candidate(dims, mode, like, full)
            if bound is not None:
                out.append(bound)
    nfn = nfn_layers()
    if nfn is not None:
        hnp, np_, features, spec_of = nfn
        spec = spec_of(features(weights, biases))

        def wrap(w: Tensors, b: Tensors) -> tuple:
            return (features(w, b),)

        for name, cls in (("nfn-hnp", hnp), ("nfn-np", np_)):
            layer = cls(spec, channels, channels).to(like.device, like.dtype)
            out.append(module_candidate(name, layer, weights, biases, wrap))
    return out


# -- measurements ----------------------------------------------------------------------------
def step_fn(c: Candidate, grads: Tensors | None = None) -> Callable[[], None]:
    """Forward, then backward to inputs and parameters from fixed output gradients."""
    if c.step is not None:
        return c.step
    targets = c.inputs + c.parameters
    if grads is None:
        with torch.no_grad():
            grads = [torch.randn_like(t) for t in c.forward()]

    def step() -> None:
        outs = c.forward()
        torch.autograd.grad(outs, targets, grads)

    return step


def check_outputs(c: Candidate, weights: Tensors, biases: Tensors) -> None:
    """A layer must return one tensor per input tensor with the input's shape."""
    if not c.layout:
        return
    with torch.no_grad():
        outs = c.forward()
    expected = [tuple(t.shape) for pair in zip(weights, biases, strict=True) for t in pair]
    got = [tuple(t.shape) for t in outs]
    if got != expected:
        raise RuntimeError(f"{c.name}: output shapes {got}, expected {expected}")


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


@dataclass
class Timing:
    """Seconds per call over the timed blocks, and the median minor page faults per call."""

    median: float
    iqr: float
    minimum: float
    cpu_median: float
    faults: float
    rounds: list[float]


def interleaved_medians(
    fns: dict[str, Callable[[], None]], device: str, repeats: int, min_block: float
) -> dict[str, Timing]:
    """Per-call times of each function, timed round-robin.

    Each function is warmed up, then timed in blocks of `number` calls (enough for
    `min_block` seconds); the blocks of all functions alternate, in a rotating order, so a
    slow spell of a shared machine hits every candidate alike instead of one of them.
    CPU time (all threads of this process) does not count time spent descheduled, so it is
    the steadier number when other processes share the cores. The per-round times let a
    caller take paired ratios: two candidates timed in the same round saw the same machine.
    """
    number = {}
    for name, fn in fns.items():
        for _ in range(2):
            fn()
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        number[name] = max(1, math.ceil(min_block / max(time.perf_counter() - t0, 1e-9)))
    times: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    faults: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn = fns[name]
            _sync(device)
            t0, c0, f0 = time.perf_counter(), time.process_time(), minor_faults()
            for _ in range(number[name]):
                fn()
            _sync(device)
            times[name].append((time.perf_counter() - t0) / number[name])
            cpu[name].append((time.process_time() - c0) / number[name])
            faults[name].append((minor_faults() - f0) / number[name])
    out = {}
    for name, ts in times.items():
        q = statistics.quantiles(ts, n=4) if len(ts) > 1 else [ts[0]] * 3
        out[name] = Timing(
            statistics.median(ts),
            q[2] - q[0],
            min(ts),
            statistics.median(cpu[name]),
            statistics.median(faults[name]),
            ts,
        )
    return out


def paired_ratio(times: list[float], base: list[float]) -> float:
    """Median over rounds of time / base time in the same round: robust to slow spells."""
    return statistics.median(t / b for t, b in zip(times, base, strict=True))


def saved_bytes(c: Candidate) -> int:
    """Bytes autograd keeps for backward: unique storages, inputs and parameters excluded."""
    exclude = {t.untyped_storage().data_ptr() for t in c.inputs + c.parameters}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in exclude:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        outs = c.forward()
    del outs
    return sum(seen.values())


def cpu_peak_bytes(step: Callable[[], None]) -> int:
    """Highest net CPU allocation above the start during one step.

    From the profiler's per-allocation memory timeline (`_memory_profile`, the data behind
    the public `export_memory_timeline`): a running sum of every create and destroy.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(
        activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True
    ) as prof:
        step()
    current = peak = 0
    for _, action, _, size in sorted(prof._memory_profile().timeline, key=lambda e: e[0]):
        if action.name == "CREATE":
            current += size
        elif action.name == "DESTROY":
            current -= size
        peak = max(peak, current)
    return peak


def cuda_peak_bytes(step: Callable[[], None], calls: int = 1) -> int:
    """The highest allocation above the start over `calls` steps (a fresh candidate's first
    steps include what its compilation and CUDA-graph capture allocate)."""
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    for _ in range(calls):
        step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def cuda_copy_seconds(numel: int, dtype: torch.dtype, repeats: int = 50) -> float:
    """Median device-to-device copy of `numel` elements, timed with CUDA events."""
    x = torch.randn(numel, device="cuda").to(dtype)
    y = torch.empty_like(x)
    for _ in range(5):
        y.copy_(x)
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        y.copy_(x)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


@dataclass
class Row:
    shape: str
    P: int
    dtype: str
    impl: str
    note: str
    fwd_ms: float
    step_ms: float
    step_iqr_ms: float
    step_min_ms: float
    step_cpu_ms: float
    faults_per_step: float
    runs: int
    saved_mb: float | None
    peak_mb: float
    x_floor: float = 0.0
    x_floor_min: float = 0.0
    x_floor_cpu: float = 0.0
    x_floor_paired: float = 0.0
    extra: dict = field(default_factory=dict)


def measure_shape(
    dims: tuple[int, ...],
    args: argparse.Namespace,
    dtype: torch.dtype,
    factory: Callable | None,
) -> list[Row]:
    weights, biases = random_weight_space(dims, args.batch, args.channels, args.device, dtype)
    cands = candidates(
        dims,
        weights,
        biases,
        args.channels,
        factory,
        args.modes,
        not args.no_passes,
        args.compile,
        args.backends,
        args.cudagraphs,
    )
    fns: dict[str, Callable[[], None]] = {}
    for c in cands:
        check_outputs(c, weights, biases)

        def forward(c: Candidate = c) -> None:
            with torch.no_grad():
                c.forward()

        fns[f"{c.name}/fwd"] = forward
        fns[f"{c.name}/step"] = step_fn(c)
    first = {}  # CUDA: peaks over each fresh candidate's first steps (capture included)
    for c in cands if args.device == "cuda" else ():
        first[c.name] = cuda_peak_bytes(fns[f"{c.name}/step"], calls=3)
    timed = interleaved_medians(fns, args.device, args.repeats, args.min_block)
    rows = []
    floor_rounds = timed[f"{cands[0].name}/step"].rounds
    for c in cands:
        step = fns[f"{c.name}/step"]
        if args.device == "cuda":
            saved, peak = None, cuda_peak_bytes(step)
        else:
            saved, peak = saved_bytes(c) / 2**20, cpu_peak_bytes(step)
        t = timed[f"{c.name}/step"]
        rows.append(
            Row(
                shape=",".join(map(str, dims)),
                P=weight_space_size(dims),
                dtype=str(dtype).replace("torch.", ""),
                impl=c.name,
                note=c.note,
                fwd_ms=timed[f"{c.name}/fwd"].median * 1e3,
                step_ms=t.median * 1e3,
                step_iqr_ms=t.iqr * 1e3,
                step_min_ms=t.minimum * 1e3,
                step_cpu_ms=t.cpu_median * 1e3,
                faults_per_step=t.faults,
                runs=args.repeats,
                saved_mb=saved,
                peak_mb=peak / 2**20,
                x_floor_paired=paired_ratio(t.rounds, floor_rounds),
                extra={"rounds_ms": [r * 1e3 for r in t.rounds]},
            )
        )
        if c.name in first:
            rows[-1].extra["first_peak_mb"] = first[c.name] / 2**20
        label = f"{rows[-1].shape} {rows[-1].dtype} {c.name}"
        print(f"  {label}: {t.median * 1e3:.2f} ms", file=sys.stderr)
    floor = rows[0].step_ms
    for r in rows:
        if r.impl.startswith("ours-"):
            macs = plan_multiply_adds(dims, r.impl.split("-")[1])  # ours-<mode>[-<backend>]
            if macs is not None:
                r.extra["macs_x_floor"] = macs / weight_space_size(dims)
        r.x_floor = r.step_ms / floor
        r.x_floor_min = r.step_min_ms / rows[0].step_min_ms
        r.x_floor_cpu = r.step_cpu_ms / rows[0].step_cpu_ms
    if args.device == "cuda":
        copy = cuda_copy_seconds(args.batch * weight_space_size(dims) * args.channels, dtype)
        for r in rows:
            r.extra["copy_ms"] = copy * 1e3
            r.extra["x_copy"] = r.step_ms / (copy * 1e3)
    return rows


# -- report ----------------------------------------------------------------------------------
def markdown(rows: list[Row], cuda: bool) -> str:
    head = "| shape | P | dtype | impl | fwd ms | fwd+bwd ms (IQR) | x floor | x floor (paired) |"
    head += " min ms | x floor (min) | CPU ms | x floor (CPU) | faults/step | peak MB |" + (
        " first peak MB | x copy |" if cuda else " saved MB |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        if cuda:
            last = f"{r.extra['first_peak_mb']:.1f} | {r.extra['x_copy']:.1f}"
        else:
            last = f"{r.saved_mb:.1f}"
        lines.append(
            f"| {r.shape} | {r.P} | {r.dtype} | {r.impl} | {r.fwd_ms:.2f} | "
            f"{r.step_ms:.2f} ({r.step_iqr_ms:.2f}) | {r.x_floor:.2f} | {r.x_floor_paired:.2f} | "
            f"{r.step_min_ms:.2f} | "
            f"{r.x_floor_min:.2f} | {r.step_cpu_ms:.2f} | {r.x_floor_cpu:.2f} | "
            f"{r.faults_per_step:.0f} | {r.peak_mb:.1f} | {last} |"
        )
    return "\n".join(lines)


def ratios(rows: list[Row]) -> str:
    """NFN / ours per shape and dtype (fwd+bwd medians)."""
    lines = []
    keys = sorted(
        {(r.shape, r.dtype) for r in rows}, key=lambda k: [r.shape for r in rows].index(k[0])
    )
    for shape, dtype in keys:
        by = {r.impl: r for r in rows if r.shape == shape and r.dtype == dtype}
        ours = by.get("ours-hidden")
        if ours is not None and "macs_x_floor" in ours.extra:
            lines.append(
                f"- {shape} {dtype}: ours-hidden's channel mixes do "
                f"{ours.extra['macs_x_floor']:.2f}x the floor's multiply-adds (the least "
                "arithmetic of the complete basis; its GEMMs' time is gemms-hidden, as "
                "the BLAS runs them more efficiently than the floor's narrow one)"
            )
        bound = by.get("passes-hidden")
        if ours is not None and bound is not None:
            lines.append(
                f"- {shape} {dtype}: passes-hidden (the plan's unavoidable work) = "
                f"{bound.x_floor_paired:.2f}x the floor (paired); ours-hidden = "
                f"{paired_ratio(ours.extra['rounds_ms'], bound.extra['rounds_ms']):.2f}x "
                "passes-hidden (paired): what fusing our eager ops could still gain"
            )
        gemms = by.get("gemms-hidden")
        if ours is not None and gemms is not None:
            lines.append(
                f"- {shape} {dtype}: gemms-hidden (the plan's GEMMs alone) = "
                f"{gemms.x_floor_paired:.2f}x the floor (paired): what no layer that runs "
                "them at the BLAS's speed can undercut"
            )
        for name, fast in by.items():
            if ours is None or not name.startswith("ours-hidden-"):
                continue
            lines.append(
                f"- {shape} {dtype}: {name} / ours-hidden = "
                f"{paired_ratio(fast.extra['rounds_ms'], ours.extra['rounds_ms']):.2f}x "
                f"(fwd+bwd paired), {fast.step_min_ms / ours.step_min_ms:.2f}x (fwd+bwd min)"
            )
        for other in ("nfn-hnp", "nfn-np"):
            if ours is not None and other in by:
                lines.append(
                    f"- {shape} {dtype}: {other} / ours-hidden = "
                    f"{by[other].step_ms / ours.step_ms:.2f}x (fwd+bwd median), "
                    f"{paired_ratio(by[other].extra['rounds_ms'], ours.extra['rounds_ms']):.2f}x "
                    "(fwd+bwd paired), "
                    f"{by[other].step_min_ms / ours.step_min_ms:.2f}x (fwd+bwd min), "
                    f"{by[other].step_cpu_ms / ours.step_cpu_ms:.2f}x (fwd+bwd CPU), "
                    f"{by[other].fwd_ms / ours.fwd_ms:.2f}x (fwd median)"
                )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command line (benchmarks/gpu_check.sh's commands are checked against it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--batch", type=int, default=None, help="default 256 (cpu), 1024 (cuda)")
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES))
    parser.add_argument(
        "--dtypes", nargs="+", default=None, help="default float32 (+bfloat16 cuda)"
    )
    parser.add_argument("--modes", nargs="+", default=["hidden"], help="modes of our layer")
    parser.add_argument(
        "--no-passes", action="store_true", help="leave out the plan's bounds (passes-*, gemms-*)"
    )
    parser.add_argument(
        "--compile", action="store_true", help="also time our layer under torch.compile"
    )
    parser.add_argument(
        "--cudagraphs",
        action="store_true",
        help="with --compile on CUDA: also under torch.compile(mode='reduce-overhead')",
    )
    parser.add_argument(
        "--backends",
        nargs="*",
        default=[],
        help="also time our layer from these backends (e.g. fused compiled): "
        "`--layer-factory`(dims, mode, backend=NAME)",
    )
    parser.add_argument("--repeats", type=int, default=15, help="timed blocks per candidate")
    parser.add_argument("--min-block", type=float, default=0.05, help="seconds per timed block")
    parser.add_argument("--layer-factory", default="dws_theory.runtime:layer_classes")
    parser.add_argument("--json", default=None, help="also write the rows here")
    parser.add_argument(
        "--system-malloc",
        action="store_true",
        help="keep glibc's default allocator (page faults on fresh large buffers)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.batch = args.batch or (1024 if args.device == "cuda" else 256)
    dtypes = args.dtypes or (["float32", "bfloat16"] if args.device == "cuda" else ["float32"])
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device available", file=sys.stderr)
        return 2
    if args.cudagraphs and (args.device != "cuda" or not args.compile):
        print("--cudagraphs needs --device cuda and --compile", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    try:
        factory = load_factory(args.layer_factory)
    except (ImportError, AttributeError) as e:
        print(f"our layer is not available ({args.layer_factory}: {e}); timing the rest")
        factory = None
    if nfn_layers() is None:
        print("nfn is not installed (pip install --no-deps nfn==0.1.2 einops); timing the rest")
    rows: list[Row] = []
    for dtype_name in dtypes:
        for shape in args.shapes:
            rows += measure_shape(parse_shape(shape), args, getattr(torch, dtype_name), factory)
    device = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor()
    print(
        f"device={args.device} ({device or platform.machine()}), torch {torch.__version__}, "
        f"threads={args.threads}, B={args.batch}, C={args.channels}, "
        f"repeats={args.repeats}, min_block={args.min_block}s, "
        f"allocator={allocator(dict(os.environ))}"
    )
    print(markdown(rows, args.device == "cuda"))
    print()
    print(ratios(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in rows], f, indent=1)
    return 0


if __name__ == "__main__":
    rerun_under_steady_malloc()
    raise SystemExit(main())
