"""What the `triton` backend appends to the compiled module, kept as real Python.

`dws_theory.codegen.backends.triton` reads this file back as text from the marker line on and
pastes it after the compiled backend's code, followed by `custom_ops.py` (the custom ops,
their autograd and graph passes, shared with the fused backend) and `_TRITON_SOURCE`: the
kernels of `triton_kernels.py` beside this file. The names defined above the marker are
stand-ins for what the module defines around this code.

The appended code runs each tensor's identity term (`_mix_add`: one channel mix plus its
broadcast terms) and the pools the graph passes hand it through Triton kernels on CUDA,
forward and backward, behind torch custom ops that torch.compile keeps in its graph (and
that CUDA graphs capture); the rest of the layer is the compiled module's, whose own
kernels inductor writes in Triton too. The kernels are defined at the first layer built
(`import triton` there, not at import) and compiled per shape and dtype by Triton's JIT. The
eager `_mix_add` runs instead:
- for inputs the kernels do not take (not float32 / bfloat16 / float16 on a CUDA device,
  more than two position axes) and under torch.func transforms;
- where Triton or a CUDA device is missing, after one warning.
With `TRITON_INTERPRET=1` in the environment before the first layer is built, the kernels
run on CPU tensors through Triton's interpreter instead (slowly: for tests). Double backward
is not supported (the backward of the custom op raises where it is asked for one); use
backend "eager".
"""

from __future__ import annotations

import linecache
import os
import warnings

import torch

# Stand-ins for what the module defines around this code (_as_planes, _planes_shape:
# custom_ops.py, after it; _TRITON_SOURCE: last).
_TRITON_SOURCE = ""
_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)


def _transformed() -> bool:
    return False


def _as_planes(x: torch.Tensor) -> tuple[int, int, int, int]:
    return x.shape[0], x.shape[1], x.shape[2], x.shape[3]


def _planes_shape(shape: torch.Size, out_dim: int) -> tuple[int, ...]:
    return tuple(shape)


# -- emitted from here on ---------------------------------------------------------------------
# The identity terms as Triton kernels behind torch custom ops (see _TRITON_SOURCE, last).
_TRITON_NAMESPACE = "dws_triton_v1"  # process-wide: the first module to load registers the ops
_OPS_NAMESPACE, _OPS_BACKEND, _OPS_TAG = _TRITON_NAMESPACE, "triton", "kernels1"
_TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_TRITON_TERMS = 4  # the most broadcast terms one kernel call adds
_TRITON_WIDEST = 8192  # the widest plane row plane_sums holds in one tile (else torch sums)
_TRITON_STATE: dict[str, object] = {}  # "kernels": the executed kernel source; "failed": why


class TritonKernelsUnavailable(RuntimeError):
    """Triton, or a device for its kernels, is missing here."""


def _triton_interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _triton_device() -> str:
    """Where the kernels run: CUDA, or the CPU under Triton's interpreter."""
    return "cpu" if _triton_interpreting() else "cuda"


def _triton_kernels() -> dict:
    """The namespace of the executed kernel source, built at the first call."""
    if "kernels" not in _TRITON_STATE:
        try:
            import triton  # noqa: F401  (the kernel source imports it again)
        except ImportError as exc:
            raise TritonKernelsUnavailable(f"triton does not import ({exc})") from exc
        if not _triton_interpreting() and not torch.cuda.is_available():
            raise TritonKernelsUnavailable(
                "torch sees no CUDA device (TRITON_INTERPRET=1 runs the kernels on the CPU, slowly)"
            )
        # Triton reads a kernel's source through inspect, which finds it in linecache.
        name = f"<dws_triton_kernels_{abs(hash(_TRITON_SOURCE)):x}>"
        lines = _TRITON_SOURCE.splitlines(keepends=True)
        linecache.cache[name] = (len(_TRITON_SOURCE), None, lines, name)
        namespace = {"__name__": name.strip("<>")}
        exec(compile(_TRITON_SOURCE, name, "exec"), namespace)
        _TRITON_STATE["kernels"] = namespace
    return _TRITON_STATE["kernels"]


