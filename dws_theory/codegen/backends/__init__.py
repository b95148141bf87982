"""Backends: printers that turn one `LayerPlan` into module source.

`eager` (the default) is the reference: plain PyTorch ops, one per pool, mix and add of the
plan. A fast path (fused or compiled) registers here with `register_backend(name, printer)`
and is tested against the eager module; `render(plan, backend)` looks the name up, and an
unknown name gets an error listing the registered ones.
"""

from __future__ import annotations

from collections.abc import Callable

from ...spec import SpecError
from ..plan import LayerPlan
from . import eager

__all__ = ["BACKENDS", "DEFAULT_BACKEND", "Printer", "register_backend", "render"]

Printer = Callable[[LayerPlan], str]
DEFAULT_BACKEND = "eager"
BACKENDS: dict[str, Printer] = {"eager": eager.render}


def register_backend(name: str, printer: Printer) -> None:
    """Make `printer` available as `render(plan, backend=name)`."""
    if name in BACKENDS:
        raise ValueError(f"backend {name!r} is already registered")
    BACKENDS[name] = printer


def render(plan: LayerPlan, backend: str = DEFAULT_BACKEND) -> str:
    """Standalone Python source of EquivariantLayer and InvariantLayer for the plan."""
    try:
        printer = BACKENDS[backend]
    except KeyError:
        raise SpecError(
            f"unknown backend {backend!r}; expected one of {', '.join(sorted(BACKENDS))}"
        ) from None
    return printer(plan)
