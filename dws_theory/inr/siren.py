"""Batched SIRENs: init, evaluation and full-batch fitting of N INRs at once.

Convention (as in Sitzmann et al. 2020 and their reference code): every layer but the last
computes ``h <- sin(w0 * (W h + b))``; the last layer is affine, ``y = W h + b``. The factor
w0 therefore multiplies the *stored* weights and biases, which stay small. Init:

* first layer ``W ~ U(-1/d_in, 1/d_in)``;
* later layers ``W ~ U(-sqrt(6/d_in)/w0, sqrt(6/d_in)/w0)``;
* biases ``b ~ U(-1/sqrt(d_in), 1/sqrt(d_in))`` (the nn.Linear default, which the reference
  code keeps).

Stacked layout: ``weights[m-1]`` is ``[N, d_m, d_{m-1}]`` and ``biases[m-1]`` is ``[N, d_m]``
(nn.Linear orientation). Functions here never loop over the N INRs, only over layers.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

__all__ = [
    "DEFAULT_W0",
    "FitResult",
    "siren_init",
    "siren_forward",
    "render",
    "fit_sirens",
    "psnr",
]

DEFAULT_W0 = 30.0


def siren_init(
    dims: Sequence[int], n: int, generator: torch.Generator, w0: float = DEFAULT_W0
) -> tuple[list[Tensor], list[Tensor]]:
    """Draw independent SIREN inits for ``n`` INRs with widths ``dims`` (CPU, float32)."""
    weights: list[Tensor] = []
    biases: list[Tensor] = []
    for m in range(1, len(dims)):
        d_in, d_out = dims[m - 1], dims[m]
        bound_w = 1.0 / d_in if m == 1 else math.sqrt(6.0 / d_in) / w0
        bound_b = 1.0 / math.sqrt(d_in)
        weights.append(_uniform((n, d_out, d_in), bound_w, generator))
        biases.append(_uniform((n, d_out), bound_b, generator))
    return weights, biases


def _uniform(shape: tuple[int, ...], bound: float, generator: torch.Generator) -> Tensor:
    return (torch.rand(shape, generator=generator) * 2.0 - 1.0) * bound


def siren_forward(
    weights: Sequence[Tensor], biases: Sequence[Tensor], coords: Tensor, w0: float = DEFAULT_W0
) -> Tensor:
    """Evaluate N SIRENs on coordinates.

    ``weights[m-1]``: ``[N, d_m, d_{m-1}]``; ``biases[m-1]``: ``[N, d_m]``; ``coords``:
    ``[P, d_0]`` (shared) or ``[N, P, d_0]``. Returns ``[N, P, d_M]``.
    """
    n = weights[0].shape[0]
    h = coords.expand(n, *coords.shape) if coords.dim() == 2 else coords
    last = len(weights) - 1
    for m, (w, b) in enumerate(zip(weights, biases, strict=True)):
        if m < last:
            # sin(w0 (W h + b)) with w0 folded into the small W, b rather than the large
            # activation tensor: one fewer elementwise pass (forward and backward).
            w, b = w0 * w, w0 * b
        # baddbmm: b + h @ W^T for every INR in one batched kernel.
        h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
        if m < last:
            h = torch.sin(h)
    return h


def render(
    weights: Sequence[Tensor], biases: Sequence[Tensor], coords: Tensor, w0: float = DEFAULT_W0
) -> Tensor:
    """Evaluate a weight-space batch with one channel (``[B, 1, d_m, d_{m-1}]``) or none.

    Returns ``[B, P, d_M]``; convenient for models and losses that use the batch layout.
    """
    if weights[0].dim() == 4:
        if weights[0].shape[1] != 1:
            raise ValueError(f"render needs one channel, got {weights[0].shape[1]}")
        weights = [w.squeeze(1) for w in weights]
        biases = [b.squeeze(1) for b in biases]
    return siren_forward(weights, biases, coords.to(weights[0].dtype), w0)


def psnr(mse: Tensor, data_range: float) -> Tensor:
    """Peak signal-to-noise ratio in dB for a signal spanning ``data_range``."""
    return 10.0 * torch.log10(data_range**2 / mse.clamp_min(1e-12))


@dataclass(frozen=True, eq=False)
class FitResult:
    weights: list[Tensor]  # [N, d_m, d_{m-1}]
    biases: list[Tensor]  # [N, d_m]
    mse: Tensor  # [N], final per-INR MSE on the fitted samples


def fit_sirens(
    coords: Tensor,
    targets: Tensor,
    dims: Sequence[int],
    *,
    steps: int,
    lr: float,
    seed: int,
    w0: float = DEFAULT_W0,
    chunk_size: int = 256,
    device: str | torch.device = "cpu",
    progress: bool = True,
    desc: str = "fit SIRENs",
) -> FitResult:
    """Fit one SIREN per signal with full-batch Adam, ``chunk_size`` INRs at a time.

    ``coords``: ``[P, d_0]`` shared by all signals; ``targets``: ``[N, P, d_M]``. Each INR
    starts from its own init, all drawn up front from one seeded generator. The loss is the
    *sum* over INRs of each INR's mean squared error, so every INR gets exactly the gradient it
    would get alone and Adam acts elementwise: the result does not depend on ``chunk_size``,
    which only keeps activations cache-sized (about 3x faster on CPU than one huge batch).
    """
    n = targets.shape[0]
    w_init, b_init = siren_init(dims, n, torch.Generator().manual_seed(seed), w0)
    coords, targets = coords.to(device), targets.to(device)
    chunks = [(lo, min(lo + chunk_size, n)) for lo in range(0, n, chunk_size)]
    bar = tqdm(
        total=steps * len(chunks), desc=desc, file=sys.stderr, disable=not progress, leave=False
    )
    parts: list[FitResult] = []
    for lo, hi in chunks:
        params = [p[lo:hi].to(device).requires_grad_() for p in (*w_init, *b_init)]
        parts.append(_fit_chunk(params, coords, targets[lo:hi], steps, lr, w0, bar))
    bar.close()
    return FitResult(
        [torch.cat(ws) for ws in zip(*(p.weights for p in parts), strict=True)],
        [torch.cat(bs) for bs in zip(*(p.biases for p in parts), strict=True)],
        torch.cat([p.mse for p in parts]),
    )


def _fit_chunk(
    params: list[Tensor],
    coords: Tensor,
    targets: Tensor,
    steps: int,
    lr: float,
    w0: float,
    bar: tqdm,
) -> FitResult:
    n_layers = len(params) // 2
    opt = torch.optim.Adam(params, lr=lr)
    bar_done = 0
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        out = siren_forward(params[:n_layers], params[n_layers:], coords, w0)
        per_inr = (out - targets).pow(2).mean(dim=(1, 2))
        per_inr.sum().backward()
        opt.step()
        if (step + 1) % 25 == 0 or step == steps - 1:
            bar.set_postfix(mse=f"{per_inr.mean().item():.2e}", refresh=False)
            bar.update((step + 1) - bar_done)
            bar_done = step + 1
    with torch.no_grad():
        out = siren_forward(params[:n_layers], params[n_layers:], coords, w0)
        mse = (out - targets).pow(2).mean(dim=(1, 2))
    detached = [p.detach().cpu() for p in params]
    return FitResult(detached[:n_layers], detached[n_layers:], mse.cpu())
