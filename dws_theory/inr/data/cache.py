"""Cache files of built data (fitted INRs, the CNN zoo): checksummed, checked on load, written
atomically.

A blob is a dict holding its ``recipe`` (JSON-able: everything that determined it), tensors or
lists of tensors, and a ``checksum`` over the recipe and every tensor. A file is used only if it
is a regular file, loads, has the recipe asked for, matches its checksum, holds exactly the
keys, dtypes and shapes its recipe implies (the caller's ``Layout``: a checksum anyone can
recompute does not prove a tensor was not sliced) and finite values; otherwise the caller
rebuilds, with a one-line message saying why.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ... import atomic

__all__ = [
    "Entry",
    "Layout",
    "checksum",
    "layout_problem",
    "load_file",
    "read",
    "regular_file_problem",
    "save_file",
    "write",
]

_META = ("recipe", "checksum")


@dataclass(frozen=True)
class Entry:
    """What one tensor of a blob must be: its shape (an int is a size, a str a size that must
    be the same wherever that name appears), its dtype (`float`, `int` or `any`), and
    whether the entry may be None instead; `bound`, for integer tensors that index or label,
    the end of the range [0, bound) every value must be in. In a `Layout`, a value that is
    not an `Entry` (or a list of them) is what the blob must hold exactly (a list of names,
    say)."""

    shape: tuple[int | str, ...]
    dtype: str = "float"
    optional: bool = False
    bound: int | None = None


Layout = Mapping[str, object]


def _tensors_of(blob: Mapping[str, object]) -> list[Tensor]:
    out: list[Tensor] = []
    for key in sorted(k for k in blob if k not in _META):
        value = blob[key]
        if isinstance(value, Tensor):
            out.append(value)
        elif isinstance(value, list):
            out += [v for v in value if isinstance(v, Tensor)]
    return out


def checksum(blob: Mapping[str, object]) -> str:
    """SHA-256 of the recipe and of every tensor's dtype, shape and bytes."""
    h = hashlib.sha256(json.dumps(blob["recipe"], sort_keys=True).encode())
    for t in _tensors_of(blob):
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def regular_file_problem(path: Path) -> str | None:
    """Why `path` cannot be read as a data file (None: it can). A FIFO would block a reader
    forever, and a directory or device is no file."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return exc.strerror or "it cannot be read"
    return None if stat.S_ISREG(mode) else "it is not a regular file"


def load_file(path: Path) -> object:
    """`torch.load` of a regular file (`weights_only`: no code runs), onto the CPU; OSError
    for what is not a regular file."""
    problem = regular_file_problem(path)
    if problem is not None:
        raise OSError(f"{path}: expected a regular file written by torch.save, but {problem}")
    return torch.load(path, map_location="cpu", weights_only=True)


def save_file(path: str | os.PathLike[str], obj: object) -> Path:
    """`torch.save` of `obj` to `path`, atomically: serialised in memory first, so a full
    disk or a read-only folder is an OSError from the write (torch's own writer raises
    RuntimeError for them) and never leaves a truncated file."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic.write_bytes(path, buffer.getbuffer())


def _entry_problem(key: str, value: object, entry: Entry, sizes: dict[str, int]) -> str | None:
    if value is None:
        return None if entry.optional else f"{key} is missing"
    if not isinstance(value, Tensor) or value.layout != torch.strided or value.is_meta:
        return f"{key} is not a dense tensor"
    if entry.dtype == "float" and not value.is_floating_point():
        return f"{key} has dtype {value.dtype}, expected a floating one"
    if entry.dtype == "int" and (value.is_floating_point() or value.is_complex()):
        return f"{key} has dtype {value.dtype}, expected an integer one"
    if len(value.shape) != len(entry.shape):
        return f"{key} has shape {tuple(value.shape)}, expected {len(entry.shape)} axes"
    for size, expected in zip(value.shape, entry.shape, strict=True):
        if isinstance(expected, str):
            expected = sizes.setdefault(expected, size)
        if size != expected:
            return f"{key} has shape {tuple(value.shape)}, expected {entry.shape}"
    if (
        entry.bound is not None
        and value.numel()
        and (value.min() < 0 or value.max() >= entry.bound)
    ):
        return f"{key} holds values outside [0, {entry.bound})"
    return None


