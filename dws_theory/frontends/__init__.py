"""Front ends: ways to get a `WeightSpace`.

- `mlp(dims, mode)`: an MLP's widths and symmetry mode (defined in `dws_theory.spec`).
- `WeightSpace.parse("sets[...] tensors[...]")`: the spec string, kinds given directly.
- `from_module(module, symmetry)` / `trace_module`: any `torch.nn.Module` torch.fx can trace
  (imported lazily: it needs torch).
- `load_module_spec("FILE.py:NAME")`: the module a Python file names (for the CLI).
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
