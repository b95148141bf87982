"""A collection of networks with targets and splits: what the training loop reads.

Built from a fitted INR dataset (:func:`from_dataset`), the CNN zoo (:func:`from_zoo`), the
transformer zoo (:func:`from_transformer_zoo`) or a user's file
(:func:`dws_theory.inr.data.userdata.load_collection`). Weights stay raw (unnormalised): the
loop augments raw weights, then normalises them with the model's :class:`Normalizer`.

Targets are stored in loss space:

* classification: long class indices ``[N]``;
* regression: standardised float ``[N, k]`` (train-split mean and std per output;
  ``target_mean`` / ``target_std`` turn predictions back into target units);
* weights (rendered): the target image ``[N, P, d_M]`` sampled at ``coords``;
* weights (given): the target networks' raw weights, flattened ``[N, D]`` in
  :func:`~dws_theory.inr.data.layout.flatten_weights` order.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from ...errors import InputError
from .datasets import INRDataset
from .tasks import Task, get_task
from .transformer_zoo import CLASSES, FEATURES, TOKENS, TransformerZooDataset, digits_tokens
from .transformer_zoo import TASK as TRANSFORMER_TASK
from .zoo import ZooDataset, digits_split, zoo_cnn

__all__ = ["Collection", "from_dataset", "from_transformer_zoo", "from_zoo", "standardise"]


@dataclass(frozen=True, eq=False)
class Collection:
    task: Task
    dims: tuple[int, ...]
    # raw, [S, 1, d_m, d_{m-1}]: S = N networks, then any extra views (an `example`'s
    # parameters with two or more axes, [S, 1, *shape], e.g. conv kernels [S, 1, o, i, k, k])
    weights: list[Tensor]
    biases: list[Tensor]  # raw, [S, 1, d_m]
    targets: Tensor  # loss space, one row per network (N rows)
    splits: dict[str, Tensor]  # indices into range(N)
    views: Tensor  # [N, K] long: row of the stored network for (network, view); K >= 1
    target_mean: Tensor | None = None  # regression only, [k]
    target_std: Tensor | None = None
    coords: Tensor | None = None  # [P, d_0] for INRs that can be rendered
    w0: float | None = None
    source: str = ""  # where the collection came from (cache file or user file)
    # An instance of the networks' architecture when they are not MLPs (the CNN zoo): models
    # and the normaliser read the weight space off it with `from_module`.
    example: nn.Module | None = None
    # The hidden layers' activation where known (a key of data.activations.SYMMETRY_OF): what
    # says whether sign or scale canonical forms are exact. Modules (`example`) carry their own.
    activation: str | None = None
    input_shape: tuple[int, ...] | None = None  # one input of `example`, e.g. (1, 8, 8)
    # [K, *input_shape]: inputs of the networks' own domain (a zoo's training images), where
    # the probes start; None: standard normal inputs
    domain: Tensor | None = None

    @property
    def n(self) -> int:
        return self.targets.shape[0]

    @property
    def n_views(self) -> int:
        return self.views.shape[1]

    @property
    def out_dim(self) -> int:
        if self.task.kind == "classification":
            return self.task.out_dim
        if self.task.kind == "regression":
            return self.targets.shape[1]
        return 0

    def rows(self, idx: Tensor, view: Tensor | None = None) -> Tensor:
        """Stored rows for networks ``idx`` (view 0 unless ``view`` gives one per network)."""
        v = torch.zeros_like(idx) if view is None else view
        return self.views[idx, v]

    def raw(self, rows: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        return [w[rows] for w in self.weights], [b[rows] for b in self.biases]

    def to(self, device: str | torch.device) -> Collection:
        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)

        return replace(
            self,
            weights=[w.to(device) for w in self.weights],
            biases=[b.to(device) for b in self.biases],
            targets=self.targets.to(device),
            splits={k: v.to(device) for k, v in self.splits.items()},
            views=self.views.to(device),
            target_mean=move(self.target_mean),
            target_std=move(self.target_std),
            coords=move(self.coords),
            domain=move(self.domain),
        )

    def subsample_train(self, n_train: int | None) -> Collection:
        """Keep ``n_train`` training networks, a subset fixed by the data (not the seed)."""
        train = self.splits["train"]
        if n_train is None or n_train == len(train):
            return self
        if n_train < 1 or n_train > len(train):
            raise InputError(
                f"expected n_train between 1 and {len(train)} (the training split), got {n_train}"
            )
        keep = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:n_train]
        return replace(self, splits={**self.splits, "train": train[keep.to(train.device)]})


def standardise(values: Tensor, train: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``[N, k]`` targets standardised with train-split statistics: (z, mean, std)."""
    values = values.double().reshape(values.shape[0], -1)
    mean = values[train].mean(0)
    std = values[train].std(0) if len(train) > 1 else torch.ones_like(mean)
    std = std.clamp_min(1e-12)
    return ((values - mean) / std).float(), mean.float(), std.float()


