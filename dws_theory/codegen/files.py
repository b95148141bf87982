"""Files: rendered source for a shape or space, writing modules, the checked-in list.

File stems come from `dws_theory.naming` (re-exported here: `module_name`, `space_stem`,
`MAX_STEM`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..atomic import check_folder, write_text
from ..basis import enumerate_basis
from ..frontends.resolve import resolve
from ..naming import MAX_STEM, module_name, space_stem
from ..spec import WeightSpace
from .backends import DEFAULT_BACKEND, render
from .lower import lower

__all__ = [
    "MAX_STEM",
    "checked_in_modules",
    "module_name",
    "source_for",
    "space_stem",
    "write_module",
    "write_source",
]

# The MLP modules checked in under generated/ (a drift test regenerates each of them).
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
    """(dims, mode) of every MLP module checked in under generated/."""
    return _CHECKED_IN


def source_for(
    dims: str | Sequence[int] | WeightSpace,
    mode: str | None = "hidden",
    backend: str = DEFAULT_BACKEND,
    origin: str | None = None,
) -> str:
    """Rendered source for an MLP shape and mode, or for a weight space (no file written).

    For a `WeightSpace`, `mode` only labels the module (the set kinds are the space's)."""
    target = resolve(dims, mode)
    return render(lower(enumerate_basis(target.space), mode=target.mode, origin=origin), backend)


def write_source(stem: str, source: str, out_dir: str | Path = "generated") -> Path:
    """Write `<stem>.py` under out_dir and return its path."""
    check_folder(out_dir)  # an empty path is refused, not read as the current folder
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stem}.py"
    write_text(path, source)  # atomic: complete or absent
    return path


def write_module(dims: str | Sequence[int], mode: str = "hidden", out_dir="generated") -> Path:
    """Write `dws_<dims>_<mode>.py` under out_dir and return its path."""
    target = resolve(dims, mode)
    return write_source(target.stem, source_for(target.space, target.mode), out_dir)
