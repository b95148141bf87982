"""The work an eager implementation of a layer plan cannot skip, as one timed step.

Eager: one PyTorch op per pool, reduction, broadcast sum and GEMM, as the emitted layers run.

`layer_speed.py` times it next to the floor and our layer (candidate `passes-<mode>`). It
runs, with random data of the right shapes and no autograd:

- every channel mix of the plan as the emitted layer runs it (a batched GEMM per sample,
  `F.linear` where nothing is kept): forward, gradient of the input, gradient of the weight
  (for a mix of pooled features, one GEMM over samples and positions);
- for each tensor whose identity term is fused (`Add.fused`: a full-size GEMM), the passes
  over full-size tensors that even a hand-written adjoint of the whole layer makes:
  forward, its pools (one reduction each) and one broadcast sum that the identity GEMM
  accumulates into; backward, one reduction of the output gradient per broadcast term
  (two), one broadcast sum of the pools' gradients that the transposed GEMM accumulates
  into, and the weight gradient.

Left out, so the time is a lower bound for the plan: the concatenations, the transposed
copies of fixed axes, the broadcast sums into smaller outputs, the bias gradients and every
cost of autograd. If it alone is above a target ratio to the floor, no eager
implementation of this plan meets that target; a fused kernel (one read for both pools,
the reductions fused into the GEMMs' passes) would be needed.

With `full_size_passes=False` (`gemms-<mode>` in layer_speed.py) only the GEMMs run: the
time no implementation that runs these GEMMs as fast as the BLAS does can undercut.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.nn import functional as F

Tensors = list[torch.Tensor]


@dataclass
class PlanPasses:
    """Closures over fixed random tensors; `macs` is the GEMM multiply-adds per sample."""

    forward: Callable[[], Tensors]
    step: Callable[[], None]
    tensors: Tensors
    macs: int


def plan_passes(
    dims: tuple[int, ...],
    mode: str,
    batch: int,
    channels: int,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    full_size_passes: bool = True,
) -> PlanPasses:
    """The unavoidable work of `lower(enumerate_basis(mlp(dims, mode)))`, C in and out;
    without `full_size_passes`, only the plan's GEMMs (each fused identity mix as a plain
    batched GEMM): what a kernel that fused every other pass into them would still do."""
    from dws_theory.basis import enumerate_basis  # the engine: imported only when used
    from dws_theory.codegen import Add, Mix, Pool, lower
    from dws_theory.spec import mlp

    plan = lower(enumerate_basis(mlp(dims, mode)), mode=mode)
    space, c = plan.space, channels
    gen = torch.Generator(device="cpu").manual_seed(2)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).to(device=device, dtype=dtype)

    ops = plan.equivariant_ops
    pools = [op for op in ops if isinstance(op, Pool)]
    mixes = {op.name: op for op in ops if isinstance(op, Mix)}
    fused = {op.terms[-1]: op for op in ops if isinstance(op, Add) and op.fused}
    forwards: list[Callable[[], torch.Tensor]] = []
    backwards: list[Callable[[], None]] = []
    tensors: Tensors = []
    macs = 0
    for mix in mixes.values():
        positions = math.prod(space.set(s).size for s in mix.kept)
        weight = rand(mix.rows * c, mix.width * c) / math.sqrt(mix.width * c)
        macs += weight.numel() * positions
        if mix.name in fused and full_size_passes:
            work = _fused_tensor(space, fused[mix.name], mixes, pools, weight, batch, c, rand)
        else:
            work = _small_mix(weight, batch, positions, bool(mix.kept), rand, mix.name not in fused)
        forwards.append(work[0])
        backwards.append(work[1])
        tensors += work[2]

    def forward() -> Tensors:
        return [f() for f in forwards]

    def step() -> None:
        forward()
        for b in backwards:
            b()

    return PlanPasses(forward, step, tensors, macs)


def _small_mix(weight, batch, positions, kept, rand, narrow=True):
    """One mix of pooled features (or, with the passes left out, a full-size tensor's
    identity mix: not `narrow`): its GEMM forward and both gradient GEMMs."""
    rows, width = weight.shape
    if not kept:
        x, g = rand(batch, width), rand(batch, rows)
        return (lambda: F.linear(x, weight)), (lambda: (g @ weight, g.t() @ x)), [x, g, weight]
    x, g = rand(batch, width, positions), rand(batch, rows, positions)
    # A narrow mix's weight gradient as one GEMM over samples and positions, on operands laid
    # out for it (as the emitted layers run it): a batched GEMM per sample, summed, takes
    # about 3x as long there (B=512, C=32: 2,32,32,1's [128, 128] mix over 32 positions).
    # Over a full-size tensor's positions the batched form is as fast or faster.
    laid_out = [rand(rows, batch * positions), rand(batch * positions, width)] if narrow else []

    def weight_grad() -> torch.Tensor:
        if laid_out:
            return laid_out[0] @ laid_out[1]
        return torch.bmm(g, x.transpose(1, 2)).sum(0)

    def forward() -> torch.Tensor:
        return torch.bmm(weight.expand(batch, -1, -1), x)

    def backward() -> None:
        torch.bmm(weight.t().expand(batch, -1, -1), g)
        weight_grad()

    return forward, backward, [x, g, weight, *laid_out]


def _fused_tensor(space, add, mixes, pools, weight, batch, c, rand):
    """A full-size tensor: its pools, its identity GEMM with the broadcast terms, backward."""
    axes = space.tensor(add.out).axes
    sizes = [space.set(a).size for a in axes]
    width = weight.shape[1]
    x, g = rand(batch, width, *sizes), rand(batch, c, *sizes)

    def placed(kept: tuple[str, ...], channels: int) -> torch.Tensor:
        return rand(
            batch, channels, *[s if a in kept else 1 for a, s in zip(axes, sizes, strict=True)]
        )

    # The two largest other terms (smallest first in the plan; the bias counts as one).
    others = [mixes[m].kept for m in add.terms[:-1]]
    if add.bias is not None:
        others.insert(0, ())
    terms = [placed(kept, c) for kept in others[-2:]]
    reads = [p for p in pools if p.tensor == add.out and p.source == add.out]
    dims = [tuple(axes.index(a) + 2 for a in p.pooled) for p in reads]
    pool_grads = [placed(p.kept, width) for p in reads]

    def forward() -> torch.Tensor:
        for d in dims:
            x.sum(d)
        acc = (terms[0] + terms[1]).expand_as(g).contiguous()
        acc.view(batch, c, -1).baddbmm_(weight.expand(batch, -1, -1), x.view(batch, width, -1))
        return acc

    def backward() -> None:
        for t in terms:
            g.sum_to_size(t.shape)
        g3, w_t = g.view(batch, c, -1), weight.t().expand(batch, -1, -1)
        if pool_grads:
            grad_x = sum(pool_grads[1:], pool_grads[0]).expand_as(x).contiguous()
            grad_x.view(batch, width, -1).baddbmm_(w_t, g3)
        else:
            torch.bmm(w_t, g3)
        torch.bmm(g3, x.view(batch, width, -1).transpose(1, 2)).sum(0)

    return forward, backward, [x, g, weight, *terms, *pool_grads]
