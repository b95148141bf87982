"""Build the emitted layer classes in memory, without writing a file.

`layer_classes(dims_or_space, mode)` renders the same source `dws-theory generate` writes and
executes it in a fresh module namespace, so the classes behave exactly as the checked-in
modules do. It takes MLP widths (`2,32,32,1` or a sequence) or any `WeightSpace` (from
`from_module`, `WeightSpace.parse`, ...). The source is registered with `linecache`, so
tracebacks and `inspect` show the real lines.
"""

from __future__ import annotations

import linecache
import sys
import types
from collections.abc import Sequence
from functools import cache

from .codegen.backends import DEFAULT_BACKEND
from .codegen.files import source_for, space_stem
from .spec import WeightSpace, mlp, parse_dims, parse_mode

__all__ = ["layer_classes", "load_module"]

Shape = str | Sequence[int] | WeightSpace


@cache
def _module(spec: str, mode: str | None, backend: str) -> types.ModuleType:
    space = WeightSpace.parse(spec)
    stem = space_stem(space, mode)
    if backend != DEFAULT_BACKEND:
        stem = f"{stem}_{backend}"
    name = f"dws_theory._generated.{stem}"
    source = source_for(space, mode, backend)
    filename = f"<dws_theory generated {stem}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = types.ModuleType(name)
    module.__file__ = filename
    # Registered so that pickling and dataclass/typing introspection can find the module.
    sys.modules[name] = module
    exec(compile(source, filename, "exec"), module.__dict__)
    return module


def _space(shape: Shape, mode: str | None) -> tuple[WeightSpace, str | None]:
    if isinstance(shape, WeightSpace):
        return shape, parse_mode(mode) if mode is not None else None
    dims = parse_dims(shape if isinstance(shape, str) else tuple(shape))
    mode = parse_mode(mode or "hidden")
    return mlp(dims, mode), mode


def load_module(
    shape: Shape, mode: str | None = None, backend: str = DEFAULT_BACKEND
) -> types.ModuleType:
    """The generated module for an MLP shape and mode (default hidden), or for a weight space
    (cached). For a `WeightSpace`, `mode` only labels the module: the set kinds are the
    space's own (for an MLP's space it must be that space's mode)."""
    space, mode = _space(shape, mode)
    return _module(str(space), mode, backend)


def layer_classes(
    shape: Shape, mode: str | None = None, backend: str = DEFAULT_BACKEND
) -> tuple[type, type]:
    """(EquivariantLayer, InvariantLayer) for an MLP shape and mode or a weight space."""
    module = load_module(shape, mode, backend)
    return module.EquivariantLayer, module.InvariantLayer
