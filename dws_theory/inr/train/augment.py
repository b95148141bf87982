"""Weight-space augmentations of INR batches, applied to raw (unnormalised) weights.

Batch layout: ``weights[m-1]`` is ``[B, C, d_m, d_{m-1}]``, ``biases[m-1]`` is ``[B, C, d_m]``;
every sample gets its own random draw, shared by its channels.

The geometric ones act exactly on the first layer, because an INR reads its coordinates
only through ``W1 x + b1``: the INR ``g(x) = f(A x + t)`` has ``W1' = W1 A`` and
``b1' = b1 + W1 t``. So the rendered image is transformed exactly as named:

``rotate``     ``A`` a rotation by ``U(-rotate_deg, +rotate_deg)`` (2-D inputs only);
``translate``  ``t ~ U(-translate, +translate)`` per coordinate;
``scale``      ``A = s I``, ``s ~ U(1 - scale, 1 + scale)``.

The others perturb every tensor:

``noise``      adds ``noise * std(tensor) * N(0, 1)`` (std per sample and tensor; a tensor
               with one entry per sample is left alone);
``dropout``    sets each weight and bias to zero with probability ``dropout`` (no rescaling:
               the other weights keep their values, so the network's function moves only by
               the dropped terms).

Exact symmetries of the network's function: :func:`permute_hidden` and
:func:`flip_hidden_signs` (odd activations only).
The image-space ones change the signal, so they only apply where the target does not move
with it: classification and regression of invariant properties, never weight-to-weight tasks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ...action import SampleElements, act
from ...errors import InputError
from ...spec import mlp

__all__ = [
    "AUGMENTATIONS",
    "AugmentConfig",
    "augment",
    "check_geometric",
    "flip_hidden_signs",
    "permute_hidden",
]

AUGMENTATIONS = ("rotate", "translate", "scale", "noise", "dropout")

Batch = tuple[list[Tensor], list[Tensor]]


@dataclass(frozen=True)
class AugmentConfig:
    """Strengths; the defaults are those of the DWSNets reference code."""

    rotate_deg: float = 45.0
    translate: float = 0.25
    scale: float = 0.2
    noise: float = 0.1
    dropout: float = 0.01


def _uniform(shape: tuple[int, ...], lo: float, hi: float, gen: torch.Generator) -> Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=gen, dtype=torch.float64)


def rotation_matrices(batch: int, max_deg: float, gen: torch.Generator) -> Tensor:
    theta = _uniform((batch,), -max_deg, max_deg, gen) * (math.pi / 180.0)
    c, s = torch.cos(theta), torch.sin(theta)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)  # [B, 2, 2]


def _first_layer(
    weights: list[Tensor], biases: list[Tensor], a: Tensor | None, t: Tensor | None
) -> Batch:
    """``W1 <- W1 A`` and ``b1 <- b1 + W1 t`` (``A``: ``[B, d0, d0]``, ``t``: ``[B, d0]``)."""
    w1 = weights[0]
    a_ = a.to(w1.dtype).to(w1.device).unsqueeze(1) if a is not None else None
    t_ = t.to(w1.dtype).to(w1.device) if t is not None else None
    new_b1 = biases[0] if t_ is None else biases[0] + (w1 @ t_[:, None, :, None]).squeeze(-1)
    new_w1 = w1 if a_ is None else w1 @ a_
    return [new_w1, *weights[1:]], [new_b1, *biases[1:]]


def check_geometric(names: Sequence[str], d0: int) -> None:
    """Refuse a geometric augmentation the inputs do not have: a rotation needs 2-D
    coordinates (it would otherwise do nothing while the user believes it ran)."""
    if "rotate" in names and d0 != 2:
        raise InputError(
            f"expected networks with 2-D inputs for --augment rotate (a rotation of the "
            f"plane), got {d0}-D inputs; use translate or scale"
        )


def augment(
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    names: Sequence[str],
    generator: torch.Generator,
    config: AugmentConfig = AugmentConfig(),
) -> Batch:
    """Apply the named augmentations (in :data:`AUGMENTATIONS` order) to a raw batch."""
    unknown = set(names) - set(AUGMENTATIONS)
    if unknown:
        raise InputError(f"expected augmentations from {AUGMENTATIONS}, got {sorted(unknown)}")
    ws, bs = list(weights), list(biases)
    batch, d0 = ws[0].shape[0], ws[0].shape[-1]
    check_geometric(names, d0)
    a: Tensor | None = None
    if "rotate" in names:
        a = rotation_matrices(batch, config.rotate_deg, generator)
    if "scale" in names:
        s = _uniform((batch, 1, 1), 1 - config.scale, 1 + config.scale, generator)
        a = s * torch.eye(d0, dtype=torch.float64) if a is None else s * a
    t = None
    if "translate" in names:
        t = _uniform((batch, d0), -config.translate, config.translate, generator)
    ws, bs = _first_layer(ws, bs, a, t)
    if "noise" in names:
        ws, bs = _noise(ws, generator, config.noise), _noise(bs, generator, config.noise)
    if "dropout" in names:
        ws, bs = _dropout(ws, generator, config.dropout), _dropout(bs, generator, config.dropout)
    return ws, bs


def _noise(tensors: list[Tensor], gen: torch.Generator, strength: float) -> list[Tensor]:
    out = []
    for x in tensors:
        if x[0].numel() == 1:  # one entry per sample has no spread to scale the noise by
            out.append(x)
            continue
        std = x.flatten(1).std(dim=1, correction=0).view(-1, *([1] * (x.dim() - 1)))
        eps = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
        out.append(x + strength * std * eps)
    return out


def _dropout(tensors: list[Tensor], gen: torch.Generator, p: float) -> list[Tensor]:
    keep = [(torch.rand(x.shape, generator=gen) >= p).to(x.device) for x in tensors]
    return [x * k for x, k in zip(tensors, keep, strict=True)]


def _hidden_act(weights: Sequence[Tensor], biases: Sequence[Tensor], g: SampleElements) -> Batch:
    """`g` (per sample, on the hidden sets `n1 .. n{M-1}` of `mlp`) acting on an MLP batch."""
    dims = (weights[0].shape[-1], *(w.shape[-2] for w in weights))
    return act(mlp(dims, "hidden"), g, list(weights), list(biases))


def flip_hidden_signs(
    weights: Sequence[Tensor], biases: Sequence[Tensor], generator: torch.Generator
) -> Batch:
    """Flip random hidden neurons: rows of ``W_k`` and ``b_k``, columns of ``W_{k+1}``.

    A symmetry of the function for odd activations (sin, tanh). One draw per sample and
    neuron, shared by the channels.
    """
    batch, signs = weights[0].shape[0], {}
    for k in range(1, len(weights)):
        d = weights[k - 1].shape[-2]
        s = torch.randint(0, 2, (batch, d), generator=generator) * 2 - 1
        signs[f"n{k}"] = s.to(weights[0].device)
    return _hidden_act(weights, biases, SampleElements({}, signs))


def permute_hidden(
    weights: Sequence[Tensor], biases: Sequence[Tensor], generator: torch.Generator
) -> tuple[list[Tensor], list[Tensor]]:
    """Apply an independent random permutation to every hidden layer of every sample.

    Hidden layer k (1 <= k < M) permutes the rows of ``W_k``, the entries of ``b_k`` and the
    columns of ``W_{k+1}`` with the same permutation (shared across channels, which are
    features of the same neuron), so each network computes the same function. The input and
    output neurons are left alone. ``generator`` is a CPU generator (permutations are drawn on
    CPU, then moved to the data's device).
    """
    batch, perms = weights[0].shape[0], {}
    for k in range(1, len(weights)):
        d = weights[k - 1].shape[-2]
        perm = torch.argsort(torch.rand(batch, d, generator=generator), dim=1)
        perms[f"n{k}"] = perm.to(weights[0].device)  # new neuron i is old neuron perm[i]
    return _hidden_act(weights, biases, SampleElements(perms, {}))
