"""Cache files of built data (fitted INRs, the CNN zoo): checksummed, checked on load, written
atomically.

A blob is a dict holding its ``recipe`` (JSON-able: everything that determined it), tensors or
lists of tensors, and a ``checksum`` over the recipe and every tensor. A file is used only if it
loads, has the recipe asked for, matches its checksum and holds finite values; otherwise the
caller rebuilds, with a one-line message saying why.
"""

from __future__ import annotations

import hashlib
import json
import sys
import warnings
from pathlib import Path

import torch
from torch import Tensor

from ... import atomic

__all__ = ["checksum", "read", "write"]


def _tensors_of(blob: dict[str, object]) -> list[Tensor]:
    out: list[Tensor] = []
    for key in sorted(k for k in blob if k not in ("recipe", "checksum")):
        value = blob[key]
        if isinstance(value, Tensor):
            out.append(value)
        elif isinstance(value, list):
            out += [v for v in value if isinstance(v, Tensor)]
    return out


def checksum(blob: dict[str, object]) -> str:
    """SHA-256 of the recipe and of every tensor's dtype, shape and bytes."""
    h = hashlib.sha256(json.dumps(blob["recipe"], sort_keys=True).encode())
    for t in _tensors_of(blob):
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _reject(path: Path, why: str, redo: str) -> None:
    print(f"dws-theory: cache {path} is not used: {why}; {redo}", file=sys.stderr)
    return None


def read(path: Path, recipe: dict[str, object], redo: str) -> dict[str, object] | None:
    """The cached blob for ``recipe``, or None (with a message naming ``redo``, what the caller
    does instead, when a file was rejected)."""
    if not path.exists():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a truncated or foreign file
        return _reject(path, "it is not a readable torch file", redo)
    if not isinstance(blob, dict) or "checksum" not in blob:
        return _reject(path, "it has no checksum (written by an older version)", redo)
    # JSON round trip so tuples and lists compare equal.
    if json.loads(json.dumps(blob.get("recipe"))) != json.loads(json.dumps(recipe)):
        return _reject(path, "its recipe differs", redo)
    if blob["checksum"] != checksum(blob):
        return _reject(path, "its checksum does not match its contents (corrupted)", redo)
    if not all(torch.isfinite(t).all() for t in _tensors_of(blob) if t.is_floating_point()):
        return _reject(path, "it holds non-finite values", redo)
    return blob


def write(path: Path, blob: dict[str, object], what: str) -> bool:
    """Write atomically; on an OS error warn that ``what`` is kept in memory only, False."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic.replacing(path) as tmp:
            torch.save(blob, tmp)
        return True
    except OSError as exc:
        warnings.warn(
            f"could not write the cache {path} ({exc.strerror or exc}); {what} kept in memory "
            "for this run only",
            stacklevel=3,
        )
        return False
