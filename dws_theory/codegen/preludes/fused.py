"""What the `fused` backend appends to the compiled module, kept as real Python.

`dws_theory.codegen.backends.fused` reads this file back as text from the marker line on and
pastes it after the compiled backend's code, followed by `custom_ops.py` (the custom ops,
their autograd and graph passes, shared with the triton backend) and `_KERNEL_SOURCE`: the C
source of `fused_kernels.c` beside this file. The names defined above the marker are
stand-ins for what the module defines around this code.

The appended code runs each tensor's identity term (`_mix_add`: one channel mix plus its
broadcast terms) through C kernels, forward and backward, registered as torch custom ops
so that torch.compile keeps them in its graph; the rest of the layer is the compiled
module's. The kernels are compiled with the system C compiler when the first layer is
built, and kept in a cache directory (`DWS_FUSED_CACHE`, else
`$XDG_CACHE_HOME/dws_theory/fused`, else `~/.cache/dws_theory/fused`). The eager
`_mix_add` runs instead:
- for inputs the kernels do not take (not float32 / float64 on the CPU, more than two
  position axes) and under torch.func transforms;
- where the kernels cannot be built (no C compiler, say), after one warning.
Double backward is not supported (the backward of the custom op raises where it is asked
for one); use backend "eager".
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import subprocess
import tempfile
import warnings

import torch

# Stand-ins for what the module defines around this code (_as_planes, _planes_shape:
# custom_ops.py, after it; _KERNEL_SOURCE: last).
_KERNEL_SOURCE = ""
_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)


def _transformed() -> bool:
    return False


def _as_planes(x: torch.Tensor) -> tuple[int, int, int, int]:
    return x.shape[0], x.shape[1], x.shape[2], x.shape[3]


def _planes_shape(shape: torch.Size, out_dim: int) -> tuple[int, ...]:
    return tuple(shape)


# -- emitted from here on ---------------------------------------------------------------------
# The fused identity terms: C kernels behind torch custom ops (see _KERNEL_SOURCE, last).
_FUSED_NAMESPACE = "dws_fused_v1"  # process-wide: the first module to load registers the ops
_FUSED_ABI = 2  # what dws_fused_abi() returns for this source
_OPS_NAMESPACE, _OPS_BACKEND, _OPS_TAG = _FUSED_NAMESPACE, "fused", f"abi{_FUSED_ABI}"
_FUSED_STATE: dict[str, object] = {}  # dtype name -> ctypes library; "failed" -> reason


class FusedKernelsUnavailable(RuntimeError):
    """The C kernels cannot be built or loaded on this machine."""


def _fused_cache_dir() -> str:
    root = os.environ.get("DWS_FUSED_CACHE")
    if not root:
        home_cache = os.path.join(os.path.expanduser("~"), ".cache")
        base = os.environ.get("XDG_CACHE_HOME") or home_cache
        root = os.path.join(base, "dws_theory", "fused")
    return root


def _cpu_signature() -> str:
    """What -march=native compiles for: the CPU's model and flags where Linux tells them."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            lines = [line for line in f if line.startswith(("model name", "flags", "Features"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor()


