"""Command-line argument types shared by every subcommand (no imports of the commands).

Each command module registers its own parser with these, so the CLI and the commands never
import each other in a circle. A command that takes a shape takes one of DIMS (an MLP's
widths), `--module FILE.py:NAME` (a torch module, traced) or `--spec SPEC` (a spec string);
`target_of(args)` turns whichever was given into one `Target`.

Every type checks its value when the command line is parsed and raises
`argparse.ArgumentTypeError` with "expected X, got Y", which the parser prints as one line
(`dws-theory: error: argument --n: expected a positive integer, got '0'`) with exit code 2.
Values are echoed back shortened (`shown`), so a 5,000-digit number does not flood the
terminal.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable

from .spec import MODES, SpecError, parse_dims, parse_mode, shown

__all__ = [
    "DEFAULT_DIMS",
    "MAX_DEPTH",
    "MAX_SEED",
    "MAX_TENSORS",
    "add_channel_arguments",
    "add_shape_arguments",
    "bounded_int",
    "finite_float",
    "non_negative_float",
    "non_negative_int",
    "positive_float",
    "positive_int",
    "probability",
    "seed",
    "shown",
    "target_of",
]

DEFAULT_DIMS = "2,32,32,1"
# The deepest MLP the commands take: the engine keeps all 4 M^2 blocks, about 1 KB each.
# Measured on 2 busy cores: `verify` of 2, 300 hidden layers of 64, 1 in 22 s and 400 MB;
# of 2, 499 hidden layers of 64, 1 (depth 500) in 115 s and 830 MB (a test run beside it).
MAX_DEPTH = 500
# The same guard for any weight space (--spec, --module): at most as many tensors as an MLP
# of MAX_DEPTH layers has (a weight and a bias per layer), so at most 4 MAX_DEPTH^2 blocks.
MAX_TENSORS = 2 * MAX_DEPTH
# Seeds go to numpy's and torch's generators; 2**32 - 1 is the largest both take everywhere.
MAX_SEED = 2**32 - 1


def _integer(text: str, expected: str) -> int:
    """`int(text)` for decimal integers only (no `1e3`, no `0x10`, no 5,000 digits)."""
    stripped = text.strip()
    digits = stripped.removeprefix("-").removeprefix("+")
    if not digits.isdigit() or not digits.isascii() or len(digits) > 30:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {shown(text)}")
    return int(stripped)


def bounded_int(
    low: int | None = None, high: int | None = None, expected: str | None = None
) -> Callable[[str], int]:
    """An argparse type for integers in [low, high] (either end open when None)."""
    if expected is None:
        if low is not None and high is not None:
            expected = f"an integer from {low:,} to {high:,}"
        elif low is not None:
            expected = f"an integer of at least {low:,}"
        elif high is not None:
            expected = f"an integer of at most {high:,}"
        else:
            expected = "an integer"

    def parse(text: str) -> int:
        value = _integer(text, expected)
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {shown(text)}")
        return value

    parse.__name__ = "integer"  # argparse names the type in some messages
    return parse


positive_int = bounded_int(1, None, "a positive integer")
non_negative_int = bounded_int(0, None, "a non-negative integer")
seed = bounded_int(0, MAX_SEED, f"a seed from 0 to {MAX_SEED:,} (2**32 - 1)")


def _float(text: str, expected: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {shown(text)}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {shown(text)}")
    return value


def finite_float(text: str) -> float:
    """Any finite float (no nan, no inf)."""
    return _float(text, "a finite number")


def positive_float(text: str) -> float:
    """A finite float above zero: learning rates, step sizes."""
    value = _float(text, "a finite positive number")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite positive number, got {shown(text)}")
    return value


def non_negative_float(text: str) -> float:
    """A finite float of at least zero: weight decay, regularisation strengths."""
    value = _float(text, "a finite non-negative number")
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"expected a finite non-negative number, got {shown(text)}"
        )
    return value


def probability(text: str) -> float:
    """A float in [0, 1): dropout rates."""
    value = _float(text, "a number from 0 up to (not including) 1")
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(
            f"expected a number from 0 up to (not including) 1, got {shown(text)}"
        )
    return value


class _DefaultDims(tuple):
    """The default widths, told apart from the same widths given on the command line."""


def _mode(text: str) -> str:
    try:
        return parse_mode(text)
    except SpecError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _dims(text: str) -> tuple[int, ...]:
    try:
        dims = parse_dims(text)
    except SpecError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    depth = len(dims) - 1
    if depth > MAX_DEPTH:
        raise argparse.ArgumentTypeError(
            f"expected at most {MAX_DEPTH} layers (the engine keeps all 4 M^2 blocks: "
            f"{4 * MAX_DEPTH**2:,} at depth {MAX_DEPTH}), got {depth:,} layers "
            f"({4 * depth**2:,} blocks)"
        )
    return dims


def _input_shape(text: str) -> tuple[int, ...]:
    """`--input-shape 2,3,32,32` -> (2, 3, 32, 32): a batch first, at most 8 sizes."""
    items = [p.strip() for p in str(text).split(",")]
    if any(not re.fullmatch(r"[0-9]{1,4}", p) for p in items) or len(items) > 8:
        raise argparse.ArgumentTypeError(
            f"expected at most 8 comma-separated sizes like 2,3,32,32, got {shown(text)}"
        )
    shape = tuple(int(p) for p in items)
    if any(s < 1 or s > 4096 for s in shape):
        raise argparse.ArgumentTypeError(f"expected sizes from 1 to 4,096, got {shown(text)}")
    return shape


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
    parser.add_argument(
        "--input-shape",
        type=_input_shape,
        default=None,
        metavar="SHAPE",
        help="with --module: the shape of an input to trace it on, e.g. 2,3,32,32 (default: "
        "made from its first layer)",
    )
    parser.add_argument(
        "--no-module-check",
        action="store_true",
        help="with --module: skip checking the space against the module's function",
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
    if args.module is None and (args.input_shape is not None or args.no_module_check):
        raise SpecError("--input-shape and --no-module-check need --module FILE.py:NAME")
    if args.spec is not None:
        if args.symmetry is not None:
            raise SpecError("--symmetry has no meaning with --spec: the spec gives the set kinds")
        target = from_spec(args.spec)
    elif args.module is not None:
        target = from_module_file(
            args.module, args.symmetry or "hidden", args.input_shape, not args.no_module_check
        )
    else:
        return from_dims(args.dims, args.symmetry or "hidden")  # DIMS' depth checked above
    tensors = len(target.space.tensors)
    if tensors > MAX_TENSORS:
        raise SpecError(
            f"expected at most {MAX_TENSORS} tensors (the engine keeps all blocks: "
            f"{MAX_TENSORS**2:,} at {MAX_TENSORS} tensors), got {tensors:,} tensors "
            f"({tensors**2:,} blocks)"
        )
    return target


def add_channel_arguments(parser: argparse.ArgumentParser, default: int = 16) -> None:
    """--in-channels / --out-channels, for parameter counts."""
    for side in ("in", "out"):
        parser.add_argument(
            f"--{side}-channels",
            type=bounded_int(1, 1_000_000, "a positive integer of at most 1,000,000"),
            default=default,
            help=f"{side}put channels for the parameter count (default {default})",
        )
