"""Expected failures of the command line, each said in one line.

`dws-theory` has one error path (`cli.main`): every failure a user can cause (a bad value,
an output path that is a file or read-only or on a full disk, a closed pipe, Ctrl-C or
SIGTERM, a cost over a limit) is turned into one line `dws-theory: error: ...` that says
what was expected, and exit code 2 (130 for Ctrl-C, 143 for SIGTERM). A traceback means a
bug in the project.

Commands raise `CommandError` for failures of their own (a result that cannot be written as
strict JSON, a cost over the machine's memory); `describe` turns any expected exception into
its line, never longer than `MAX_LINE` characters.

This module imports nothing but the standard library: the command line imports it before
anything else, so that Ctrl-C while the rest loads is already reported in one line.
"""

from __future__ import annotations

import errno
import json
import math
from collections.abc import Iterator

__all__ = [
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_TERMINATED",
    "EXPECTED",
    "MAX_LINE",
    "CommandError",
    "InputError",
    "SpecError",
    "Terminated",
    "cut",
    "describe",
    "shown",
    "strict_json",
]

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_TERMINATED = 143  # 128 + SIGTERM
MAX_LINE = 300  # the longest error line: a message that echoes a pasted file is cut


def cut(text: str, limit: int) -> str:
    """`text` itself up to `limit` characters, else its head and its length, about `limit`
    characters in all."""
    if len(text) <= limit:
        return text
    return f"{text[: max(limit - 20, 1)]}... ({len(text):,} characters)"


def shown(value: object, limit: int = 60) -> str:
    """`repr(value)` for an error message, cut to about `limit` characters (a 5,000-digit
    number or a pasted file is not echoed back in full)."""
    return cut(repr(value), limit)


class SpecError(ValueError):
    """A specification that cannot describe a weight space; the message says what was expected."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (what `timeout`, CI runners and `kill` send), raised where the signal arrives
    as Ctrl-C is, so every cleanup that Ctrl-C runs runs for it too."""


# What a path that failed with each errno was expected to be.
_PATH_EXPECTED = {
    errno.ENOTDIR: "a directory, but part of the path is a file",
    errno.EEXIST: "a directory, but a file of that name exists",
    errno.EISDIR: "a file, but the path is a directory",
    errno.EACCES: "a path this user may write, but permission was denied",
    errno.EPERM: "a path this user may write, but the operation was not permitted",
    errno.EROFS: "a writable path, but the file system is read-only",
    errno.ENOSPC: "free space for the file, but the device is full",
    errno.EDQUOT: "free space for the file, but the disk quota is exceeded",
    errno.EFBIG: "room for the file, but it is larger than this process may write",
    errno.ENAMETOOLONG: "a shorter path, but a file name is longer than the system allows",
    errno.ENOENT: "an existing path, but there is no such file or directory",
}


class CommandError(Exception):
    """An expected failure of a command; the message says what was expected and what it got."""


class InputError(CommandError, ValueError):
    """A bad value from the caller (a task, a setting, a data file): a ValueError to Python
    callers, one line on the command line."""


EXPECTED = (CommandError, SpecError, OSError, MemoryError)
"""Exceptions `cli.main` reports in one line (KeyboardInterrupt is reported separately)."""


def _shown_path(path: object) -> str:
    """A path for a message: whole up to 160 characters, else its last 140 (the end of a
    path says more than its start)."""
    text = str(path)
    return repr(text) if len(text) <= 160 else f"'...{text[-140:]}' ({len(text):,} characters)"


def _path_message(e: OSError) -> str:
    where = [_shown_path(f) for f in (e.filename, e.filename2) if f is not None]
    what = f"{e.strerror or type(e).__name__}"
    if where:
        what += " (" + " -> ".join(where) + ")"
    expected = _PATH_EXPECTED.get(e.errno)
    return f"{what}: expected {expected}" if expected else what


def describe(exc: BaseException) -> str:
    """One line for an expected failure (no `dws-theory: error:` prefix)."""
    if isinstance(exc, BrokenPipeError):
        return "the output was closed before everything was written (broken pipe)"
    if isinstance(exc, OSError):
        return _path_message(exc)
    if isinstance(exc, MemoryError):
        return (
            "out of memory: the command needed more memory than this machine could give; "
            "expected a smaller shape or data set"
        )
    text = str(exc).strip().splitlines()
    return cut(text[0] if text else type(exc).__name__, MAX_LINE)


def _non_finite(value: object, path: str = "") -> Iterator[str]:
    """Paths (`$.a[2].b`) of the non-finite floats inside a JSON-able value."""
    if isinstance(value, float) and not math.isfinite(value):
        yield path or "$"
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _non_finite(item, f"{path or '$'}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _non_finite(item, f"{path or '$'}[{i}]")


def strict_json(data: object, **kwargs: object) -> str:
    """`json.dumps` that refuses NaN and infinities (they are not JSON) with a message naming
    where they are, instead of writing `NaN` that no strict parser reads."""
    bad = list(_non_finite(data))
    if bad:
        raise CommandError(
            f"expected finite numbers in the JSON result, got non-finite values at "
            f"{', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}"
        )
    return json.dumps(data, allow_nan=False, **kwargs)
