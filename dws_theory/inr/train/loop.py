"""The training loop for models on weight spaces: one process or data-parallel.

``train(task, model, ...)`` loads the data (a fitted INR task, or ``data=FILE.pt`` for a
user's own collection), fits the input normalisation on the training split for the model's
symmetry, trains with AdamW, keeps the epoch with the best validation metric and reports its
test metric. Every training batch goes raw weights -> augmentations (the task's defaults or
``augment=``) -> hidden-neuron permutation (models whose table entry sets ``permutation_augment``)
-> normalisation -> model.

Data parallel: started under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) the loop
joins the process group (gloo on CPU, NCCL on GPU), wraps the model in
``DistributedDataParallel`` and gives every process one slice of each *global* batch. Every
process draws the same shuffles and augmentations for the whole global batch, the loss of a
slice is weighted by its share of the batch, and the equivariant models' batch statistics are
all-reduced, so N processes follow the same trajectory as one process with the same global
batch (up to float summation order). Only rank 0 prints.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

from ... import atomic
from ...cuda_graphs import AUTOCAST, static_batches, step_module, uses_cuda_graphs
from ...errors import InputError
from ..data.activations import ACTIVATIONS
from ..data.cache import save_file
from ..data.collection import Collection, from_dataset
from ..data.datasets import load_dataset
from ..data.layout import flatten_weights, unflatten_weights
from ..data.siren import INIT_SCHEMES, SCHEDULES, render
from ..data.tasks import TrainDefaults, get_task
from ..data.zoos import get_zoo
from ..models.base import Architecture, ModelSpec, TaskInfo, UnsupportedTask
from ..models.probes import ProbeFeatures
from ..models.table import PRESETS, get_model
from ..progress import progress
from .augment import AUGMENTATIONS, augment, check_geometric, permute_hidden
from .canonical import Canonicalizer, for_collection
from .metrics import kendall_tau
from .normalize import NORMALIZATIONS, Normalizer, fit_normalizer

__all__ = [
    "RunConfig",
    "Prepared",
    "prepare",
    "predict",
    "get_batch",
    "batch_loss",
    "train_step",
    "evaluate",
    "train",
    "run",
    "UnsupportedTask",
]


@dataclass(frozen=True)
class RunConfig:
    """Everything one training run depends on; ``None`` means the task's (or preset's) default."""

    task: str | None  # a task name, or None with ``data``
    model: str
    seed: int = 0
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    augment: tuple[str, ...] | None = None
    schedule: str | None = None
    normalize: str = "orbit"
    preset: str = "default"
    device: str = "cpu"
    data: str | None = None  # a user's collection (.pt)
    cache_dir: str | None = None
    n: int | None = None  # INRs to fit (quick runs)
    fit_steps: int | None = None
    init: str | None = None  # None: the first of INIT_SCHEMES (dwsnets)
    views: int | None = None  # None: the task's default
    n_train: int | None = None
    save: str | None = None  # write the selected model's state_dict here
    progress: bool = True
    compile: bool = False  # run the training step's forward through torch.compile
    # Canonical sign / scale forms: None where exact, True required, False off.
    canonicalize: bool | None = None
    activation: str | None = None  # the --data networks' activation, when the file lacks it
    probes: int | None = None  # learned probe points feeding the readout (None: the preset's)
    cuda_graphs: bool = True  # with compile on CUDA: graphed steps, full batches only
    autocast: str | None = None  # "bf16": the training step's forward under autocast

    def __post_init__(self) -> None:
        if (self.task is None) == (self.data is None):
            raise InputError("expected exactly one of a task name and a data file")
        fitting = {"n": self.n, "fit_steps": self.fit_steps, "init": self.init, "views": self.views}
        given = [f"--{k.replace('_', '-')}" for k, v in fitting.items() if v is not None]
        if self.data is not None and given:
            raise InputError(
                f"{', '.join(given)} set how a task's INRs are fitted; with --data the networks "
                "are given: expected none of them"
            )
        if self.normalize not in NORMALIZATIONS:
            raise InputError(
                f"expected a normalisation in {NORMALIZATIONS}, got {self.normalize!r}"
            )
        if self.autocast is not None and self.autocast not in AUTOCAST:
            raise InputError(
                f"expected an autocast dtype in {tuple(AUTOCAST)}, got {self.autocast!r}"
            )
        if self.preset not in PRESETS:
            raise InputError(f"expected a preset in {tuple(PRESETS)}, got {self.preset!r}")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or value < 1):
                raise InputError(f"expected {name} to be a positive integer, got {value!r}")
        for name in ("lr", "weight_decay"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise InputError(f"expected {name} to be finite and non-negative, got {value!r}")
        if self.lr is not None and self.lr == 0:
            raise InputError("expected a positive learning rate, got 0")
        if self.schedule is not None and self.schedule not in SCHEDULES:
            raise InputError(f"expected a schedule in {SCHEDULES}, got {self.schedule!r}")
        unknown = set(self.augment or ()) - set(AUGMENTATIONS)
        if unknown:
            raise InputError(f"expected augmentations from {AUGMENTATIONS}, got {sorted(unknown)}")
        if self.probes is not None and (isinstance(self.probes, bool) or self.probes < 0):
            raise InputError(f"expected probes to be a non-negative integer, got {self.probes!r}")
        if self.activation is not None and self.data is None:
            raise InputError("--activation describes a --data collection; a task knows its own")
        if self.activation is not None and self.activation not in ACTIVATIONS:
            raise InputError(f"expected an activation in {ACTIVATIONS}, got {self.activation!r}")


@dataclass(frozen=True)
class Settings:
    """The resolved training settings of a run (defaults filled in)."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    amsgrad: bool
    schedule: str
    augment: tuple[str, ...]
    arch: Architecture = field(default_factory=Architecture)


