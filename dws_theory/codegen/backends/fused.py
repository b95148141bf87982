"""The fused backend: the compiled module, with each tensor's identity term run by C kernels.

The printed module is the compiled one (same parameters, names and `state_dict`; the
forward runs through torch.compile) plus the code of `codegen/fused_prelude.py` and, as the
string `_KERNEL_SOURCE`, the C source of `codegen/fused_kernels.c`. The prelude replaces the
module's `_mix_add` (one channel mix plus its broadcast terms: the largest tensor work of a
layer) by torch custom ops over those kernels, forward and backward, each in one pass over
memory; the module compiles the kernels with the system C compiler at the first call. Where
they cannot be built, or do not take the inputs, the compiled backend's ops run instead.
"""

from __future__ import annotations

from ..plan import LayerPlan
from . import compiled, eager

__all__ = ["KERNELS", "PRELUDE", "render"]

PRELUDE = eager.PRELUDE.with_name("fused_prelude.py")
KERNELS = eager.PRELUDE.with_name("fused_kernels.c")
_IMPORTS = ("ctypes", "functools", "hashlib", "operator", "os", "platform", "subprocess")


def kernel_source() -> str:
    """The C source, as `_KERNEL_SOURCE` holds it."""
    text = KERNELS.read_text(encoding="utf-8")
    assert '"""' not in text and "\\" not in text, "the C source must be a plain raw string"
    return text


def render(plan: LayerPlan) -> str:
    """Standalone source of the plan's layers with fused identity terms."""
    appendix = "\n\n".join(
        [
            eager.prelude_source(compiled.PRELUDE).strip("\n"),
            eager.prelude_source(PRELUDE).strip("\n"),
            f'_KERNEL_SOURCE = r"""\n{kernel_source()}"""',
        ]
    )
    return eager.render(plan, "fused", appendix, imports=(*_IMPORTS, "tempfile", "warnings"))
