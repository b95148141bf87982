"""A zoo of tiny transformers trained on sklearn's 8x8 digits, for predicting accuracy from
weights (the task ``transformer-zoo``).

Every network is :class:`DigitsTransformer` with the recipe's sizes (by default 2,666
parameters): an image's 8 rows are 8 tokens of 8 features; a linear patch embedding
8 -> 16 plus a learned position embedding ``[8, 16]``; one post-norm
``nn.TransformerEncoderLayer`` (width 16, 2 heads of 8, feed-forward 32, ReLU, LayerNorms,
dropout 0, ``batch_first``); the mean token; a Linear 16 -> 10. Each network draws its own
init seed, AdamW learning rate, weight decay, share of the training images and number of
steps (:func:`~dws_theory.inr.data.zoo.draw_configs`, as the CNN zoo), so that the test
accuracies spread from chance (undertrained, or overfitted to a few images) to about 90 %.
The target is each network's accuracy on the digits images no network trained on.

Training is batched exactly as the CNN zoo's (:func:`~dws_theory.inr.data.zoo.train_stack`):
one ``vmap`` over ``functional_call`` of one module gives every network's gradient, AdamW runs
elementwise on the stacks, chunks hold networks of similar step counts. Attention runs on
PyTorch's composite ("math") kernel, which ``vmap`` batches (the fused CPU kernels have no
batching rule and would loop over the networks). Every network's randomness (init, its
training subset, minibatches) comes from its own seed, so a network trains the same alone as
in any chunk (``tests/inr/test_transformer_zoo.py`` checks it against ``torch.optim.AdamW``).

The weight space is what :func:`~dws_theory.frontends.module.from_module` derives from one
network: the residual stream (width 16) is one permuted set shared by the embedding, both
LayerNorms, the attention's input and output projections, the feed-forward block and the
classifier's input; heads move as whole blocks, inside each head the query and key dims by
one permutation and the value dims with the output projection's inputs by another; the
feed-forward's hidden units are a permuted set; token positions, input features and classes
are fixed. The dataset holds the networks in that space's layout (``in_proj_weight`` split
into per-head query, key and value tensors ``[2, 8, 16]``).

Cache: ``<cache_dir>/transformer-zoo-<hash>.pt`` with the whole
:class:`TransformerZooRecipe` hashed into the name, checked and written by
:mod:`dws_theory.inr.data.cache` (a file that fails its recipe, checksum or finiteness check
is rebuilt with a one-line message).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from ...errors import InputError
from ..progress import progress as progress_bar
from . import cache
from .datasets import make_splits, resolve_cache_dir
from .zoo import (
    ZooConfig,
    _order,
    accuracy_summary,
    digits_split,
    draw_configs,
    minibatches,
    train_stack,
)

__all__ = [
    "TASK",
    "TRANSFORMER_ZOO_VERSION",
    "DigitsTransformer",
    "TransformerZooRecipe",
    "TransformerZooDataset",
    "zoo_transformer",
    "digits_tokens",
    "init_params",
    "train_transformers",
    "transformer_accuracy",
    "to_space_layout",
    "build_transformer_zoo",
    "load_transformer_zoo",
    "minibatches",
]

TASK = "transformer-zoo"
# Bump when building changes results, to invalidate caches.
TRANSFORMER_ZOO_VERSION = 1
TOKENS = FEATURES = 8  # an 8x8 digit: its rows are the tokens, its columns their features
CLASSES = 10


class DigitsTransformer(nn.Module):
    """A tiny transformer classifier of 8x8 digits read as 8 tokens of 8 features.

    ``forward(x)``: ``x`` ``[B, 8, 8]`` (rows as tokens) -> logits ``[B, 10]``. Patch
    embedding and a learned position embedding, ``layers`` post-norm encoder layers
    (``nn.TransformerEncoderLayer``, dropout 0, so train and eval mode compute the same), the
    mean over tokens, a linear classifier.
    """

    def __init__(self, d_model: int = 16, heads: int = 2, ff: int = 32, layers: int = 1) -> None:
        super().__init__()
        self.embed = nn.Linear(FEATURES, d_model)
        # ViT's position embedding init, scaled to this width: N(0, 0.02) is far below the
        # patch embedding's scale here, so the positions would start almost unread.
        self.pos = nn.Parameter(torch.randn(TOKENS, d_model) / math.sqrt(d_model))
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(d_model, heads, ff, dropout=0.0, batch_first=True)
            for _ in range(layers)
        )
        self.head = nn.Linear(d_model, CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        h = self.embed(x) + self.pos
        for layer in self.layers:
            h = layer(h)
        return self.head(h.mean(1))


@dataclass(frozen=True)
class TransformerZooRecipe:
    """Everything that determines a transformer zoo; hashed into the cache file name.

    The hyperparameter ranges are drawn log-uniformly per network; the architecture fields
    fix one :class:`DigitsTransformer` for the whole zoo (one weight space)."""

    n: int = 2000  # networks
    seed: int = 0
    n_pool: int = 1200  # digits images the networks may train on; the other 597 score them
    batch_size: int = 16
    steps: tuple[int, int] = (25, 800)  # AdamW steps per network
    lr: tuple[float, float] = (3e-4, 3e-2)
    weight_decay: tuple[float, float] = (1e-4, 1.0)  # decoupled (AdamW)
    fraction: tuple[float, float] = (0.01, 1.0)  # share of the pool a network trains on
    chunk: int = 250  # networks trained together (memory against per-call overhead)
    d_model: int = 16
    heads: int = 2
    ff: int = 32
    layers: int = 1
    version: int = TRANSFORMER_ZOO_VERSION

    def __post_init__(self) -> None:
        for name in ("n", "n_pool", "batch_size", "chunk", "d_model", "heads", "ff", "layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"expected {name} to be a positive integer, got {value!r}")
        if self.n < 3:
            raise InputError(f"expected n >= 3 (one network per split at least), got {self.n}")
        if not 10 <= self.n_pool <= 1797 - 100:
            raise InputError(f"expected n_pool between 10 and 1697, got {self.n_pool}")
        if self.d_model % self.heads:
            raise InputError(
                f"expected d_model divisible by heads, got {self.d_model} and {self.heads}"
            )
        lo, hi = self.steps
        if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi):
            raise InputError(f"expected a step range 1 <= lo <= hi, got {self.steps}")
        for name in ("lr", "weight_decay", "fraction"):
            lo_f, hi_f = getattr(self, name)
            if not 0 < lo_f <= hi_f:
                raise InputError(f"expected a range 0 < lo <= hi for {name}, got {(lo_f, hi_f)}")

    def key(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def filename(self) -> str:
        return f"{TASK}-{self.key()}.pt"

    def module(self) -> DigitsTransformer:
        """A fresh network of this zoo's architecture."""
        return DigitsTransformer(self.d_model, self.heads, self.ff, self.layers)