def _is_entry_list(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(e, Entry) for e in value)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text):,} characters)"


def layout_problem(blob: Mapping[str, object], layout: Layout) -> str | None:
    """Why `blob` does not hold what `layout` says (None: it does)."""
    keys = set(blob) - set(_META)
    if keys != set(layout):
        missing, extra = sorted(set(layout) - keys), sorted(keys - set(layout))
        return f"its keys differ from its recipe's (missing {missing}, unexpected {extra})"
    sizes: dict[str, int] = {}
    for key, entry in layout.items():
        value = blob[key]
        if not isinstance(entry, Entry) and not _is_entry_list(entry):
            if type(value) is not type(entry) or value != entry:
                return f"{key} is {_short(value)}, expected {_short(entry)}"
            continue
        if isinstance(entry, list):
            if not isinstance(value, list) or len(value) != len(entry):
                return f"{key} is not a list of {len(entry)} tensors"
            pairs = [
                (f"{key}[{i}]", v, e) for i, (v, e) in enumerate(zip(value, entry, strict=True))
            ]
        else:
            pairs = [(key, value, entry)]
        for name, v, e in pairs:
            problem = _entry_problem(name, v, e, sizes)
            if problem is not None:
                return problem
    return None


def _reject(path: Path, why: str, redo: str) -> None:
    print(f"dws-theory: cache {path} is not used: {why}; {redo}", file=sys.stderr)
    return None


def _same_recipe(stored: object, recipe: Mapping[str, object]) -> bool | None:
    """Whether the recipes agree after a JSON round trip (tuples and lists compare equal);
    None when the stored one is not JSON at all."""
    try:
        return json.loads(json.dumps(stored)) == json.loads(json.dumps(recipe))
    except (TypeError, ValueError):
        return None


def read(
    path: Path, recipe: Mapping[str, object], redo: str, layout: Layout
) -> dict[str, object] | None:
    """The cached blob for ``recipe``, or None (with a message naming ``redo``, what the caller
    does instead, when a file was rejected)."""
    if not os.path.lexists(path):
        return None
    problem = regular_file_problem(path)
    if problem is not None:
        return _reject(path, problem, redo)
    try:
        blob = load_file(path)
    except Exception:  # a truncated or foreign file, or one replaced since the check
        return _reject(path, "it is not a readable torch file", redo)
    if not isinstance(blob, dict) or "checksum" not in blob or "recipe" not in blob:
        return _reject(path, "it has no checksum (written by an older version)", redo)
    same = _same_recipe(blob["recipe"], recipe)
    if same is None:
        return _reject(path, "its recipe is not JSON", redo)
    if not same:
        return _reject(path, "its recipe differs", redo)
    problem = layout_problem(blob, layout)  # before the checksum: it reads only dense tensors
    if problem is not None:
        return _reject(path, f"it does not hold what its recipe gives: {problem}", redo)
    if blob["checksum"] != checksum(blob):
        return _reject(path, "its checksum does not match its contents (corrupted)", redo)
    if not all(torch.isfinite(t).all() for t in _tensors_of(blob) if t.is_floating_point()):
        return _reject(path, "it holds non-finite values", redo)
    return blob


def write(path: Path, blob: Mapping[str, object], what: str) -> bool:
    """Write atomically; on an OS error (a full disk, a read-only folder) warn that ``what``
    is kept in memory only, and return False."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(path, blob)
        return True
    except OSError as exc:
        warnings.warn(
            f"could not write the cache {path} ({exc.strerror or exc}); {what} kept in memory "
            "for this run only",
            stacklevel=3,
        )
        return False
