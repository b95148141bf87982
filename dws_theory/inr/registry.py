"""The model registry: what a model builder is given, and the name -> model table.

Model contract: ``MODELS[name].build(info, arch)`` returns an ``nn.Module`` whose ``forward(weights,
biases)`` takes a *normalised* batch (``weights[m-1]``: ``[B, C, d_m, d_{m-1}]``, see
:mod:`dws_theory.inr.normalize`) and returns

* ``[B, info.out_dim]`` for classification (logits) and regression (standardised targets);
* ``(weights, biases)`` in the batch layout (channel axis optional) for weight-to-weight
  tasks: a residual that the training loop adds to the normalised input. A builder raises
  :class:`UnsupportedTask` for tasks it cannot handle.

This module imports no model, so that models, the training loop and the task table can all
import it without a cycle; the built-in models register themselves when
:mod:`dws_theory.inr.models` is imported.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor, nn

from ..errors import InputError
from ..spec import WeightSpace
from .normalize import Normalizer
from .tasks import Task

__all__ = [
    "TaskInfo",
    "Architecture",
    "Preset",
    "PRESETS",
    "ModelSpec",
    "UnsupportedTask",
    "MODELS",
    "register_model",
    "get_model",
]


class UnsupportedTask(InputError):
    """A registered model does not apply to the requested task."""


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

    def space(self, mode: str = "hidden") -> WeightSpace:
        """The networks' weight space in symmetry ``mode`` (``from_module`` of the example,
        else the MLP of ``dims``)."""
        from ..frontends.module import from_module
        from ..spec import mlp

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
        parameters with two or more axes)."""
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
    return [tuple(p.shape) for p in module.parameters()]


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

    def __post_init__(self) -> None:
        for name in ("hidden_channels", "num_layers", "head_hidden"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"expected {name} to be a positive integer, got {value!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"expected dropout in [0, 1), got {self.dropout!r}")


@dataclass(frozen=True)
class Preset:
    """A named configuration: model sizes plus training overrides (``train --preset``)."""

    arch: Architecture
    train: dict[str, object]
    description: str


PRESETS: dict[str, Preset] = {
    "default": Preset(Architecture(), {}, "the task's own defaults"),
    # The DWSNets paper's MNIST classifier: 32 channels, 5 equivariant layers, AdamW with
    # amsgrad at lr 5e-3, weight decay 5e-4, batch 512, 100 epochs (augmentation: the task's).
    "paper": Preset(
        Architecture(hidden_channels=32, num_layers=5),
        {"lr": 5e-3, "weight_decay": 5e-4, "batch_size": 512, "epochs": 100, "amsgrad": True},
        "the DWSNets paper's classifier configuration",
    ),
}

ModelBuilder = Callable[[TaskInfo, Architecture], nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    """A registered model.

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


MODELS: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    build: ModelBuilder,
    *,
    symmetry: str | None,
    description: str,
    permutation_augment: bool = False,
    defaults: dict[str, object] | None = None,
) -> ModelSpec:
    """Add a model to :data:`MODELS` (refuses to overwrite a different builder silently)."""
    if name in MODELS and MODELS[name].build is not build:
        raise InputError(f"model {name!r} is already registered")
    spec = ModelSpec(name, build, symmetry, description, permutation_augment, dict(defaults or {}))
    MODELS[name] = spec
    return spec


def get_model(name: str) -> ModelSpec:
    from . import models  # noqa: F401  (registers the built-in models)

    if name not in MODELS:
        raise InputError(f"unknown model {name!r}; registered: {', '.join(sorted(MODELS))}")
    return MODELS[name]
