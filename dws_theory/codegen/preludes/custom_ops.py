"""What the kernel backends (`fused`, `triton`) share, kept as real Python.

Pasted after a kernel prelude (`fused.py`, `triton.py`), which defines the implementations
of the four ops and what this code asks of it (the stand-ins below): the namespace of the
ops, whether the kernels take an identity term's tensors (`_ops_take`) and are ready for a
dtype (`_ops_ready`), and which tensors the graph passes may hand them (`_ops_pass_takes`).
Here: the custom ops (`mix_terms` differentiable, `mix_backward`, `mix_input_grad`,
`plane_sums`), registered once per process so that torch.compile keeps them in its graph;
inductor graph passes that put a tensor's two pools into one `plane_sums` and x's gradient
with its pools' gradients into one `mix_input_grad`; and the module's `_mix_add`, which runs
the ops where the kernels take the inputs and the eager `_mix_add` elsewhere.
"""

from __future__ import annotations

import functools
import operator

import torch
from torch import nn

# Stand-ins for what the module defines before this code.
_OPS_NAMESPACE = "dws_kernels_v1"  # process-wide: the first module to load registers the ops
_OPS_BACKEND = "a kernel backend"  # its name, for messages
_OPS_TAG = "v1"  # what the graph passes' cache key adds to the namespace
_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)


def _mix_add(weight: torch.Tensor, x: torch.Tensor, a, b) -> torch.Tensor:
    return weight @ x + a + b


def _mix_terms(weight, x, terms):
    return weight @ x


def _mix_backward(weight, x, grad, wants_x, rows, cols):
    return grad, weight, grad, grad


def _mix_input_grad(weight, grad, terms):
    return grad


def _plane_sums(x):
    return x.sum(3), x.sum(2)


def _ops_take(weight, x, a, b) -> bool:
    return False


def _ops_ready(dtype: torch.dtype) -> bool:
    return False


def _ops_pass_takes(val: torch.Tensor) -> bool:
    return False


class EquivariantLayer(nn.Module):
    def forward(self, weights, biases=None):
        return weights, biases


# -- emitted from here on ---------------------------------------------------------------------
# The custom ops over the kernels, their autograd, and the graph passes that call them.
_eager_mix_add = _mix_add


def _as_planes(x: torch.Tensor) -> tuple[int, int, int, int]:
    """(B, C, n, m) of x [B, C, n, m], or of x [B, C, m] with n = 1."""
    if x.dim() == 3:
        return x.shape[0], x.shape[1], 1, x.shape[2]
    return x.shape[0], x.shape[1], x.shape[2], x.shape[3]


def _planes_shape(shape: torch.Size, out_dim: int) -> tuple[int, ...]:
    """A term's shape, broadcastable to an output of `out_dim` axes, as 4 axes (b, o, i, j)."""
    full = (1,) * (out_dim - len(shape)) + tuple(shape)
    return full[:2] + (1,) + full[2:] if out_dim == 3 else full


def _mix_terms_fake(weight, x, terms):
    return x.new_empty((x.shape[0], weight.shape[0], *x.shape[2:]))


def _mix_backward_fake(weight, x, grad, wants_x, rows, cols):
    batch, _, n, m = _as_planes(x)
    c_out = weight.shape[0]
    return (
        x.new_empty(x.shape if wants_x else (0,)),
        weight.new_empty(weight.shape),
        x.new_empty((batch, c_out, n) if rows else (0,)),
        x.new_empty((batch, c_out, m) if cols else (0,)),
    )


def _mix_input_grad_fake(weight, grad, terms):
    return grad.new_empty((grad.shape[0], weight.shape[1], *grad.shape[2:]))


def _plane_sums_fake(x):
    batch, channels, n, m = x.shape
    return x.new_empty((batch, channels, n)), x.new_empty((batch, channels, m))


def _mix_terms_setup(ctx, inputs, output):
    weight, x, terms = inputs
    ctx.save_for_backward(weight, x)
    ctx.term_shapes = [t.shape for t in terms]
    ctx.out_dim = output.dim()