def zoo_transformer(recipe: TransformerZooRecipe | None = None) -> DigitsTransformer:
    """A fresh network of the zoo's architecture (default recipe's unless given)."""
    return (recipe or TransformerZooRecipe()).module()


def digits_tokens(n_pool: int, seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(pool images ``[P, 8, 8]``, pool labels, held-out images, held-out labels): the CNN
    zoo's split and standardised pixels, each image's rows as its tokens."""
    pool_x, pool_y, held_x, held_y = digits_split(n_pool, seed)
    return pool_x.squeeze(1), pool_y, held_x.squeeze(1), held_y


def init_params(
    recipe: TransformerZooRecipe, config: ZooConfig, dtype: torch.dtype = torch.float32
) -> dict[str, Tensor]:
    """PyTorch's default init of the network (attention's in-projection Xavier-uniform, its
    biases zero, LayerNorms one and zero, Linear layers uniform in +-1/sqrt(fan_in)), drawn
    with the network's own seed so it does not depend on which others train alongside."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        module = recipe.module()
    return {name: p.detach().to(dtype) for name, p in module.named_parameters()}


@contextlib.contextmanager
def _batched_attention() -> Iterator[None]:
    """Attention on the composite kernel, which ``vmap`` batches over networks."""
    with sdpa_kernel(SDPBackend.MATH):
        yield


def train_transformers(
    recipe: TransformerZooRecipe,
    configs: Sequence[ZooConfig],
    pool_x: Tensor,
    pool_y: Tensor,
    dtype: torch.dtype = torch.float32,
    tick: Callable[[int], object] | None = None,
) -> dict[str, Tensor]:
    """Train the networks of ``configs`` together; their final parameters, stacked
    ``[N, *shape]`` in ``named_parameters()`` order (``tick``: see ``train_stack``)."""
    init = [init_params(recipe, c, dtype) for c in configs]
    params = {k: torch.stack([p[k] for p in init]) for k in init[0]}
    model = recipe.module().to(dtype).train()  # dropout 0: train mode computes what eval does
    with _batched_attention():
        return train_stack(model, params, configs, pool_x, pool_y, recipe.batch_size, tick)


@torch.no_grad()
def transformer_accuracy(
    recipe: TransformerZooRecipe, params: dict[str, Tensor], x: Tensor, y: Tensor
) -> Tensor:
    """``[N]`` accuracy on ``(x, y)`` of each network of the stack ``params``."""
    dtype = next(iter(params.values())).dtype
    model, x = recipe.module().to(dtype).train(), x.to(dtype)
    with _batched_attention():
        logits = vmap(lambda p: functional_call(model, p, (x,)))(params)
    return (logits.argmax(-1) == y).double().mean(-1)


