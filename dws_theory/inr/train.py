"""Generic training loop for models on INR weight spaces, with a model registry and CLI.

Model contract: ``MODELS[name](info: TaskInfo) -> nn.Module`` whose ``forward(weights,
biases)`` takes a *normalised* batch (``weights[m-1]``: ``[B, 1, d_m, d_{m-1}]``, each tensor
divided by one scalar, see :class:`TaskInfo`) and returns

* ``[B, info.out_dim]`` for ``digits-inr`` (logits, 10 classes) and ``sine-inr`` (1 output,
  the normalised frequency ``a``);
* ``(weights, biases)`` in the batch layout (channel axis optional) for ``digits-dilate``. The
  loop adds them to the normalised input weights (a residual, so a model that outputs zeros
  is the identity), multiplies by the scales back to raw weights, renders the SIREN on the
  8x8 grid and compares with the dilated image.

A model that sets the attribute ``permutation_augment = True`` gets every training batch
passed through :func:`~dws_theory.inr.baselines.permute_hidden` first (in the loop, so the
residual input and the model input stay the same network). A builder raises
:class:`UnsupportedTask` for tasks it cannot handle.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .baselines import FlatMLP, PixelClassifier, permute_hidden
from .datasets import TASKS, INRDataset, load_dataset
from .siren import render

__all__ = [
    "TaskInfo",
    "UnsupportedTask",
    "MODELS",
    "TASK_DEFAULTS",
    "MODEL_DEFAULTS",
    "register_model",
    "PreparedData",
    "prepare",
    "subsample_train",
    "get_batch",
    "predict",
    "build_model",
    "batch_loss",
    "train_step",
    "evaluate",
    "train",
    "add_train_parser",
]

KINDS = {"digits-inr": "classification", "sine-inr": "regression", "digits-dilate": "weights"}
METRICS = {"digits-inr": "test_accuracy", "sine-inr": "test_mse", "digits-dilate": "test_mse"}
# Defaults keep `train digits-inr --model mlp` well under a minute on 2 CPU cores.
TASK_DEFAULTS: dict[str, dict[str, float]] = {
    "digits-inr": {"epochs": 60, "batch_size": 64, "lr": 1e-3},
    "sine-inr": {"epochs": 60, "batch_size": 64, "lr": 1e-3},
    "digits-dilate": {"epochs": 60, "batch_size": 64, "lr": 1e-3},
}
AUGMENT_ATTR = "permutation_augment"


class UnsupportedTask(ValueError):
    """A registered model does not apply to the requested task."""


@dataclass(frozen=True, eq=False)
class TaskInfo:
    """What a model builder needs to know about a task.

    ``weight_scales[m-1]`` / ``bias_scales[m-1]`` are the scalars the inputs were divided by
    (root mean square of that tensor over the training split). One scalar per tensor commutes
    with neuron permutations and sign flips, so it keeps every weight-space symmetry.
    """

    task: str
    kind: str  # "classification" | "regression" | "weights"
    dims: tuple[int, ...]
    channels: int
    out_dim: int  # classes, 1 for regression, 0 when the output is a weight space
    w0: float
    coords: Tensor  # [P, d_0]: the grid the task's signals live on
    weight_scales: tuple[float, ...]
    bias_scales: tuple[float, ...]

    @property
    def weight_shapes(self) -> list[tuple[int, int, int]]:
        """Per-sample shapes ``(C, d_m, d_{m-1})``."""
        d = self.dims
        return [(self.channels, d[m], d[m - 1]) for m in range(1, len(d))]

    @property
    def bias_shapes(self) -> list[tuple[int, int]]:
        return [(self.channels, d) for d in self.dims[1:]]

    @property
    def in_dim(self) -> int:
        """Length of the flattened weights and biases of one sample."""
        return sum(math.prod(s) for s in (*self.weight_shapes, *self.bias_shapes))


ModelBuilder = Callable[[TaskInfo], nn.Module]


def _mlp(info: TaskInfo) -> nn.Module:
    if info.kind == "weights":
        return FlatMLP(info.in_dim, out_shapes=(info.weight_shapes, info.bias_shapes))
    return FlatMLP(info.in_dim, info.out_dim)


def _mlp_aug(info: TaskInfo) -> nn.Module:
    model = _mlp(info)
    setattr(model, AUGMENT_ATTR, True)
    return model


def _pixels(info: TaskInfo) -> nn.Module:
    if info.kind == "weights":
        raise UnsupportedTask("pixels classifies decoded pixels; it cannot output INR weights")
    return PixelClassifier(
        info.coords,
        info.out_dim,
        w0=info.w0,
        weight_scales=info.weight_scales,
        bias_scales=info.bias_scales,
    )


MODELS: dict[str, ModelBuilder] = {"mlp": _mlp, "mlp-aug": _mlp_aug, "pixels": _pixels}
# Per-model overrides of TASK_DEFAULTS (e.g. fewer epochs for models that are slow on CPU).
MODEL_DEFAULTS: dict[str, dict[str, float]] = {}


def register_model(
    name: str, builder: ModelBuilder, defaults: dict[str, float] | None = None
) -> ModelBuilder:
    """Add ``builder`` to :data:`MODELS` (refuses to overwrite silently).

    ``defaults`` overrides the task defaults (``epochs``, ``batch_size``, ``lr``) for this model
    when the caller does not pass them.
    """
    if name in MODELS and MODELS[name] is not builder:
        raise ValueError(f"model {name!r} is already registered")
    MODELS[name] = builder
    if defaults:
        MODEL_DEFAULTS[name] = dict(defaults)
    return builder


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True, eq=False)
class PreparedData:
    """Normalised inputs and loss-ready targets for every INR, on the training device."""

    info: TaskInfo
    weights: list[Tensor]  # normalised, [N, 1, d_m, d_{m-1}]
    biases: list[Tensor]
    targets: Tensor  # long classes / normalised a [N] / images as [N, P, 1]
    raw_targets: Tensor  # targets in the units the metric reports
    target_mean: float
    target_std: float
    splits: dict[str, Tensor]


def _rms(x: Tensor) -> float:
    return max(x.double().pow(2).mean().sqrt().item(), 1e-12)


def prepare(ds: INRDataset, device: str | torch.device = "cpu") -> PreparedData:
    """Normalise weights per tensor with train-split statistics and shape the targets."""
    train = ds.splits["train"]
    w_scales = tuple(_rms(w[train]) for w in ds.weights)
    b_scales = tuple(_rms(b[train]) for b in ds.biases)
    kind = KINDS[ds.task]
    mean, std = 0.0, 1.0
    if kind == "classification":
        targets = ds.targets.long()
        out_dim = 10
    elif kind == "regression":
        # Standardise a with train statistics; the metric reports MSE in units of a.
        mean = ds.targets[train].double().mean().item()
        std = max(ds.targets[train].double().std().item(), 1e-12) if len(train) > 1 else 1.0
        targets = (ds.targets.float() - mean) / std
        out_dim = 1
    else:
        targets = ds.targets.reshape(ds.n, -1, 1).float()
        out_dim = 0
    info = TaskInfo(
        task=ds.task,
        kind=kind,
        dims=tuple(ds.dims),
        channels=1,
        out_dim=out_dim,
        w0=ds.w0,
        coords=ds.coords.float(),
        weight_scales=w_scales,
        bias_scales=b_scales,
    )
    return PreparedData(
        info=info,
        weights=[(w / s).to(device) for w, s in zip(ds.weights, w_scales, strict=True)],
        biases=[(b / s).to(device) for b, s in zip(ds.biases, b_scales, strict=True)],
        targets=targets.to(device),
        raw_targets=ds.targets.to(device),
        target_mean=mean,
        target_std=std,
        splits={k: v.to(device) for k, v in ds.splits.items()},
    )


def subsample_train(data: PreparedData, n_train: int | None) -> PreparedData:
    """Keep ``n_train`` training INRs, a subset fixed by the dataset (not the training seed)."""
    train = data.splits["train"]
    if n_train is None or n_train >= len(train):
        return data
    if n_train < 1:
        raise ValueError(f"n_train must be positive, got {n_train}")
    keep = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:n_train]
    splits = {**data.splits, "train": train[keep.to(train.device)]}
    return replace(data, splits=splits)


Batch = tuple[list[Tensor], list[Tensor], Tensor]


def get_batch(data: PreparedData, idx: Tensor) -> Batch:
    return [w[idx] for w in data.weights], [b[idx] for b in data.biases], data.targets[idx]


# ----------------------------------------------------------------------------- loss & metrics


def _with_channel(xs: Sequence[Tensor], ref: Sequence[Tensor]) -> list[Tensor]:
    return [x.unsqueeze(1) if x.dim() == r.dim() - 1 else x for x, r in zip(xs, ref, strict=True)]


def predict(
    model: nn.Module, info: TaskInfo, weights: list[Tensor], biases: list[Tensor]
) -> Tensor:
    """Output in loss space: logits, normalised a ``[B]``, or rendered images ``[B, P, 1]``."""
    out = model(weights, biases)
    if info.kind == "classification":
        return out
    if info.kind == "regression":
        return out.reshape(out.shape[0], -1)[:, 0]
    dw, db = out
    dw, db = _with_channel(dw, weights), _with_channel(db, biases)
    raw_w = [(w + d) * s for w, d, s in zip(weights, dw, info.weight_scales, strict=True)]
    raw_b = [(b + d) * s for b, d, s in zip(biases, db, info.bias_scales, strict=True)]
    return render(raw_w, raw_b, info.coords.to(raw_w[0].device), info.w0)


def _loss(info: TaskInfo, pred: Tensor, target: Tensor) -> Tensor:
    if info.kind == "classification":
        return F.cross_entropy(pred, target)
    return F.mse_loss(pred, target)


def batch_loss(
    model: nn.Module,
    info: TaskInfo,
    batch: Batch,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Training loss on ``batch``; with ``generator`` and an augmenting model, permute first."""
    weights, biases, target = batch
    if generator is not None and getattr(model, AUGMENT_ATTR, False):
        weights, biases = permute_hidden(weights, biases, generator)
    return _loss(info, predict(model, info, weights, biases), target)


