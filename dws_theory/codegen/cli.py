"""`dws-theory generate`: write one standalone layer module and print its path."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..arguments import add_shape_arguments, path_text, target_of
from ..basis import Basis, enumerate_basis
from .backends import BACKENDS, DEFAULT_BACKEND, backend_stem, render
from .files import write_source
from .lower import lower
from .plan import LayerPlan

if TYPE_CHECKING:
    from ..frontends.target import Target

__all__ = ["add_generate_parser", "target_plan", "write_target"]


def target_plan(target: Target, basis: Basis | None = None) -> LayerPlan:
    """The plan of a target (its basis enumerated unless given), labelled with its mode
    and the arguments that rebuild it."""
    basis = basis if basis is not None else enumerate_basis(target.space)
    return lower(basis, mode=target.mode, origin=target.origin)


def write_target(
    target: Target, out_dir: str | Path = "generated", backend: str = DEFAULT_BACKEND
) -> Path:
    """Write the module of a target (`<target.stem>.py`, `<target.stem>_<backend>.py` for a
    backend other than the default) under out_dir; return its path."""
    source = render(target_plan(target), backend)
    return write_source(backend_stem(target.stem, backend), source, out_dir)


def _run_generate(args: argparse.Namespace) -> int:
    print(write_target(target_of(args), args.out, args.backend))
    return 0


def backend_help() -> str:
    """`--backend`'s help: every registered backend by name (the registry is the list)."""
    others = sorted(set(BACKENDS) - {DEFAULT_BACKEND})
    return (
        f"one of {', '.join(sorted(BACKENDS))}: {DEFAULT_BACKEND} is plain PyTorch, the "
        f"reference (default); {', '.join(others)} print the same layers for faster runs "
        "(README, section A tour), written as <stem>_<backend>.py"
    )


def add_generate_parser(subparsers: argparse._SubParsersAction) -> None:
    """`dws-theory generate DIMS|--module FILE.py:NAME|--spec SPEC [--symmetry M] [--out DIR]
    [--backend B]`."""
    p = subparsers.add_parser("generate", help="write a standalone PyTorch layer module")
    add_shape_arguments(p)
    p.add_argument(
        "--out", type=path_text, default="generated", metavar="DIR", help="output folder"
    )
    p.add_argument(
        "--backend",
        choices=sorted(BACKENDS),
        default=DEFAULT_BACKEND,
        help=backend_help(),
    )
    p.set_defaults(func=_run_generate)
