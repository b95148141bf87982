"""Build the emitted layer classes in memory, without writing a file.

`layer_classes(dims, mode)` renders the same source `dws-theory generate` writes and executes
it in a fresh module namespace, so the classes behave exactly as the checked-in modules do.
The source is registered with `linecache`, so tracebacks and `inspect` show the real lines.
"""

from __future__ import annotations

import linecache
import sys
import types
from collections.abc import Sequence
from functools import cache

from .codegen import module_name, source_for
from .spec import parse_dims, parse_mode

__all__ = ["layer_classes", "load_module"]


@cache
def _module(dims: tuple[int, ...], mode: str) -> types.ModuleType:
    name = f"dws_theory._generated.{module_name(dims, mode)}"
    source = source_for(dims, mode)
    filename = f"<dws_theory generated {module_name(dims, mode)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = types.ModuleType(name)
    module.__file__ = filename
    # Registered so that pickling and dataclass/typing introspection can find the module.
    sys.modules[name] = module
    exec(compile(source, filename, "exec"), module.__dict__)
    return module


def load_module(dims: str | Sequence[int], mode: str = "hidden") -> types.ModuleType:
    """The generated module for an MLP shape and mode, built in memory (cached)."""
    dims = parse_dims(dims if isinstance(dims, str) else tuple(dims))
    return _module(dims, parse_mode(mode))


def layer_classes(dims: str | Sequence[int], mode: str = "hidden") -> tuple[type, type]:
    """(EquivariantLayer, InvariantLayer) for an MLP shape and mode, built in memory."""
    module = load_module(dims, mode)
    return module.EquivariantLayer, module.InvariantLayer