def train_step(
    model: nn.Module,
    info: TaskInfo,
    batch: Batch,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator | None = None,
) -> float:
    model.train()
    optimizer.zero_grad(set_to_none=True)
    loss = batch_loss(model, info, batch, generator)
    loss.backward()
    optimizer.step()
    return loss.item()


@torch.no_grad()
def evaluate(model: nn.Module, data: PreparedData, split: str, batch_size: int = 512) -> float:
    """Accuracy (classification) or MSE in target units (a, or pixel values) on ``split``."""
    model.eval()
    info = data.info
    idx_all = data.splits[split]
    total, count = 0.0, 0
    for idx in idx_all.split(batch_size):
        weights, biases, target = get_batch(data, idx)
        pred = predict(model, info, weights, biases)
        if info.kind == "classification":
            total += (pred.argmax(dim=1) == target).sum().item()
        elif info.kind == "regression":
            raw = pred * data.target_std + data.target_mean
            total += (raw - data.raw_targets[idx].float()).pow(2).sum().item()
        else:
            # Mean over pixels, summed over samples: averaging gives per-image MSE.
            total += (pred - target).pow(2).mean(dim=(1, 2)).sum().item()
        count += len(idx)
    return total / max(count, 1)


def _better(kind: str, new: float, best: float | None) -> bool:
    if best is None:
        return True
    return new > best if kind == "classification" else new < best


