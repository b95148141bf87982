"""What the `compiled` backend appends to the eager module, kept as real Python.

`dws_theory.codegen.backends.compiled` reads this file back as text from the marker line on
(`prelude_source("compiled")`) and pastes it after the eager module's two classes. The names
defined above the marker are stand-ins for what the eager module defines itself.

The appended code routes both layers' `forward` through `torch.compile` (built at the first
call, per class), and keeps the eager forward, unchanged, as the reference and fallback:
- inside an outer `torch.compile` (of a model) and under `torch.func` transforms the eager
  forward runs, so the outer compiler or transform sees the plain code;
- where the compiled code cannot be built (inductor on a machine without a C++ compiler, a
  Python that dynamo does not support), one warning says so and the eager forward runs from
  then on.
The library imports `_compiled_forward` from here as well (`DWSNet(backend="compiled")`,
`dws-theory train --compile`), so whole models get the same fallbacks as the layers.
The parameters, their names and `state_dict` are the eager module's. Double backward and
(by default) `retain_graph=True` are not supported by torch's compiled autograd; the emitted
comment says what to use instead.
"""

from __future__ import annotations

import functools
import warnings

import torch
from torch import nn

# Stand-ins for what the eager module defines before this code.
_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)


class EquivariantLayer(nn.Module):
    def forward(self, weights, biases=None):
        return weights, biases


class InvariantLayer(nn.Module):
    def forward(self, weights, biases=None):
        return weights


# -- emitted from here on ---------------------------------------------------------------------
# The compiled forward: torch.compile of each layer's eager forward, built at the first call.
# Gradients match the eager layer's; what torch's compiled autograd does not do is double
# backward (create_graph=True) and, with its default donated buffers, a second backward
# through one graph (retain_graph=True, e.g. gradcheck): for those use backend "eager", or
# set torch._functorch.config.donated_buffer = False before the first call for the second.
COMPILE_BACKEND = "inductor"  # any torch.compile backend; read when a class first compiles
COMPILE_OPTIONS = None  # inductor options (a dict), read with COMPILE_BACKEND


def _build_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean the compiled code cannot be built on this machine."""
    found = []
    for module, name in (
        ("torch._dynamo.exc", "BackendCompilerFailed"),
        ("torch._inductor.exc", "InductorError"),
        ("torch._inductor.exc", "CppCompileError"),
    ):
        try:
            error = getattr(__import__(module, fromlist=[name]), name, None)
        except ImportError:  # a torch without that part
            continue
        if error is not None:
            found.append(error)
    return tuple(found)


def _transformed() -> bool:
    """Whether a torch.func transform (vmap, grad, jacrev, ...) is active."""
    functorch = getattr(torch._C, "_functorch", None)
    peek = getattr(functorch, "peek_interpreter_stack", None)
    return peek is not None and peek() is not None


def _fallback_warning(cls: type, reason: BaseException) -> None:
    # torch wraps a compiler's own error (a missing C++ compiler, say) with a generic line
    reason = getattr(reason, "inner_exception", None) or reason
    first = (str(reason).strip().splitlines() or [type(reason).__name__])[0]
    warnings.warn(
        f"{cls.__name__}: the compiled forward cannot be built here ({type(reason).__name__}: "
        f"{first}); running the eager forward instead (backend 'eager' is the same module "
        "without compilation)",
        RuntimeWarning,
        stacklevel=3,
    )


def _compiled_forward(forward, options=None):
    """`forward` run through torch.compile, built at the first call; the eager `forward`
    inside an outer compilation or a torch.func transform, and from the first build
    failure on (after one warning). `options`: inductor options, default COMPILE_OPTIONS."""
    state: dict[str, object] = {}

    @functools.wraps(forward)
    def run(self, weights, biases=None):
        if "failed" in state or _compiling() or _transformed():
            return forward(self, weights, biases)
        if "compiled" not in state:
            try:
                chosen = COMPILE_OPTIONS if options is None else options
                extra = {"options": chosen} if chosen and COMPILE_BACKEND == "inductor" else {}
                state["compiled"] = torch.compile(forward, backend=COMPILE_BACKEND, **extra)
            except RuntimeError as exc:  # e.g. a Python version dynamo does not support
                state["failed"] = exc
                _fallback_warning(type(self), exc)
                return forward(self, weights, biases)
        try:
            return state["compiled"](self, weights, biases)
        except _build_errors() as exc:
            state["failed"] = exc
            _fallback_warning(type(self), exc)
            return forward(self, weights, biases)

    run.eager = forward  # the reference forward, unchanged
    run.compile_state = state  # "compiled": the torch.compile wrapper; "failed": the reason
    return run


EquivariantLayer.forward = _compiled_forward(EquivariantLayer.forward)
InvariantLayer.forward = _compiled_forward(InvariantLayer.forward)
