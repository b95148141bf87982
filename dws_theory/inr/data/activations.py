"""The activations a collection of networks may declare, with the exact symmetry each has
beyond permutations: ``sign`` (odd: ``f(-x) = -f(x)``), ``scale`` (positively homogeneous:
``f(s x) = s f(x)`` for ``s > 0``) or none."""

from __future__ import annotations

__all__ = ["SYMMETRY_OF", "ACTIVATIONS"]

SYMMETRY_OF: dict[str, str | None] = {
    "sine": "sign",  # SIRENs: sin(w0 (W x + b)) is odd in (W, b)
    "tanh": "sign",
    "relu": "scale",
    "leaky_relu": "scale",
    "gelu": None,
    "silu": None,
    "sigmoid": None,
    "elu": None,
    "softplus": None,
}
ACTIVATIONS = tuple(SYMMETRY_OF)