def _triton_ready() -> bool:
    """Whether the kernels run here; the first failure warns once."""
    if "failed" in _TRITON_STATE:
        return False
    try:
        _triton_kernels()
        return True
    except TritonKernelsUnavailable as exc:
        _TRITON_STATE["failed"] = exc
        warnings.warn(
            f"backend 'triton': {exc}; the identity terms run as plain PyTorch ops instead "
            "(the same result, at the compiled backend's speed)",
            RuntimeWarning,
            stacklevel=3,
        )
        return False


def _dot_options(dtype: torch.dtype) -> dict[str, object]:
    """The products' options: full float32, or TF32 where torch's float32 matmul is allowed
    it; 16-bit operands converted to float32 first under the interpreter, whose dot reads
    bfloat16 as integers."""
    interpreting = _triton_interpreting()
    tf32 = dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32 and not interpreting
    upcast = interpreting and dtype != torch.float32
    return {"DOT_PRECISION": "tf32" if tf32 else "ieee", "UPCAST": upcast}


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _launch_mix(weight, x, y, terms, planes) -> None:
    """y [B, O, n, m] = weight [O, K] @ x [B, K, n m] + terms, the terms expanded to `planes`."""
    kernels = _triton_kernels()
    batch, c_out, n, m = planes
    size = n * m
    if len(terms) > _TRITON_TERMS:  # more than the kernel adds: the rest summed first
        keep = _TRITON_TERMS - 1
        terms = [*terms[:keep], sum(terms[keep:][1:], terms[keep]).expand(planes)]
    pointers = [*terms, *[y] * (_TRITON_TERMS - len(terms))]
    strides = [s for t in terms for s in t.stride()] + [0] * 4 * (_TRITON_TERMS - len(terms))

    def grid(meta):
        return (batch * _cdiv(size, meta["BLOCK_S"]), _cdiv(c_out, meta["BLOCK_O"]))

    kernels["mix_terms_kernel"][grid](
        weight, x, y, *pointers, *strides, c_out, x.shape[1], size, m,
        weight.stride(0), weight.stride(1),
        NUM_TERMS=len(terms), **_dot_options(x.dtype),
    )  # fmt: skip


def _mix_terms(weight: torch.Tensor, x: torch.Tensor, terms: list[torch.Tensor]) -> torch.Tensor:
    """weight [O, K] @ x [B, K, *S] over channels, plus the terms broadcast to [B, O, *S]."""
    batch, _, n, m = _as_planes(x)
    c_out = weight.shape[0]
    y = x.new_empty((batch, c_out, *x.shape[2:]))
    if y.numel() == 0:
        return y
    x, w = x.contiguous(), weight.to(x.dtype)
    planes = (batch, c_out, n, m)
    full = [t.to(x.dtype).reshape(_planes_shape(t.shape, y.dim())).expand(planes) for t in terms]
    _launch_mix(w, x, y, full, planes)
    return y


def _weight_grad_chunks(batch: int, device: torch.device) -> int:
    """How many partial sums the weight gradient is split into: a few per multiprocessor."""
    if device.type != "cuda":
        return min(batch, 4)
    return min(batch, 4 * torch.cuda.get_device_properties(device).multi_processor_count)


def _weight_grad(grad: torch.Tensor, x: torch.Tensor, c_out: int, c_in: int) -> torch.Tensor:
    """sum_b grad_b [O, S] @ x_b [K, S]^T in float32 (grad and x contiguous)."""
    batch, size = x.shape[0], x[0].numel() // c_in
    chunks = _weight_grad_chunks(batch, x.device)
    parts = torch.empty((chunks, c_out, c_in), dtype=torch.float32, device=x.device)
    per_chunk = _cdiv(batch, chunks)

    def grid(meta):
        return (_cdiv(c_out, meta["BLOCK_O"]), _cdiv(c_in, meta["BLOCK_K"]), chunks)

    _triton_kernels()["weight_grad_kernel"][grid](
        grad, x, parts, batch, c_out, c_in, size, per_chunk,
        **_dot_options(x.dtype),
    )  # fmt: skip
    return parts.sum(0)


