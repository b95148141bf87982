"""A model zoo of small CNNs trained on sklearn's 8x8 digits, for predicting accuracy from weights.

Every CNN is :func:`zoo_cnn` (Conv2d 1->8->8->8, 3x3, padding 1, ReLU, global average pooling,
Linear 8->10). Each one draws its own hyperparameters (:func:`draw_configs`): an init seed, an
AdamW learning rate, a weight decay, the fraction of the training images it sees and a number
of steps, so that the test accuracies spread from chance to about 95 %. The target of the task
is each CNN's accuracy on digits images no CNN trained on.

Training is batched: the CNNs of one chunk are one stack of parameters, ``torch.func.vmap``
over ``functional_call`` of one module computes every CNN's loss and gradient at once (a
grouped convolution underneath), and AdamW runs elementwise on the stacks. Chunks hold CNNs
of similar step counts (sorted), so little work is spent on CNNs that have already stopped.
Every CNN's randomness (init and minibatches) comes from its own generator, so a CNN trains
the same alone as in any chunk (``tests/inr/test_zoo.py`` checks it against ``torch.optim.AdamW``).

Cache: ``<cache_dir>/digits-cnn-zoo-<hash>.pt`` with the whole :class:`ZooRecipe` hashed into
the name, checked and written by :mod:`dws_theory.inr.data.cache` as the INR datasets are.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from ...errors import InputError
from ...examples import zoo_cnn
from ..progress import progress as progress_bar
from . import cache
from .datasets import make_splits, resolve_cache_dir

__all__ = [
    "ZOO_VERSION",
    "ZooRecipe",
    "ZooConfig",
    "ZooDataset",
    "zoo_cnn",
    "digits_split",
    "draw_configs",
    "init_params",
    "minibatches",
    "train_cnns",
    "train_stack",
    "accuracy_summary",
    "build_zoo",
    "cnn_accuracy",
    "load_zoo",
]

# Bump when building changes results, to invalidate caches.
ZOO_VERSION = 1
_BETAS = (0.9, 0.999)
_EPS = 1e-8
_CONFIG_SALT = 104_729
_INIT_SALT = 1_299_709


@dataclass(frozen=True)
class ZooRecipe:
    """Everything that determines a zoo; hashed into the cache file name."""

    n: int = 2000  # CNNs
    seed: int = 0
    n_pool: int = 1200  # digits images the CNNs may train on; the other 597 score them
    batch_size: int = 16
    steps: tuple[int, int] = (25, 800)  # log-uniform range of AdamW steps per CNN
    lr: tuple[float, float] = (2e-3, 1e-1)  # log-uniform
    weight_decay: tuple[float, float] = (1e-4, 1.0)  # log-uniform (decoupled, AdamW)
    fraction: tuple[float, float] = (0.01, 1.0)  # log-uniform share of the pool seen
    chunk: int = 250  # CNNs trained together (memory against per-call overhead)
    version: int = ZOO_VERSION

    def __post_init__(self) -> None:
        for name in ("n", "n_pool", "batch_size", "chunk"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"expected {name} to be a positive integer, got {value!r}")
        if self.n < 3:
            raise InputError(f"expected n >= 3 (one CNN per split at least), got {self.n}")
        if not 10 <= self.n_pool <= 1797 - 100:
            raise InputError(f"expected n_pool between 10 and 1697, got {self.n_pool}")
        lo, hi = self.steps
        if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi):
            raise InputError(f"expected a step range 1 <= lo <= hi, got {self.steps}")

    def key(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def filename(self) -> str:
        return f"digits-cnn-zoo-{self.key()}.pt"


@dataclass(frozen=True)
class ZooConfig:
    """One CNN's hyperparameters."""

    seed: int  # init and minibatches
    lr: float
    weight_decay: float
    n_train: int  # images of the pool it trains on (the first n_train of its own shuffle)
    steps: int


