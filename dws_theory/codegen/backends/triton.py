"""The triton backend: the compiled module, with each tensor's identity term run by Triton kernels.

The printed module is the compiled one (same parameters, names and `state_dict`; the
forward runs through torch.compile) plus the code of `codegen/preludes/triton.py` and
`custom_ops.py` and, as the string `_TRITON_SOURCE`, the kernels of
`codegen/preludes/triton_kernels.py`. As in the fused backend, the module's `_mix_add` (one
channel mix plus its broadcast terms) becomes a torch custom op, forward and backward, and
graph passes hand a tensor's two pools and x's gradient with its pools' gradients to the
kernels; here they run on CUDA (or under Triton's interpreter on the CPU). Where Triton or
a CUDA device is missing, or the kernels do not take the inputs, the compiled backend's ops
run instead.
"""

from __future__ import annotations

from ..plan import LayerPlan
from ..preludes import kernel_source, prelude_source
from . import compiled, eager

__all__ = ["NAME", "render"]

NAME = "triton"
_IMPORTS = ("linecache", "operator", "os")


def render(plan: LayerPlan) -> str:
    """Standalone source of the plan's layers with identity terms in Triton kernels."""
    appendix = "\n\n".join(
        [
            prelude_source("compiled").strip("\n"),
            prelude_source("triton").strip("\n"),
            prelude_source("custom_ops").strip("\n"),
            f'_TRITON_SOURCE = r"""\n{kernel_source("triton_kernels.py")}"""',
        ]
    )
    return eager.render(plan, NAME, appendix, imports=(*compiled.IMPORTS, *_IMPORTS))
