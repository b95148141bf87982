"""The importable home of the layer modules that `runtime.layer_classes` builds in memory.

`dws_theory._generated.dws_2_32_32_1_hidden` is the module `dws-theory generate 2,32,32,1`
would write, rendered and executed in memory on first import. Its name carries the shape and
the mode, so the import works in any process: an `EquivariantLayer`, an `InvariantLayer`, a
`DWSNet` built on them, or the classes themselves, pickled or saved with `torch.save` in one
process, load in a fresh one (pickle finds a class by module and name, and importing the
module here rebuilds it from its spec). Nothing is written to disk; tracebacks and `inspect`
still show the real source lines through `linecache`.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import linecache
import re
import sys
import types
from collections.abc import Sequence

__all__ = ["module_name", "spec_of"]

_STEM = re.compile(r"dws_(?P<dims>[0-9]+(?:_[0-9]+)+)_(?P<mode>hidden|all|signed)")


def module_name(dims: Sequence[int], mode: str) -> str:
    """`dws_theory._generated.dws_2_32_32_1_hidden` for widths (2, 32, 32, 1) and `hidden`."""
    return f"{__name__}.dws_{'_'.join(str(d) for d in dims)}_{mode}"


def spec_of(name: str) -> tuple[tuple[int, ...], str] | None:
    """(dims, mode) of a module name made by `module_name`, else None."""
    match = _STEM.fullmatch(name.removeprefix(f"{__name__}."))
    if match is None or not name.startswith(f"{__name__}."):
        return None
    return tuple(int(d) for d in match["dims"].split("_")), match["mode"]


class _Loader(importlib.abc.Loader):
    def __init__(self, dims: tuple[int, ...], mode: str) -> None:
        self.dims, self.mode = dims, mode

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # the default module object

    def exec_module(self, module: types.ModuleType) -> None:
        from ..codegen import source_for

        source = source_for(self.dims, self.mode)
        stem = module.__name__.rpartition(".")[2]
        filename = f"<dws_theory generated {stem}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        module.__file__ = filename
        exec(compile(source, filename, "exec"), module.__dict__)


class _Finder(importlib.abc.MetaPathFinder):
    """Claims `dws_theory._generated.<stem>` for every stem `module_name` makes."""

    def find_spec(self, fullname, path, target=None):  # the importlib.abc signature
        spec = spec_of(fullname)
        if spec is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Loader(*spec))


if not any(isinstance(f, _Finder) for f in sys.meta_path):
    sys.meta_path.append(_Finder())
