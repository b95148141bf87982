"""Command-line argument types shared by every subcommand (no imports of the commands).

Each command module registers its own parser with these, so the CLI and the commands never
import each other in a circle. A command that takes a shape takes one of DIMS (an MLP's
widths), `--module FILE.py:NAME` (a torch module, traced) or `--spec SPEC` (a spec string);
`target_of(args)` turns whichever was given into one `Target`.
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
    "target_of",
]

DEFAULT_DIMS = "2,32,32,1"


class _DefaultDims(tuple):
    """The default widths, told apart from the same widths given on the command line."""


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
    """DIMS, --module, --spec and --symmetry, shared by every command that takes a shape."""
    default = f" (default {DEFAULT_DIMS})" if optional_dims else ""
    parser.add_argument(
        "dims",
        nargs="?",
        type=_dims,
        default=_DefaultDims(parse_dims(DEFAULT_DIMS)) if optional_dims else None,
        metavar="DIMS",
        help=f"MLP widths d_0,...,d_M, e.g. 2,32,32,1{default}",
    )
    parser.add_argument(
        "--module",
        metavar="FILE.py:NAME",
        help="a torch module: NAME in FILE is an nn.Module or a function returning one",
    )
    parser.add_argument(
        "--spec",
        metavar="SPEC",
        help="a weight space spec 'sets[name:size:kind ...] tensors[T(a,b) ...]'",
    )
    parser.add_argument(
        "--symmetry",
        type=_mode,
        default=None,
        metavar="MODE",
        help=f"one of {', '.join(MODES)} (aliases hnp, np); default hidden",
    )


def target_of(args: argparse.Namespace):
    """The one Target that DIMS, --module or --spec names (SpecError when not exactly one)."""
    from .frontends.target import from_dims, from_module_file, from_spec

    dims = None if isinstance(args.dims, _DefaultDims) else args.dims
    given = [n for n, v in (("DIMS", dims), ("--module", args.module), ("--spec", args.spec)) if v]
    if len(given) > 1:
        raise SpecError(f"expected one of DIMS, --module, --spec, got {', '.join(given)}")
    if not given and args.dims is None:
        raise SpecError("expected DIMS (e.g. 2,32,32,1), --module FILE.py:NAME or --spec SPEC")
    if args.spec is not None:
        if args.symmetry is not None:
            raise SpecError("--symmetry has no meaning with --spec: the spec gives the set kinds")
        return from_spec(args.spec)
    if args.module is not None:
        return from_module_file(args.module, args.symmetry or "hidden")
    return from_dims(args.dims, args.symmetry or "hidden")


def add_channel_arguments(parser: argparse.ArgumentParser, default: int = 16) -> None:
    """--in-channels / --out-channels, for parameter counts."""
    for side in ("in", "out"):
        parser.add_argument(
            f"--{side}-channels",
            type=positive_int,
            default=default,
            help=f"{side}put channels for the parameter count (default {default})",
        )
