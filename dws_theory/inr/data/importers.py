"""The public weight-space datasets, turned into ``--data`` collections (nothing downloads).

``dws-theory data import FORMAT PATH --out FILE.pt`` reads files a user already has:

``dwsnets``
    DWSNets' MNIST / Fashion-MNIST SIRENs. PATH is the splits JSON that the DWSNets
    repository's ``generate_data_splits.py`` writes, ``{"train" | "val" | "test": {"path":
    [...], "label": [...]}}``, one ``torch.save``-d state_dict per INR (``seq.0.weight``,
    ``seq.0.bias``, ...; sine layers ``sin(30 (W x + b))``, then a linear layer). The
    JSON's own three splits are kept: they are the ones later papers (NFN, ScaleGMN, ...)
    evaluate on. Relative paths are read from the JSON's folder.
``nfn-siren``
    NFN's SIRENs of MNIST, Fashion-MNIST or CIFAR-10 (``siren_*_wts``). PATH is the folder
    of subfolders ``<prefix>_<label>s/`` (``prefix`` ``randinit_smaller`` by default) of
    ``net<index>.pth`` state_dicts; the split is NFN's: indices below 45,000 train, up to
    50,000 validation, the rest test (``--split-points``).
``small-cnn-zoo``
    The Small CNN Zoo (Unterthiner et al. 2020). PATH is one collection's folder with
    ``weights.npy`` (one flat row per network and checkpoint), ``metrics.csv.gz`` (its
    ``step`` and ``test_accuracy``) and ``layout.csv`` (``varname``, ``start_idx``,
    ``end_idx``, ``shape`` of every TensorFlow variable). The last checkpoint of every
    network is kept (``--step``), kernels turned into torch's layout (``[out, in, h, w]``,
    ``[out, in]``), the target is the test accuracy, and the split is NFN's: the second half
    of the rows (after an optional ``--order`` file of row indices, NFN's shuffle) is the
    test split, the first half is shuffled with Python's ``random.Random(0)`` and cut 80/20
    into train and validation; scored by Kendall's tau, as the peers score it. The
    networks' activations differ (a hyperparameter of the zoo), so none is declared.

Every importer returns the arguments of :func:`~dws_theory.inr.data.userdata.write_collection`.
"""

from __future__ import annotations

import ast
import csv
import gzip
import json
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ...errors import InputError
from ..progress import progress

__all__ = [
    "FORMATS",
    "FormatError",
    "import_dwsnets",
    "import_nfn_siren",
    "import_small_cnn_zoo",
    "NFN_SPLIT_POINTS",
]

NFN_SPLIT_POINTS = (45_000, 50_000)
SPLITS = ("train", "val", "test")


class FormatError(InputError):
    """A file that is not in the format the importer reads; the message says what is wrong."""


