"""INR weight-space datasets: fitted SIRENs with labels, fixed splits and an on-disk cache.

Tasks
-----
``digits-inr``
    One SIREN 2->32->32->1 per image of ``sklearn.datasets.load_digits`` (1,797 8x8 images).
    Pixels are scaled to [0, 1] (value / 16). Coordinates are the 8x8 grid in [-1, 1]^2 in
    row-major order: ``coords[8 r + c] = (y_r, x_c)`` so ``signal.reshape(8, 8)`` is the
    image. Target: the digit class (long). PSNR uses data range 1.
``sine-inr``
    SIRENs 1->32->32->1 fitted to ``sin(a x)`` at 128 evenly spaced ``x`` in [-pi, pi], with
    ``a ~ U[0.5, 10]``. The INR input is the rescaled coordinate ``t = x / pi`` in [-1, 1], so
    the highest target frequency (10 pi rad per unit of t) sits inside the range w0 = 30 covers
    at init. Target: ``a`` (float). PSNR uses data range 2.
``digits-dilate``
    The ``digits-inr`` INRs (same cache file: nothing is refitted) with target the grey-scale
    dilation of each *original* image, ``scipy.ndimage.grey_dilation(size=(3, 3),
    mode="nearest")`` (a 3x3 max filter), on the same grid; targets are ``[N, 8, 8]`` in [0, 1].

Cache: ``<cache_dir>/<fit task>-<hash>.pt`` where the hash covers the whole fit recipe
(:class:`Recipe`), so changing any parameter makes a new file and an unchanged recipe never
refits. ``cache_dir`` resolves as argument > ``$DWS_THEORY_CACHE`` >
``platformdirs.user_cache_dir("dws_theory")``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .siren import DEFAULT_W0, fit_sirens, psnr

__all__ = [
    "TASKS",
    "RECIPE_VERSION",
    "Recipe",
    "INRDataset",
    "default_recipe",
    "resolve_cache_dir",
    "make_splits",
    "digits_grid",
    "dilate_images",
    "load_dataset",
    "add_data_parser",
]

TASKS = ("digits-inr", "sine-inr", "digits-dilate")
# Bump when the fitting code changes in a way that changes results, to invalidate caches.
RECIPE_VERSION = 1
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)
N_DIGITS = 1797


@dataclass(frozen=True)
class Recipe:
    """Everything that determines a fitted INR collection; hashed into the cache file name."""

    task: str  # the fitting task: "digits-inr" or "sine-inr" (digits-dilate reuses digits-inr)
    n: int
    dims: tuple[int, ...]
    w0: float
    steps: int
    lr: float
    seed: int
    n_points: int
    a_range: tuple[float, float] | None = None  # sine-inr only
    version: int = RECIPE_VERSION

    def key(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def filename(self) -> str:
        return f"{self.task}-{self.key()}.pt"


def _fit_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    return "digits-inr" if task == "digits-dilate" else task


def default_recipe(
    task: str,
    *,
    n: int | None = None,
    steps: int | None = None,
    lr: float | None = None,
    seed: int = 0,
) -> Recipe:
    """The recipe ``load_dataset`` uses for ``task``, with optional overrides."""
    fit = _fit_task(task)
    if fit == "digits-inr":
        # 200 full-batch Adam steps at lr 1e-3 interpolate the 64 pixels to > 50 dB.
        recipe = Recipe(fit, N_DIGITS, (2, 32, 32, 1), DEFAULT_W0, 200, 1e-3, seed, 64)
    else:
        recipe = Recipe(fit, 3000, (1, 32, 32, 1), DEFAULT_W0, 200, 1e-3, seed, 128, (0.5, 10.0))
    if n is not None:
        if n < 3:
            raise ValueError(f"n must be >= 3 (one INR per split at least), got {n}")
        limit = N_DIGITS if fit == "digits-inr" else n
        recipe = replace(recipe, n=min(n, limit))
    if steps is not None:
        recipe = replace(recipe, steps=steps)
    if lr is not None:
        recipe = replace(recipe, lr=lr)
    return recipe


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("DWS_THEORY_CACHE")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("dws_theory"))


def make_splits(
    n: int, seed: int, fractions: tuple[float, float, float] = SPLIT_FRACTIONS
) -> dict[str, Tensor]:
    """Disjoint sorted train/val/test indices covering ``range(n)``, fixed by ``seed``."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 2_000_003))
    n_val = max(1, round(fractions[1] * n))
    n_test = max(1, round(fractions[2] * n))
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ValueError(f"n={n} is too small for three splits")
    parts = torch.split(perm, [n_train, n_val, n_test])
    return {name: p.sort().values for name, p in zip(("train", "val", "test"), parts, strict=True)}


