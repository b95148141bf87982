"""A user's own collection of MLPs: the ``train --data FILE.pt`` format, read and written.

``FILE.pt`` is ``torch.save`` of a dict:

``weights``  list over layers of float tensors ``[N, d_m, d_{m-1}]`` (``nn.Linear.weight``
             orientation), one network per row;
``biases``   list over layers of float tensors ``[N, d_m]``;
``targets``  ``[N]`` integer class labels (classification), ``[N]`` or ``[N, k]`` floats
             (regression), or, for weight-to-weight, ``[N, D]`` floats where ``D`` is the
             number of parameters of one network (the target network flattened as ``W1, b1,
             W2, b2, ...``, each in row-major order);
``splits``   optional: a dict ``train`` / ``val`` / ``test`` of index tensors (disjoint,
             non-empty); without it a seeded 70/15/15 split (stratified for labels);
``kind``     optional: ``classification``, ``regression`` or ``weights``, to override the
             inference from ``targets`` (needed only for a ``[N, D]`` regression);
``activation`` optional: the hidden layers' activation (``sine`` for SIRENs, ``tanh``,
             ``relu``, ... :data:`~dws_theory.inr.data.activations.ACTIVATIONS`), which lets
             ``train`` put the networks in the canonical form of their sign or scale symmetry
             and evaluate them at probe points;
``architecture`` optional, for networks other than MLPs (CNNs): a list of layers
             (:mod:`dws_theory.inr.data.architecture`); ``weights`` are then the parameters of
             two or more axes ``[N, *shape]`` and ``biases`` those of one, in the order of the
             module's ``named_parameters()``;
``input_shape`` optional: one input of such a network (``[C, H, W]``), for probes;
``metric``   optional: ``kendall_tau`` scores a regression by the rank correlation of
             predictions and targets on the test split (the CNN zoo's metric).

Widths, task kind and metric are inferred. Every problem with a file raises
:class:`DataFileError` naming the key and what was expected.
:func:`save_collection` writes such a file from models or state_dicts,
:func:`write_collection` from tensors.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor, nn

from ...convert import ConversionError, weights_from_models
from ...errors import InputError
from .activations import ACTIVATIONS
from .architecture import ArchitectureError, build_module, chain_dims
from .cache import load_file, regular_file_problem, save_file
from .collection import Collection, standardise
from .datasets import make_splits
from .siren import DEFAULT_W0
from .tasks import KINDS, user_task

__all__ = [
    "MAX_CLASSES",
    "DataFileError",
    "load_collection",
    "save_collection",
    "write_collection",
    "with_activation",
    "read_file",
]

SPLITS = ("train", "val", "test")
# Class labels run from 0 to at most this minus one: the head has one output per label up to
# the largest, so a label of 10**12 would ask for a head of 10**12 outputs.
MAX_CLASSES = 100_000
_FLOAT32_MAX = float(torch.finfo(torch.float32).max)
# Regression targets: their squared errors (the metric) must stay finite in float32.
_MAX_TARGET = 1e18


class DataFileError(InputError):
    """A ``--data`` file that does not follow the format; the message names what is wrong."""


def save_collection(
    path: str | os.PathLike[str],
    models: Sequence[nn.Module | Mapping[str, Tensor]],
    targets: Tensor | Sequence[float] | Sequence[int],
    *,
    splits: Mapping[str, Tensor] | None = None,
    kind: str | None = None,
    activation: str | None = None,
) -> Path:
    """Write models (``nn.Sequential`` of ``nn.Linear`` or their state_dicts) and targets.

    Returns the path. The file loads with :func:`load_collection` and ``train --data``.
    """
    try:
        ws, bs = weights_from_models(list(models))
    except ConversionError as exc:
        raise DataFileError(str(exc)) from None
    return write_collection(
        path,
        [w[:, 0] for w in ws],
        [b[:, 0] for b in bs],
        targets,
        splits=splits,
        kind=kind,
        activation=activation,
    )


def write_collection(
    path: str | os.PathLike[str],
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    targets: Tensor | Sequence[float] | Sequence[int],
    *,
    splits: Mapping[str, Tensor] | None = None,
    kind: str | None = None,
    activation: str | None = None,
    architecture: Sequence[Sequence[object]] | None = None,
    input_shape: Sequence[int] | None = None,
    metric: str | None = None,
) -> Path:
    """Write a collection given as tensors (``weights[m-1]``: ``[N, d_m, d_{m-1}]``,
    ``biases[m-1]``: ``[N, d_m]``; with an ``architecture``, its parameters of two or more axes
    and of one, ``[N, *shape]``), checked as :func:`load_collection` checks it, atomically."""
    blob: dict[str, object] = {
        "weights": [w.detach().contiguous() for w in weights],
        "biases": [b.detach().contiguous() for b in biases],
        "targets": torch.as_tensor(targets),
    }
    if splits is not None:
        blob["splits"] = {k: torch.as_tensor(v) for k, v in splits.items()}
    if kind is not None:
        blob["kind"] = kind
    if activation is not None:
        blob["activation"] = activation
    if architecture is not None:
        blob["architecture"] = (
            [list(x) if isinstance(x, (list, tuple)) else x for x in architecture]
            if isinstance(architecture, (list, tuple))
            else architecture  # refused below, as load_collection would refuse it
        )
    if input_shape is not None:
        blob["input_shape"] = list(input_shape)
    if metric is not None:
        blob["metric"] = metric
    _validate(blob)  # refuse to write what could not be read back
    return save_file(path, blob)  # atomic; a missing folder is an OSError naming the path


def read_file(path: str | os.PathLike[str]) -> dict[str, object]:
    path = Path(path)
    problem = regular_file_problem(path)
    if problem is not None:
        raise DataFileError(
            f"--data {path}: expected an existing file written by torch.save, but {problem}"
        )
    try:
        blob = load_file(path)
    except Exception as exc:  # pickle and zip errors of many kinds
        raise DataFileError(f"--data {path}: not a torch.save file ({exc!s:.120})") from None
    if not isinstance(blob, dict):
        raise DataFileError(f"--data {path}: expected a dict, got {type(blob).__name__}")
    return blob


def _dense(name: str, value: object) -> Tensor:
    """`value` if it is a tensor with data in memory (not sparse, not meta), else an error."""
    if not isinstance(value, Tensor):
        raise DataFileError(f"{name}: expected a tensor, got {type(value).__name__}")
    if value.layout != torch.strided or value.is_meta:
        what = "a meta tensor (no data)" if value.is_meta else f"a {value.layout} tensor"
        raise DataFileError(f"{name}: expected a dense tensor with data, got {what}")
    return value


def _within_float32(name: str, t: Tensor, limit: float) -> None:
    """Values a float32 model can carry: finite, and at most `limit` in magnitude."""
    if not torch.isfinite(t).all():
        raise DataFileError(f"{name}: holds NaN or infinite values")
    largest = t.abs().max().item() if t.numel() else 0.0
    if largest > limit:
        raise DataFileError(
            f"{name}: expected values of magnitude at most {limit:.3g} (the models compute "
            f"in float32), got {largest:.3g}"
        )


def _tensor_list(blob: Mapping[str, object], key: str, ndim: int | None) -> list[Tensor]:
    """The list under ``key``: float tensors, finite, of ``ndim`` axes (any when None)."""
    value = blob.get(key)
    if not isinstance(value, (list, tuple)) or not value:
        raise DataFileError(
            f"{key!r}: expected a non-empty list of tensors, got {type(value).__name__}"
        )
    for i, t in enumerate(value):
        t = _dense(f"{key}[{i}]", t)
        if ndim is not None and t.dim() != ndim:
            raise DataFileError(f"{key}[{i}]: expected {ndim} axes, got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise DataFileError(f"{key}[{i}]: expected a floating dtype, got {t.dtype}")
        _within_float32(f"{key}[{i}]", t, _FLOAT32_MAX)
    return list(value)


def _widths(weights: list[Tensor], biases: list[Tensor]) -> tuple[int, int, tuple[int, ...]]:
    """(N, parameters per network, widths d_0..d_M) after checking the shapes chain."""
    if len(weights) != len(biases):
        raise DataFileError(
            f"expected one bias per layer, got {len(weights)} weights and {len(biases)} biases"
        )
    n = weights[0].shape[0]
    dims = [weights[0].shape[2]]
    for m, (w, b) in enumerate(zip(weights, biases, strict=True)):
        expected = (n, w.shape[1], dims[-1])
        if tuple(w.shape) != expected:
            raise DataFileError(
                f"weights[{m}]: expected [N, d_{m + 1}, d_{m}] = [{n}, d_{m + 1}, {dims[-1]}], "
                f"got {tuple(w.shape)}"
            )
        if tuple(b.shape) != (n, w.shape[1]):
            raise DataFileError(
                f"biases[{m}]: expected [N, d_{m + 1}] = [{n}, {w.shape[1]}], got {tuple(b.shape)}"
            )
        dims.append(w.shape[1])
    if n < 3:
        raise DataFileError(f"expected at least 3 networks (one per split), got {n}")
    params = sum(w[0].numel() + b[0].numel() for w, b in zip(weights, biases, strict=True))
    return n, params, tuple(dims)


def _kind(blob: Mapping[str, object], targets: Tensor, n: int, params: int) -> str:
    given = blob.get("kind")
    if given is not None and given not in KINDS:
        raise DataFileError(f"'kind': expected one of {KINDS}, got {given!r}")
    if targets.shape[0] != n:
        raise DataFileError(
            f"'targets': expected {n} rows (one per network), got shape {tuple(targets.shape)}"
        )
    if targets.dtype == torch.bool or not (targets.is_floating_point() or _is_integer(targets)):
        raise DataFileError(
            f"'targets': expected an integer or floating dtype, got {targets.dtype}"
        )
    if _is_integer(targets):
        if given not in (None, "classification") or targets.dim() != 1:
            raise DataFileError("'targets': integer targets are class labels, expected shape [N]")
        return "classification"
    _within_float32("'targets'", targets, _MAX_TARGET)
    if targets.dim() > 2:
        raise DataFileError(
            f"'targets': expected [N], [N, k] or [N, D], got {tuple(targets.shape)}"
        )
    if given == "classification":
        raise DataFileError("'kind' is classification, expected integer targets")
    if given is not None:
        kind = str(given)
    else:
        kind = "weights" if targets.dim() == 2 and targets.shape[1] == params else "regression"
    if kind == "weights" and (targets.dim() != 2 or targets.shape[1] != params):
        raise DataFileError(
            f"'targets': weight-to-weight targets are [N, D] with D = {params} (one network "
            f"flattened), got {tuple(targets.shape)}"
        )
    return kind


def _is_integer(t: Tensor) -> bool:
    return not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool


def _index_tensor(name: str, value: object) -> Tensor:
    """A tensor of indices from a tensor or a list of integers; strings, ragged lists and
    tensors without data are errors."""
    if isinstance(value, Tensor):
        return _dense(name, value)
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in value
    ):
        raise DataFileError(
            f"{name}: expected a 1-D integer tensor or a list of integers, got "
            f"{type(value).__name__}"
        )
    return torch.tensor(value, dtype=torch.long)


def _splits(blob: Mapping[str, object], n: int, labels: Tensor | None) -> dict[str, Tensor]:
    given = blob.get("splits")
    if given is None:
        return make_splits(n, seed=0, labels=labels)
    if not isinstance(given, Mapping) or set(given) != set(SPLITS):
        raise DataFileError(f"'splits': expected a dict with exactly the keys {SPLITS}")
    out: dict[str, Tensor] = {}
    for name in SPLITS:
        idx = _index_tensor(f"splits[{name!r}]", given[name])
        if idx.dim() != 1 or len(idx) == 0 or not _is_integer(idx):
            raise DataFileError(f"splits[{name!r}]: expected a non-empty 1-D integer tensor")
        if idx.min() < 0 or idx.max() >= n:
            raise DataFileError(
                f"splits[{name!r}]: expected indices in [0, {n}), got {idx.min()}..{idx.max()}"
            )
        out[name] = idx.long().unique()
    together = torch.cat(list(out.values()))
    if len(together.unique()) != len(together):
        raise DataFileError("'splits': expected disjoint train, val and test indices")
    return out


def _activation(blob: Mapping[str, object]) -> str | None:
    value = blob.get("activation")
    if value is not None and (not isinstance(value, str) or value not in ACTIVATIONS):
        raise DataFileError(f"'activation': expected one of {ACTIVATIONS}, got {value!r}")
    return value  # type: ignore[return-value]


@dataclass(frozen=True, eq=False)
class _Checked:
    weights: list[Tensor]
    biases: list[Tensor]
    targets: Tensor
    kind: str
    dims: tuple[int, ...]
    splits: dict[str, Tensor]
    activation: str | None
    example: nn.Module | None
    input_shape: tuple[int, ...] | None
    metric: str | None


def _module_shapes(
    blob: Mapping[str, object], weights: list[Tensor], biases: list[Tensor], activation: str | None
) -> tuple[nn.Module, int, int, tuple[int, ...]]:
    """(example module, N, parameters per network, channel chain) of a file with an
    ``architecture``, after checking every tensor against the module's parameters."""
    try:
        example = build_module(blob["architecture"], activation)
    except ArchitectureError as exc:
        raise DataFileError(f"'architecture': {exc}") from None
    shapes = [tuple(p.shape) for p in example.parameters()]
    expected = {
        "weights": [s for s in shapes if len(s) >= 2],
        "biases": [s for s in shapes if len(s) == 1],
    }
    n = weights[0].shape[0]
    for key, given in (("weights", weights), ("biases", biases)):
        want = expected[key]
        if len(given) != len(want):
            raise DataFileError(
                f"{key!r}: the architecture has {len(want)} such parameters, got {len(given)}"
            )
        for i, (t, s) in enumerate(zip(given, want, strict=True)):
            if tuple(t.shape) != (n, *s):
                raise DataFileError(
                    f"{key}[{i}]: expected [N, {', '.join(map(str, s))}] = {[n, *s]}, "
                    f"got {list(t.shape)}"
                )
    if n < 3:
        raise DataFileError(f"expected at least 3 networks (one per split), got {n}")
    return example, n, sum(math.prod(s) for s in shapes), chain_dims(example)


