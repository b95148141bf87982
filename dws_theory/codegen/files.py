"""Files: module names, rendered source for a shape, writing modules, the checked-in list."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..basis import enumerate_basis
from ..spec import mlp, parse_dims, parse_mode
from .backends import render
from .lower import lower

__all__ = ["checked_in_modules", "module_name", "source_for", "write_module", "write_source"]

# The modules checked in under generated/ (a drift test regenerates each of them).
_CHECKED_IN: tuple[tuple[tuple[int, ...], str], ...] = (
    ((2, 32, 32, 1), "hidden"),
    ((2, 32, 32, 1), "all"),
    ((2, 32, 32, 1), "signed"),
    ((1, 32, 32, 1), "hidden"),
    ((1, 32, 32, 1), "all"),
    ((1, 32, 32, 1), "signed"),
    ((2, 32, 32, 32, 32, 1), "hidden"),
    ((64, 32, 32, 10), "hidden"),
)


def checked_in_modules() -> tuple[tuple[tuple[int, ...], str], ...]:
    """(dims, mode) of every module checked in under generated/."""
    return _CHECKED_IN


def module_name(dims: Sequence[int], mode: str) -> str:
    """`dws_2_32_32_1_hidden`: the file stem of a generated module."""
    return "dws_" + "_".join(str(d) for d in parse_dims(tuple(dims))) + "_" + parse_mode(mode)


def source_for(dims: str | Sequence[int], mode: str = "hidden") -> str:
    """Rendered source for an MLP shape and mode (no file written)."""
    dims = parse_dims(dims if isinstance(dims, str) else tuple(dims))
    mode = parse_mode(mode)
    return render(lower(enumerate_basis(mlp(dims, mode)), mode=mode))


def write_source(stem: str, source: str, out_dir: str | Path = "generated") -> Path:
    """Write `<stem>.py` under out_dir and return its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stem}.py"
    path.write_text(source, encoding="utf-8")
    return path


def write_module(dims: str | Sequence[int], mode: str = "hidden", out_dir="generated") -> Path:
    """Write `dws_<dims>_<mode>.py` under out_dir and return its path."""
    dims = parse_dims(dims if isinstance(dims, str) else tuple(dims))
    mode = parse_mode(mode)
    return write_source(module_name(dims, mode), source_for(dims, mode), out_dir)
