"""The helpers every emitted module carries, kept as real Python (ruff and tests see them).

`prelude_source("base")` (`dws_theory.codegen.preludes`) reads this file back as text from
the marker line on and the eager backend pastes it below the emitted module's constants; the
generator never imports this module (it imports torch). The names defined above the marker
are stand-ins for the constants every emitted module defines itself.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# Stand-ins for the constants every emitted module defines for itself: its tensors as
# (name, axes, shape) rows, and what they belong to, for the error messages.
WEIGHT_LAYOUT: tuple[tuple[str, str, tuple[int, ...]], ...] = ()
BIAS_LAYOUT: tuple[tuple[str, str, tuple[int, ...]], ...] = ()
ARCHITECTURE = "the weight space"

# -- emitted from here on ---------------------------------------------------------------------


def _mix(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """One channel mix [B, K, *S] -> [B, O, *S] for a weight [O, K]: one batched GEMM.

    Under torch.compile, a mix whose per-sample weight gradient [O, K] holds more entries
    than its input and output together ((O + K) S) runs as `_MixFewPositions`."""
    batch, size = x.shape[0], math.prod(x.shape[2:])  # no -1: B may be 0
    c_out, c_in = weight.shape
    x3 = x.reshape(batch, c_in, size)
    if _compiling() and c_out * c_in > (c_out + c_in) * size:
        y = _MixFewPositions.apply(weight, x3)
    else:
        y = torch.bmm(weight.expand(batch, -1, -1), x3)
    return y.view(batch, c_out, *x.shape[2:])


class _MixFewPositions(torch.autograd.Function):
    """weight [O, K] @ x [B, K, S] as a batched GEMM, with the weight gradient as one GEMM
    over all B * S columns. Autograd's own rule for the expanded weight writes the B
    per-sample products [B, O, K] and sums them: where O K > (O + K) S that buffer is larger
    than the transposed copies of x and of the output gradient that one GEMM needs (2,32,32,1
    with 32 channels: [B, 128, 128] against 2 x [B, 128, 32]). Used under torch.compile,
    where inductor fuses the copies into the kernels that produce x and the gradient; there
    it made a training step (B=512) 2-5 % faster; eager it did not help."""

    generate_vmap_rule = True

    @staticmethod
    def forward(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.bmm(weight.expand(x.shape[0], -1, -1), x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, grad):
        weight, x = ctx.saved_tensors
        (c_out, c_in), batch = weight.shape, x.shape[0]
        grad_weight = grad_x = None
        if ctx.needs_input_grad[0]:
            columns = grad.transpose(0, 1).reshape(c_out, -1)  # [O, B S]
            grad_weight = columns @ x.transpose(0, 1).reshape(c_in, -1).t()
        if ctx.needs_input_grad[1]:
            grad_x = torch.bmm(weight.t().expand(batch, -1, -1), grad)
        return grad_weight, grad_x


class _MixAdd(torch.autograd.Function):
    """out = weight @ x (channel mix) + a + b, with a and b broadcast to the result.

    The GEMM of a tensor's identity term, accumulating into the sum of its other terms. One
    autograd node so that (a) the forward writes one full-size buffer: the terms are summed
    into it and the GEMM accumulates in place (baddbmm_); (b) the backward hands x a fresh,
    non-view gradient, into which autograd then adds the gradients of x's pooled features in
    place instead of allocating another full-size buffer. The `vmap` rule keeps torch.func
    (vmap, jacrev) working and double backward uses differentiable ops; there is no forward-
    mode rule (jvp), because torch.compile cannot trace a Function that defines one.
    """

    @staticmethod
    def forward(weight, x, a, b):
        batch, c_out, size = x.shape[0], weight.shape[0], math.prod(x.shape[2:])
        # A fresh base tensor (not a view), so that callers may modify the output in place;
        # `a` expanded, so that the sum has the full shape even where a and b do not.
        shape = (batch, c_out, *x.shape[2:])
        acc = torch.add(a.expand(shape), b, out=x.new_empty(shape))
        x3 = x.reshape(batch, x.shape[1], size)
        acc.view(batch, c_out, size).baddbmm_(weight.expand(batch, -1, -1), x3)
        return acc

    @staticmethod
    def setup_context(ctx, inputs, output):
        weight, x, a, b = inputs
        ctx.save_for_backward(weight, x)
        ctx.term_shapes = (a.shape, b.shape)

    @staticmethod
    def backward(ctx, grad):
        weight, x = ctx.saved_tensors
        batch, c_in, size = x.shape[0], x.shape[1], math.prod(x.shape[2:])
        g3 = grad.reshape(batch, grad.shape[1], size)
        grad_weight = grad_x = None
        if ctx.needs_input_grad[0]:
            grad_weight = torch.bmm(g3, x.reshape(batch, c_in, size).transpose(1, 2)).sum(0)
        if ctx.needs_input_grad[1]:
            w_t = weight.t().expand(batch, -1, -1)
            if torch.is_grad_enabled():  # double backward: stay differentiable
                grad_x = torch.bmm(w_t, g3).view(x.shape)
            else:  # a base tensor, not a view, so autograd may add into it in place
                grad_x = torch.empty(x.shape, dtype=grad.dtype, device=grad.device)
                torch.bmm(w_t, g3, out=grad_x.view(batch, c_in, size))
        grad_terms = [
            grad.sum_to_size(shape) if needed else None
            for shape, needed in zip(ctx.term_shapes, ctx.needs_input_grad[2:], strict=True)
        ]
        return grad_weight, grad_x, *grad_terms

    @staticmethod
    def vmap(info, in_dims, weight, x, a, b):
        """Under torch.func.vmap: the same sum, out of place, mapped axis first."""

        def front(t: torch.Tensor, dim: int | None) -> torch.Tensor:
            return t.movedim(dim, 0) if dim is not None else t.expand(info.batch_size, *t.shape)

        out = torch.einsum("voc,vbc...->vbo...", front(weight, in_dims[0]), front(x, in_dims[1]))
        for term, dim in zip((a, b), in_dims[2:], strict=True):
            term = front(term, dim)
            out = out + term.view(term.shape[0], *[1] * (out.dim() - term.dim()), *term.shape[1:])
        return out, 0


# torch.compiler.is_compiling (torch >= 2.3; dynamo traces it as True); older torch: eager only.
_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)


def _mix_add(weight: torch.Tensor, x: torch.Tensor, a, b) -> torch.Tensor:
    """weight @ x + a + b: `_MixAdd` in eager mode; plain ops under torch.compile, where the
    Function is opaque to inductor and blocks the fusion of the sums around it (measured in
    the project's docs/benchmarks.md, section torch.compile)."""
    if _compiling():
        return _mix(weight, x) + a + b
    return _MixAdd.apply(weight, x, a, b)


def _pool_folded(x: torch.Tensor, pooled: tuple[int, ...], folded: tuple[int, ...]) -> torch.Tensor:
    """Mean of x [B, C, ...] over the axes `pooled`, the fixed axes `folded` moved into the
    channel axis: [B, C * F, *other sizes], channel c * F + f (f over the folded values).

    Used where a folded axis lies inside a pooled one (an MLP's first weight [B, C, n1, n0]
    pooled over n1). Eager: reduce, then fold the smaller result. Under torch.compile: fold,
    then reduce the trailing axes; inductor runs the reduction over the middle axis as a
    serial loop that opens a parallel region per output (2,32,32,1's W1 in the invariant
    layer of a compiled model: about 46 ms of a 620 ms training step at B=512, C=32)."""
    # lists, not generator expressions: dynamo cannot trace a generator into math.prod
    batch, channels = x.shape[:2]
    fold = math.prod([x.shape[a] for a in folded])
    if _compiling():
        others = [a for a in range(2, x.dim()) if a not in folded]
        shape = [x.shape[a] for a in others]
        moved = x.permute(0, 1, *folded, *others).reshape(batch, channels * fold, *shape)
        return moved.mean([others.index(a) + 2 for a in pooled])
    rest = [a for a in range(2, x.dim()) if a not in pooled]  # folded and kept, in order
    kept = [a for a in rest if a not in folded]
    summed = x.sum(pooled) / math.prod([x.shape[a] for a in pooled])
    order = [rest.index(a) + 2 for a in [*folded, *kept]]
    shape = [x.shape[a] for a in kept]
    return summed.permute(0, 1, *order).reshape(batch, channels * fold, *shape)


def _fixed_last(x: torch.Tensor, fixed: int) -> torch.Tensor:
    """[B, C, *F, *P] -> [B, C, *P, *F], contiguous, for the `fixed` axes F built first.

    Eager: one permuted copy. Under torch.compile, when F has fewer entries than a float32
    vector register (16), the fixed entries are split off and stacked last instead: the
    gradient of the copy is then F strided slices, whose reductions inductor runs in
    parallel over the outer axes; from the permuted copy it runs a serial loop that opens
    a parallel region per output (2,32,32,1: 10 ms against 0.9 ms for W1's output)."""
    lead, inner = x.shape[:2], x.shape[2 + fixed :]
    sizes = x.shape[2 : 2 + fixed]
    if _compiling() and math.prod(sizes) < 16:
        parts = x.reshape(*lead, math.prod(sizes), *inner).unbind(2)
        return torch.stack(parts, -1).reshape(*lead, *inner, *sizes)
    order = [*range(2 + fixed, x.dim()), *range(2, 2 + fixed)]
    return x.permute(0, 1, *order).contiguous()


def _channels(value, name: str, layer: str) -> int:
    """A channel count: a positive integer (int or any integer type, not bool)."""
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise TypeError(f"{layer}: {name} must be a positive integer, got {value!r}")
    if value.__index__() < 1:
        raise ValueError(f"{layer}: {name} must be a positive integer, got {value!r}")
    return value.__index__()


def _pair(weights, biases):
    return weights, biases


def _features(weights, biases, layer: str):
    """(weights, biases, wrap): forward(weights, biases) takes two sequences of tensors;
    forward(features) one object with .weights and .biases (NFN's WeightSpaceFeatures),
    whose type wrap(weights, biases) rebuilds for the result."""
    if biases is not None:
        return weights, biases, _pair
    if hasattr(weights, "weights") and hasattr(weights, "biases"):
        return weights.weights, weights.biases, type(weights)
    raise TypeError(
        f"{layer} expects (weights, biases) or one object with .weights and .biases (such "
        f"as NFN's WeightSpaceFeatures), got one argument of type {type(weights).__name__}"
    )


def _check_tensor(name: str, got, like: torch.Tensor, layer: str) -> None:
    """A tensor of the layer's dtype on the layer's device."""
    if not isinstance(got, torch.Tensor):
        raise TypeError(f"{layer}: {name} must be a torch.Tensor, got {type(got).__name__}")
    if got.device != like.device:
        raise ValueError(
            f"{layer}: {name} is on {got.device}, expected {like.device} (where the layer's "
            "parameters are); move the inputs or the layer with .to(device)"
        )
    if got.dtype != like.dtype:
        fix = f"convert the inputs with .to({like.dtype})"
        if got.is_floating_point():
            fix += f" or the layer with .to({got.dtype})"
        raise TypeError(
            f"{layer}: {name} has dtype {got.dtype}, expected {like.dtype} (the dtype of "
            f"the layer's parameters); {fix}"
        )


def _check_inputs(weights, biases, channels: int, layer: str, like: torch.Tensor) -> int:
    """Shapes against the layout contract (WEIGHT_LAYOUT, BIAS_LAYOUT), dtype and device
    against the layer's parameter `like`; returns the batch size (which may be 0)."""
    if len(weights) != len(WEIGHT_LAYOUT) or len(biases) != len(BIAS_LAYOUT):
        raise ValueError(
            f"{layer} expects {len(WEIGHT_LAYOUT)} weight and {len(BIAS_LAYOUT)} bias tensors "
            f"({ARCHITECTURE}), got {len(weights)} and {len(biases)}"
        )
    first = ("weights[0]", weights[0]) if len(weights) else ("biases[0]", biases[0])
    _check_tensor(*first, like, layer)
    batch = first[1].shape[0]
    for kind, given, layout in (
        ("weights", weights, WEIGHT_LAYOUT),
        ("biases", biases, BIAS_LAYOUT),
    ):
        for i, (got, (name, axes, shape)) in enumerate(zip(given, layout, strict=True)):
            _check_tensor(f"{kind}[{i}]", got, like, layer)
            want = (batch, channels, *shape)
            if tuple(got.shape) != want:
                raise ValueError(
                    f"{layer}: {kind}[{i}] must have shape [B, C, {axes}] = {list(want)} "
                    f"(tensor {name}, C = {channels} channels), got {list(got.shape)}"
                )
    return batch


def _diagonal(n: int, like: torch.Tensor, ndim: int, i: int, j: int) -> torch.Tensor:
    """The n x n identity on dimensions i and j of an ndim-dimensional term (size 1 elsewhere):
    multiplying by it keeps a term on the diagonal of two axes of one neuron set."""
    shape = [1] * ndim
    shape[i] = shape[j] = n
    return torch.eye(n, dtype=like.dtype, device=like.device).view(shape)


def _as_theta(theta, count: int, c_out: int, c_in: int | None, what: str) -> torch.Tensor:
    """[count] (one channel) or [count, c_out(, c_in)] -> [count, c_out(, c_in)]."""
    theta = torch.as_tensor(theta)
    full = (count, c_out) if c_in is None else (count, c_out, c_in)
    if tuple(theta.shape) == (count,) and c_out == 1 and c_in in (None, 1):
        return theta.reshape(full)
    if tuple(theta.shape) != full:
        raise ValueError(
            f"{what} needs shape {list(full)} (or [{count}] with one channel), "
            f"got {list(theta.shape)}"
        )
    return theta


def _load_slots(module: nn.Module, slots, theta: torch.Tensor) -> None:
    """Write coefficients [elements, c_out, c_in] into the mix weights (see SLOTS)."""
    c_out, c_in = module.out_channels, module.in_channels
    for name, start, row, column, f_out, f_in, _ in slots:
        block = theta[start : start + f_out * f_in].reshape(f_out, f_in, c_out, c_in)
        block = block.permute(2, 0, 3, 1).reshape(c_out * f_out, c_in * f_in)
        weight = getattr(module, name)
        rows = slice(c_out * row, c_out * (row + f_out))
        weight[rows, c_in * column : c_in * (column + f_in)] = block.to(weight)


def _init_slots(module: nn.Module, slots) -> None:
    """Normal blocks with std 1/sqrt(fan * c_in) (fan from SLOTS)."""
    c_out, c_in = module.out_channels, module.in_channels
    for name, _, row, column, f_out, f_in, fan in slots:
        weight = getattr(module, name)
        rows = slice(c_out * row, c_out * (row + f_out))
        block = weight[rows, c_in * column : c_in * (column + f_in)]
        nn.init.normal_(block, std=1.0 / math.sqrt(fan * c_in))
