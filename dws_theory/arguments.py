"""Command-line argument types shared by every subcommand (no imports of the commands).

Each command module registers its own parser with these, so the CLI and the commands never
import each other in a circle.
"""

from __future__ import annotations

import argparse
import math

from .spec import MODES, SpecError, parse_dims, parse_mode

__all__ = [
    "DEFAULT_DIMS",
    "MAX_SEED",
    "add_channel_arguments",
    "add_shape_arguments",
    "positive_int",
    "seed",
    "positive_float",
    "nonnegative_float",
]

DEFAULT_DIMS = "2,32,32,1"


def _mode(text: str) -> str:
    try:
        return parse_mode(text)
    except SpecError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _dims(text: str) -> tuple[int, ...]:
    try:
        return parse_dims(text)
    except SpecError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed accepts up to this


def seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(
            f"expected a seed between 0 and 2**63 - 1, got {text[:40]!r}"
        )
    return value


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text[:40]!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text[:40]!r}")
    return value


def positive_float(text: str) -> float:
    value = _finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite positive number, got {text[:40]!r}")
    return value


def nonnegative_float(text: str) -> float:
    value = _finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text[:40]!r}")
    return value


def add_shape_arguments(parser: argparse.ArgumentParser, optional_dims: bool = False) -> None:
    """DIMS and --symmetry, shared by every command that takes a shape."""
    if optional_dims:
        parser.add_argument(
            "dims",
            nargs="?",
            type=_dims,
            default=parse_dims(DEFAULT_DIMS),
            metavar="DIMS",
            help=f"widths d_0,...,d_M (default {DEFAULT_DIMS})",
        )
    else:
        parser.add_argument(
            "dims", type=_dims, metavar="DIMS", help="widths d_0,...,d_M, e.g. 2,32,32,1"
        )
    parser.add_argument(
        "--symmetry",
        type=_mode,
        default="hidden",
        metavar="MODE",
        help=f"one of {', '.join(MODES)} (aliases hnp, np); default hidden",
    )


def add_channel_arguments(parser: argparse.ArgumentParser, default: int = 16) -> None:
    """--in-channels / --out-channels, for parameter counts."""
    for side in ("in", "out"):
        parser.add_argument(
            f"--{side}-channels",
            type=positive_int,
            default=default,
            help=f"{side}put channels for the parameter count (default {default})",
        )