def _mix_terms_grads(ctx, grad):
    if torch.is_grad_enabled() and not _compiling():
        raise RuntimeError(
            f"backend {_OPS_BACKEND!r} does not support double backward (create_graph=True); "
            "use backend 'eager'"
        )
    weight, x = ctx.saved_tensors
    planes = [_planes_shape(s, ctx.out_dim) for s in ctx.term_shapes]
    rows = any(p[3] == 1 for p in planes)
    cols = any(p[3] != 1 and p[2] == 1 for p in planes)
    ops = getattr(torch.ops, _OPS_NAMESPACE)
    grad_x, grad_w, row_sums, col_sums = ops.mix_backward(weight, x, grad, True, rows, cols)
    batch, c_out, n, m = grad.shape[0], grad.shape[1], *_as_planes(x)[2:]
    grad_terms = []
    for shape, p in zip(ctx.term_shapes, planes, strict=True):
        if p[3] == 1:  # constant along j: from the sums over j
            g = row_sums.view(batch, c_out, n, 1).sum_to_size(p)
        elif p[2] == 1:  # constant along i
            g = col_sums.view(batch, c_out, 1, m).sum_to_size(p)
        else:
            g = grad.reshape(batch, c_out, n, m).sum_to_size(p)
        grad_terms.append(g.reshape(shape))
    return grad_w, grad_x, grad_terms


_OPS = (  # name, implementation, fake (shapes only), schema
    ("mix_terms", _mix_terms, _mix_terms_fake, "(Tensor weight, Tensor x, Tensor[] terms)"),
    (
        "mix_backward",
        _mix_backward,
        _mix_backward_fake,
        "(Tensor weight, Tensor x, Tensor grad, bool wants_x, bool rows, bool cols)",
    ),
    (
        "mix_input_grad",
        _mix_input_grad,
        _mix_input_grad_fake,
        "(Tensor weight, Tensor grad, Tensor[] terms)",
    ),
    ("plane_sums", _plane_sums, _plane_sums_fake, "(Tensor x)"),
)
_OPS_RETURNS = {
    "mix_backward": "(Tensor, Tensor, Tensor, Tensor)",
    "plane_sums": "(Tensor, Tensor)",
}


def _register_ops() -> None:
    """The custom ops of _OPS, once per process (the first module to load them wins), with
    mix_terms differentiable."""
    if hasattr(getattr(torch.ops, _OPS_NAMESPACE), "mix_terms"):
        return
    made = {}
    for name, impl, fake, arguments in _OPS:
        schema = f"{arguments} -> {_OPS_RETURNS.get(name, 'Tensor')}"
        op = torch.library.custom_op(
            f"{_OPS_NAMESPACE}::{name}", impl, mutates_args=(), schema=schema
        )
        op.register_fake(fake)
        made[name] = op
    made["mix_terms"].register_autograd(_mix_terms_grads, setup_context=_mix_terms_setup)


# -- graph passes: what torch.compile would otherwise run as passes of their own -------------
def _call(node, target) -> bool:
    return getattr(node, "op", None) == "call_function" and node.target is target


def _fuse_plane_sums(graph) -> None:
    """x.sum(2) and x.sum(3) of one 4-axis tensor x the kernels take: one `plane_sums` (one
    read of x)."""
    aten, found = torch.ops.aten, {}
    for node in graph.nodes:
        if not _call(node, aten.sum.dim_IntList) or len(node.args) != 2 or node.kwargs:
            continue
        x, dims = node.args
        val = getattr(x, "meta", {}).get("val")
        if val is None or val.dim() != 4 or not _ops_pass_takes(val) or len(dims) != 1:
            continue
        if dims[0] % 4 in (2, 3):
            found.setdefault(x, {})[dims[0] % 4] = node
    ops = getattr(torch.ops, _OPS_NAMESPACE)
    for x, sums in found.items():
        if len(sums) != 2:
            continue
        first = min(sums.values(), key=lambda n: list(graph.nodes).index(n))
        with graph.inserting_before(first):
            both = graph.call_function(ops.plane_sums.default, (x,))
            both.meta["val"] = (sums[3].meta["val"], sums[2].meta["val"])
            for index, axis in ((0, 3), (1, 2)):
                item = graph.call_function(operator.getitem, (both, index))
                item.meta["val"] = sums[axis].meta["val"]
                sums[axis].replace_all_uses_with(item)
                graph.erase_node(sums[axis])


