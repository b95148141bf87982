"""What a command works on: a weight space plus the names and labels that go with it.

A `Target` is made once from the command line (DIMS, `--module FILE.py:NAME` or
`--spec "sets[...] tensors[...]"`) and handed to every step, so the basis, the module, the
derivation and the messages all describe the same thing: its file stem, its title, and the
command-line arguments that rebuild it (printed in the emitted module's header).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..codegen.files import module_name, space_stem
from ..codegen.lower import mlp_shape
from ..spec import SpecError, WeightSpace, mlp, parse_dims, parse_mode

if TYPE_CHECKING:
    from torch import nn

    from .module import ModuleTrace

__all__ = [
    "Target",
    "from_dims",
    "from_module",
    "from_module_file",
    "from_space",
    "from_spec",
    "load_module_file",
]


@dataclass(frozen=True)
class Target:
    """A weight space with its labels.

    `mode` is the symmetry mode it was derived with (None: a spec gave the kinds), `dims`
    the widths when it is an MLP's, `stem` the file stem of its module and derivation,
    `title` how pages and messages name it, `origin` the arguments that rebuild it, and
    `trace` what `from_module` recorded (residual links, parameter names) and `module` the
    module itself, if it came from one (the certificate's module route checks the space
    against it)."""

    space: WeightSpace
    mode: str | None
    stem: str
    title: str
    origin: str
    dims: tuple[int, ...] | None = None
    trace: ModuleTrace | None = None
    module: nn.Module | None = field(default=None, compare=False, repr=False)

    @property
    def source(self) -> tuple[nn.Module, ModuleTrace] | None:
        """(module, trace) for the certificate's module route; None unless from a module."""
        return (self.module, self.trace) if self.module is not None else None


def from_dims(dims: str | tuple[int, ...] | list[int], mode: str = "hidden") -> Target:
    dims = parse_dims(dims)
    mode = parse_mode(mode)
    text = ",".join(map(str, dims))
    return Target(
        space=mlp(dims, mode),
        mode=mode,
        stem=module_name(dims, mode),
        title=f"MLP {'-'.join(map(str, dims))}",
        origin=f"{text} --symmetry {mode}",
        dims=dims,
    )


def from_space(space: WeightSpace, mode: str | None = None, label: str = "spec") -> Target:
    """Any space; an MLP's space gets the MLP's names and labels."""
    shape = mlp_shape(space)
    if shape is not None and (mode is None or mlp(shape[0], mode) == space):
        return from_dims(shape[0], mode or shape[1])
    return Target(
        space=space,
        mode=parse_mode(mode) if mode is not None else None,
        stem=space_stem(space, mode, label),
        title=f"weight space {label}",
        origin=f"--spec '{space}'",
    )


def from_spec(text: str) -> Target:
    """The spec string `WeightSpace` round-trips: the set kinds are given directly."""
    return from_space(WeightSpace.parse(text))


def load_module_file(reference: str) -> tuple[nn.Module, str]:
    """(module, NAME) for `FILE.py:NAME`: NAME is an nn.Module instance in FILE or a callable
    taking no arguments that returns one."""
    from torch import nn

    path_text, sep, name = reference.rpartition(":")
    if not sep or not path_text.endswith(".py") or not name.isidentifier():
        raise SpecError(f"expected --module FILE.py:NAME, got {reference!r}")
    path = Path(path_text)
    if not path.is_file():
        raise SpecError(f"--module: no file {path_text!r}")
    unique = "dws_theory_user_" + re.sub(r"\W", "_", str(path.resolve()))
    spec = importlib.util.spec_from_file_location(unique, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[unique] = module  # dataclasses and pickling look their module up here
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[unique]
        raise SpecError(f"--module: running {path_text} failed: {type(e).__name__}: {e}") from e
    if not hasattr(module, name):
        raise SpecError(f"--module: {path_text} defines no {name!r}")
    value = getattr(module, name)
    if not isinstance(value, nn.Module) and callable(value):
        try:
            value = value()
        except TypeError as e:
            raise SpecError(
                f"--module: {name} must be an nn.Module or take no arguments, got {e}"
            ) from None
    if not isinstance(value, nn.Module):
        raise SpecError(
            f"--module: expected {name} to be an nn.Module or to return one, got "
            f"{type(value).__name__}"
        )
    return value, name


def from_module(
    module: nn.Module,
    name: str,
    mode: str = "hidden",
    reference: str = "",
    example_input: object = None,
    check: bool = True,
) -> Target:
    """The target of a module instance: from_module of it, named `name`; `reference` is the
    `FILE.py:NAME` that rebuilds it on the command line (default `FILE.py:<name>`);
    `example_input` and `check` as for `trace_module`."""
    from .module import trace_module

    trace = trace_module(module, mode, example_input, check=check)
    shape = mlp_shape(trace.space)
    origin = f"--module {reference or f'FILE.py:{name}'} --symmetry {trace.mode}"
    if shape is not None:
        mlp_target = from_dims(shape[0], trace.mode)
        return Target(
            mlp_target.space,
            mlp_target.mode,
            mlp_target.stem,
            f"{mlp_target.title} (module {name})",
            origin,
            mlp_target.dims,
            trace,
            module,
        )
    return Target(
        space=trace.space,
        mode=trace.mode,
        stem=space_stem(trace.space, trace.mode, name),
        title=f"module {name}",
        origin=origin,
        trace=trace,
        module=module,
    )


def from_module_file(
    reference: str,
    mode: str = "hidden",
    input_shape: tuple[int, ...] | None = None,
    check: bool = True,
) -> Target:
    """The target of `--module FILE.py:NAME`: from_module of that module (on a random input
    of `input_shape` when given, `--input-shape`)."""
    module, name = load_module_file(reference)
    example = None
    if input_shape is not None:
        import torch

        dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), None)
        example = torch.randn(input_shape, generator=torch.Generator().manual_seed(0), dtype=dtype)
    return from_module(module, name, mode, reference, example, check)