def resolve(config: RunConfig, defaults: TrainDefaults, spec: ModelSpec) -> Settings:
    """Config > preset > model's defaults for the task > task defaults."""
    preset = PRESETS[config.preset]
    merged = replace(defaults, **{**spec.defaults, **preset.train})
    chosen = {
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "weight_decay": config.weight_decay,
        "augment": config.augment,
        "schedule": config.schedule,
    }
    merged = replace(merged, **{k: v for k, v in chosen.items() if v is not None})
    probes = config.probes if config.probes is not None else merged.probes
    return Settings(
        epochs=int(merged.epochs),
        batch_size=int(merged.batch_size),
        lr=float(merged.lr),
        weight_decay=float(merged.weight_decay),
        amsgrad=bool(merged.amsgrad),
        schedule=str(merged.schedule),
        augment=tuple(merged.augment),
        arch=preset.arch if probes is None else replace(preset.arch, probes=probes),
    )


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True, eq=False)
class Prepared:
    """A collection with the model's normaliser and the info its builder gets; ``canonical``
    (None: off) is applied to every raw batch before the normaliser."""

    data: Collection
    normalizer: Normalizer
    info: TaskInfo
    canonical: Canonicalizer | None = None

    def inputs(self, weights: list[Tensor], biases: list[Tensor]) -> tuple[list[Tensor], ...]:
        """A raw batch as the model reads it: canonical form, then normalisation."""
        return self.normalizer(*self.raw_inputs(weights, biases))

    def raw_inputs(self, weights: list[Tensor], biases: list[Tensor]) -> tuple[list[Tensor], ...]:
        """The raw batch in canonical form (where that is on)."""
        if self.canonical is not None:
            weights, biases = self.canonical(weights, biases)
        return weights, biases


