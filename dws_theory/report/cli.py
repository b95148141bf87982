"""`dws-theory docs`: write the derivation page and its figures, print the page's path."""

from __future__ import annotations

import argparse
import sys

from ..arguments import add_channel_arguments, add_shape_arguments, path_text, target_of
from .page import DEFAULT_DOCS_DIR, write_page

__all__ = ["add_docs_parser"]


def _run_docs(args: argparse.Namespace) -> int:
    path = write_page(
        target_of(args),
        args.out,
        (args.in_channels, args.out_channels),
        progress=lambda m: print(f"  docs: {m}", file=sys.stderr),
    )
    print(path)
    return 0


def add_docs_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("docs", help="write the derivation document (Markdown + figures)")
    add_shape_arguments(p)
    p.add_argument(
        "--out",
        type=path_text,
        default=DEFAULT_DOCS_DIR,
        metavar="DIR",
        help=f"output directory (default {DEFAULT_DOCS_DIR})",
    )
    add_channel_arguments(p)
    p.set_defaults(func=_run_docs)
