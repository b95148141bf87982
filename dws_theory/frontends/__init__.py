"""Front ends: ways to get a `WeightSpace`.

- `resolve(shape, mode)` (`frontends.resolve`): the one path from any of the below to a
  `Target` (a space with its mode label and names); the runtime, the models, the checks
  and the file writers all use it.
- `mlp(dims, mode)`: an MLP's widths and symmetry mode (defined in `dws_theory.spec`).
- `WeightSpace.parse("sets[...] tensors[...]")`: the spec string, kinds given directly.
- `from_module(module, symmetry)` / `trace_module`: any `torch.nn.Module` torch.fx can trace
  (imported lazily: it needs torch).
- `frontends.target.load_module_file("FILE.py:NAME")`: the module a Python file names (for
  the command line's `--module`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..spec import WeightSpace, mlp

if TYPE_CHECKING:
    from .module import Link, ModuleTrace, from_module, trace_module

__all__ = ["Link", "ModuleTrace", "WeightSpace", "from_module", "mlp", "trace_module"]


def __getattr__(name: str) -> object:
    """The torch-based names load on first use, so that importing this package stays light."""
    if name in ("Link", "ModuleTrace", "from_module", "trace_module"):
        from . import module

        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