def prepare(
    data: Collection,
    symmetry: str | None,
    scheme: str = "orbit",
    device: str = "cpu",
    canonicalize: bool | None = None,
) -> Prepared:
    """Fit the normaliser on the training split (view 0, in canonical form unless
    ``canonicalize`` is False; see :func:`~dws_theory.inr.train.canonical.for_collection`)
    and move everything to ``device``."""
    data = data.to(device)
    canonical = for_collection(data, canonicalize)
    ws, bs = data.raw(data.rows(data.splits["train"]))
    if canonical is not None:
        ws, bs = canonical(ws, bs)
    space = None
    if data.example is not None and symmetry is not None:
        from ...frontends.module import from_module

        space = from_module(data.example, symmetry)
    normalizer = fit_normalizer(ws, bs, scheme, symmetry, space)
    info = TaskInfo(
        task=data.task,
        dims=data.dims,
        channels=ws[0].shape[1],
        w0=data.w0,
        coords=data.coords,
        normalizer=normalizer,
        example=data.example,
        activation=data.activation,
        input_shape=data.input_shape,
        domain=data.domain,
    )
    return Prepared(data, normalizer, info, canonical)


def _with_channel(xs: Sequence[Tensor], ref: Sequence[Tensor]) -> list[Tensor]:
    return [x.unsqueeze(1) if x.dim() == r.dim() - 1 else x for x, r in zip(xs, ref, strict=True)]


def predict(model: nn.Module, p: Prepared, weights: list[Tensor], biases: list[Tensor]) -> Tensor:
    """Output in loss space for a *raw* batch (normalised here)."""
    task = p.data.task
    nw, nb = p.inputs(weights, biases)
    out = model(nw, nb)
    if task.kind != "weights":
        return out.reshape(out.shape[0], -1)
    dw, db = out
    dw, db = _with_channel(dw, nw), _with_channel(db, nb)
    out_w = [w + d for w, d in zip(nw, dw, strict=True)]
    out_b = [b + d for b, d in zip(nb, db, strict=True)]
    if task.target == "given":  # compare with the target networks in normalised units
        return flatten_weights(out_w, out_b)
    raw_w, raw_b = p.normalizer.inverse(out_w, out_b)
    assert p.data.coords is not None and p.data.w0 is not None
    return render(raw_w, raw_b, p.data.coords, p.data.w0)


def _loss_targets(p: Prepared, targets: Tensor) -> Tensor:
    """Targets in the space ``predict`` returns (normalises given target weights)."""
    task = p.data.task
    if task.kind == "weights" and task.target == "given":
        ws, bs = unflatten_weights(targets, p.info.weight_shapes, p.info.bias_shapes)
        return flatten_weights(*p.normalizer(ws, bs))
    return targets


@dataclass
class Augmenter:
    """The training-time transformations of a raw batch, with their own generators."""

    names: tuple[str, ...]
    permute: bool
    seed: int

    def __post_init__(self) -> None:
        self.generator = torch.Generator().manual_seed(self.seed + 1)

    def __call__(
        self, weights: list[Tensor], biases: list[Tensor]
    ) -> tuple[list[Tensor], list[Tensor]]:
        if self.names:
            weights, biases = augment(weights, biases, self.names, self.generator)
        if self.permute:
            weights, biases = permute_hidden(weights, biases, self.generator)
        return weights, biases


def get_batch(
    p: Prepared, idx: Tensor, view: Tensor | None = None
) -> tuple[list[Tensor], list[Tensor]]:
    """The raw weights of networks ``idx`` (their view 0, or ``view[i]`` for each)."""
    return p.data.raw(p.data.rows(idx, view))


def batch_loss(
    model: nn.Module, p: Prepared, weights: list[Tensor], biases: list[Tensor], idx: Tensor
) -> Tensor:
    """Loss of the raw batch ``(weights, biases)`` of networks ``idx``."""
    pred = predict(model, p, weights, biases)
    return p.data.task.loss(pred, _loss_targets(p, p.data.targets[idx]))