# ----------------------------------------------------------------------------- signals


def digits_grid() -> Tensor:
    """The 8x8 pixel grid in [-1, 1]^2, row-major, ``[64, 2]`` as (y, x)."""
    lin = torch.linspace(-1.0, 1.0, 8)
    return torch.stack(torch.meshgrid(lin, lin, indexing="ij"), dim=-1).reshape(-1, 2)


def _digit_signals(n: int) -> tuple[Tensor, Tensor, Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images[:n], dtype=torch.float32) / 16.0
    labels = torch.tensor(digits.target[:n], dtype=torch.long)
    return digits_grid(), images.reshape(n, 64, 1), labels


def _sine_signals(recipe: Recipe) -> tuple[Tensor, Tensor, Tensor]:
    assert recipe.a_range is not None
    lo, hi = recipe.a_range
    gen = torch.Generator().manual_seed(recipe.seed + 1_000_003)
    a = lo + (hi - lo) * torch.rand(recipe.n, generator=gen)
    t = torch.linspace(-1.0, 1.0, recipe.n_points).unsqueeze(-1)
    signals = torch.sin(a[:, None, None] * math.pi * t[None])
    return t, signals, a


def dilate_images(images: Tensor, size: int = 3) -> Tensor:
    """Grey-scale dilation (a ``size`` x ``size`` max filter) of ``[N, H, W]`` images."""
    from scipy.ndimage import grey_dilation

    out = grey_dilation(images.numpy(), size=(1, size, size), mode="nearest")
    return torch.from_numpy(np.ascontiguousarray(out))


# ----------------------------------------------------------------------------- dataset


@dataclass(frozen=True, eq=False)
class INRDataset:
    """Fitted INRs in the weight-space batch layout (C = 1) with targets and splits."""

    task: str
    weights: list[Tensor]  # weights[m-1]: [N, 1, d_m, d_{m-1}]
    biases: list[Tensor]  # biases[m-1]: [N, 1, d_m]
    targets: Tensor  # digits-inr: long [N]; sine-inr: a [N]; digits-dilate: [N, 8, 8]
    signals: Tensor  # [N, P, d_M]: the samples each INR was fitted to
    coords: Tensor  # [P, d_0]: where the signals are sampled (the INR input)
    splits: dict[str, Tensor]  # "train" / "val" / "test" -> sorted long indices
    mse: Tensor  # [N] final fit MSE per INR
    psnr: Tensor  # [N] fit PSNR in dB (data range 1 for digits, 2 for sine)
    recipe: Recipe
    path: Path
    built: bool  # True when this call fitted the INRs, False on a cache hit
    seconds: float  # wall time of this load (fitting included when built)
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def labels(self) -> Tensor:
        return self.targets

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
        mse = self.mse.double()
        extra: dict[str, object] = {}
        if self.task == "digits-dilate":
            # Reference for the dilation metric: the MSE of predicting the input image itself.
            identity = (self.signals.reshape(self.targets.shape) - self.targets).pow(2).mean()
            extra["identity_mse"] = identity.item()
        return {
            "task": self.task,
            "n": self.n,
            "splits": {k: len(v) for k, v in self.splits.items()},
            "dims": list(self.dims),
            "params_per_inr": sum(w[0].numel() for w in self.weights)
            + sum(b[0].numel() for b in self.biases),
            "mean_mse": mse.mean().item(),
            "median_mse": mse.median().item(),
            "mean_psnr": self.psnr.double().mean().item(),
            "median_psnr": self.psnr.double().median().item(),
            "min_psnr": self.psnr.double().min().item(),
            "built": self.built,
            "seconds": round(self.seconds, 2),
            "path": str(self.path),
            **extra,
        }


def _data_range(fit_task: str) -> float:
    return 1.0 if fit_task == "digits-inr" else 2.0


def _build(recipe: Recipe, device: str, progress: bool) -> dict[str, object]:
    if recipe.task == "digits-inr":
        coords, signals, targets = _digit_signals(recipe.n)
    else:
        coords, signals, targets = _sine_signals(recipe)
    fit = fit_sirens(
        coords,
        signals,
        recipe.dims,
        steps=recipe.steps,
        lr=recipe.lr,
        seed=recipe.seed,
        w0=recipe.w0,
        device=device,
        progress=progress,
        desc=f"fit {recipe.task}",
    )
    return {
        "recipe": asdict(recipe),
        "weights": fit.weights,
        "biases": fit.biases,
        "mse": fit.mse,
        "coords": coords,
        "signals": signals,
        "targets": targets,
    }


