"""What the benchmark scripts share: inputs in the layout contract, reading a layer's output,
the steady allocator, round-robin timing with paired ratios, and peak memory.

A module, not a script: the scripts beside it import it by name (a script's own folder is the
first entry of Python's path), and the tests put this folder on the path (pyproject.toml).
"""

from __future__ import annotations

import importlib
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from dws_theory.aliases import Tensors

try:
    import resource
except ImportError:  # not Unix: no page-fault counts
    resource = None

__all__ = [
    "STEADY_MALLOC",
    "Tensors",
    "Timing",
    "allocator",
    "cpu_peak_bytes",
    "cuda_copy_seconds",
    "cuda_peak_bytes",
    "flat_weight_space",
    "interleaved_medians",
    "load_factory",
    "minor_faults",
    "nfn_layers",
    "output_tensors",
    "paired_ratio",
    "parse_shape",
    "random_weight_space",
    "rerun_under_steady_malloc",
    "steady_malloc_env",
    "sync",
    "weight_space_size",
]

# glibc tunables (read at process start): serve every allocation from the heap and never
# hand freed memory back to the kernel, so repeated steps fault no fresh pages.
STEADY_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(2**32), "MALLOC_TRIM_THRESHOLD_": str(2**40)}


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


def sync(device: str) -> None:
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
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        number[name] = max(1, math.ceil(min_block / max(time.perf_counter() - t0, 1e-9)))
    times: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    faults: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn = fns[name]
            sync(device)
            t0, c0, f0 = time.perf_counter(), time.process_time(), minor_faults()
            for _ in range(number[name]):
                fn()
            sync(device)
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
