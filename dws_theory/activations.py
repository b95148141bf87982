"""Pointwise activations for weight-space models, with a form that torch.compile runs fast.

`ReLU` is `torch.nn.ReLU` in eager mode. Under torch.compile it is the same function with
its gradient written from the output, `grad * sign(relu(x))`, instead of the built-in
`threshold_backward`. Values and gradients are the same (the gradient is 1 where x > 0 and
0 elsewhere, in both forms), but what the compiled graph keeps for the backward differs: for
the built-in ReLU, inductor saves a boolean mask `x <= 0`, and its CPU code (torch 2.13,
AVX-512) stores and loads such masks very slowly; written from the output it keeps the float
output, which the next layer saves anyway. On a [512, 32, 32, 32] broadcast sum and ReLU,
forward and backward, 2 threads (`python benchmarks/activation_compile.py`), the compiled
built-in took 3.26x eager's time and this form 0.54x; a compiled DWSNet training step
(B=512, 32 channels) went from 2.12x eager's time to 0.73x (docs/benchmarks.md, Model speed).
"""

from __future__ import annotations

import torch
from torch import nn

from .codegen.preludes.base import _compiling  # the emitted layers' own test, one definition

__all__ = ["ReLU", "relu_from_output"]


class _ReLUFromOutput(torch.autograd.Function):
    """max(x, 0), whose backward reads the saved output: grad * sign(output)."""

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return x.clamp_min(0)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (output,) = ctx.saved_tensors
        # output >= 0, so its sign is 1 where x > 0 and 0 elsewhere: ReLU's derivative,
        # as a float factor, so no boolean mask is formed or saved.
        return grad * output.sign()


def relu_from_output(x: torch.Tensor) -> torch.Tensor:
    """ReLU whose gradient is computed from its output (see the module docstring)."""
    return _ReLUFromOutput.apply(x)


class ReLU(nn.ReLU):
    """`nn.ReLU`, run as `relu_from_output` under torch.compile (same values and gradients)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _compiling() and not self.inplace:
            return relu_from_output(x)
        return super().forward(x)