def _compile_library(double: bool) -> str:
    """Path of the compiled kernels for float32 (or float64), built once per machine and
    source; the first flag set the compiler accepts is used (native code and OpenMP
    threads where it can). Where the cache directory cannot be written, a temporary one
    (not kept past this process's use) is used instead."""
    compiler = os.environ.get("CC") or "cc"
    define = ["-DDWS_DOUBLE"] if double else []
    attempts = (["-march=native", "-fopenmp"], ["-fopenmp"], ["-march=native"], [])
    directory = _fused_cache_dir()
    try:
        os.makedirs(directory, exist_ok=True)
        probe = tempfile.TemporaryDirectory(dir=directory)
        probe.cleanup()
    except OSError:
        directory = tempfile.mkdtemp(prefix="dws_theory_fused_")
    errors = []
    for flags in attempts:
        command = [compiler, "-O3", "-shared", "-fPIC", *flags, *define]
        key = "\n".join([_KERNEL_SOURCE, " ".join(command), platform.machine(), _cpu_signature()])
        digest = hashlib.sha256(key.encode()).hexdigest()[:20]
        target = os.path.join(directory, f"dws_fused_{'f64' if double else 'f32'}_{digest}.so")
        if os.path.exists(target):
            return target
        with tempfile.TemporaryDirectory(dir=directory) as work:
            source = os.path.join(work, "kernels.c")
            with open(source, "w", encoding="utf-8") as f:
                f.write(_KERNEL_SOURCE)
            built = os.path.join(work, "kernels.so")
            try:
                done = subprocess.run(
                    [*command, source, "-o", built], capture_output=True, text=True, timeout=120
                )
            except OSError as exc:  # no such compiler: other flags will not help
                message = f"cannot run the C compiler {compiler!r}: {exc}"
                raise FusedKernelsUnavailable(message) from exc
            except subprocess.SubprocessError as exc:
                errors.append(f"{' '.join(flags) or 'no flags'}: {exc}")
                continue
            if done.returncode == 0:
                os.replace(built, target)  # atomic: concurrent builds leave one whole file
                return target
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            errors.append(f"{' '.join(flags) or 'no flags'}: {last}")
    raise FusedKernelsUnavailable(
        f"the C kernels do not compile with {compiler}: {'; '.join(errors)}"
    )


def _fused_library(dtype: torch.dtype) -> ctypes.CDLL:
    """The loaded kernels for `dtype` (float32 or float64), built at the first call."""
    name = str(dtype)
    if name not in _FUSED_STATE:
        path = _compile_library(dtype == torch.float64)
        try:
            lib = ctypes.CDLL(path)
        except OSError as exc:
            raise FusedKernelsUnavailable(f"the compiled kernels do not load: {exc}") from exc
        if lib.dws_fused_abi() != _FUSED_ABI:
            raise FusedKernelsUnavailable(f"{path} is not this source's build")
        p, i64, c_int = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
        lib.dws_threads.argtypes = [c_int]
        lib.dws_mix_terms.restype = c_int
        lib.dws_mix_terms.argtypes = [p, p, p, i64, i64, i64, i64, i64, i64, p, p, c_int]
        lib.dws_mix_backward.restype = c_int
        lib.dws_mix_backward.argtypes = [p, p, p, p, p, p, p, i64, i64, i64, i64, i64, c_int]
        lib.dws_plane_sums.argtypes = [p, i64, i64, i64, p, p, c_int]
        _FUSED_STATE[name] = lib
    return _FUSED_STATE[name]


def _fused_ready(dtype: torch.dtype) -> bool:
    """Whether the kernels for `dtype` run here; the first failure warns once."""
    if "failed" in _FUSED_STATE:
        return False
    try:
        _fused_library(dtype)
        return True
    except FusedKernelsUnavailable as exc:
        _FUSED_STATE["failed"] = exc
        warnings.warn(
            f"backend 'fused': {exc}; the identity terms run as plain PyTorch ops instead "
            "(the same result, at the compiled backend's speed)",
            RuntimeWarning,
            stacklevel=3,
        )
        return False


def _mix_terms(weight: torch.Tensor, x: torch.Tensor, terms: list[torch.Tensor]) -> torch.Tensor:
    """weight [O, K] @ x [B, K, *S] over channels, plus the terms broadcast to [B, O, *S]."""
    batch, c_in, n, m = _as_planes(x)
    c_out = weight.shape[0]
    y = x.new_empty((batch, c_out, *x.shape[2:]))
    if y.numel() == 0:
        return y
    lib = _fused_library(x.dtype)
    x, w = x.contiguous(), weight.to(x.dtype).contiguous()
    planes = (batch, c_out, n, m)
    full = [t.to(x.dtype).reshape(_planes_shape(t.shape, y.dim())).expand(planes) for t in terms]
    pointers = (ctypes.c_void_p * max(len(full), 1))(*[t.data_ptr() for t in full])
    strides = torch.tensor([s for t in full for s in t.stride()] or [0], dtype=torch.int64)
    threads = lib.dws_threads(torch.get_num_threads())
    status = lib.dws_mix_terms(
        w.data_ptr(), x.data_ptr(), y.data_ptr(), batch, c_out, c_in, n, m,
        len(full), pointers, strides.data_ptr(), threads,
    )  # fmt: skip
    if status != 0:
        raise MemoryError("backend 'fused': no memory for the kernel's scratch buffers")
    return y


