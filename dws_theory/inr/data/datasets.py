"""INR weight-space datasets: fitted SIRENs with targets, fixed splits and a checked cache.

The tasks and their sources are in :mod:`dws_theory.inr.data.tasks`; the signals in
:mod:`dws_theory.inr.data.signals`; the fitting in :mod:`dws_theory.inr.data.siren`. This
module turns a :class:`Recipe` into fitted INRs, caches them, and attaches each task's targets:

``label``      the digit class (``digits-inr``, ``mnist-inr``);
``frequency``  the sine's ``a`` (``sine-inr``);
``dilation``   the source image dilated by a 3x3 max filter (``scipy.ndimage.grey_dilation``,
               ``mode="nearest"``), ``[N, H, W]`` in [0, 1] (``digits-dilate``,
               ``mnist-dilate``).

Subsets and splits. ``n`` below a source's size takes a stratified subset (the MNIST file is
sorted by label, so a prefix would be one class); splits are 70/15/15, shuffled and, for the
image sources, stratified per class; all fixed by ``seed``.

Views. ``views=K`` fits K - 1 more INRs of every *training* image from independent inits
(the augmented-INR trick: each epoch the loop picks one view per training image). Validation
and test use only the first view, which is the same INR for every K.

Cache: ``<cache_dir>/<source>-<hash>.pt`` where the hash covers the whole recipe, so changing
any parameter makes a new file and an unchanged recipe never refits. ``cache_dir`` resolves as
argument > ``$DWS_THEORY_CACHE`` > ``platformdirs.user_cache_dir("dws_theory")``. Every file
carries a checksum of its tensors; a file that fails it, or holds non-finite weights, is refit
with a message. A cache directory that cannot be written keeps the fitted INRs in memory with
a warning, never discarding them.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ...errors import CommandError, InputError
from . import cache
from . import signals as sig
from .siren import DEFAULT_W0, INIT_SCHEMES, FitResult, fit_sirens, psnr
from .tasks import SOURCES, Source, Task, get_task

__all__ = [
    "RECIPE_VERSION",
    "Recipe",
    "Views",
    "INRDataset",
    "default_recipe",
    "resolve_cache_dir",
    "stratified_subset",
    "make_splits",
    "load_dataset",
    "estimate_bytes",
]

# Bump when fitting changes in a way that changes results, to invalidate caches.
# 2: the DWSNets init by default, cosine schedule, first-layer learning-rate scale, stratified
#    subsets and splits, raw x in [-pi, pi] for the sines, views.
RECIPE_VERSION = 2
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)
_SPLIT_SALT = 2_000_003
_VIEW_SALT = 7_919
# The fit of the first versions of this project, kept with the SIREN init (``init="siren"``):
# full-batch Adam at a constant 1e-3 for 200 steps, one learning rate for every layer.
SIREN_RECIPE = {"steps": 200, "lr": 1e-3, "first_lr_scale": 1.0, "schedule": "constant"}
# Refuse a fit whose tensors need more than this share of the machine's available memory.
_MEMORY_SHARE = 0.8


@dataclass(frozen=True)
class Recipe:
    """Everything that determines a fitted INR collection; hashed into the cache file name."""

    source: str
    n: int
    dims: tuple[int, ...]
    w0: float
    init: str
    steps: int
    lr: float
    first_lr_scale: float
    schedule: str
    seed: int
    n_points: int
    views: int = 1
    a_range: tuple[float, float] | None = None
    version: int = RECIPE_VERSION

    def key(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def filename(self) -> str:
        return f"{self.source}-{self.key()}.pt"


def _positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"expected {name} to be a positive integer, got {value!r}")
    return value


def default_recipe(
    task: str,
    *,
    n: int | None = None,
    steps: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    init: str = "dwsnets",
    views: int | None = None,
) -> Recipe:
    """The recipe ``load_dataset`` uses for ``task``, with optional overrides.

    ``init="siren"`` also selects :data:`SIREN_RECIPE`, the fit that came with that init.

    ``n`` above the source's size is an error (only the sines can be drawn in any number).
    ``views=None`` is the task's own default (:attr:`Task.views`).
    """
    spec = get_task(task)
    source = _source(spec)
    if init not in INIT_SCHEMES:
        raise InputError(f"expected an init scheme in {INIT_SCHEMES}, got {init!r}")
    recipe = Recipe(
        source.name,
        source.n,
        source.dims,
        DEFAULT_W0,
        init,
        source.steps,
        source.lr,
        source.first_lr_scale,
        "cosine",
        seed,
        source.n_points,
        a_range=source.a_range,
    )
    if init == "siren":
        recipe = replace(recipe, **SIREN_RECIPE)
    if n is not None:
        _positive("n", n)
        if n < 3:
            raise InputError(f"expected n >= 3 (one INR per split at least), got {n}")
        if source.a_range is None and n > source.n:
            raise InputError(f"expected n <= {source.n} for {task} ({source.description}), got {n}")
        recipe = replace(recipe, n=n)
    if steps is not None:
        recipe = replace(recipe, steps=_positive("steps", steps))
    if lr is not None:
        if not (lr > 0 and lr < float("inf")):
            raise InputError(f"expected a finite positive fitting learning rate, got {lr}")
        recipe = replace(recipe, lr=lr)
    return replace(recipe, views=_positive("views", spec.views if views is None else views))


def _source(task: Task) -> Source:
    if task.source is None:
        where = " (a model zoo: dws_theory.inr.data.zoos builds it)" if task.is_zoo else ""
        raise InputError(f"task {task.name!r} has no INR source to fit{where}")
    return SOURCES[task.source]


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("DWS_THEORY_CACHE")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("dws_theory"))


# ----------------------------------------------------------------------------- subsets, splits


def stratified_subset(labels: Tensor, n: int, seed: int) -> Tensor:
    """``n`` sorted indices with the classes as balanced as ``n`` allows, fixed by ``seed``."""
    return _dealt(labels, len(labels), seed)[:n].sort().values


def make_splits(
    n: int,
    seed: int,
    labels: Tensor | None = None,
    fractions: tuple[float, float, float] = SPLIT_FRACTIONS,
) -> dict[str, Tensor]:
    """Disjoint sorted train/val/test indices covering ``range(n)``, fixed by ``seed``.

    With ``labels`` every class is split in the same proportions (stratified).
    """
    n_val = max(1, round(fractions[1] * n))
    n_test = max(1, round(fractions[2] * n))
    if n - n_val - n_test < 1:
        raise InputError(f"expected n >= 3 for three splits, got {n}")
    order = _dealt(labels, n, seed)
    test, val, train = torch.split(order, [n_test, n_val, n - n_val - n_test])
    return {"train": train.sort().values, "val": val.sort().values, "test": test.sort().values}


def _dealt(labels: Tensor | None, n: int, seed: int) -> Tensor:
    """A seeded order of ``range(n)`` in which every prefix is balanced across the classes.

    Each class is shuffled, then its members are spread evenly through the order (member i of
    a class of size k sits at position i / k), so cutting the order anywhere cuts every class
    in the same proportion. Without labels: a plain shuffle.
    """
    gen = torch.Generator().manual_seed(seed + _SPLIT_SALT)
    if labels is None:
        return torch.randperm(n, generator=gen)
    groups = [torch.nonzero(labels == c).flatten() for c in labels.unique(sorted=True)]
    groups = [g[torch.randperm(len(g), generator=gen)] for g in groups]
    position = np.concatenate([np.arange(len(g)) / len(g) for g in groups])
    group = np.concatenate([np.full(len(g), i) for i, g in enumerate(groups)])
    order = np.lexsort((group, position))  # by position, then class
    return torch.cat(groups)[torch.from_numpy(order)]


# ----------------------------------------------------------------------------- dataset


@dataclass(frozen=True, eq=False)
class Views:
    """Extra INRs of training images: ``image[j]`` is the dataset index INR ``j`` draws."""

    weights: list[Tensor]  # [V, 1, d_m, d_{m-1}]
    biases: list[Tensor]
    image: Tensor  # [V] long


@dataclass(frozen=True, eq=False)
class INRDataset:
    """Fitted INRs in the weight-space batch layout (C = 1) with targets and splits."""

    task: Task
    weights: list[Tensor]  # weights[m-1]: [N, 1, d_m, d_{m-1}]
    biases: list[Tensor]  # biases[m-1]: [N, 1, d_m]
    targets: Tensor  # long [N] labels / float [N] a / float [N, H, W] dilated images
    signals: Tensor  # [N, P, d_M]: the samples each INR was fitted to
    coords: Tensor  # [P, d_0]: where the signals are sampled (the INR input)
    splits: dict[str, Tensor]  # "train" / "val" / "test" -> sorted long indices
    mse: Tensor  # [N] final fit MSE per INR
    psnr: Tensor  # [N] fit PSNR in dB
    movement: Tensor  # [N] |W1 - W1_init| / |W1_init|
    labels: Tensor | None  # digit classes of image sources, whatever the target
    recipe: Recipe
    path: Path
    built: bool  # True when this call fitted the INRs, False on a cache hit
    seconds: float  # wall time of this load (fitting included when built)
    views: Views | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.targets.shape[0]

    @property
    def dims(self) -> tuple[int, ...]:
        return self.recipe.dims

    @property
    def w0(self) -> float:
        return self.recipe.w0

    def summary(self) -> dict[str, object]:
        """Plain statistics for printing (fit quality, sizes, cache path, seconds)."""
        mse, p = self.mse.double(), self.psnr.double()
        extra: dict[str, object] = {}
        if self.task.target == "dilation":
            # Reference for the dilation metric: the MSE of predicting the input image itself.
            identity = (self.signals.reshape(self.targets.shape) - self.targets).pow(2).mean()
            extra["identity_mse"] = identity.item()
        r = self.recipe
        return {
            "task": self.task.name,
            "n": self.n,
            "splits": {k: len(v) for k, v in self.splits.items()},
            "views": r.views,
            "dims": list(self.dims),
            "params_per_inr": sum(w[0].numel() for w in self.weights)
            + sum(b[0].numel() for b in self.biases),
            "recipe": {k: getattr(r, k) for k in ("init", "steps", "lr", "first_lr_scale")},
            "mean_mse": mse.mean().item(),
            "median_mse": mse.median().item(),
            "mean_psnr": p.mean().item(),
            "median_psnr": p.median().item(),
            "min_psnr": p.min().item(),
            "median_first_layer_movement": self.movement.double().median().item(),
            "built": self.built,
            "seconds": round(self.seconds, 2),
            "path": str(self.path),
            **extra,
        }


def _signals(recipe: Recipe) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """(coords, signals [n, P, d_M], raw target per INR, class labels or None)."""
    if recipe.a_range is not None:
        coords, signals, a = sig.sine_signals(
            recipe.n, recipe.seed, recipe.a_range, recipe.n_points
        )
        return coords, signals, a, None
    images, labels = (
        sig.mnist_images() if recipe.source == "mnist-inr" else sig.digit_images(sig.N_DIGITS)
    )
    keep = stratified_subset(labels, recipe.n, recipe.seed)
    images, labels = images[keep], labels[keep]
    side = images.shape[-1]
    return sig.image_grid(side), images.reshape(recipe.n, side * side, 1), labels, labels


def estimate_bytes(recipe: Recipe, chunk_size: int = 256) -> int:
    """Memory a fit of ``recipe`` needs: stored tensors plus one chunk's activations."""
    d = recipe.dims
    params = sum(d[m] * d[m - 1] + d[m] for m in range(1, len(d)))
    per_inr = 4 * (3 * params + recipe.n_points * d[-1])  # init, fit, Adam state ~3x; signal
    inrs = recipe.n * (1 + max(0, recipe.views - 1) * SPLIT_FRACTIONS[0])
    activations = 4 * 12 * min(chunk_size, recipe.n) * recipe.n_points * max(d)
    return int(per_inr * inrs + activations)


