"""`dws-theory` command line: thin; parses, calls the pipeline steps, prints or writes."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from .arguments import add_channel_arguments, add_shape_arguments, target_of
from .basis import Basis, enumerate_basis
from .build import add_build_parser
from .certify import Certificate, certify
from .codegen import add_generate_parser
from .docs import add_docs_parser
from .errors import EXIT_ERROR, EXIT_INTERRUPTED, EXPECTED, describe, strict_json
from .spec import WeightSpace


class _Parser(argparse.ArgumentParser):
    """Errors as one line and exit code 2, never a traceback or a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"dws-theory: error: {message}\n")


def dims_label(dims: Sequence[int]) -> str:
    return ",".join(str(d) for d in dims)


def short_widths(widths: str) -> str:
    """`2,64,64,...,64,1` as `2,64x300,1` (runs of three or more equal widths folded)."""
    runs: list[list] = []
    for w in widths.split(","):
        if runs and runs[-1][0] == w:
            runs[-1][1] += 1
        else:
            runs.append([w, 1])
    parts = []
    for w, n in runs:
        parts += [f"{w}x{n}"] if n >= 3 else [w] * n
    return ",".join(parts)


# -- basis -------------------------------------------------------------------------------------
def basis_json(target, basis: Basis) -> dict:
    """The `basis --json` contract: for an MLP `dims` and `symmetry`; for any other space
    `dims` is null, `symmetry` the mode it was derived with (null for a spec) and `spec`
    the space."""
    extra = {} if target.dims is not None else {"spec": str(target.space)}
    return {
        "dims": list(target.dims) if target.dims is not None else None,
        "symmetry": target.mode,
        **extra,
        "equivariant_linear": basis.equivariant_linear,
        "equivariant_bias": basis.equivariant_bias,
        "invariant_linear": basis.invariant_linear,
        "blocks": [{"out": a, "in": b, "count": n} for (a, b), n in basis.block_counts().items()],
    }


def _block_type(space: WeightSpace, out: str, inp: str) -> str:
    kind = {1: "b", 2: "W"}

    def letter(name: str) -> str:
        return kind.get(len(space.tensor(name).axes), "T")

    return f"{letter(out)} <- {letter(inp)}"


def basis_table(target, basis: Basis, c_in: int, c_out: int) -> str:
    space = basis.space
    lines = [
        f"weight space {target.title} ({target.mode or 'kinds from the spec'}): "
        f"{len(space.tensors)} tensors, P = {space.dimension}",
        "neuron sets: " + ", ".join(f"{s.name} size {s.size} {s.kind.value}" for s in space.sets),
        "",
    ]
    groups: dict[str, list[tuple[str, str, int]]] = {}
    for (a, b), n in basis.block_counts().items():
        groups.setdefault(_block_type(space, a, b), []).append((a, b, n))
    width = max(len(f"{a} <- {b}") for a, b, _ in sum(groups.values(), []))
    for group in ("W <- W", "W <- b", "b <- W", "b <- b"):
        rows = groups.pop(group, [])
        if rows:
            lines.append(f"{group}  (subtotal {sum(n for *_, n in rows)})")
            lines += [f"  {f'{a} <- {b}':<{width}}  {n:>10,}" for a, b, n in rows]
    for group, rows in groups.items():  # other tensor arities, from non-MLP front ends
        lines.append(f"{group}  (subtotal {sum(n for *_, n in rows)})")
        lines += [f"  {f'{a} <- {b}':<{width}}  {n:>10,}" for a, b, n in rows]
    lines += [
        "",
        f"equivariant linear  {basis.equivariant_linear:>12,}",
        f"equivariant bias    {basis.equivariant_bias:>12,}",
        f"invariant linear    {basis.invariant_linear:>12,}",
        f"parameters of one equivariant layer with {c_in} -> {c_out} channels: "
        f"{basis.parameter_count(c_in, c_out):,}",
    ]
    return "\n".join(lines)


def _run_basis(args: argparse.Namespace) -> int:
    target = target_of(args)
    basis = enumerate_basis(target.space)
    if args.json:
        print(strict_json(basis_json(target, basis), indent=2))
    else:
        print(basis_table(target, basis, args.in_channels, args.out_channels))
    return 0