def _load_state_dict(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise FormatError(f"{path}: expected a state_dict file, found none")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle and zip errors of many kinds
        raise FormatError(f"{path}: not a torch.save file ({exc!s:.100})") from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise FormatError(f"{path}: expected a state_dict (names -> tensors)")
    return state


def _mlp_layers(state: dict[str, Tensor], path: Path) -> tuple[list[Tensor], list[Tensor]]:
    """Weights and biases of a state_dict of Linear layers, in order."""
    weights = [v for k, v in state.items() if k.endswith("weight")]
    biases = [v for k, v in state.items() if k.endswith("bias")]
    if not weights or len(weights) != len(biases) or any(w.dim() != 2 for w in weights):
        raise FormatError(f"{path}: expected Linear layers (a 2-D weight and a bias each)")
    return weights, biases


def _stack(rows: list[tuple[list[Tensor], list[Tensor]]], paths: Sequence[Path]):
    shapes = [tuple(t.shape) for t in rows[0][0] + rows[0][1]]
    for (ws, bs), path in zip(rows, paths, strict=True):
        if [tuple(t.shape) for t in ws + bs] != shapes:
            raise FormatError(
                f"{path}: shapes {[tuple(t.shape) for t in ws + bs]}, expected {shapes}"
            )
    n_layers = len(rows[0][0])
    weights = [torch.stack([r[0][m] for r in rows]).float() for m in range(n_layers)]
    biases = [torch.stack([r[1][m] for r in rows]).float() for m in range(n_layers)]
    return weights, biases


def _read_all(paths: Sequence[Path], what: str, show: bool):
    bar = progress(len(paths), f"read {what}", unit="file", enabled=show)
    rows = []
    for path in paths:
        rows.append(_mlp_layers(_load_state_dict(path), path))
        bar.update(1)
    bar.close()
    return _stack(rows, paths)


def import_dwsnets(path: str | Path, show: bool = True) -> dict[str, object]:
    """DWSNets' splits JSON and the state_dicts it names."""
    path = Path(path)
    try:
        table = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{path}: expected DWSNets' splits JSON ({exc!s:.100})") from None
    if not isinstance(table, dict) or not set(SPLITS) <= set(table):
        raise FormatError(f"{path}: expected the keys {SPLITS}")
    files: list[Path] = []
    labels: list[int] = []
    splits: dict[str, Tensor] = {}
    for name in SPLITS:
        part = table[name]
        if not isinstance(part, dict) or len(part.get("path", [])) != len(part.get("label", [1])):
            raise FormatError(f"{path}: {name!r} needs lists 'path' and 'label' of one length")
        start = len(files)
        for p, label in zip(part["path"], part["label"], strict=True):
            file = Path(p)
            files.append(file if file.is_absolute() else path.parent / file)
            labels.append(_label(label, path))
        splits[name] = torch.arange(start, len(files))
    if any(len(v) == 0 for v in splits.values()):
        raise FormatError(f"{path}: every split needs at least one INR")
    weights, biases = _read_all(files, "DWSNets INRs", show)
    return {
        "weights": weights,
        "biases": biases,
        "targets": torch.tensor(labels),
        "splits": splits,
        "activation": "sine",
    }


def _label(value: object, where: Path) -> int:
    try:
        label = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise FormatError(f"{where}: expected integer labels, got {value!r}") from None
    if label < 0:
        raise FormatError(f"{where}: expected non-negative labels, got {label}")
    return label


def import_nfn_siren(
    path: str | Path,
    prefix: str = "randinit_smaller",
    split_points: tuple[int, int] = NFN_SPLIT_POINTS,
    show: bool = True,
) -> dict[str, object]:
    """NFN's SIREN folders ``<prefix>_<label>s/net<index>.pth``."""
    root = Path(path)
    if not root.is_dir():
        raise FormatError(f"{root}: expected the folder of NFN's SIRENs (siren_*_wts)")
    folder = re.compile(re.escape(prefix) + r"_(\d)s")
    found: dict[int, tuple[Path, int]] = {}
    for sub in sorted(root.iterdir()):
        match = folder.fullmatch(sub.name)
        if not (sub.is_dir() and match):
            continue
        for file in sub.glob("net*.pth"):
            index = re.fullmatch(r"net(\d+)\.pth", file.name)
            if index is not None:
                found[int(index.group(1))] = (file, int(match.group(1)))
    if not found:
        raise FormatError(f"{root}: no {prefix}_<label>s/net<index>.pth files")
    n = len(found)
    if sorted(found) != list(range(n)):
        raise FormatError(f"{root}: expected net0.pth .. net{n - 1}.pth, some are missing")
    val_point, test_point = split_points
    if not 0 < val_point < test_point < n:
        raise FormatError(f"expected split points 0 < {val_point} < {test_point} < {n}")
    files = [found[i][0] for i in range(n)]
    weights, biases = _read_all(files, "NFN SIRENs", show)
    return {
        "weights": weights,
        "biases": biases,
        "targets": torch.tensor([found[i][1] for i in range(n)]),
        "splits": {
            "train": torch.arange(0, val_point),
            "val": torch.arange(val_point, test_point),
            "test": torch.arange(test_point, n),
        },
        "activation": "sine",
    }


def import_small_cnn_zoo(
    path: str | Path,
    step: int | None = None,
    order: str | Path | None = None,
    show: bool = True,
) -> dict[str, object]:
    """One Small CNN Zoo collection's folder (weights.npy, metrics.csv.gz, layout.csv)."""
    root = Path(path)
    for name in ("weights.npy", "metrics.csv.gz", "layout.csv"):
        if not (root / name).is_file():
            raise FormatError(f"{root}: expected the Small CNN Zoo files, {name} is missing")
    metrics = _metrics(root / "metrics.csv.gz")
    flat = np.load(root / "weights.npy", mmap_mode="r")
    if flat.ndim != 2 or flat.shape[0] != len(metrics):
        raise FormatError(
            f"{root}: weights.npy has shape {flat.shape}, expected one row per metrics row "
            f"({len(metrics)})"
        )
    rows = np.arange(len(metrics))
    if order is not None:
        rows = _order(Path(order), len(metrics))
    steps = np.array([float(metrics[i]["step"]) for i in rows])
    final = steps.max() if step is None else step
    rows = rows[steps == final]
    if len(rows) < 3:
        raise FormatError(f"{root}: fewer than 3 networks at step {final}")
    accuracy = torch.tensor([float(metrics[i]["test_accuracy"]) for i in rows])
    data = np.asarray(flat[rows], dtype=np.float32)
    if not np.isfinite(data).all():
        raise FormatError(f"{root}: weights.npy holds NaN or infinite values at step {final}")
    weights, biases, architecture = _zoo_tensors(data, _layout(root / "layout.csv"), root)
    return {
        "weights": weights,
        "biases": biases,
        "targets": accuracy.double(),
        "splits": _nfn_zoo_splits(len(rows)),
        "architecture": architecture,
        "metric": "kendall_tau",
    }


def _metrics(path: Path) -> list[dict[str, str]]:
    try:
        with gzip.open(path, "rt", newline="") as fh:
            table = list(csv.DictReader(fh))
    except (OSError, EOFError, csv.Error, UnicodeDecodeError) as exc:
        raise FormatError(f"{path}: expected a gzipped CSV ({exc!s:.100})") from None
    if not table or not {"step", "test_accuracy"} <= set(table[0]):
        raise FormatError(f"{path}: expected the columns step and test_accuracy")
    return table


def _order(path: Path, n: int) -> np.ndarray:
    try:
        values = [int(v) for v in path.read_text().split() if v.strip()]
    except (OSError, ValueError) as exc:
        raise FormatError(f"{path}: expected one row index per line ({exc!s:.100})") from None
    if sorted(values) != list(range(n)):
        raise FormatError(f"{path}: expected a permutation of the {n} rows")
    return np.array(values)


def _layout(path: Path) -> list[tuple[str, int, int, tuple[int, ...]]]:
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        out = [
            (
                r["varname"],
                int(r["start_idx"]),
                int(r["end_idx"]),
                tuple(ast.literal_eval(r["shape"])),
            )
            for r in rows
        ]
    except (OSError, KeyError, ValueError, SyntaxError, csv.Error) as exc:
        raise FormatError(
            f"{path}: expected columns varname, start_idx, end_idx, shape ({exc!s:.100})"
        ) from None
    if not out:
        raise FormatError(f"{path}: no variables")
    return out


def _zoo_tensors(data: np.ndarray, layout, root: Path):
    """Kernels (TF ``[h, w, in, out]``, ``[in, out]``) to torch layout, biases, the chain."""
    weights, biases, architecture = [], [], []
    n = data.shape[0]
    for name, start, end, shape in layout:
        if end > data.shape[1] or end - start != int(np.prod(shape)):
            raise FormatError(f"{root}: layout row {name} does not fit weights.npy")
        arr = torch.from_numpy(np.ascontiguousarray(data[:, start:end])).reshape(n, *shape)
        if name.endswith("kernel:0") and len(shape) == 4:
            weights.append(arr.permute(0, 4, 3, 1, 2).contiguous())
            h = shape[0]
            architecture += [["conv2d", shape[2], shape[3], h, 2, h // 2], ["act"]]
        elif name.endswith("kernel:0") and len(shape) == 2:
            weights.append(arr.transpose(1, 2).contiguous())
            architecture += [["global_avg_pool2d"], ["flatten"]] if architecture else []
            architecture.append(["linear", shape[0], shape[1]])
        elif name.endswith("bias:0") and len(shape) == 1:
            biases.append(arr)
        else:
            raise FormatError(f"{root}: layout variable {name} of shape {shape} not recognised")
    return weights, biases, architecture


def _nfn_zoo_splits(n: int) -> dict[str, Tensor]:
    test_point = n // 2
    trainval = list(range(test_point))
    random.Random(0).shuffle(trainval)
    val_point = int(0.8 * len(trainval))
    return {
        "train": torch.tensor(sorted(trainval[:val_point])),
        "val": torch.tensor(sorted(trainval[val_point:])),
        "test": torch.arange(test_point, n),
    }


FORMATS: dict[str, Callable[..., dict[str, object]]] = {
    "dwsnets": import_dwsnets,
    "nfn-siren": import_nfn_siren,
    "small-cnn-zoo": import_small_cnn_zoo,
}
