"""The values the trace passes between fx nodes: traced tensors and calls.

A `Traced` is a real tensor (the trace runs the module on an example input) with the layout
of each of its axes (`layout.py`). A `Stacked` is the final states of a multi-layer or
bidirectional recurrent net, `[layers * directions, ..., hidden]`, whose last axis carries a
different set for each entry of the first: only an integer index reads it (`h_n[-1]`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import fx

from .layout import Axis

__all__ = ["Call", "Layout", "Stacked", "Traced"]

Layout = tuple[Axis, ...]


@dataclass
class Traced:
    """A tensor of the trace: its real value and the layout of each of its axes. `state` names
    the parameter or buffer when the tensor is one read directly (or a transposed view)."""

    tensor: torch.Tensor
    layout: Layout
    state: str | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.tensor.shape)


@dataclass
class Call:
    """One call of the fx graph: the node, what it calls, its operands (Traced where they are
    traced tensors) and its real result."""

    node: fx.Node
    target: Any
    args: tuple
    kwargs: dict
    out: Any = None

    def arg(self, index: int, name: str, default: object = None) -> Any:
        if len(self.args) > index:
            return self.args[index]
        return self.kwargs.get(name, default)


@dataclass
class Stacked:
    """States stacked over layers and directions: entry i has the layout `entries[i]` (the
    axes after the first)."""

    tensor: torch.Tensor
    entries: tuple[Layout, ...]

    def entry(self, index: int) -> Traced:
        return Traced(self.tensor[index], self.entries[index % len(self.entries)])