# ----------------------------------------------------------------------------- loop


def build_model(model_name: str, info: TaskInfo) -> nn.Module:
    if model_name not in MODELS:
        raise ValueError(f"unknown model {model_name!r}; registered: {', '.join(sorted(MODELS))}")
    return MODELS[model_name](info)


def train(
    task: str,
    model_name: str,
    seed: int = 0,
    epochs: int | None = None,
    device: str = "cpu",
    *,
    batch_size: int | None = None,
    lr: float | None = None,
    weight_decay: float = 0.0,
    cache_dir: str | os.PathLike[str] | None = None,
    n: int | None = None,
    fit_steps: int | None = None,
    progress: bool = True,
    n_train: int | None = None,
) -> dict[str, object]:
    """Train ``model_name`` on ``task``; select the best-validation epoch; report its test metric.

    Returns ``{task, model, seed, metric, value, params, seconds}``: ``metric`` is
    ``test_accuracy`` (digits-inr) or ``test_mse`` (sine-inr: MSE of a; digits-dilate: per-pixel
    MSE of the rendered output against the dilated image), ``params`` the trainable parameter
    count and ``seconds`` the wall time of the whole call, dataset loading included. ``n`` and
    ``fit_steps`` shrink the dataset (for quick runs); the dataset seed stays 0 so every
    training seed sees the same INRs and splits. ``n_train`` keeps only that many training INRs
    (a fixed random subset, the same for every seed and model; validation and test splits and
    the normalisation scales are unchanged), for learning curves against training-set size.
    """
    start = time.perf_counter()
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    defaults = {**TASK_DEFAULTS[task], **MODEL_DEFAULTS.get(model_name, {})}
    epochs = int(defaults["epochs"] if epochs is None else epochs)
    batch_size = int(defaults["batch_size"] if batch_size is None else batch_size)
    lr = float(defaults["lr"] if lr is None else lr)

    ds = load_dataset(task, cache_dir, n=n, steps=fit_steps, progress=progress)
    data = subsample_train(prepare(ds, device), n_train)
    info = data.info
    torch.manual_seed(seed)  # model inits use the global generator
    model = build_model(model_name, info).to(device)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    shuffle = torch.Generator().manual_seed(seed)
    augment = torch.Generator().manual_seed(seed + 1)

    best_val: float | None = None
    best_state = copy.deepcopy(model.state_dict())
    train_idx = data.splits["train"]
    bar = tqdm(range(epochs), desc=f"{task} {model_name}", file=sys.stderr, disable=not progress)
    for _ in bar:
        order = train_idx[torch.randperm(len(train_idx), generator=shuffle).to(train_idx.device)]
        losses = [
            train_step(model, info, get_batch(data, idx), optimizer, augment)
            for idx in order.split(batch_size)
        ]
        val = evaluate(model, data, "val")
        if _better(info.kind, val, best_val):
            best_val, best_state = val, copy.deepcopy(model.state_dict())
        bar.set_postfix(loss=f"{sum(losses) / len(losses):.4g}", val=f"{val:.4g}")
    bar.close()
    model.load_state_dict(best_state)
    value = evaluate(model, data, "test")
    return {
        "task": task,
        "model": model_name,
        "seed": seed,
        "metric": METRICS[task],
        "value": float(value),
        "params": int(params),
        "seconds": round(time.perf_counter() - start, 3),
    }


