"""CUDA graphs where they pay: which path a step takes, static-shape batches, the options.

On CUDA a training step of these models is launch-bound: replaying the compiled step as
CUDA graphs (inductor's `triton.cudagraphs` option, which `torch.compile(mode=
"reduce-overhead")` sets) made `DWSNet`'s step at B=512 2.7x faster than the compiled step
without them on an H200 (the project's docs/benchmarks.md, GPU). So wherever a model's
forward is compiled on a CUDA device (`DWSNet(backend="compiled" | "fused" | "triton")`,
`dws-theory train --compile --device cuda`), it is graphed unless the caller turns it off.

A graph replays fixed shapes (a new shape records a new graph), so a loop that graphs its
steps keeps every batch the same size: `static_batches` drops an epoch's last partial
batch (a different few samples each epoch, since the order is reshuffled). A graph's
outputs live in buffers the next replay overwrites: read them (a loss's `.item()`), or clone
what is kept across calls.

Everything here runs on the CPU as well, where it picks the plain path, so the choices are
tested without a GPU; the graphed path itself is tested in tests/codegen/test_cuda.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = [
    "AUTOCAST",
    "GRAPH_OPTION",
    "StepModule",
    "autocast",
    "batch_count",
    "graph_options",
    "mark_step",
    "module_device",
    "static_batches",
    "step_module",
    "uses_cuda_graphs",
]

GRAPH_OPTION = "triton.cudagraphs"  # the inductor option of mode="reduce-overhead"
AUTOCAST = {"bf16": torch.bfloat16}  # --autocast names and their dtypes


def uses_cuda_graphs(device: torch.device | str, wanted: bool, compiled: bool) -> bool:
    """Whether a step on `device` is graphed: wanted, compiled (the graphs replay inductor's
    kernels) and on a CUDA device."""
    return bool(wanted) and bool(compiled) and torch.device(device).type == "cuda"


def graph_options(options: dict[str, Any] | None, graphs: bool) -> dict[str, Any] | None:
    """Inductor options with CUDA graphs on (a copy), or `options` unchanged."""
    if not graphs:
        return options
    return {**(options or {}), GRAPH_OPTION: True}


def batch_count(size: int, batch_size: int, static: bool) -> int:
    """Batches per epoch of `size` samples: every batch full when `static` (at least one)."""
    if static and size >= batch_size:
        return size // batch_size
    return -(-size // batch_size)


def static_batches(size: int, batch_size: int, static: bool) -> list[torch.Tensor]:
    """Positions 0..size-1 in batches of `batch_size`; with `static`, the last partial batch
    is dropped where a full one exists (one shape for every step)."""
    batches = list(torch.arange(size).split(batch_size))
    return batches[: batch_count(size, batch_size, static)]


def autocast(device: torch.device | str, name: str | None) -> contextlib.AbstractContextManager:
    """`torch.autocast` to the dtype named (`bf16`) on `device`'s type, or no change (None)."""
    if name is None:
        return contextlib.nullcontext()
    if name not in AUTOCAST:
        raise ValueError(f"expected an autocast dtype in {tuple(AUTOCAST)} or None, got {name!r}")
    return torch.autocast(torch.device(device).type, dtype=AUTOCAST[name])


def mark_step(graphs: bool) -> None:
    """Tell the graphs a new step begins (its outputs may overwrite the last step's)."""
    if graphs:
        torch.compiler.cudagraph_mark_step_begin()


def module_device(module: nn.Module) -> torch.device:
    """Where `module`'s first parameter is (the CPU for a module without any)."""
    first = next(module.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def _to_float32(value: object) -> object:
    """Floating tensors in `value` (nested lists and tuples) as float32."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, list | tuple):
        return type(value)(_to_float32(v) for v in value)
    return value


class StepModule(nn.Module):
    """`module`'s forward for training steps: compiled (with CUDA graphs where `graphs`),
    under autocast (outputs back in float32, so losses are taken in float32), or both. It
    holds `module` (parameters and `state_dict` under `module.`); evaluation and saving use
    `module` itself."""

    def __init__(
        self,
        module: nn.Module,
        compiled: Callable[..., object] | None,
        graphs: bool,
        autocast_name: str | None,
    ) -> None:
        super().__init__()
        self.module = module
        self._run = compiled
        self.graphs = graphs
        self.autocast_name = autocast_name

    def forward(self, *args: object) -> object:
        mark_step(self.graphs)
        with autocast(module_device(self.module), self.autocast_name):
            out = self.module(*args) if self._run is None else self._run(self.module, *args)
        return out if self.autocast_name is None else _to_float32(out)


def step_module(
    module: nn.Module,
    *,
    compile: bool = False,
    cuda_graphs: bool = True,
    autocast_name: str | None = None,
) -> nn.Module:
    """What a training loop calls for `module`: the module itself (neither compiled nor
    autocast), else a `StepModule`; compiled, it runs the generated layers' compiled
    wrapper (eager, after one warning, where the compiled code cannot be built), with CUDA
    graphs where `uses_cuda_graphs` says so."""
    autocast(module_device(module), autocast_name)  # a bad name fails here, not in a step
    if not compile and autocast_name is None:
        return module
    graphs = uses_cuda_graphs(module_device(module), cuda_graphs, compile)
    compiled = None
    if compile:
        from .codegen.preludes.compiled import _compiled_forward

        compiled = _compiled_forward(type(module).forward, graph_options(None, graphs))
    return StepModule(module, compiled, graphs, autocast_name)