def _view_table(ds: INRDataset) -> Tensor:
    """``[N, K]``: view 0 is the dataset's own INR; views 1.. are extras of training images."""
    n = ds.n
    if ds.views is None:
        return torch.arange(n).unsqueeze(1)
    k = ds.recipe.views
    table = torch.arange(n).unsqueeze(1).repeat(1, k)  # images without extras repeat view 0
    image = ds.views.image
    per_image = len(image) // (k - 1)
    for v in range(1, k):
        block = slice((v - 1) * per_image, v * per_image)
        table[image[block], v] = n + torch.arange(block.start, block.stop)
    return table


def from_dataset(ds: INRDataset) -> Collection:
    """The collection of a fitted INR dataset, targets in loss space."""
    task = ds.task
    train = ds.splits["train"]
    mean = std = None
    if task.kind == "classification":
        targets = ds.targets.long()
    elif task.kind == "regression":
        targets, mean, std = standardise(ds.targets, train)
    else:
        targets = ds.targets.reshape(ds.n, -1, 1).float()
    weights, biases = list(ds.weights), list(ds.biases)
    if ds.views is not None:
        weights = [torch.cat([w, v]) for w, v in zip(weights, ds.views.weights, strict=True)]
        biases = [torch.cat([b, v]) for b, v in zip(biases, ds.views.biases, strict=True)]
    return Collection(
        task=task,
        dims=tuple(ds.dims),
        weights=weights,
        biases=biases,
        targets=targets,
        splits=ds.splits,
        views=_view_table(ds),
        target_mean=mean,
        target_std=std,
        coords=ds.coords.float(),
        w0=ds.w0,
        source=str(ds.path),
        activation="sine",
    )


def from_zoo(ds: ZooDataset) -> Collection:
    """The collection of a CNN zoo: standardised test accuracies as a regression target."""
    targets, mean, std = standardise(ds.accuracy, ds.splits["train"])
    channels = (ds.weights[0].shape[3], *(w.shape[2] for w in ds.weights))
    return Collection(
        task=get_task("digits-cnn-zoo"),
        dims=tuple(int(c) for c in channels),
        weights=[w.float() for w in ds.weights],
        biases=[b.float() for b in ds.biases],
        targets=targets,
        splits=ds.splits,
        views=torch.arange(ds.n).unsqueeze(1),
        target_mean=mean,
        target_std=std,
        source=str(ds.path),
        example=zoo_cnn(),
        activation="relu",
        input_shape=(1, 8, 8),
        domain=digits_split(ds.recipe.n_pool, ds.recipe.seed)[0],  # the images they train on
    )


def from_transformer_zoo(ds: TransformerZooDataset) -> Collection:
    """The collection of a transformer zoo (in its weight space's layout): standardised test
    accuracies as a regression target; ``dims`` are input features, width, classes."""
    targets, mean, std = standardise(ds.accuracy, ds.splits["train"])
    return Collection(
        task=get_task(TRANSFORMER_TASK),
        dims=(FEATURES, ds.recipe.d_model, CLASSES),
        weights=[w.float() for w in ds.weights],
        biases=[b.float() for b in ds.biases],
        targets=targets,
        splits=ds.splits,
        views=torch.arange(ds.n).unsqueeze(1),
        target_mean=mean,
        target_std=std,
        source=str(ds.path),
        example=ds.recipe.module(),
        activation="relu",  # the feed-forward block's (the probes run the real module)
        input_shape=(TOKENS, FEATURES),
        domain=digits_tokens(ds.recipe.n_pool, ds.recipe.seed)[0],  # the images they train on
    )
