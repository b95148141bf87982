"""Helpers shared by several test files: random inputs in the layout contract, the group
action written independently of the engine, and the sympy-formula check of every pattern."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dws_theory import testing
from dws_theory.aliases import Tensors
from dws_theory.basis import Basis
from dws_theory.spec import mlp
from dws_theory.symbolic import evaluate_formula, pattern_formula
from dws_theory.testing import act as act  # the package's one group action, for the tests


def random_inputs(
    dims: Sequence[int], batch: int, channels: int, gen: torch.Generator
) -> tuple[Tensors, Tensors]:
    """Random float64 features of an MLP in the layout contract (`testing.random_inputs`)."""
    return testing.random_inputs(mlp(dims), batch, channels, gen)


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
