"""Helpers shared by several test files: random inputs in the layout contract, the group
action written independently of the engine, and the sympy-formula check of every pattern."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dws_theory.basis import Basis
from dws_theory.group import GroupElement
from dws_theory.spec import WeightSpace
from dws_theory.symbolic import evaluate_formula, pattern_formula

Tensors = list[torch.Tensor]


def random_inputs(
    dims: Sequence[int], batch: int, channels: int, gen: torch.Generator
) -> tuple[Tensors, Tensors]:
    """Random features in the layout contract, float64."""
    weights = [
        torch.randn(batch, channels, dims[m], dims[m - 1], generator=gen, dtype=torch.float64)
        for m in range(1, len(dims))
    ]
    biases = [
        torch.randn(batch, channels, dims[m], generator=gen, dtype=torch.float64)
        for m in range(1, len(dims))
    ]
    return weights, biases


def act(space: WeightSpace, g: GroupElement, weights: Tensors, biases: Tensors):
    """The group action on [B, C, ...] tensors: y[.., i, ..] = sign[i] * x[.., perm[i], ..].

    Written independently of the engine's `signed_permutation`: a gather along every axis of
    every tensor with the permutation of its neuron set, then a multiplication by its signs.
    """

    def one(t: torch.Tensor, name: str) -> torch.Tensor:
        for pos, set_name in enumerate(space.tensor(name).axes):
            dim = 2 + pos
            t = t.index_select(dim, torch.as_tensor(g.perm(set_name)))
            shape = [1] * t.dim()
            shape[dim] = -1
            t = t * torch.as_tensor(g.sign(set_name), dtype=t.dtype).view(shape)
        return t

    depth = len(weights)
    return (
        [one(weights[m], f"W{m + 1}") for m in range(depth)],
        [one(biases[m], f"b{m + 1}") for m in range(depth)],
    )


def permute_one_axis(t: torch.Tensor, dim: int, perm: np.ndarray) -> torch.Tensor:
    return t.index_select(dim, torch.as_tensor(perm))


def flat(weights: Tensors, biases: Tensors) -> torch.Tensor:
    """[B, C, P]: tensors in spec order W1, b1, W2, b2, ..., C order inside."""
    batch, channels = weights[0].shape[:2]
    parts = []
    for w, b in zip(weights, biases, strict=True):
        parts += [w.reshape(batch, channels, -1), b.reshape(batch, channels, -1)]
    return torch.cat(parts, dim=2)


def randomise(module: torch.nn.Module, gen: torch.Generator) -> None:
    """Random parameters (not the initialisation, which zeroes biases)."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))


def assert_close(a: Tensors, b: Tensors, rtol: float = 1e-10) -> None:
    for x, y in zip(a, b, strict=True):
        x, y = x.detach(), y.detach()
        scale = max(1.0, float(y.abs().max()))
        assert float((x - y).abs().max()) <= rtol * scale, float((x - y).abs().max())


def _tensor(space, x: np.ndarray, name: str) -> np.ndarray:
    start = space.offsets()[name]
    return x[start : start + space.numel(name)].reshape(space.shape(name))


def _fixed_shape(space, p) -> tuple[int, ...]:
    return tuple(space.set(p.set_of(label)).size for label in p.fixed)


def _check_linear(basis: Basis, rng: np.random.Generator) -> int:
    """Every element of every linear pattern: sympy formula == Basis.dense(one-hot) @ x."""
    space = basis.space
    x = rng.normal(size=space.dimension)
    start, checked = 0, 0
    for p in basis.linear:
        formula = pattern_formula(space, p)
        multiplicity = p.multiplicity(space)
        for k in range(multiplicity):
            theta = np.zeros(basis.equivariant_linear)
            theta[start + k] = 1.0
            expected = _tensor(space, basis.dense(theta, normalised=True) @ x, p.out)
            local = np.zeros(multiplicity)
            local[k] = 1.0
            got = evaluate_formula(
                space, formula, _tensor(space, x, p.inp), local.reshape(_fixed_shape(space, p))
            )
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12, err_msg=str(p))
            checked += 1
        start += multiplicity
    return checked


def _space_routes() -> list[str]:
    from dws_theory.certify import ROUTES

    return [name for name in ROUTES if name != "module"]


# The certificate's routes that check a space alone (the module route needs a module).
SPACE_ROUTES = _space_routes()