def _available_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _check_memory(recipe: Recipe) -> None:
    need, have = estimate_bytes(recipe), _available_bytes()
    if have is not None and need > _MEMORY_SHARE * have:
        raise CommandError(
            f"fitting {recipe.n} INRs needs about {need / 2**30:.1f} GiB, but only "
            f"{have / 2**30:.1f} GiB is available; use a smaller --n"
        )


def _build(
    recipe: Recipe, device: str, progress: bool, cache_dir: Path | None = None
) -> dict[str, object]:
    """Fit ``recipe``'s INRs. With views, the first view is the ``views=1`` collection, read
    from ``cache_dir`` when it is there (and cached there when it is not): only the extra
    views are fitted."""
    _check_memory(recipe)
    if recipe.views > 1:
        return _add_views(
            recipe,
            _base_blob(replace(recipe, views=1), device, progress, cache_dir),
            device,
            progress,
        )
    coords, signals, raw_targets, labels = _signals(recipe)

    main = _fit(recipe, coords, signals, recipe.seed, f"fit {recipe.source}", device, progress)
    blob: dict[str, object] = {
        "recipe": asdict(recipe),
        "weights": main.weights,
        "biases": main.biases,
        "mse": main.mse,
        "movement": main.first_layer_movement(),
        "coords": coords,
        "signals": signals,
        "raw_targets": raw_targets,
        "labels": labels,
    }
    blob["checksum"] = cache.checksum(blob)
    return blob


