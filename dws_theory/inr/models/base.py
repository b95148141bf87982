"""What a model builder is given and what a model table entry says (no model lives here).

Model contract: ``MODELS[name].build(info, arch)`` (:mod:`dws_theory.inr.models.table`) returns
an ``nn.Module`` whose ``forward(weights, biases)`` takes a *normalised* batch (``weights[m-1]``:
``[B, C, d_m, d_{m-1}]``, see :mod:`dws_theory.inr.train.loop.normalize`) and returns

* ``[B, info.out_dim]`` for classification (logits) and regression (standardised targets);
* ``(weights, biases)`` in the batch layout (channel axis optional) for weight-to-weight
  tasks: a residual that the training loop adds to the normalised input. A builder raises
  :class:`UnsupportedTask` for tasks it cannot handle.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor, nn

from ...errors import InputError
from ...spec import WeightSpace
from ..data.tasks import Task
from ..train.normalize import Normalizer

__all__ = [
    "TaskInfo",
    "Architecture",
    "ModelBuilder",
    "ModelSpec",
    "UnsupportedTask",
    "DEFAULT_PROBES",
]

DEFAULT_PROBES = 32  # measured: see docs/results.md


class UnsupportedTask(InputError):
    """A model does not apply to the requested task."""


@dataclass(frozen=True, eq=False)
class TaskInfo:
    """What a model builder needs to know about the data it will see."""

    task: Task
    dims: tuple[int, ...]
    channels: int
    w0: float | None  # the INRs' w0, or None when the networks are not SIRENs
    coords: Tensor | None  # [P, d_0] grid the signals live on (None: no renderer)
    normalizer: Normalizer  # what the inputs went through (models that render undo it)
    example: nn.Module | None = None  # the architecture when the networks are not MLPs
    activation: str | None = None  # the networks' hidden activation, where known
    input_shape: tuple[int, ...] | None = None  # one input of `example` (probes feed these)
    domain: Tensor | None = None  # [K, *input_shape] inputs from the networks' own domain

    def space(self, mode: str = "hidden") -> WeightSpace:
        """The networks' weight space in symmetry ``mode`` (``from_module`` of the example,
        else the MLP of ``dims``)."""
        from ...frontends.module import from_module
        from ...spec import mlp

        return mlp(self.dims, mode) if self.example is None else from_module(self.example, mode)

    @property
    def kind(self) -> str:
        return self.task.kind

    @property
    def out_dim(self) -> int:
        """Classes or regression outputs; 0 when the output is a weight space."""
        return 0 if self.kind == "weights" else self.task.out_dim

    @property
    def weight_shapes(self) -> list[tuple[int, ...]]:
        """Per-sample shapes ``(C, d_m, d_{m-1})`` (``(C, *shape)`` of an example's
        weight-space tensors with two or more axes)."""
        if self.example is not None:
            return [(self.channels, *s) for s in _shapes(self.example) if len(s) >= 2]
        d = self.dims
        return [(self.channels, d[m], d[m - 1]) for m in range(1, len(d))]

    @property
    def bias_shapes(self) -> list[tuple[int, ...]]:
        if self.example is not None:
            return [(self.channels, *s) for s in _shapes(self.example) if len(s) == 1]
        return [(self.channels, d) for d in self.dims[1:]]

    @property
    def in_dim(self) -> int:
        """Length of the flattened weights and biases of one sample."""
        return sum(math.prod(s) for s in (*self.weight_shapes, *self.bias_shapes))


def _shapes(module: nn.Module) -> list[tuple[int, ...]]:
    """The shapes of the module's weight-space tensors in the space's order: its parameters,
    or the views the front end reads them as (attention's in-projection split into per-head
    query, key and value tensors)."""
    from ...frontends.module import trace_module

    return [source.shape for _, source in trace_module(module).sources]


@dataclass(frozen=True)
class Architecture:
    """Sizes shared by the weight-space models (the equivariant ones and NFN use all of them;
    the flat baselines have their own fixed sizes)."""

    hidden_channels: int = 16
    num_layers: int = 3  # equivariant layers
    head_hidden: int = 64  # invariant features and width of the head
    dropout: float = 0.0  # in the head only
    norm: bool = True  # symmetric batch norm after every equivariant layer but the last
    max_readout: bool = False  # add a max-pooled invariant readout (needs norm)
    # Learned input points whose outputs feed the readout: 0 none; None (the default)
    # DEFAULT_PROBES wherever the probes can run (an invariant output, networks it can
    # evaluate), else none.
    probes: int | None = None

    def __post_init__(self) -> None:
        for name in ("hidden_channels", "num_layers", "head_hidden"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"expected {name} to be a positive integer, got {value!r}")
        probes = self.probes
        if probes is not None and (isinstance(probes, bool) or not isinstance(probes, int)):
            raise InputError(f"expected probes to be a non-negative integer, got {probes!r}")
        if probes is not None and probes < 0:
            raise InputError(f"expected probes to be a non-negative integer, got {probes!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"expected dropout in [0, 1), got {self.dropout!r}")


ModelBuilder = Callable[[TaskInfo, Architecture], nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    """An entry of the model table (:data:`dws_theory.inr.models.table.MODELS`).

    ``symmetry`` is the group the model is built to respect (``hidden``, ``all``, ``signed``)
    or None; its inputs are normalised with statistics pooled over that group's orbits, so the
    normalisation never breaks the model's symmetry. ``permutation_augment`` asks the loop to
    permute every training batch's hidden neurons (for models with no built-in symmetry).
    ``defaults`` override the task's training defaults for this model.
    """

    name: str
    build: ModelBuilder
    symmetry: str | None
    description: str
    permutation_augment: bool = False
    defaults: dict[str, object] = field(default_factory=dict)