def _fuse_input_grads(graph) -> None:
    """The gradient of a fused x: mix_backward's, then broadcast terms (its pools' gradients)
    added one by one; as one `mix_input_grad` with the terms, and mix_backward without it."""
    aten = torch.ops.aten
    ops = getattr(torch.ops, _OPS_NAMESPACE)
    for node in list(graph.nodes):
        if not _call(node, ops.mix_backward.default) or not node.args[3]:
            continue
        items = [u for u in node.users if _call(u, operator.getitem) and u.args[1] == 0]
        if len(items) != 1:
            continue
        last, terms, chain = items[0], [], []
        while len(last.users) == 1:
            (add,) = last.users
            if not _call(add, aten.add.Tensor) or len(add.args) != 2 or add.kwargs:
                break
            other = add.args[1] if add.args[0] is last else add.args[0]
            if not _call(other, aten.expand.default) or other is last:
                break
            terms.append(other)
            chain.append(add)
            last = add
        if not terms:
            continue
        weight, _, grad = node.args[:3]
        with graph.inserting_before(last):
            fused = graph.call_function(ops.mix_input_grad.default, (weight, grad, terms))
        fused.meta["val"] = last.meta["val"]
        last.replace_all_uses_with(fused)
        for add in reversed(chain):
            graph.erase_node(add)
        graph.erase_node(items[0])
        node.args = (*node.args[:3], False, *node.args[4:])
        val = node.meta.get("val")
        if isinstance(val, tuple):  # the x gradient it no longer makes is empty
            node.meta["val"] = (val[0].new_empty((0,)), *val[1:])


def _kernel_graph_pass(graph) -> None:
    _fuse_plane_sums(graph)
    _fuse_input_grads(graph)


try:  # torch >= 2.6: a pass that inductor's cache can key on
    from torch._inductor.custom_graph_pass import CustomGraphPass as _GraphPassBase
except ImportError:  # older torch: a plain callable
    _GraphPassBase = object


class _KernelGraphPass(_GraphPassBase):
    def __call__(self, graph) -> None:
        _kernel_graph_pass(graph)

    def uuid(self) -> str:
        return f"{_OPS_NAMESPACE}-{_OPS_TAG}-passes1"


def _mix_add(weight: torch.Tensor, x: torch.Tensor, a, b) -> torch.Tensor:
    """weight @ x + a + b: the kernels where they take the inputs, else the eager module's
    `_mix_add`."""
    if _ops_take(weight, x, a, b):
        return getattr(torch.ops, _OPS_NAMESPACE).mix_terms(weight, x, [a, b])
    return _eager_mix_add(weight, x, a, b)


def _with_kernels(forward):
    """`forward`, with the kernels for the layer's dtype built (or found missing) first, so
    that a compiled forward traces a settled choice."""

    @functools.wraps(forward)  # keeps the compiled wrapper's `eager` and `compile_state`
    def run(self, weights, biases=None):
        like = next(self.parameters(), None)
        if like is not None and like.is_floating_point() and not _compiling():
            _ops_ready(like.dtype)
        return forward(self, weights, biases)

    return run


def _building_kernels(init):
    """`__init__`, then the float32 kernels built (or found missing): a layer compiled inside
    a model is traced before its first eager call."""

    @functools.wraps(init)
    def run(self, *args, **kwargs):
        init(self, *args, **kwargs)
        _ops_ready(torch.float32)

    return run


_register_ops()
COMPILE_OPTIONS = {"post_grad_custom_post_pass": _KernelGraphPass()}
EquivariantLayer.forward = _with_kernels(EquivariantLayer.forward)
EquivariantLayer.__init__ = _building_kernels(EquivariantLayer.__init__)