def train_step(
    model: nn.Module,
    p: Prepared,
    weights: list[Tensor],
    biases: list[Tensor],
    idx: Tensor,
    optimizer: torch.optim.Optimizer,
    weight: float = 1.0,
) -> float:
    """One optimiser step on a raw (already augmented) batch; ``weight`` scales the loss."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    loss = batch_loss(model, p, weights, biases, idx)
    (loss * weight).backward()
    optimizer.step()
    return loss.item()


@torch.no_grad()
def evaluate(model: nn.Module, p: Prepared, split: str, batch_size: int = 512) -> float:
    """Accuracy, or MSE in target units (the target, pixel values, or raw weights), or the
    task's rank metric (Kendall tau of predictions and targets over the whole split)."""
    model.eval()
    data, task = p.data, p.data.task
    if task.rank_metric is not None:
        idx = data.splits[split]
        pred = torch.cat([predict(model, p, *get_batch(p, i)) for i in idx.split(batch_size)])
        return kendall_tau(pred[:, 0].cpu(), data.targets[idx, 0].cpu())
    total, count = 0.0, 0
    for idx in data.splits[split].split(batch_size):
        pred = predict(model, p, *data.raw(data.rows(idx)))
        target = data.targets[idx]
        if task.kind == "regression":
            assert data.target_mean is not None and data.target_std is not None
            pred = pred * data.target_std + data.target_mean
            target = target * data.target_std + data.target_mean
        elif task.kind == "weights" and task.target == "given":
            shapes = (p.info.weight_shapes, p.info.bias_shapes)
            pred = flatten_weights(*p.normalizer.inverse(*unflatten_weights(pred, *shapes)))
        total += task.score(pred, target).sum().item()
        count += len(idx)
    return total / max(count, 1)


# ----------------------------------------------------------------------------- distributed


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    owns_group: bool = False  # this run started the process group (and ends it)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def part(self, idx: Tensor) -> tuple[Tensor, float]:
        """This process's slice of a global batch and the loss weight that makes the
        averaged gradient equal the global batch's."""
        if self.size == 1:
            return idx, 1.0
        mine = idx.tensor_split(self.size)[self.rank]
        return mine, len(mine) * self.size / max(len(idx), 1)


def _join_world(device: str) -> World:
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    dist = torch.distributed
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        return World(dist.get_rank(), dist.get_world_size(), True)
    return World(dist.get_rank(), dist.get_world_size(), False)


def _device_for(device: str, world: World) -> str:
    if device == "cuda" and world.size > 1:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return device


# ----------------------------------------------------------------------------- loop


def load_collection_for(config: RunConfig) -> Collection:
    if config.data is not None:
        from ..data.userdata import load_collection, with_activation

        data = load_collection(config.data)
        return data if config.activation is None else with_activation(data, config.activation)
    if get_task(config.task).is_zoo:  # type: ignore[arg-type]
        zoo = get_zoo(config.task)  # type: ignore[arg-type]
        return zoo.collection(
            zoo.load(config.cache_dir, zoo_recipe(config), progress=config.progress)
        )
    ds = load_dataset(
        config.task,  # type: ignore[arg-type]
        config.cache_dir,
        n=config.n,
        steps=config.fit_steps,
        init=config.init or INIT_SCHEMES[0],
        views=config.views,
        progress=config.progress,
    )
    return from_dataset(ds)


def zoo_recipe(config: RunConfig) -> Any:
    """The zoo a run reads: the default one, or ``n`` networks and at most ``fit_steps`` steps
    each (see :meth:`~dws_theory.inr.data.zoos.Zoo.recipe`)."""
    if config.init not in (None, INIT_SCHEMES[0]) or config.views not in (None, 1):
        raise InputError("--init and --views are INR fitting options; a model zoo has neither")
    return get_zoo(config.task).recipe(config.n, config.fit_steps)  # type: ignore[arg-type]


def _check_general(data: Collection, spec: ModelSpec, augment: tuple[str, ...]) -> None:
    """Refuse what only applies to MLPs on a collection of other networks."""
    if data.example is None:
        return
    if spec.permutation_augment:
        raise UnsupportedTask(f"{spec.name} permutes MLP neurons; this collection is not MLPs")
    if set(augment) - {"noise", "dropout"}:
        raise InputError(
            f"{data.task.name}: only noise and dropout apply to these networks (the others "
            "transform an INR's input coordinates)"
        )


