"""Code generation: lower a `Basis` into a plan of grouped ops, then print module source.

The steps, one module each, every one a pure function on frozen data:

- `plan`:    the frozen ops (`Pool`, `Mix`, `Add`) of a `LayerPlan`; no torch.
- `lower`:   `lower(basis) -> LayerPlan`, grouping the orbit patterns into ops.
- `emit`:    the source-printing library (lines that stay `ruff format`-stable).
- `preludes`: the runtime pasted into emitted modules (helpers, the torch.compile wrapper,
  the C and Triton kernels and their custom ops), as real files read back as text.
- `backends`: printers from a plan to source; `eager` is the reference.
- `files`:   module names, `source_for`, `write_module`, the checked-in list.
- `cli`:     `dws-theory generate`.

The generator never imports torch. Everything users imported from the former single module
`dws_theory.codegen` is re-exported here.
"""

from __future__ import annotations

from .backends import BACKENDS, register_backend, render
from .backends.eager import GENERATOR_VERSION
from .cli import add_generate_parser
from .files import checked_in_modules, module_name, source_for, write_module
from .lower import lower
from .plan import EQUIVARIANT, INVARIANT, Add, LayerPlan, Mix, Op, Pool, Slot

__all__ = [
    "BACKENDS",
    "EQUIVARIANT",
    "GENERATOR_VERSION",
    "INVARIANT",
    "Add",
    "LayerPlan",
    "Mix",
    "Op",
    "Pool",
    "Slot",
    "add_generate_parser",
    "checked_in_modules",
    "lower",
    "module_name",
    "register_backend",
    "render",
    "source_for",
    "write_module",
]
