"""Atomic outputs: a file is complete or absent, never half-written.

Every file the project writes goes to a temporary name in its target directory (same file
system, so the final `os.replace` is atomic) and is renamed into place only after it was
written and flushed to disk. If anything fails (a full disk, a read-only folder, Ctrl-C,
SIGTERM), the temporary file is removed and the previous file, if any, is left untouched.

`staged(*dirs)` does the same for a group of files (`dws-theory build`): they are written
into hidden staging folders inside their targets and renamed into place together only when
the whole group succeeded; on failure the staging folders, and any target folder the group
created, are removed.

A process killed outright (SIGKILL, a power cut) cannot clean up. Temporary files and
staging folders therefore carry the writer's process id and host: the next write into the
same folder removes those whose process on this host is gone (`remove_stale`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import InputError

__all__ = [
    "STAGING_PREFIX",
    "check_file",
    "check_folder",
    "remove_stale",
    "replacing",
    "staged",
    "write_bytes",
    "write_text",
]

STAGING_PREFIX = ".dws-staging-"
# `<pid>-<host>-<random>`: who wrote a temporary, so that a later run can tell a dead
# writer's leftovers from a live writer's work.
_OWNER = re.compile(r"(?P<pid>[0-9]+)-(?P<host>[0-9a-f]{6})-[0-9a-f]+")
_LEGACY_AGE = 3600.0  # seconds: staging folders named before they carried their owner


def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


def _owner_token() -> str:
    return f"{os.getpid()}-{_host()}-{secrets.token_hex(4)}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # another user's process, or a number we cannot ask about: keep
    return True


def _dead_writer(owner: str) -> bool:
    match = _OWNER.fullmatch(owner)
    if match is None:
        return False
    return match["host"] == _host() and not _alive(int(match["pid"]))


def _temporary_name(path: Path) -> Path:
    """A hidden unique name beside `path`, never much longer than 64 characters (so a name
    the file system accepts for the target is accepted for its temporary too)."""
    return path.with_name(f".{path.name[:40]}.{_owner_token()}.tmp")


def _stale(entry: os.DirEntry) -> bool:
    name = entry.name
    if name.startswith(STAGING_PREFIX):
        owner = name[len(STAGING_PREFIX) :]
        if _OWNER.fullmatch(owner) is None:  # an older name: no owner recorded, go by age
            with contextlib.suppress(OSError):
                return time.time() - entry.stat(follow_symlinks=False).st_mtime > _LEGACY_AGE
            return False
        return _dead_writer(owner)
    if name.startswith(".") and name.endswith(".tmp"):
        return _dead_writer(name[:-4].rpartition(".")[2])
    return False


def remove_stale(folder: str | Path) -> list[Path]:
    """Remove the temporary files and staging folders in `folder` whose writer, a process
    on this host, no longer runs; returns what was removed. Never raises for a folder that
    cannot be read or an entry that is already gone."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not _stale(entry):
            continue
        path = Path(entry.path)
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    return removed


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
    _require_path(path)
    path = Path(path)
    temporary = _temporary_name(path)
    remove_stale(path.parent)
    try:
        yield temporary
        if not temporary.exists():
            raise FileNotFoundError(
                2, "the writer produced no file (expected one at the temporary path)", temporary
            )
        _fsync(temporary)
        os.replace(temporary, path)
    except OSError as e:
        # Name the real target: a write error names no file, an open one the temporary.
        if e.errno is not None and (e.filename is None or Path(e.filename) == temporary):
            raise type(e)(e.errno, e.strerror, str(path)) from e
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically; returns `path`."""
    _require_path(path)
    path = Path(path)
    with replacing(path) as temporary, open(temporary, "xb") as f:
        f.write(data)
    return path


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically (no newline translation); returns `path`."""
    return write_bytes(path, text.encode(encoding))


def _require_path(path: str | Path) -> None:
    """An empty string is no path (`Path("")` would quietly mean the current folder)."""
    if str(path) == "":
        raise InputError("expected a folder or file path, got an empty string")


def check_folder(folder: str | Path) -> None:
    """Raise the OSError that writing into `folder` would raise, without writing: the folder
    (or the nearest folder above it that exists) must be a writable directory. An empty
    path is refused (it is no folder, not the current one)."""
    _require_path(folder)
    target = Path(folder)
    probe = target
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        code = errno.EEXIST if probe == target else errno.ENOTDIR
        raise OSError(code, os.strerror(code), str(target))
    _check_writable(probe)


def check_file(path: str | Path) -> None:
    """Raise the OSError that writing the file `path` would raise, without writing: its
    folder must exist and be writable, and `path` must not be a folder or any other file
    that is not a regular one (a FIFO, a device). Run it before the work whose result goes
    there (a training run), not after."""
    _require_path(path)
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(target))
    if target.exists() and not target.is_file():  # a FIFO, a device: never replaced
        raise InputError(
            f"expected a regular file or a new name, got {str(target)!r}, which is neither "
            "(a FIFO, a device or a socket)"
        )
    folder = target.parent
    if not folder.exists():
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(folder))
    if not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder))
    _check_writable(folder)


def _check_writable(folder: Path) -> None:
    if os.access(folder, os.W_OK | os.X_OK):
        return
    code = errno.EACCES
    with contextlib.suppress(OSError, AttributeError):
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            code = errno.EROFS
    raise OSError(code, os.strerror(code), str(folder))


def _make_dirs(target: Path, created: list[Path]) -> None:
    """`mkdir -p target`, recording every folder it made (outermost first). A folder that
    another process makes at the same moment is used, not reported as an error."""
    missing = []
    folder = target
    while not folder.exists():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            if folder.is_dir():
                continue  # made by a concurrent writer: theirs, not ours to remove
            raise
        created.append(folder)
    if not target.is_dir():
        raise NotADirectoryError(20, "Not a directory", str(target))


@contextlib.contextmanager
def staged(*targets: str | Path) -> Iterator[tuple[Path, ...]]:
    """One empty staging folder per target folder; write the group's files there.

    When the block ends normally every file of every staging folder is renamed into its
    target (files only, no subfolders); when it raises (Ctrl-C and SIGTERM included),
    nothing reaches the targets, and the staging folders and every target folder made here
    are removed again. Staging folders that dead processes left are removed first."""
    created: list[Path] = []
    stages: list[Path] = []
    try:
        for given in targets:
            _require_path(given)
            target = Path(given)
            _make_dirs(target, created)
            remove_stale(target)
            stage = target / f"{STAGING_PREFIX}{_owner_token()}"
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
