"""The `fused` backend's C kernels alone, against torch on the same bytes, warm and cold.

One tensor's identity term at B=256, C=16 (`--batch`, `--channels`), n = m = 32 (2,32,32,1's
W2), float32, 2 threads:
  mix_terms   y = w x + a row term [B, C, n, 1] + a column term [B, C, 1, m]
  mix_bwd     from g = dL/dy and x: the weight gradient, g's sums over j and over i, and (the
              `+gx` row) x's gradient w^T g
  gw, sums    the weight gradient alone, the two sums alone
  plane_sums  x's sums over j and over i, in one pass
against torch.mm of the floor's shape ([B n m, C] @ [C, C], the same multiply-adds), torch.bmm
of the same mix, x.sum() (one read of x) and a copy of x (one read, one write).

`warm`: each call finds its tensors where the previous call left them (here in the last-level
cache: 16 MB tensors, a 480 MB cache on the machine measured). `cold`: before each timed call a
512 MB buffer is swept (`--cold-mb`), so the tensors come from main memory, as they do inside a
layer's step whose tensors do not fit the cache together. Medians over `--repeats` calls,
rounds of all rows alternating.

    python benchmarks/kernel_speed.py                      # the checked-in kernels
    python benchmarks/kernel_speed.py --source a.c b.c     # other kernel sources side by side
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import harness
import torch


def fused_module():
    """The emitted fused module of 2,32,32,1 (its kernels built)."""
    from dws_theory.runtime import layer_classes

    layer = layer_classes((2, 32, 32, 1), "hidden", backend="fused")[0]
    module = sys.modules[layer.__module__]
    if not module._fused_ready(torch.float32):
        raise SystemExit("the fused kernels do not build here (see the warning above)")
    return module


def library(module, source: str | None) -> ctypes.CDLL:
    """The float32 kernels built from `source` (the checked-in text when None), through the
    module's own build and load path."""
    if source is None:
        return module._fused_library(torch.float32)
    saved_text, saved_lib = module._KERNEL_SOURCE, module._FUSED_STATE.pop("torch.float32")
    try:
        module._KERNEL_SOURCE = Path(source).read_text()
        return module._fused_library(torch.float32)
    finally:
        module._KERNEL_SOURCE = saved_text
        module._FUSED_STATE["torch.float32"] = saved_lib


def kernel_calls(
    lib: ctypes.CDLL, batch: int, threads: int, c: int = 16
) -> dict[str, Callable[[], None]]:
    """The kernel rows (C = `c` in and out), on fixed inputs, each checked once against torch
    first."""
    n, m = 32, 32
    gen = torch.Generator().manual_seed(0)
    x, g = (torch.randn(batch, c, n, m, generator=gen) for _ in range(2))
    w = torch.randn(c, c, generator=gen)
    rows_term, cols_term = torch.randn(batch, c, n, 1), torch.randn(1, c, 1, m)
    y, gx = torch.empty_like(x), torch.empty_like(x)
    parts = torch.empty(threads, c, c)
    rows, cols = torch.empty(batch, c, n), torch.empty(batch, c, m)
    terms = [t.expand(batch, c, n, m) for t in (rows_term, cols_term)]
    pointers = (ctypes.c_void_p * 2)(*[t.data_ptr() for t in terms])
    strides = (ctypes.c_int64 * 8)(*[s for t in terms for s in t.stride()])
    wt = w.t().contiguous()

    def mix_terms() -> None:
        lib.dws_mix_terms(w.data_ptr(), x.data_ptr(), y.data_ptr(), batch, c, c, n, m, 2,
                          pointers, strides, threads)  # fmt: skip

    def backward(want_gx: bool, want_gw: bool, want_sums: bool) -> Callable[[], None]:
        def run() -> None:
            lib.dws_mix_backward(
                g.data_ptr(), x.data_ptr(), wt.data_ptr(), gx.data_ptr() if want_gx else None,
                parts.data_ptr() if want_gw else None, rows.data_ptr() if want_sums else None,
                cols.data_ptr() if want_sums else None, batch, c, c, n, m, threads,
            )  # fmt: skip

        return run

    def plane_sums() -> None:
        lib.dws_plane_sums(x.data_ptr(), batch * c, n, m, rows.data_ptr(), cols.data_ptr(), threads)

    mix_terms()
    backward(True, True, True)()
    checks = {
        "mix_terms": (y, torch.einsum("ok,bkij->boij", w, x) + rows_term + cols_term),
        "x gradient": (gx, torch.einsum("ok,boij->bkij", w, g)),
        "weight gradient": (parts.sum(0), torch.einsum("boij,bkij->ok", g, x)),
        "sums over j": (rows, g.sum(3)),
        "sums over i": (cols, g.sum(2)),
    }
    for name, (got, want) in checks.items():
        if not torch.allclose(got, want, rtol=1e-4, atol=1e-3 * want.abs().max().item()):
            raise SystemExit(f"{name}: the kernel disagrees with torch")
    return {
        "mix_terms": mix_terms,
        "mix_bwd": backward(False, True, True),
        "mix_bwd+gx": backward(True, True, True),
        "gw": backward(False, True, False),
        "sums": backward(False, False, True),
        "plane_sums": plane_sums,
    }


def torch_calls(batch: int, c: int = 16) -> dict[str, Callable[[], None]]:
    size = 32 * 32
    x, out = torch.randn(batch, c, size), torch.empty(batch, c, size)
    w = torch.randn(c, c)
    flat, flat_out = torch.randn(batch * size, c), torch.empty(batch * size, c)
    return {
        "torch mm (floor)": lambda: torch.mm(flat, w, out=flat_out),
        "torch bmm": lambda: torch.bmm(w.expand(batch, -1, -1), x, out=out),
        "torch sum (1 read)": lambda: x.sum(),
        "torch copy (read+write)": lambda: out.copy_(x),
    }


def median_ms(call: Callable[[], None], repeats: int, sweep: torch.Tensor | None) -> float:
    times = []
    for _ in range(repeats):
        if sweep is not None:
            sweep.add_(1.0)
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", nargs="+", default=[None], help="kernel source files")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cold-mb", type=int, default=512)
    parser.add_argument("--system-malloc", action="store_true", help="see layer_speed.py")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    module = fused_module()
    rows: dict[str, Callable[[], None]] = {}
    for source in args.source:
        label = "" if source is None else f" [{os.path.basename(source)}]"
        calls = kernel_calls(library(module, source), args.batch, args.threads, args.channels)
        rows.update({name + label: call for name, call in calls.items()})
    rows.update(torch_calls(args.batch, args.channels))
    sweep = torch.zeros(args.cold_mb * 2**20 // 4)
    results: dict[str, dict[str, list[float]]] = {n: {"warm": [], "cold": []} for n in rows}
    for call in rows.values():
        call()
    for _ in range(args.rounds):
        for name, call in rows.items():
            results[name]["warm"].append(median_ms(call, args.repeats, None))
            results[name]["cold"].append(median_ms(call, args.repeats, sweep))
    print(
        f"B={args.batch}, C={args.channels}, n=m=32, float32, threads={args.threads}, "
        f"torch {torch.__version__}"
    )
    print("| call | warm ms | cold ms |\n|---|---|---|")
    for name, r in results.items():
        warm, cold = (" ".join(f"{v:.3f}" for v in r[k]) for k in ("warm", "cold"))
        print(f"| {name} | {warm} | {cold} |")
    return 0


if __name__ == "__main__":
    harness.rerun_under_steady_malloc()
    raise SystemExit(main())