def _mix_backward(weight, x, grad, wants_x: bool, rows: bool, cols: bool):
    """The gradients of `_mix_terms` from grad = dL/dy: of x (`wants_x`) and of the weight,
    and the sums of grad over its last axis (`rows`, [B, O, n]) and over the one before
    (`cols`, [B, O, m]), from which the terms' gradients are summed (each empty where not
    asked for)."""
    batch, c_in, n, m = _as_planes(x)
    c_out = weight.shape[0]
    lib = _fused_library(x.dtype)
    x, grad = x.contiguous(), grad.to(x.dtype).contiguous()
    w_t = weight.to(x.dtype).t().contiguous()
    threads = lib.dws_threads(torch.get_num_threads())
    grad_x = x.new_empty(x.shape if wants_x else (0,))
    parts = x.new_empty((threads, c_out, c_in))
    row_sums = x.new_empty((batch, c_out, n) if rows else (0,))
    col_sums = x.new_empty((batch, c_out, m) if cols else (0,))
    if x.numel() and grad.numel():
        status = lib.dws_mix_backward(
            grad.data_ptr(), x.data_ptr(), w_t.data_ptr(), grad_x.data_ptr() if wants_x else None,
            parts.data_ptr(),
            row_sums.data_ptr() if rows else None, col_sums.data_ptr() if cols else None,
            batch, c_out, c_in, n, m, threads,
        )  # fmt: skip
        if status != 0:
            raise MemoryError("backend 'fused': no memory for the kernel's scratch buffers")
    else:  # nothing to sum over: zero gradients
        for t in (grad_x, parts, row_sums, col_sums):
            t.zero_()
    return grad_x, parts.sum(0).to(weight.dtype), row_sums, col_sums


def _mix_input_grad(weight, grad, terms):
    """weight^T @ grad + terms: the gradient of x, with the gradients of its pools added (the
    graph pass puts it where torch.compile would add them in a pass of its own)."""
    return _mix_terms(weight.t(), grad, terms)


def _plane_sums(x):
    """(x.sum(3), x.sum(2)) of x [B, C, n, m], in one pass."""
    batch, channels, n, m = x.shape
    rows, cols = x.new_empty((batch, channels, n)), x.new_empty((batch, channels, m))
    if x.numel():
        lib = _fused_library(x.dtype)
        x = x.contiguous()
        threads = lib.dws_threads(torch.get_num_threads())
        planes = batch * channels
        lib.dws_plane_sums(x.data_ptr(), planes, n, m, rows.data_ptr(), cols.data_ptr(), threads)
    else:
        rows.zero_()
        cols.zero_()
    return rows, cols


def _fused_takes(weight, x, a, b) -> bool:
    """Whether the kernels run this identity term (the kernel readiness is settled before a
    compiled forward is traced, by `_with_kernels`)."""
    tensors = (weight, x, a, b)
    if not all(isinstance(t, torch.Tensor) for t in tensors):
        return False
    if x.dim() not in (3, 4) or weight.dim() != 2 or x.dtype not in (torch.float32, torch.float64):
        return False
    if any(t.device.type != "cpu" or t.dtype != x.dtype for t in tensors):
        return False
    if _compiling():  # (where the torch.func check would see dynamo's own transforms)
        return str(x.dtype) in _FUSED_STATE
    return not _transformed() and _fused_ready(x.dtype)


_ops_take = _fused_takes


def _ops_ready(dtype: torch.dtype) -> bool:
    """Whether the kernels run `dtype` here (float32 and float64 only)."""
    return dtype in (torch.float32, torch.float64) and _fused_ready(dtype)


def _ops_pass_takes(val: torch.Tensor) -> bool:
    """Whether the graph passes may hand `val` to the kernels."""
    return val.device.type == "cpu" and val.dtype in (torch.float32, torch.float64)
