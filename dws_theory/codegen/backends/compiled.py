"""The compiled backend: the eager module, with both layers' forward run through torch.compile.

The printed module is the eager one (same parameters, names and `state_dict`) plus the code
of `codegen/preludes/compiled.py`, which wraps `EquivariantLayer.forward` and
`InvariantLayer.forward`: the first call compiles the eager forward (inductor by default,
`COMPILE_BACKEND` in the module), and the eager forward stays the reference and the
fallback (inside an outer compilation, under torch.func transforms, and with one warning
where the compiled code cannot be built, e.g. without a C++ compiler).
"""

from __future__ import annotations

from ..plan import LayerPlan
from ..preludes import prelude_source
from . import eager

__all__ = ["IMPORTS", "render"]

IMPORTS = ("functools", "warnings")  # the standard-library modules its prelude uses


def render(plan: LayerPlan) -> str:
    """Standalone source of the plan's layers whose forward runs compiled."""
    return eager.render(plan, "compiled", prelude_source("compiled"), imports=IMPORTS)
