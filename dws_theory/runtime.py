"""Build the emitted layer classes in memory, without writing a file.

`layer_classes(dims_or_space, mode)` renders the same source `dws-theory generate` writes and
executes it in a fresh module namespace, so the classes behave exactly as the checked-in
modules do. It takes whatever `frontends.resolve` takes: MLP widths (`2,32,32,1` or a
sequence), a spec string, any `WeightSpace` (from `from_module`, `WeightSpace.parse`, ...)
or a torch module to trace. The module is importable by name
(`dws_theory._generated.dws_2_32_32_1_hidden`; see `dws_theory._generated`), so layers and
models built on them pickle and `torch.save` / `torch.load` across processes. The source is
registered with `linecache`, so tracebacks and `inspect` show the real lines.
"""

from __future__ import annotations

import importlib
import types
from functools import cache

from ._generated import register
from .aliases import SpaceLike
from .codegen.backends import DEFAULT_BACKEND, check_backend
from .frontends.resolve import resolve
from .naming import mlp_generated_name
from .spec import WeightSpace, mlp, mlp_shape

__all__ = ["layer_classes", "load_module"]


@cache
def _module(spec: str, mode: str | None, backend: str) -> types.ModuleType:
    # Imported by name, so that pickle and torch.load find the classes in any process.
    space = WeightSpace.parse(spec)
    shape = mlp_shape(space)
    if shape is not None and mlp(shape[0], mode or shape[1]) == space:
        mode = mode or shape[1]  # an MLP's space: the MLP's module, however it was given
        if backend == DEFAULT_BACKEND:
            return importlib.import_module(mlp_generated_name(shape[0], mode))
    return importlib.import_module(register(spec, mode, backend))


def load_module(
    shape: SpaceLike, mode: str | None = None, backend: str = DEFAULT_BACKEND
) -> types.ModuleType:
    """The generated module for an MLP shape and mode (default hidden), or for a weight space
    (cached). For a `WeightSpace`, `mode` only labels the module: the set kinds are the
    space's own (for an MLP's space it must be that space's mode)."""
    target = resolve(shape, mode)
    check_backend(backend)
    return _module(str(target.space), target.mode, backend)


def layer_classes(
    shape: SpaceLike, mode: str | None = None, backend: str = DEFAULT_BACKEND
) -> tuple[type, type]:
    """(EquivariantLayer, InvariantLayer) for an MLP shape and mode or a weight space."""
    module = load_module(shape, mode, backend)
    return module.EquivariantLayer, module.InvariantLayer
