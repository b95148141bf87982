"""The importable home of the layer modules that `runtime.layer_classes` builds in memory.

`dws_theory._generated.dws_2_32_32_1_hidden` is the module `dws-theory generate 2,32,32,1`
would write, rendered and executed in memory on first import. An MLP's module name carries
its widths and mode, so the import works in any process: an
`EquivariantLayer`, an `InvariantLayer`, a `DWSNet` built on them, or the classes
themselves, pickled or saved with `torch.save` in one process, load in a fresh one (pickle
finds a class by module and name, and importing the module here rebuilds it from its name).

Any other weight space (from `from_module`, `WeightSpace.parse`, ...), and an MLP printed
by a backend other than the default, gets a module named by its short file stem
(`dws_space_<mode>_<hash of the spec>`, see `naming.space_stem`; the backend's name
appended), registered when `layer_classes` first builds it. A name cannot carry a whole spec, so:
instances of its layers (and models holding them) pickle with the spec they were built
from and load in any process (`__reduce_ex__` rebuilds the module from the spec); the
classes themselves pickle by reference and load where the space was built once
(`layer_classes(space)`).

Nothing is written to disk; tracebacks and `inspect` still show the real source lines
through `linecache`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import linecache
import sys
import types
from collections.abc import Sequence

from .. import naming
from ..codegen.backends import DEFAULT_BACKEND, backend_stem

__all__ = ["module_name", "register", "spec_of"]


# Modules of weight spaces other than MLPs: full name -> (spec, mode, backend).
_REGISTERED: dict[str, tuple[str, str | None, str]] = {}


def module_name(dims: Sequence[int], mode: str) -> str:
    """`dws_theory._generated.dws_2_32_32_1_hidden` for widths (2, 32, 32, 1) and `hidden`
    (the default backend's module; any width and depth, no hash)."""
    return naming.mlp_generated_name(dims, mode)


def register(spec: str, mode: str | None, backend: str = DEFAULT_BACKEND) -> str:
    """The module name of a weight space that `module_name` does not name (not an MLP's,
    or another backend's), recorded so that importing it in this process rebuilds the
    module from `spec`."""
    from ..spec import WeightSpace

    stem = backend_stem(naming.space_stem(WeightSpace.parse(spec), mode), backend)
    name = naming.generated_name(stem)
    _REGISTERED[name] = (spec, mode, backend)
    return name


def spec_of(name: str) -> tuple[tuple[int, ...] | str, str | None, str] | None:
    """(dims, mode, backend) of an MLP module name made by `module_name`, (spec, mode,
    backend) of a registered one, else None."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    shape = naming.mlp_of_stem(name)
    return None if shape is None else (*shape, DEFAULT_BACKEND)


def _rebuild(spec: str, mode: str | None, backend: str, qualname: str) -> object:
    """A bare instance of a generated class of a registered space (pickle then restores its
    state): the module is registered and built first, in whatever process this runs."""
    module = importlib.import_module(register(spec, mode, backend))
    cls = getattr(module, qualname)
    return cls.__new__(cls)


def _reduce_with_spec(module: types.ModuleType, spec: str, mode: str | None, backend: str):
    """`__reduce_ex__` for the layer classes of a registered space: pickles an instance with
    the spec it was built from, so a fresh process can rebuild its class. Subclasses defined
    elsewhere pickle as usual (by their own module and name)."""

    def __reduce_ex__(self, protocol):
        cls = type(self)
        if cls.__module__ != module.__name__:
            return object.__reduce_ex__(self, protocol)
        return _rebuild, (spec, mode, backend, cls.__qualname__), self.__getstate__()

    return __reduce_ex__


class _Loader(importlib.abc.Loader):
    def __init__(self, what: tuple[int, ...] | str, mode: str | None, backend: str) -> None:
        self.what, self.mode, self.backend = what, mode, backend

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # the default module object

    def exec_module(self, module: types.ModuleType) -> None:
        from ..codegen.files import source_for
        from ..spec import WeightSpace

        registered = isinstance(self.what, str)
        shape = WeightSpace.parse(self.what) if registered else self.what
        source = source_for(shape, self.mode, self.backend)
        stem = module.__name__.rpartition(".")[2]
        filename = f"<dws_theory generated {stem}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        module.__file__ = filename
        exec(compile(source, filename, "exec"), module.__dict__)
        if registered:
            for name in ("EquivariantLayer", "InvariantLayer"):
                reduce = _reduce_with_spec(module, self.what, self.mode, self.backend)
                getattr(module, name).__reduce_ex__ = reduce


class _Finder(importlib.abc.MetaPathFinder):
    """Claims `dws_theory._generated.<stem>` for every MLP stem `module_name` makes and
    every name `register` recorded."""

    def find_spec(self, fullname, path, target=None):  # the importlib.abc signature
        spec = spec_of(fullname)
        if spec is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Loader(*spec))


if not any(isinstance(f, _Finder) for f in sys.meta_path):
    sys.meta_path.append(_Finder())