def _read_cache(path: Path, recipe: Recipe) -> dict[str, object] | None:
    if not path.exists():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a truncated or foreign file: rebuild rather than fail
        return None
    stored = blob.get("recipe") if isinstance(blob, dict) else None
    # JSON round trip so tuples and lists compare equal.
    if json.loads(json.dumps(stored)) != json.loads(json.dumps(asdict(recipe))):
        return None
    return blob


def _write_cache(path: Path, blob: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename, so a concurrent reader never sees a half-written file.
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(blob, tmp)
    os.replace(tmp, path)


def load_dataset(
    task: str,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    n: int | None = None,
    steps: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    rebuild: bool = False,
    dilation_size: int = 3,
    device: str = "cpu",
    progress: bool = True,
) -> INRDataset:
    """Load ``task`` from the cache, fitting (and caching) the INRs first if needed.

    ``n`` limits the number of INRs (first ``n`` digits; ``n`` sines), ``steps``/``lr``
    override the fit; all of them, with ``seed``, enter the recipe hash. ``seed`` fixes the
    inits, the sine frequencies and the splits.
    """
    start = time.perf_counter()
    recipe = default_recipe(task, n=n, steps=steps, lr=lr, seed=seed)
    path = resolve_cache_dir(cache_dir) / recipe.filename()
    blob = None if rebuild else _read_cache(path, recipe)
    built = blob is None
    if blob is None:
        blob = _build(recipe, device, progress)
        _write_cache(path, blob)
    seconds = time.perf_counter() - start
    if built and progress:
        print(f"fitted {recipe.n} {recipe.task} INRs in {seconds:.1f} s -> {path}", file=sys.stderr)

    mse: Tensor = blob["mse"]  # type: ignore[assignment]
    targets: Tensor = blob["targets"]  # type: ignore[assignment]
    signals: Tensor = blob["signals"]  # type: ignore[assignment]
    extra: dict[str, object] = {}
    if task == "digits-dilate":
        targets = dilate_images(signals.reshape(-1, 8, 8), dilation_size)
        extra = {"dilation_size": dilation_size, "labels": blob["targets"]}
    return INRDataset(
        task=task,
        weights=[w.unsqueeze(1) for w in blob["weights"]],  # type: ignore[union-attr]
        biases=[b.unsqueeze(1) for b in blob["biases"]],  # type: ignore[union-attr]
        targets=targets,
        signals=signals,
        coords=blob["coords"],  # type: ignore[arg-type]
        splits=make_splits(recipe.n, seed),
        mse=mse,
        psnr=psnr(mse, _data_range(recipe.task)),
        recipe=recipe,
        path=path,
        built=built,
        seconds=seconds,
        extra=extra,
    )


# ----------------------------------------------------------------------------- CLI


def _format_summary(stats: dict[str, object]) -> str:
    lines = [
        f"task        {stats['task']}  ({stats['n']} INRs, dims {stats['dims']}, "
        f"{stats['params_per_inr']} params each)",
        f"splits      {stats['splits']}",
        f"fit MSE     mean {stats['mean_mse']:.3e}  median {stats['median_mse']:.3e}",
        f"fit PSNR    mean {stats['mean_psnr']:.2f} dB  median {stats['median_psnr']:.2f} dB  "
        f"min {stats['min_psnr']:.2f} dB",
        f"cache       {stats['path']} ({'built' if stats['built'] else 'loaded'})",
        f"seconds     {stats['seconds']}",
    ]
    if "identity_mse" in stats:
        lines.append(f"identity    MSE(input image, dilated target) = {stats['identity_mse']:.4f}")
    return "\n".join(lines)


def _run_data(args: argparse.Namespace) -> int:
    ds = load_dataset(
        args.task,
        args.cache_dir,
        n=args.n,
        steps=args.steps,
        seed=args.seed,
        rebuild=args.rebuild,
        progress=not args.json,
    )
    stats = ds.summary()
    print(json.dumps(stats) if args.json else _format_summary(stats))
    return 0


def add_data_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``data TASK [--cache-dir DIR] [--rebuild]``: build or load, print fit stats."""
    p = subparsers.add_parser(
        "data",
        help="build or load an INR dataset and print its fit statistics",
        description="Fit (or load from the cache) the INRs of TASK and print fit statistics.",
    )
    p.add_argument("task", choices=TASKS)
    p.add_argument(
        "--cache-dir",
        default=None,
        help="cache directory (default: $DWS_THEORY_CACHE or the platform cache dir)",
    )
    p.add_argument("--rebuild", action="store_true", help="refit even if the cache is valid")
    p.add_argument("--n", type=int, default=None, help="number of INRs (default: all)")
    p.add_argument("--steps", type=int, default=None, help="Adam steps per INR fit")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (inits and splits)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_run_data)
    return p
