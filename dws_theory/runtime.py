"""Build the emitted layer classes in memory, without writing a file.

`layer_classes(dims, mode)` renders the same source `dws-theory generate` writes and executes
it in a fresh module namespace, so the classes behave exactly as the checked-in modules do.
The module is importable by name (`dws_theory._generated.dws_2_32_32_1_hidden`), so layers
and models built on them pickle and `torch.save` / `torch.load` across processes. The source
is registered with `linecache`, so tracebacks and `inspect` show the real lines.
"""

from __future__ import annotations

import importlib
import types
from collections.abc import Sequence
from functools import cache

from ._generated import module_name as generated_module_name
from .spec import parse_dims, parse_mode

__all__ = ["layer_classes", "load_module"]


@cache
def _module(dims: tuple[int, ...], mode: str) -> types.ModuleType:
    # Imported by name, so that pickle and torch.load find the classes in any process.
    return importlib.import_module(generated_module_name(dims, mode))


def load_module(dims: str | Sequence[int], mode: str = "hidden") -> types.ModuleType:
    """The generated module for an MLP shape and mode, built in memory (cached)."""
    return _module(parse_dims(dims), parse_mode(mode))


def layer_classes(dims: str | Sequence[int], mode: str = "hidden") -> tuple[type, type]:
    """(EquivariantLayer, InvariantLayer) for an MLP shape and mode, built in memory."""
    module = load_module(dims, mode)
    return module.EquivariantLayer, module.InvariantLayer
