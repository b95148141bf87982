"""`dws-theory generate`: write one standalone layer module and print its path."""

from __future__ import annotations

import argparse

from ..arguments import add_shape_arguments, target_of
from .backends import BACKENDS, DEFAULT_BACKEND
from .files import write_target

__all__ = ["add_generate_parser"]


def _run_generate(args: argparse.Namespace) -> int:
    print(write_target(target_of(args), args.out, args.backend))
    return 0


def add_generate_parser(subparsers: argparse._SubParsersAction) -> None:
    """`dws-theory generate DIMS|--module FILE.py:NAME|--spec SPEC [--symmetry M] [--out DIR]
    [--backend B]`."""
    p = subparsers.add_parser("generate", help="write a standalone PyTorch layer module")
    add_shape_arguments(p)
    p.add_argument("--out", default="generated", metavar="DIR", help="output folder")
    p.add_argument(
        "--backend",
        choices=sorted(BACKENDS),
        default=DEFAULT_BACKEND,
        help="eager: plain PyTorch, the reference (default); compiled: the same module with "
        "the layers' forward run through torch.compile, eager where that cannot be built; "
        "fused: compiled, with C kernels for the identity terms (CPU); triton: compiled, with "
        "Triton kernels for them (CUDA) (written as <stem>_<backend>.py)",
    )
    p.set_defaults(func=_run_generate)
