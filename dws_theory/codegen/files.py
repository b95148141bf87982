"""Files: module names, rendered source for a shape or space, writing modules, the checked-in list.

An MLP's module is `dws_<d_0>_..._<d_M>_<mode>.py`. Any other weight space gets a readable
stem (the name it came with, e.g. the module's, and the mode) plus a short hash of its spec,
so two spaces never share a file and a long spec never makes a long file name; an MLP with
so many widths that its name would be long is shortened the same way.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomic import check_folder, write_text
from ..basis import Basis, enumerate_basis
from ..spec import WeightSpace, mlp, parse_dims, parse_mode
from .backends import DEFAULT_BACKEND, backend_stem, render
from .lower import lower, mlp_shape
from .plan import LayerPlan

if TYPE_CHECKING:
    from ..frontends.target import Target

__all__ = [
    "MAX_STEM",
    "checked_in_modules",
    "module_name",
    "source_for",
    "space_stem",
    "target_plan",
    "write_module",
    "write_target",
    "write_source",
]

MAX_STEM = 64  # longest file stem before the readable part is cut and a hash appended

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


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]


def _identifier(text: str) -> str:
    """Lower-case letters, digits and single underscores: safe in file and module names."""
    return re.sub(r"_+", "_", re.sub(r"[^a-z0-9]+", "_", text.lower())).strip("_") or "space"


def _shortened(readable: str, key: str) -> str:
    """`readable` itself when short enough, else its head plus a hash of `key`."""
    if len(readable) <= MAX_STEM:
        return readable
    return f"{readable[: MAX_STEM - 12].rstrip('_')}_{_digest(key)}"


def module_name(dims: Sequence[int], mode: str) -> str:
    """`dws_2_32_32_1_hidden`: the file stem of a generated MLP module."""
    dims = parse_dims(tuple(dims))
    mode = parse_mode(mode)
    readable = "dws_" + "_".join(str(d) for d in dims) + "_" + mode
    if len(readable) <= MAX_STEM:
        return readable
    head = f"dws_{dims[0]}_to_{dims[-1]}_depth{len(dims) - 1}_{mode}"
    return f"{head}_{_digest(str(mlp(dims, mode)))}"


def space_stem(space: WeightSpace, mode: str | None = None, label: str | None = None) -> str:
    """File stem for any weight space: the MLP name for an MLP's space, else
    `dws_<label>_<mode>_<hash of the spec>` (label `space` by default)."""
    shape = mlp_shape(space)
    if shape is not None and (mode is None or mlp(shape[0], mode) == space):
        return module_name(shape[0], mode or shape[1])
    mode = parse_mode(mode) if mode is not None else "spec"
    key = f"{space}|{mode}"
    readable = f"dws_{_identifier(label or 'space')}_{mode}"
    return _shortened(f"{readable[: MAX_STEM - 11]}_{_digest(key)}", key)


def source_for(
    dims: str | Sequence[int] | WeightSpace,
    mode: str | None = "hidden",
    backend: str = DEFAULT_BACKEND,
    origin: str | None = None,
) -> str:
    """Rendered source for an MLP shape and mode, or for a weight space (no file written).

    For a `WeightSpace`, `mode` only labels the module (the set kinds are the space's)."""
    if isinstance(dims, WeightSpace):
        return render(lower(enumerate_basis(dims), mode=mode, origin=origin), backend)
    dims = parse_dims(dims if isinstance(dims, str) else tuple(dims))
    mode = parse_mode(mode or "hidden")
    return render(lower(enumerate_basis(mlp(dims, mode)), mode=mode), backend)


def write_source(stem: str, source: str, out_dir: str | Path = "generated") -> Path:
    """Write `<stem>.py` under out_dir and return its path."""
    check_folder(out_dir)  # an empty path is refused, not read as the current folder
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stem}.py"
    write_text(path, source)  # atomic: complete or absent
    return path


def target_plan(target: Target, basis: Basis | None = None) -> LayerPlan:
    """The plan of a target (its basis enumerated unless given), labelled with its mode
    and the arguments that rebuild it."""
    basis = basis if basis is not None else enumerate_basis(target.space)
    return lower(basis, mode=target.mode, origin=target.origin)


def write_target(
    target: Target, out_dir: str | Path = "generated", backend: str = DEFAULT_BACKEND
) -> Path:
    """Write the module of a target (`<target.stem>.py`, `<target.stem>_<backend>.py` for a
    backend other than the default) under out_dir; return its path."""
    source = render(target_plan(target), backend)
    return write_source(backend_stem(target.stem, backend), source, out_dir)


def write_module(dims: str | Sequence[int], mode: str = "hidden", out_dir="generated") -> Path:
    """Write `dws_<dims>_<mode>.py` under out_dir and return its path."""
    dims = parse_dims(dims if isinstance(dims, str) else tuple(dims))
    mode = parse_mode(mode)
    return write_source(module_name(dims, mode), source_for(dims, mode), out_dir)