# ----------------------------------------------------------------------------- CLI


def _run_train(args: argparse.Namespace) -> int:
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda requested but CUDA is not available", file=sys.stderr)
        return 2
    try:
        result = train(
            args.task,
            args.model,
            seed=args.seed,
            epochs=args.epochs,
            device=args.device,
            batch_size=args.batch_size,
            lr=args.lr,
            cache_dir=args.cache_dir,
            n=args.n,
            fit_steps=args.fit_steps,
            progress=not args.quiet,
            n_train=args.n_train,
            weight_decay=args.weight_decay,
        )
    except UnsupportedTask as exc:
        print(f"error: {args.model} on {args.task}: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['task']}  model={result['model']}  seed={result['seed']}  "
            f"{result['metric']}={result['value']:.4f}  params={result['params']:,}  "
            f"{result['seconds']:.1f} s"
        )
    return 0


def add_train_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``train TASK --model MODEL [--seed S] [--epochs N] [--device D] [--json]``."""
    p = subparsers.add_parser(
        "train",
        help="train a model on an INR weight-space task",
        description="Train MODEL on TASK, keep the best-validation epoch, report its test metric.",
    )
    p.add_argument("task", choices=TASKS)
    # No `choices`: models registered after this parser is built must still be accepted.
    p.add_argument("--model", required=True, help="registered model name (e.g. mlp, mlp-aug)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="default depends on the task and model")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object to stdout")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay")
    p.add_argument(
        "--n-train", type=int, default=None, help="train on a fixed subset of this many INRs"
    )
    p.add_argument("--cache-dir", default=None, help="dataset cache directory")
    p.add_argument("--n", type=int, default=None, help="use only this many INRs (quick runs)")
    p.add_argument("--fit-steps", type=int, default=None, help="override INR fitting steps")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_run_train)
    return p


# Registers dws, dws-all, dws-signed and nfn (imported last: it builds on this module).
from . import equivariant as _equivariant  # noqa: E402,F401