def _add_basis(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("basis", help="count the equivariant basis, block by block")
    add_shape_arguments(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_channel_arguments(p, default=1)
    p.set_defaults(func=_run_basis)


# -- verify ------------------------------------------------------------------------------------
def certificate_text(cert: Certificate) -> str:
    lines = [
        f"equivariant linear {cert.equivariant_linear:,}, equivariant bias "
        f"{cert.equivariant_bias:,}, invariant linear {cert.invariant_linear:,}",
        "route               counted     enumerated  result  ran on",
    ]
    for r in cert.results:
        sizes = short_widths(WeightSpace.parse(r.ran_on).widths)
        where = f"reduced copy (widths {sizes})" if r.reduced else f"full shape (widths {sizes})"
        if r.classes:
            where = f"once per block class ({r.classes:,} classes)"
        lines.append(
            f"{r.name:<18}  {r.value:>10,}  {r.expected:>10,}   "
            f"{'pass' if r.passed else 'FAIL'}    {where}"
        )
        if r.note:
            lines.append(f"{'':<20}note: {r.note}")
        if r.mismatches:
            lines.append(f"{'':<20}disagrees on: {', '.join(r.mismatches[:12])}")
    lines.append("certificate: " + ("PASSED" if cert.passed else "FAILED"))
    return "\n".join(lines)


def _run_verify(args: argparse.Namespace) -> int:
    target = target_of(args)
    title = short_widths(dims_label(target.dims)) if target.dims is not None else target.title
    print(f"verifying {title} ({target.mode or 'kinds from the spec'})", file=sys.stderr)
    cert = certify(
        target.space,
        progress=lambda m: print(f"  route: {m}", file=sys.stderr),
        source=target.source,
    )
    if args.json:
        print(strict_json(cert.to_dict(), indent=2))
    else:
        print(certificate_text(cert))
    return 0 if cert.passed else 1


def _add_verify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="check the basis by independent routes")
    add_shape_arguments(p, optional_dims=True)
    p.add_argument("--json", action="store_true", help="machine-readable certificate")
    p.set_defaults(func=_run_verify)


# -- entry point ---------------------------------------------------------------------------------
# Subcommands whose modules import torch (seconds to load): the real parser is registered only
# when the command line names that command; otherwise a stub with the same name and help
# keeps `--help` and the "invalid choice" message complete, so `dws-theory --help`, a typo
# and `dws-theory basis` all start without loading torch.
# The help texts are those of the real parsers in dws_theory/inr/cli.py (a test compares them).
_TORCH_COMMANDS = {
    "data": (
        "dws_theory.inr.cli",
        "add_data_parser",
        "build or load an INR dataset and print its fit statistics",
    ),
    "train": (
        "dws_theory.inr.cli",
        "add_train_parser",
        "train a model on a weight-space task or on your own collection of networks",
    ),
}


def _version() -> str:
    from . import __version__

    return __version__


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; given the arguments, only the subcommands they can need are loaded."""
    args = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in args if not a.startswith("-")), None)
    parser = _Parser(prog="dws-theory", description="Equivariant layers for deep weight spaces.")
    parser.add_argument("--version", action="version", version=f"dws-theory {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    # Each module registers its own parser and sets `func`.
    for register in (
        _add_basis,
        _add_verify,
        add_generate_parser,
        add_docs_parser,
        add_build_parser,
    ):
        register(sub)
    for name, (module, function, help_text) in _TORCH_COMMANDS.items():
        if command == name:
            getattr(importlib.import_module(module), function)(sub)
        else:
            sub.add_parser(name, help=help_text)
    return parser


def _error(message: str, code: int = EXIT_ERROR) -> int:
    print(f"dws-theory: error: {message}", file=sys.stderr)
    return code


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush does
    not print a second error."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is not a real file (tests)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """The one error path: expected failures print one line and return 2 (130 for Ctrl-C);
    anything else is a bug and keeps its traceback."""
    try:
        try:
            args = build_parser(argv).parse_args(argv)
            return args.func(args)
        finally:  # a full disk or a closed pipe shows at the flush: report it here, too
            sys.stdout.flush()
    except KeyboardInterrupt:
        return _error("interrupted (Ctrl-C); nothing was left half-written", EXIT_INTERRUPTED)
    except BrokenPipeError as e:
        _silence_stdout()
        return _error(describe(e))
    except EXPECTED as e:
        return _error(describe(e))


if __name__ == "__main__":
    sys.exit(main())