def to_space_layout(
    recipe: TransformerZooRecipe, params: Sequence[Tensor]
) -> tuple[list[Tensor], list[Tensor]]:
    """Stacked parameters (``[N, *shape]``, ``named_parameters()`` order) as the weight-space
    batch ``[N, 1, *shape]`` of the network's space: its tensors in the space's order,
    attention's in-projection split per head into query, key and value (the front end's
    ``TensorSource`` views); two or more axes are weights, one axis biases."""
    from ...frontends.module import trace_module

    module = recipe.module()
    names = [name for name, _ in module.named_parameters()]
    by_name = dict(zip(names, params, strict=True))
    tensors = [
        vmap(source.read)(by_name[source.state]).unsqueeze(1)
        for _, source in trace_module(module).sources
    ]
    return [t for t in tensors if t.dim() >= 4], [t for t in tensors if t.dim() == 3]


def build_transformer_zoo(recipe: TransformerZooRecipe, progress: bool = True) -> dict[str, object]:
    """Train the recipe's networks chunk by chunk; the cache blob (parameters, accuracies,
    hyperparameters), stored in config order."""
    configs = draw_configs(recipe)  # type: ignore[arg-type]  # reads the ranges, n, seed, pool
    pool_x, pool_y, held_x, held_y = digits_tokens(recipe.n_pool, recipe.seed)
    order = _order(configs)
    names = [name for name, _ in recipe.module().named_parameters()]
    params: dict[str, list[Tensor]] = {k: [] for k in names}
    accuracy, rows = [], []
    bar = progress_bar(
        sum(c.steps for c in configs),
        f"train {TASK} (network-steps)",
        unit="step",
        enabled=progress,
        unit_scale=True,
    )
    for start in range(0, recipe.n, recipe.chunk):
        chunk = order[start : start + recipe.chunk]
        cs = [configs[i] for i in chunk]
        p = train_transformers(recipe, cs, pool_x, pool_y, tick=bar.update)
        for k in names:
            params[k].append(p[k])
        accuracy.append(transformer_accuracy(recipe, p, held_x, held_y))
        rows.extend(chunk)
    bar.close()
    back = torch.argsort(torch.tensor(rows))
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
class TransformerZooDataset:
    """A built transformer zoo in its weight space's batch layout (C = 1) with its splits."""

    weights: list[Tensor]  # tensors of two or more axes, [N, 1, *shape], the space's order
    biases: list[Tensor]  # one-axis tensors, [N, 1, d]
    params: list[Tensor]  # the raw parameters, [N, *shape], named_parameters() order
    accuracy: Tensor  # [N] float64 held-out accuracy (the target)
    hyper: Tensor  # [N, 5]: lr, weight decay, training images, steps, init seed
    splits: dict[str, Tensor]
    recipe: TransformerZooRecipe
    path: Path
    built: bool
    seconds: float

    @property
    def n(self) -> int:
        return self.accuracy.shape[0]

    def summary(self) -> dict[str, object]:
        return {
            "task": TASK,
            "n": self.n,
            "networks": "transformers",
            "splits": {k: len(v) for k, v in self.splits.items()},
            "params_per_network": sum(p[0].numel() for p in self.params),
            "recipe": asdict(self.recipe),
            **accuracy_summary(self.accuracy),
            "built": self.built,
            "seconds": round(self.seconds, 2),
            "path": str(self.path),
        }


def cache_layout(recipe: TransformerZooRecipe) -> cache.Layout:
    """What a cache file of ``recipe`` holds: the keys, dtypes and shapes the build writes."""
    named = list(recipe.module().named_parameters())
    return {
        "names": [name for name, _ in named],
        "params": [cache.Entry((recipe.n, *p.shape)) for _, p in named],
        "accuracy": cache.Entry((recipe.n,)),
        "hyper": cache.Entry((recipe.n, 5)),
    }


def load_transformer_zoo(
    cache_dir: str | os.PathLike[str] | None = None,
    recipe: TransformerZooRecipe | None = None,
    *,
    rebuild: bool = False,
    progress: bool = True,
) -> TransformerZooDataset:
    """Load the zoo of ``recipe`` (default :class:`TransformerZooRecipe`) from the cache,
    building it first if needed. Splits of the networks are 70/15/15, fixed by the seed."""
    start = time.perf_counter()
    recipe = recipe or TransformerZooRecipe()
    path = resolve_cache_dir(cache_dir) / recipe.filename()
    layout = cache_layout(recipe)
    blob = None if rebuild else cache.read(path, asdict(recipe), "rebuilding", layout)
    built = blob is None
    if blob is None:
        blob = build_transformer_zoo(recipe, progress)
        cache.write(path, blob, "the zoo is")
    seconds = time.perf_counter() - start
    if built and progress:
        print(f"trained {recipe.n} zoo transformers in {seconds:.1f} s -> {path}", file=sys.stderr)
    params = list(blob["params"])  # type: ignore[call-overload]
    weights, biases = to_space_layout(recipe, params)
    return TransformerZooDataset(
        weights=weights,
        biases=biases,
        params=params,
        accuracy=blob["accuracy"],  # type: ignore[arg-type]
        hyper=blob["hyper"],  # type: ignore[arg-type]
        splits=make_splits(recipe.n, recipe.seed),
        recipe=recipe,
        path=path,
        built=built,
        seconds=seconds,
    )
