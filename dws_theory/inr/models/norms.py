"""Batch norms that commute with the weight-space symmetries and follow data parallelism.

:class:`SymmetricBatchNorm` normalises per (tensor, channel) with statistics over the batch and
every neuron axis; under data-parallel training its moments are all-reduced, so N processes
normalise with the global batch's statistics as one process would.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SymmetricBatchNorm"]

_EPS = 1e-5


class SymmetricBatchNorm(nn.Module):
    """Batch norm per (tensor, channel) with statistics over the batch and ALL neuron axes.

    Statistics over every entry of a tensor are unchanged by any permutation (and, for the
    root mean square, any sign flip) of its neurons, and the affine part is one scalar per
    channel, so the layer commutes with the whole group. ``center=False`` (signed mode)
    divides by the root mean square only: subtracting a mean or adding a shift would not
    commute with sign flips.
    """

    def __init__(self, n_tensors: int, channels: int, center: bool, momentum: float = 0.1):
        super().__init__()
        self.center = center
        self.momentum = momentum
        self.scale = nn.Parameter(torch.ones(n_tensors, channels))
        self.shift = nn.Parameter(torch.zeros(n_tensors, channels)) if center else None
        self.register_buffer("running_mean", torch.zeros(n_tensors, channels))
        self.register_buffer("running_var", torch.ones(n_tensors, channels))

    def forward(self, tensors: Sequence[Tensor]) -> list[Tensor]:
        # The fused kernel when it computes the same thing; the explicit moments when they
        # must be all-reduced across processes or must not be centred.
        fused = self.center and not _distributed()
        return [(self._fused if fused else self._explicit)(i, x) for i, x in enumerate(tensors)]

    def _fused(self, i: int, x: Tensor) -> Tensor:
        shift = self.shift[i] if self.shift is not None else None
        return F.batch_norm(
            x,
            self.running_mean[i],
            self.running_var[i],
            self.scale[i],
            shift,
            self.training,
            self.momentum,
            _EPS,
        )

    def _explicit(self, i: int, x: Tensor) -> Tensor:
        if self.training:
            mean, var, count = _batch_moments(x, self.center)
            with torch.no_grad():  # as F.batch_norm: the running variance is unbiased
                m = self.momentum
                unbiased = var.detach() * (count / max(count - 1.0, 1.0))
                self.running_mean[i].mul_(1 - m).add_(m * mean.detach())
                self.running_var[i].mul_(1 - m).add_(m * unbiased)
        else:
            mean, var = self.running_mean[i], self.running_var[i]
        # y = (x - mean) / std * scale + shift, folded into one multiply-add per entry.
        a = self.scale[i] * torch.rsqrt(var + _EPS)
        c = -mean * a if self.shift is None else self.shift[i] - mean * a
        view = (1, -1) + (1,) * (x.dim() - 2)
        return torch.addcmul(c.view(view), x, a.view(view))


def _batch_moments(x: Tensor, center: bool) -> tuple[Tensor, Tensor, float]:
    """Per-channel mean (0 unless ``center``), variance and count over the batch and all
    neurons.

    Under data-parallel training the sums are all-reduced (with gradients) across processes,
    so every process normalises with the statistics of the *global* batch: training on N
    processes matches one process with the same global batch.
    """
    axes = [0, *range(2, x.dim())]  # everything but the channel axis
    count = float(x.numel() // x.shape[1])
    sums = torch.stack([x.sum(axes), x.pow(2).sum(axes)])  # [2, C]
    if _distributed():
        sums = _AllReduceSum.apply(sums)
        total = torch.tensor([count], dtype=torch.float64, device=x.device)
        torch.distributed.all_reduce(total)  # slices of a global batch may differ in size
        count = float(total.item())
    mean = sums[0] / count if center else torch.zeros_like(sums[0])
    var = (sums[1] / count - mean.pow(2)).clamp_min(0.0)
    return mean, var, count


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; the gradient of a sum over processes is the summed gradient."""

    @staticmethod
    def forward(ctx: object, x: Tensor) -> Tensor:
        out = x.clone()
        torch.distributed.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: object, grad: Tensor) -> Tensor:
        out = grad.clone()
        torch.distributed.all_reduce(out)
        return out


def _distributed() -> bool:
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
