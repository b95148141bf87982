"""Backends: printers that turn one `LayerPlan` into module source.

`eager` (the default) is the reference: plain PyTorch ops, one per pool, mix and add of the
plan. `compiled` is the same module with both layers' forward run through torch.compile
(falling back to eager where that cannot be built). `fused` is the compiled module with
each tensor's identity term run by C kernels on the CPU, `triton` the same with Triton
kernels on CUDA (each falling back to the compiled module's ops).
A fast path registers here with
`register_backend(name, printer)` and is tested against the eager module;
`render(plan, backend)` looks the name up, and an unknown name gets an error listing the
registered ones.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ...spec import SpecError
from ..plan import LayerPlan
from . import compiled, eager, fused, triton

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "Printer",
    "backend_stem",
    "check_backend",
    "register_backend",
    "render",
]

Printer = Callable[[LayerPlan], str]
DEFAULT_BACKEND = eager.NAME
BACKENDS: dict[str, Printer] = {
    eager.NAME: eager.render,
    "compiled": compiled.render,
    "fused": fused.render,
    triton.NAME: triton.render,
}


def backend_stem(stem: str, backend: str) -> str:
    """The file and module stem of a backend's module: `stem` for the default backend,
    `<stem>_<backend>` (non-word characters as `_`) for another."""
    if backend == DEFAULT_BACKEND:
        return stem
    return stem + "_" + re.sub(r"\W", "_", backend)


def register_backend(name: str, printer: Printer) -> None:
    """Make `printer` available as `render(plan, backend=name)`."""
    if name in BACKENDS:
        raise ValueError(f"backend {name!r} is already registered")
    BACKENDS[name] = printer


def check_backend(backend: str) -> None:
    """Raise a SpecError naming the registered backends unless `backend` is one."""
    if backend not in BACKENDS:
        raise SpecError(
            f"unknown backend {backend!r}; expected one of {', '.join(sorted(BACKENDS))}"
        )


def render(plan: LayerPlan, backend: str = DEFAULT_BACKEND) -> str:
    """Standalone Python source of EquivariantLayer and InvariantLayer for the plan."""
    check_backend(backend)
    return BACKENDS[backend](plan)