def _input_shape(blob: Mapping[str, object]) -> tuple[int, ...] | None:
    value = blob.get("input_shape")
    if value is None:
        return None
    if (
        not isinstance(value, (list, tuple))
        or not value
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise DataFileError(f"'input_shape': expected a list of positive integers, got {value!r}")
    return tuple(value)


def _validate(blob: Mapping[str, object]) -> _Checked:
    activation = _activation(blob)
    general = blob.get("architecture") is not None
    weights = _tensor_list(blob, "weights", None if general else 3)
    biases = _tensor_list(blob, "biases", None if general else 2)
    example = None
    if general:
        example, n, params, dims = _module_shapes(blob, weights, biases, activation)
    else:
        n, params, dims = _widths(weights, biases)
    targets = _dense("'targets'", blob.get("targets"))
    kind = _kind(blob, targets, n, params)
    if kind == "classification" and (targets.min() < 0 or len(targets.unique()) < 2):
        raise DataFileError("'targets': expected non-negative class labels with at least 2 classes")
    if kind == "classification" and targets.max() >= MAX_CLASSES:
        raise DataFileError(
            f"'targets': expected class labels below {MAX_CLASSES:,} (the classifier has one "
            f"output per label up to the largest), got {targets.max().item():,}"
        )
    splits = _splits(blob, n, targets if kind == "classification" else None)
    metric = blob.get("metric")
    if metric is not None and (metric != "kendall_tau" or kind != "regression"):
        raise DataFileError(f"'metric': expected kendall_tau on a regression, got {metric!r}")
    return _Checked(
        weights,
        biases,
        targets,
        kind,
        dims,
        splits,
        activation,
        example,
        _input_shape(blob),
        metric,  # type: ignore[arg-type]
    )


def with_activation(data: Collection, activation: str) -> Collection:
    """``data`` with its networks' activation declared (``train --activation``); sine networks
    get the SIREN convention's w0 unless they carry their own."""
    if activation not in ACTIVATIONS:
        raise DataFileError(f"expected an activation in {ACTIVATIONS}, got {activation!r}")
    w0 = data.w0 if data.w0 is not None or activation != "sine" else DEFAULT_W0
    return replace(data, activation=activation, w0=w0)


def load_collection(path: str | os.PathLike[str]) -> Collection:
    """Read and check a ``--data`` file; infer widths, kind and metric."""
    blob = read_file(path)
    try:
        c = _validate(blob)
    except DataFileError as exc:
        raise DataFileError(f"--data {path}: {exc}") from None
    targets, kind, splits = c.targets, c.kind, c.splits
    mean = std = None
    if kind == "classification":
        stored, out_dim = targets.long(), int(targets.max()) + 1
    elif kind == "regression":
        stored, mean, std = standardise(targets, splits["train"])
        out_dim = stored.shape[1]
    else:
        stored, out_dim = targets.float(), 0
    task = user_task(Path(path).stem, kind, out_dim, len(splits["train"]), c.metric)
    return Collection(
        task=task,
        dims=c.dims,
        weights=[w.float().unsqueeze(1) for w in c.weights],
        biases=[b.float().unsqueeze(1) for b in c.biases],
        targets=stored,
        splits=splits,
        views=torch.arange(len(targets)).unsqueeze(1),
        target_mean=mean,
        target_std=std,
        coords=None,
        w0=DEFAULT_W0 if c.activation == "sine" else None,
        source=str(path),
        example=c.example,
        activation=c.activation,
        input_shape=c.input_shape,
    )