def _fit(
    recipe: Recipe,
    coords: Tensor,
    targets: Tensor,
    seed: int,
    desc: str,
    device: str,
    progress: bool,
) -> FitResult:
    return fit_sirens(
        coords,
        targets,
        recipe.dims,
        steps=recipe.steps,
        lr=recipe.lr,
        seed=seed,
        w0=recipe.w0,
        init=recipe.init,
        first_lr_scale=recipe.first_lr_scale,
        schedule=recipe.schedule,
        data_range=SOURCES[recipe.source].data_range,
        device=device,
        progress=progress,
        desc=desc,
    )


def cache_layout(recipe: Recipe) -> cache.Layout:
    """What a cache file of ``recipe`` holds: the keys, dtypes and shapes ``_build`` writes
    (``extra``: the fits of the extra views, one per training image and view)."""
    d, n, points = recipe.dims, recipe.n, recipe.n_points
    layers = range(1, len(d))
    layout: dict[str, object] = {
        "weights": [cache.Entry((n, d[m], d[m - 1])) for m in layers],
        "biases": [cache.Entry((n, d[m])) for m in layers],
        "mse": cache.Entry((n,)),
        "movement": cache.Entry((n,)),
        "coords": cache.Entry((points, d[0])),
        "signals": cache.Entry((n, points, d[-1])),
        "raw_targets": cache.Entry((n,), "any"),
        # sines carry no labels; images carry their digit
        "labels": None if recipe.a_range is not None else cache.Entry((n,), "int", bound=10),
    }
    if recipe.views > 1:
        layout["view_weights"] = [cache.Entry(("extra", d[m], d[m - 1])) for m in layers]
        layout["view_biases"] = [cache.Entry(("extra", d[m])) for m in layers]
        layout["view_image"] = cache.Entry(("extra",), "int", bound=n)
    return layout


