"""The fused backend: the compiled module, with each tensor's identity term run by C kernels.

The printed module is the compiled one (same parameters, names and `state_dict`; the
forward runs through torch.compile) plus the code of `codegen/preludes/fused.py` and
`custom_ops.py` and, as the string `_KERNEL_SOURCE`, the C source of
`codegen/preludes/fused_kernels.c`. The prelude
replaces the module's `_mix_add` (one channel mix plus its broadcast terms: the largest
tensor work of a layer) by torch custom ops over those kernels, forward and backward, each
in one pass over memory; the module compiles the kernels with the system C compiler at the
first call. Where they cannot be built, or do not take the inputs, the compiled backend's
ops run instead.
"""

from __future__ import annotations

from ..plan import LayerPlan
from ..preludes import kernel_source, prelude_source
from . import compiled, eager

__all__ = ["render"]

_IMPORTS = ("ctypes", "hashlib", "operator", "os", "platform", "subprocess", "tempfile")


def render(plan: LayerPlan) -> str:
    """Standalone source of the plan's layers with fused identity terms."""
    appendix = "\n\n".join(
        [
            prelude_source("compiled").strip("\n"),
            prelude_source("fused").strip("\n"),
            prelude_source("custom_ops").strip("\n"),
            f'_KERNEL_SOURCE = r"""\n{kernel_source()}"""',
        ]
    )
    imports = (*compiled.IMPORTS, *_IMPORTS)
    return eager.render(plan, "fused", appendix, imports=imports)
