"""Atomic outputs: a file is complete or absent, never half-written.

Every file the project writes goes to a temporary name in its target directory (same file
system, so the final `os.replace` is atomic) and is renamed into place only after it was
written and flushed to disk. If anything fails (a full disk, a read-only folder, Ctrl-C),
the temporary file is removed and the previous file, if any, is left untouched.

`staged(*dirs)` does the same for a group of files (`dws-theory build`): they are written
into hidden staging folders inside their targets and renamed into place together only when
the whole group succeeded; on failure the staging folders, and any target folder the group
created, are removed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

__all__ = ["STAGING_PREFIX", "check_folder", "replacing", "staged", "write_bytes", "write_text"]

STAGING_PREFIX = ".dws-staging-"


def _temporary_name(path: Path) -> Path:
    """A hidden unique name beside `path`, never much longer than 64 characters (so a name
    the file system accepts for the target is accepted for its temporary too)."""
    return path.with_name(f".{path.name[:40]}.{secrets.token_hex(6)}.tmp")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` for the caller to write; renamed onto `path` when the
    block ends normally, removed when it raises (or when nothing was written)."""
    path = Path(path)
    temporary = _temporary_name(path)
    try:
        yield temporary
        if not temporary.exists():
            raise FileNotFoundError(
                2, "the writer produced no file (expected one at the temporary path)", temporary
            )
        _fsync(temporary)
        os.replace(temporary, path)
    except OSError as e:
        if e.filename is not None and Path(e.filename) == temporary:  # name the real target
            raise type(e)(e.errno, e.strerror, str(path)) from e
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically; returns `path`."""
    path = Path(path)
    with replacing(path) as temporary, open(temporary, "xb") as f:
        f.write(data)
    return path


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically (no newline translation); returns `path`."""
    return write_bytes(path, text.encode(encoding))


def check_folder(folder: str | Path) -> None:
    """Raise the OSError that writing into `folder` would raise, without writing: the folder
    (or the nearest folder above it that exists) must be a writable directory."""
    target = Path(folder)
    probe = target
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        code = errno.EEXIST if probe == target else errno.ENOTDIR
        raise OSError(code, os.strerror(code), str(target))
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OSError(errno.EACCES, os.strerror(errno.EACCES), str(probe))


def _make_dirs(target: Path, created: list[Path]) -> None:
    """`mkdir -p target`, recording every folder it made (outermost first)."""
    missing = []
    folder = target
    while not folder.exists():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for folder in reversed(missing):
        folder.mkdir()
        created.append(folder)
    if not target.is_dir():
        raise NotADirectoryError(20, "Not a directory", str(target))


@contextlib.contextmanager
def staged(*targets: str | Path) -> Iterator[tuple[Path, ...]]:
    """One empty staging folder per target folder; write the group's files there.

    When the block ends normally every file of every staging folder is renamed into its
    target (files only, no subfolders); when it raises, nothing reaches the targets, and
    the staging folders and every target folder made here are removed again."""
    created: list[Path] = []
    stages: list[Path] = []
    try:
        for target in map(Path, targets):
            _make_dirs(target, created)
            stage = target / f"{STAGING_PREFIX}{secrets.token_hex(4)}"
            stage.mkdir()
            stages.append(stage)
        yield tuple(stages)
        for stage in stages:
            for item in sorted(stage.iterdir()):
                if not item.is_file():
                    raise IsADirectoryError(21, "staged outputs must be files", str(item))
                os.replace(item, stage.parent / item.name)
    except BaseException:
        for stage in stages:
            shutil.rmtree(stage, ignore_errors=True)
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if still empty
        raise
    for stage in stages:
        shutil.rmtree(stage, ignore_errors=True)