def _base_blob(
    base: Recipe, device: str, progress: bool, cache_dir: Path | None
) -> dict[str, object]:
    path = None if cache_dir is None else cache_dir / base.filename()
    blob = None if path is None else cache.read(path, asdict(base), "refitting", cache_layout(base))
    if blob is None:
        blob = _build(base, device, progress)
        if path is not None:
            cache.write(path, blob, "the fitted INRs are")
    return blob


def _add_views(
    recipe: Recipe, base: dict[str, object], device: str, progress: bool
) -> dict[str, object]:
    """``base`` (the first view) plus ``recipe.views - 1`` fits of every training image."""
    labels: Tensor | None = base["labels"]  # type: ignore[assignment]
    signals: Tensor = base["signals"]  # type: ignore[assignment]
    train = make_splits(recipe.n, recipe.seed, labels)["train"]
    extra = [
        _fit(
            recipe,
            base["coords"],  # type: ignore[arg-type]
            signals[train],
            recipe.seed + _VIEW_SALT * v,
            f"view {v + 1}/{recipe.views}",
            device,
            progress,
        )
        for v in range(1, recipe.views)
    ]
    blob = {k: v for k, v in base.items() if k != "checksum"}
    blob["recipe"] = asdict(recipe)
    blob["view_weights"] = [torch.cat(ws) for ws in zip(*(e.weights for e in extra), strict=True)]
    blob["view_biases"] = [torch.cat(bs) for bs in zip(*(e.biases for e in extra), strict=True)]
    blob["view_image"] = train.repeat(recipe.views - 1)
    blob["checksum"] = cache.checksum(blob)
    return blob


