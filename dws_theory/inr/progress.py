"""Progress of long work on stderr: a live bar on a terminal, whole lines in a log file.

On a terminal, :func:`progress` returns a tqdm bar (carriage-return updates, an ETA). When
stderr is a file or a pipe (a log, ``nohup``, CI), redrawing would leave hundreds of partial
lines, so it returns a :class:`LogProgress` instead: one line at every tenth of the work and
one at the end, each with the count, the elapsed time, an ETA and the latest postfix
(``loss=... val=...``), at most 11 lines per bar.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm.auto import tqdm

__all__ = ["Bar", "LogProgress", "progress"]


class LogProgress:
    """The part of tqdm's interface the project uses, printing whole lines."""

    def __init__(self, total: int, desc: str, unit: str, file: TextIO, disable: bool) -> None:
        self.total, self.desc, self.unit, self.file, self.disable = total, desc, unit, file, disable
        self.n = 0
        self.postfix = ""
        self.printed = 0  # tenths already reported
        self.start = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.n += n
        tenths = 10 * self.n // self.total if self.total > 0 else 10
        if tenths > self.printed and self.n < self.total:
            self.printed = tenths
            self._line()

    def set_postfix(self, refresh: bool = True, **values: object) -> None:
        self.postfix = "  ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if self.n > 0:
            self._line()
        self.disable = True

    def _line(self) -> None:
        if self.disable:
            return
        elapsed = time.perf_counter() - self.start
        share = self.n / self.total if self.total > 0 else 1.0
        eta = elapsed * (1 - share) / share if share > 0 else float("nan")
        text = (
            f"{self.desc}: {100 * share:3.0f}% {self.n:,}/{self.total:,} {self.unit}  "
            f"{elapsed:.0f} s elapsed, ETA {eta:.0f} s"
        )
        print(f"{text}  {self.postfix}".rstrip(), file=self.file, flush=True)


Bar = tqdm | LogProgress


def progress(
    total: int,
    desc: str,
    *,
    unit: str = "it",
    enabled: bool = True,
    file: TextIO | None = None,
    **tqdm_options: object,
) -> Bar:
    """A progress bar over ``total`` units on ``file`` (stderr): tqdm on a terminal, whole
    lines otherwise."""
    out = sys.stderr if file is None else file
    isatty = getattr(out, "isatty", None)
    if callable(isatty) and isatty():
        return tqdm(
            total=total, desc=desc, unit=unit, file=out, disable=not enabled, **tqdm_options
        )
    return LogProgress(total, desc, unit, out, disable=not enabled)