def run(config: RunConfig) -> dict[str, object]:
    """Train as ``config`` says; return the result record (see :func:`train`)."""
    start = time.perf_counter()
    if config.save is not None:  # a bad target fails now, not after the whole run
        atomic.check_file(config.save)
    spec = get_model(config.model)
    world = _join_world(config.device)
    try:
        device = _device_for(config.device, world)
        data = load_collection_for(replace(config, progress=config.progress and world.main))
        task = data.task if config.task is None else get_task(config.task)
        settings = resolve(config, task.defaults_for(spec.name), spec)
        if task.kind == "weights" and set(settings.augment) - {"noise", "dropout"}:
            raise InputError(
                f"{task.name} is weight-to-weight: geometric augmentations would move the "
                "target with the input; use noise or dropout only"
            )
        _check_general(data, spec, settings.augment)
        if data.example is None:
            check_geometric(settings.augment, data.dims[0])
        p = prepare(
            data.subsample_train(config.n_train),
            spec.symmetry,
            config.normalize,
            device,
            config.canonicalize,
        )
        torch.manual_seed(config.seed)  # model inits use the global generator
        model = spec.build(p.info, settings.arch).to(device)
        _check_batch_statistics(model, len(p.data.splits["train"]), settings.batch_size)
        result = _fit(model, p, spec, settings, config, world)
    finally:
        if world.owns_group:
            torch.distributed.destroy_process_group()
    params = sum(q.numel() for q in model.parameters() if q.requires_grad)
    return {
        "task": task.name,
        "model": spec.name,
        "seed": config.seed,
        "metric": task.metric,
        "value": float(result["test"]),
        "val": float(result["val"]),
        "best_epoch": int(result["best_epoch"]),
        "epochs": settings.epochs,
        "params": int(params),
        "seconds": round(time.perf_counter() - start, 3),
        "canonical": "+".join(p.canonical.kinds) if p.canonical is not None else "none",
        "probes": _probe_points(model),
    }


def _probe_points(model: nn.Module) -> int:
    """How many probe points the model reads (0: none)."""
    return sum(m.points.shape[0] for m in model.modules() if isinstance(m, ProbeFeatures))


def _fit(
    model: nn.Module,
    p: Prepared,
    spec: ModelSpec,
    settings: Settings,
    config: RunConfig,
    world: World,
) -> dict[str, float]:
    task = p.data.task
    net = step_module(
        model, compile=config.compile, cuda_graphs=config.cuda_graphs, autocast_name=config.autocast
    )
    static = uses_cuda_graphs(next(model.parameters()).device, config.cuda_graphs, config.compile)
    if world.size > 1:
        net = nn.parallel.DistributedDataParallel(net)
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=settings.lr,
        weight_decay=settings.weight_decay,
        amsgrad=settings.amsgrad,
    )
    shuffle = torch.Generator().manual_seed(config.seed)
    augmenter = Augmenter(settings.augment, spec.permutation_augment, config.seed)
    train_idx = p.data.splits["train"]
    steps_per_epoch = len(batches(len(train_idx), settings.batch_size, static))
    scheduler = _scheduler(optimizer, settings.schedule, settings.epochs * steps_per_epoch)
    best_val: float | None = None
    best_epoch = 0
    best_state = copy.deepcopy(model.state_dict())
    bar = progress(
        settings.epochs * steps_per_epoch,
        f"{task.name} {spec.name}",
        unit="step",
        enabled=config.progress and world.main,
    )
    for epoch in range(settings.epochs):
        order = train_idx[torch.randperm(len(train_idx), generator=shuffle).to(train_idx.device)]
        view = torch.randint(p.data.n_views, (len(order),), generator=shuffle).to(order.device)
        losses = []
        for pos in batches(len(order), settings.batch_size, static):
            idx, v = order[pos.to(order.device)], view[pos.to(order.device)]
            ws, bs = augmenter(*get_batch(p, idx, v))  # global batch: every rank draws alike
            mine, weight = world.part(torch.arange(len(idx), device=idx.device))
            ws, bs = [w[mine] for w in ws], [b[mine] for b in bs]
            losses.append(train_step(net, p, ws, bs, idx[mine], optimizer, weight))
            scheduler.step()
            bar.update(1)
        val = evaluate(model, p, "val")
        if task.better(val, best_val):
            best_val, best_epoch, best_state = val, epoch + 1, copy.deepcopy(model.state_dict())
        bar.set_postfix(loss=f"{sum(losses) / len(losses):.4g}", val=f"{val:.4g}")
    bar.close()
    model.load_state_dict(best_state)
    if config.save is not None and world.main:  # atomic: a full disk keeps the old file
        save_file(config.save, {"state_dict": model.state_dict(), "config": config.__dict__})
    return {
        "test": evaluate(model, p, "test"),
        "val": float(best_val or 0.0),
        "best_epoch": best_epoch,
    }