def digits_split(n_pool: int, seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(pool images [P, 1, 8, 8], pool labels, held-out images, held-out labels)."""
    from .signals import N_DIGITS, digit_images

    images, labels = digit_images(N_DIGITS)
    order = torch.randperm(N_DIGITS, generator=torch.Generator().manual_seed(seed))
    pool, held = order[:n_pool], order[n_pool:]
    # Standardised pixels (mean 0, std 1 over the whole set): the CNNs learn several times
    # faster than on [0, 1] inputs, so fewer steps span the same range of accuracies.
    x = ((images - images.mean()) / images.std()).unsqueeze(1)
    return x[pool], labels[pool], x[held], labels[held]


def _log_uniform(u: Tensor, lo: float, hi: float) -> Tensor:
    return torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))


def draw_configs(recipe: ZooRecipe) -> list[ZooConfig]:
    """The recipe's CNN hyperparameters, fixed by its seed."""
    gen = torch.Generator().manual_seed(recipe.seed + _CONFIG_SALT)
    u = torch.rand(recipe.n, 4, generator=gen, dtype=torch.float64)
    lr = _log_uniform(u[:, 0], *recipe.lr)
    wd = _log_uniform(u[:, 1], *recipe.weight_decay)
    frac = _log_uniform(u[:, 2], *recipe.fraction)
    steps = _log_uniform(u[:, 3], *map(float, recipe.steps)).round().long()
    return [
        ZooConfig(
            seed=recipe.seed * _INIT_SALT + i,
            lr=float(lr[i]),
            weight_decay=float(wd[i]),
            n_train=max(1, min(recipe.n_pool, round(float(frac[i]) * recipe.n_pool))),
            steps=int(steps[i].clamp(*recipe.steps)),
        )
        for i in range(recipe.n)
    ]


def init_params(config: ZooConfig, dtype: torch.dtype = torch.float32) -> dict[str, Tensor]:
    """PyTorch's default init (uniform in +-1/sqrt(fan_in) for weights and biases), drawn from
    the CNN's own generator so it does not depend on which other CNNs train alongside."""
    gen = torch.Generator().manual_seed(config.seed)
    params = dict(zoo_cnn().named_parameters())
    out = {}
    for name, p in params.items():
        weight = params[name.rsplit(".", 1)[0] + ".weight"]  # a bias takes its weight's fan-in
        bound = 1.0 / math.sqrt(math.prod(weight.shape[1:]))
        draw = torch.rand(p.shape, generator=gen, dtype=torch.float64) * 2 - 1
        out[name] = (draw * bound).to(dtype)
    return out


def minibatches(config: ZooConfig, n_pool: int, batch_size: int, steps: int) -> Tensor:
    """``[steps, batch_size]`` pool indices for the CNN's first ``steps`` steps: uniform draws
    from its training subset (the first ``n_train`` images of its own shuffle of the pool)."""
    gen = torch.Generator().manual_seed(config.seed + 1)
    subset = torch.randperm(n_pool, generator=gen)[: config.n_train]
    pick = torch.randint(config.n_train, (steps, batch_size), generator=gen)
    return subset[pick]


def _loss(params: dict[str, Tensor], model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(functional_call(model, params, (x,)), y)


def train_cnns(
    configs: Sequence[ZooConfig],
    pool_x: Tensor,
    pool_y: Tensor,
    batch_size: int,
    dtype: torch.dtype = torch.float32,
) -> dict[str, Tensor]:
    """Train the CNNs of ``configs`` together; their final parameters, stacked ``[N, *shape]``
    (:func:`train_stack` from each CNN's :func:`init_params`)."""
    init = [init_params(c, dtype) for c in configs]
    params = {k: torch.stack([p[k] for p in init]) for k in init[0]}
    return train_stack(zoo_cnn().to(dtype), params, configs, pool_x, pool_y, batch_size)


def train_stack(
    model: nn.Module,
    params: dict[str, Tensor],
    configs: Sequence[ZooConfig],
    pool_x: Tensor,
    pool_y: Tensor,
    batch_size: int,
    tick: Callable[[int], object] | None = None,
) -> dict[str, Tensor]:
    """Train ``len(configs)`` copies of ``model`` together from the stacked parameters
    ``params`` (``[N, *shape]`` each, in ``params``' dtype); their final parameters, stacked.

    Every network's loss and gradient come from one ``vmap`` over ``functional_call`` of
    ``model``; AdamW (decoupled weight decay, bias-corrected moments) runs elementwise on the
    stacks with each network's learning rate and decay; a network stops updating after its
    own number of steps, its minibatches drawn by :func:`minibatches`. ``tick`` (a progress
    bar's ``update``) is called after every step with the number of networks it trained.
    """
    n = len(configs)
    dtype = next(iter(params.values())).dtype
    total = max(c.steps for c in configs)
    idx = torch.stack([minibatches(c, len(pool_x), batch_size, total) for c in configs], 1)
    lr = torch.tensor([c.lr for c in configs], dtype=dtype)
    wd = torch.tensor([c.weight_decay for c in configs], dtype=dtype)
    stop = torch.tensor([c.steps for c in configs])
    m = {k: torch.zeros_like(v) for k, v in params.items()}
    v2 = {k: torch.zeros_like(v) for k, v in params.items()}
    grads_of = vmap(grad(_loss), in_dims=(0, None, 0, 0))
    x_all, y_all = pool_x.to(dtype), pool_y
    b1, b2 = _BETAS
    for t in range(1, total + 1):
        active = (stop >= t).to(dtype)
        step_idx = idx[t - 1]  # [N, B]
        g = grads_of(params, model, x_all[step_idx], y_all[step_idx])
        c1, c2 = 1 - b1**t, 1 - b2**t
        for k in params:
            shape = (n,) + (1,) * (params[k].dim() - 1)
            on, a, d = active.view(shape), lr.view(shape), wd.view(shape)
            m_new = b1 * m[k] + (1 - b1) * g[k]
            v_new = b2 * v2[k] + (1 - b2) * g[k] ** 2
            update = a * d * params[k] + (a / c1) * m_new / (v_new.sqrt() / math.sqrt(c2) + _EPS)
            params[k] = params[k] - on * update
            m[k] = torch.where(on > 0, m_new, m[k])
            v2[k] = torch.where(on > 0, v_new, v2[k])
        if tick is not None:
            tick(int((stop >= t).sum()))
    return params


@torch.no_grad()
def cnn_accuracy(params: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
    """``[N]`` accuracy on ``(x, y)`` of each CNN of the stack ``params``."""
    dtype = next(iter(params.values())).dtype
    model, x = zoo_cnn().to(dtype), x.to(dtype)
    logits = vmap(lambda p: functional_call(model, p, (x,)))(params)
    return (logits.argmax(-1) == y).double().mean(-1)


def _order(configs: Sequence[ZooConfig]) -> list[int]:
    """CNNs by step count, so that a chunk's CNNs stop at about the same step."""
    return sorted(range(len(configs)), key=lambda i: configs[i].steps)


def build_zoo(recipe: ZooRecipe, progress: bool = True) -> dict[str, object]:
    """Train the recipe's CNNs chunk by chunk; the cache blob (parameters, accuracies, ...)."""
    configs = draw_configs(recipe)
    pool_x, pool_y, held_x, held_y = digits_split(recipe.n_pool, recipe.seed)
    order = _order(configs)
    names = [name for name, _ in zoo_cnn().named_parameters()]
    params = {k: [] for k in names}
    accuracy, rows = [], []
    bar = progress_bar(
        sum(c.steps for c in configs),
        "train zoo CNNs",
        unit="CNN-step",
        enabled=progress,
        unit_scale=True,
    )
    for start in range(0, recipe.n, recipe.chunk):
        chunk = order[start : start + recipe.chunk]
        cs = [configs[i] for i in chunk]
        p = train_cnns(cs, pool_x, pool_y, recipe.batch_size)
        for k in names:
            params[k].append(p[k])
        accuracy.append(cnn_accuracy(p, held_x, held_y))
        rows.extend(chunk)
        bar.update(sum(c.steps for c in cs))
    bar.close()
    back = torch.argsort(torch.tensor(rows))  # stored in config order, not training order
    blob: dict[str, object] = {
        "recipe": asdict(recipe),
        "names": names,
        "params": [torch.cat(params[k])[back] for k in names],
        "accuracy": torch.cat(accuracy)[back],
        "hyper": torch.tensor(
            [[c.lr, c.weight_decay, c.n_train, c.steps, c.seed] for c in configs],
            dtype=torch.float64,
        ),
    }
    blob["checksum"] = cache.checksum(blob)
    return blob


@dataclass(frozen=True, eq=False)
class ZooDataset:
    """A built zoo in the weight-space batch layout (C = 1) with its splits."""

    weights: list[Tensor]  # conv kernels [N, 1, out, in, 3, 3], then the Linear [N, 1, 10, 8]
    biases: list[Tensor]  # [N, 1, d]
    accuracy: Tensor  # [N] float64 held-out accuracy (the target)
    hyper: Tensor  # [N, 5]: lr, weight decay, training images, steps, init seed
    splits: dict[str, Tensor]
    recipe: ZooRecipe
    path: Path
    built: bool
    seconds: float

    @property
    def n(self) -> int:
        return self.accuracy.shape[0]

    @property
    def params_per_cnn(self) -> int:
        return sum(w[0].numel() for w in self.weights) + sum(b[0].numel() for b in self.biases)

    def summary(self) -> dict[str, object]:
        return {
            "task": "digits-cnn-zoo",
            "n": self.n,
            "networks": "CNNs",
            "splits": {k: len(v) for k, v in self.splits.items()},
            "params_per_network": self.params_per_cnn,
            "params_per_cnn": self.params_per_cnn,  # the key's first name, kept for readers
            "recipe": asdict(self.recipe),
            **accuracy_summary(self.accuracy),
            "built": self.built,
            "seconds": round(self.seconds, 2),
            "path": str(self.path),
        }


def cache_layout(recipe: ZooRecipe) -> cache.Layout:
    """What a cache file of ``recipe`` holds: the keys, dtypes and shapes ``build_zoo`` writes."""
    named = list(zoo_cnn().named_parameters())
    return {
        "names": [name for name, _ in named],
        "params": [cache.Entry((recipe.n, *p.shape)) for _, p in named],
        "accuracy": cache.Entry((recipe.n,)),
        "hyper": cache.Entry((recipe.n, 5)),
    }


def accuracy_summary(accuracy: Tensor) -> dict[str, object]:
    """Mean, spread, quantiles and a 10-bin histogram of a zoo's accuracies."""
    acc = accuracy.double()
    q = torch.quantile(acc, torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9], dtype=torch.float64))
    return {
        "accuracy_mean": acc.mean().item(),
        "accuracy_std": acc.std().item(),
        "accuracy_min": acc.min().item(),
        "accuracy_max": acc.max().item(),
        "accuracy_quantiles": dict(
            zip(("10%", "25%", "50%", "75%", "90%"), q.tolist(), strict=True)
        ),
        # counts in [0, 0.1), ..., [0.9, 1.0]
        "accuracy_histogram": torch.histc(acc, bins=10, min=0.0, max=1.0).long().tolist(),
    }


def load_zoo(
    cache_dir: str | os.PathLike[str] | None = None,
    recipe: ZooRecipe | None = None,
    *,
    rebuild: bool = False,
    progress: bool = True,
) -> ZooDataset:
    """Load the zoo of ``recipe`` (default :class:`ZooRecipe`) from the cache, building it first
    if needed. Splits of the CNNs are 70/15/15, fixed by the recipe's seed."""
    start = time.perf_counter()
    recipe = recipe or ZooRecipe()
    path = resolve_cache_dir(cache_dir) / recipe.filename()
    layout = cache_layout(recipe)
    blob = None if rebuild else cache.read(path, asdict(recipe), "rebuilding", layout)
    built = blob is None
    if blob is None:
        blob = build_zoo(recipe, progress)
        cache.write(path, blob, "the zoo is")
    seconds = time.perf_counter() - start
    if built and progress:
        print(f"trained {recipe.n} zoo CNNs in {seconds:.1f} s -> {path}", file=sys.stderr)
    stacked = [t.unsqueeze(1) for t in blob["params"]]  # type: ignore[union-attr]
    return ZooDataset(
        weights=[t for t in stacked if t.dim() >= 4],
        biases=[t for t in stacked if t.dim() == 3],
        accuracy=blob["accuracy"],  # type: ignore[arg-type]
        hyper=blob["hyper"],  # type: ignore[arg-type]
        splits=make_splits(recipe.n, recipe.seed),
        recipe=recipe,
        path=path,
        built=built,
        seconds=seconds,
    )