def _plane_sums(x):
    """(x.sum(3), x.sum(2)) of x [B, C, n, m], in one pass."""
    batch, channels, n, m = x.shape
    rows, cols = x.new_empty((batch, channels, n)), x.new_empty((batch, channels, m))
    if x.numel() == 0:
        return rows.zero_(), cols.zero_()
    width = max(16, 1 << (m - 1).bit_length())
    if width > _TRITON_WIDEST:  # a row wider than a tile holds
        return x.sum(3), x.sum(2)
    height = max(1, min(_TRITON_WIDEST // width, 1 << (n - 1).bit_length()))
    kernel = _triton_kernels()["plane_sums_kernel"]
    kernel[(batch * channels,)](x.contiguous(), rows, cols, n, m, BLOCK_N=height, BLOCK_M=width)
    return rows, cols


def _mix_backward(weight, x, grad, wants_x: bool, rows: bool, cols: bool):
    """The gradients of `_mix_terms` from grad = dL/dy: of x (`wants_x`) and of the weight,
    and the sums of grad over its last axis (`rows`, [B, O, n]) and over the one before
    (`cols`, [B, O, m]), from which the terms' gradients are summed (each empty where not
    asked for)."""
    batch, c_in, n, m = _as_planes(x)
    c_out = weight.shape[0]
    x, grad = x.contiguous(), grad.to(x.dtype).contiguous()
    w = weight.to(x.dtype)
    grad_x = x.new_empty(x.shape if wants_x else (0,))
    row_sums = x.new_empty((batch, c_out, n) if rows else (0,))
    col_sums = x.new_empty((batch, c_out, m) if cols else (0,))
    if x.numel() == 0 or grad.numel() == 0:  # nothing to sum over: zero gradients
        for t in (grad_x, row_sums, col_sums):
            t.zero_()
        return grad_x, weight.new_zeros(weight.shape), row_sums, col_sums
    if wants_x:
        _launch_mix(w.t(), grad, grad_x, [], (batch, c_in, n, m))
    grad_w = _weight_grad(grad, x, c_out, c_in).to(weight.dtype)
    if rows or cols:
        both = _plane_sums(grad.view(batch, c_out, n, m))
        if rows:
            row_sums = both[0]
        if cols:
            col_sums = both[1]
    return grad_x, grad_w, row_sums, col_sums


def _mix_input_grad(weight, grad, terms):
    """weight^T @ grad + terms: the gradient of x, with the gradients of its pools added (the
    graph pass puts it where torch.compile would add them in a pass of its own)."""
    return _mix_terms(weight.t(), grad, terms)


def _ops_take(weight, x, a, b) -> bool:
    """Whether the kernels run this identity term (the kernels' readiness is settled before
    a compiled forward is traced, by `_with_kernels`)."""
    tensors = (weight, x, a, b)
    if not all(isinstance(t, torch.Tensor) for t in tensors):
        return False
    if x.dim() not in (3, 4) or weight.dim() != 2 or x.dtype not in _TRITON_DTYPES:
        return False
    if any(t.device.type != _triton_device() or t.dtype != x.dtype for t in tensors):
        return False
    if _compiling():  # (where the torch.func check would see dynamo's own transforms)
        return "kernels" in _TRITON_STATE
    return not _transformed() and _triton_ready()


def _ops_ready(dtype: torch.dtype) -> bool:
    """Whether the kernels run `dtype` here (float32, bfloat16, float16)."""
    return dtype in _TRITON_DTYPES and _triton_ready()


def _ops_pass_takes(val: torch.Tensor) -> bool:
    """Whether the graph passes may hand `val` to the kernels."""
    return val.device.type == _triton_device() and val.dtype in _TRITON_DTYPES