def batches(n: int, batch_size: int, static: bool = False) -> list[Tensor]:
    """Positions 0..n-1 in batches of ``batch_size``. With ``static`` (CUDA graphs: one shape
    for every step) the last partial batch is dropped where a full one exists; else a last
    batch of one joins the one before it (batch statistics need two networks), so only
    n = 1 gives a batch of one."""
    if static:
        return static_batches(n, batch_size, static)
    parts = list(torch.arange(n).split(batch_size))
    if len(parts) > 1 and len(parts[-1]) == 1:
        parts[-2:] = [torch.cat(parts[-2:])]
    return parts


def _uses_batch_statistics(model: nn.Module) -> bool:
    from ..models.equivariant import SymmetricBatchNorm

    kinds = (nn.modules.batchnorm._BatchNorm, SymmetricBatchNorm)
    return any(isinstance(m, kinds) for m in model.modules())


def _check_batch_statistics(model: nn.Module, n_train: int, batch_size: int) -> None:
    """A model that normalises over its batch cannot train on batches of one network."""
    if _uses_batch_statistics(model) and min(n_train, batch_size) < 2:
        raise InputError(
            "expected at least 2 training networks and a batch size of at least 2 (this "
            f"model normalises over its batch), got {n_train} training networks and batch "
            f"size {batch_size}"
        )


def _scheduler(
    optimizer: torch.optim.Optimizer, schedule: str, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step learning-rate factor: cosine from 1 to 0 over the run, or constant."""
    if schedule not in SCHEDULES:
        raise InputError(f"expected a schedule in {SCHEDULES}, got {schedule!r}")
    if schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps)),
    )


def train(task: str | None, model_name: str, seed: int = 0, **options: object) -> dict[str, object]:
    """Train ``model_name`` on ``task`` (or ``data=FILE.pt``); report the best-validation epoch.

    Options are the fields of :class:`RunConfig`. Returns ``{task, model, seed, metric, value,
    val, best_epoch, epochs, params, seconds, canonical, probes}``: ``metric`` is
    ``test_accuracy`` or ``test_mse`` (MSE of the target in its units; of rendered pixels
    against the target image; of raw weights for a user's weight-to-weight data), ``value``
    its value on the test split at the epoch with the best validation metric, ``params`` the
    trainable parameter count, ``seconds`` the wall time of the whole call, data loading
    included, ``canonical`` the canonical forms applied (``sign``, ``scale`` or ``none``),
    ``probes`` the probe points the model reads (0: none). ``n`` and ``fit_steps`` shrink the
    fitted dataset for quick runs; its seed stays 0 so every training seed sees the same INRs
    and splits.
    """
    return run(RunConfig(task, model_name, seed, **options))  # type: ignore[arg-type]