def load_dataset(
    task: str,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    n: int | None = None,
    steps: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    init: str = "dwsnets",
    views: int | None = None,
    rebuild: bool = False,
    dilation_size: int = 3,
    device: str = "cpu",
    progress: bool = True,
) -> INRDataset:
    """Load ``task`` from the cache, fitting (and caching) the INRs first if needed.

    ``n`` limits the number of INRs (a stratified subset of the images; ``n`` sines),
    ``steps``/``lr``/``init``/``views`` change the fit; all of them, with ``seed``, enter the
    recipe hash. ``seed`` fixes the subset, the inits, the sine frequencies and the splits.
    """
    start = time.perf_counter()
    spec = get_task(task)
    recipe = default_recipe(task, n=n, steps=steps, lr=lr, seed=seed, init=init, views=views)
    path = resolve_cache_dir(cache_dir) / recipe.filename()
    layout = cache_layout(recipe)
    blob = None if rebuild else cache.read(path, asdict(recipe), "refitting", layout)
    built = blob is None
    if blob is None:
        blob = _build(recipe, device, progress, None if rebuild else path.parent)
        cache.write(path, blob, "the fitted INRs are")
    seconds = time.perf_counter() - start
    if built and progress:
        print(
            f"fitted {recipe.n} {recipe.source} INRs in {seconds:.1f} s -> {path}", file=sys.stderr
        )
    return _assemble(spec, recipe, blob, path, built, seconds, dilation_size)


def _assemble(
    task: Task,
    recipe: Recipe,
    blob: dict[str, object],
    path: Path,
    built: bool,
    seconds: float,
    dilation_size: int,
) -> INRDataset:
    mse: Tensor = blob["mse"]  # type: ignore[assignment]
    signals: Tensor = blob["signals"]  # type: ignore[assignment]
    labels: Tensor | None = blob["labels"]  # type: ignore[assignment]
    targets: Tensor = blob["raw_targets"]  # type: ignore[assignment]
    extra: dict[str, object] = {}
    if task.target == "dilation":
        side = round(signals.shape[1] ** 0.5)
        targets = sig.dilate_images(signals.reshape(-1, side, side), dilation_size)
        extra = {"dilation_size": dilation_size}
    views = None
    if "view_image" in blob:
        views = Views(
            [w.unsqueeze(1) for w in blob["view_weights"]],  # type: ignore[union-attr]
            [b.unsqueeze(1) for b in blob["view_biases"]],  # type: ignore[union-attr]
            blob["view_image"],  # type: ignore[arg-type]
        )
    return INRDataset(
        task=task,
        weights=[w.unsqueeze(1) for w in blob["weights"]],  # type: ignore[union-attr]
        biases=[b.unsqueeze(1) for b in blob["biases"]],  # type: ignore[union-attr]
        targets=targets,
        signals=signals,
        coords=blob["coords"],  # type: ignore[arg-type]
        splits=make_splits(recipe.n, recipe.seed, labels),
        mse=mse,
        psnr=psnr(mse, SOURCES[recipe.source].data_range),
        movement=blob["movement"],  # type: ignore[arg-type]
        labels=labels,
        recipe=recipe,
        path=path,
        built=built,
        seconds=seconds,
        views=views,
        extra=extra,
    )
