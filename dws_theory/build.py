"""`dws-theory build`: basis -> verify -> generate -> docs, in one go.

Each step is the pipeline's own function; `build` only sequences them, reports progress and
times each step. A failed certificate stops the build before anything is written: a layer
or a derivation is only emitted for a basis that passed every independent check. The files
of a build appear together or not at all (`atomic.staged`): if any step fails, no module,
page or figure reaches the output folders.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .arguments import add_channel_arguments, add_shape_arguments
from .atomic import check_folder, staged
from .basis import Basis, enumerate_basis
from .certify import Certificate, certify
from .docs import DEFAULT_DOCS_DIR
from .spec import WeightSpace, mlp, parse_dims, parse_mode

__all__ = ["BuildResult", "build", "build_summary", "add_build_parser"]

DEFAULT_CODE_DIR = "generated"


@dataclass(frozen=True)
class BuildResult:
    dims: tuple[int, ...]
    mode: str
    basis: Basis
    certificate: Certificate
    module: Path | None  # None when the certificate failed (nothing written)
    derivation: Path | None
    figures: tuple[Path, ...]
    seconds: tuple[tuple[str, float], ...]  # wall time per step

    @property
    def passed(self) -> bool:
        return self.certificate.passed


def build(
    dims: Sequence[int] | str,
    mode: str = "hidden",
    out_code: str | Path = DEFAULT_CODE_DIR,
    out_docs: str | Path | None = None,
    channels: tuple[int, int] = (16, 16),
    progress: Callable[[str], None] | None = None,
    enumerator: Callable[[WeightSpace], Basis] = enumerate_basis,
) -> BuildResult:
    """Run the whole pipeline for one MLP shape. `enumerator` is the enumeration under test
    (tests pass a broken one to see the build refuse to write anything)."""
    from .codegen import write_module
    from .docs import DEFAULT_DOCS_DIR, derivation_stem, write_derivation

    say = progress or (lambda _msg: None)
    dims = parse_dims(dims)
    mode = parse_mode(mode)
    out_docs = DEFAULT_DOCS_DIR if out_docs is None else out_docs
    for folder in (out_code, out_docs):  # fail before the work, not after it
        check_folder(folder)
    space = mlp(dims, mode)
    seconds: list[tuple[str, float]] = []

    def timed(step: str, fn: Callable[[], object]) -> object:
        start = time.perf_counter()
        value = fn()
        seconds.append((step, time.perf_counter() - start))
        return value

    say(f"[1/4] basis: enumerating orbit patterns of {space.dimension:,} weights")
    basis = timed("basis", lambda: enumerator(space))
    say(
        f"      {basis.equivariant_linear:,} equivariant linear, {basis.equivariant_bias:,} "
        f"bias, {basis.invariant_linear:,} invariant"
    )
    say("[2/4] verify: certifying by independent routes")
    cert = timed(
        "verify",
        lambda: certify(space, progress=lambda m: say(f"      route: {m}"), enumerator=enumerator),
    )
    say(f"      certificate {'passed' if cert.passed else 'FAILED'}")
    if not cert.passed:
        say("      stopping: nothing is generated from a basis that failed its certificate")
        return BuildResult(dims, mode, basis, cert, None, None, (), tuple(seconds))
    # Both steps write into staging folders; their files are renamed into place only when
    # both succeeded, so a failure (a read-only docs folder, a full disk) leaves no half build.
    with staged(out_code, out_docs) as (code_stage, docs_stage):
        say(f"[3/4] generate: writing the layer module to {out_code}/")
        module = timed("generate", lambda: write_module(dims, mode, code_stage))
        say(f"[4/4] docs: writing the derivation to {out_docs}/")
        derivation = timed(
            "docs",
            lambda: write_derivation(
                dims,
                mode,
                docs_stage,
                channels,
                basis=basis,
                certificate=cert,
                progress=lambda m: say(f"      {m}"),
            ),
        )
    module, derivation = Path(out_code) / module.name, Path(out_docs) / derivation.name
    stem = derivation_stem(dims, mode)
    figures = tuple(sorted(Path(out_docs).glob(f"{stem}_*.png")))
    return BuildResult(dims, mode, basis, cert, module, derivation, figures, tuple(seconds))


def build_summary(result: BuildResult, channels: tuple[int, int] = (16, 16)) -> str:
    """The closing summary: counts, certificate status, paths written, step times."""
    b, c_in, c_out = result.basis, *channels
    lines = [
        f"build {','.join(map(str, result.dims))} ({result.mode}): "
        f"{'OK' if result.passed else 'FAILED'}",
        f"  weight space P = {b.space.dimension:,}",
        f"  equivariant linear {b.equivariant_linear:,}, equivariant bias "
        f"{b.equivariant_bias:,}, invariant linear {b.invariant_linear:,}",
        f"  parameters with {c_in} -> {c_out} channels: {b.parameter_count(c_in, c_out):,}",
        "  certificate: "
        + ("PASSED" if result.passed else "FAILED")
        + " ("
        + ", ".join(
            f"{r.name} {'pass' if r.passed else 'FAIL'}" for r in result.certificate.results
        )
        + ")",
    ]
    if result.module is not None:
        lines.append(f"  module:     {result.module}")
    if result.derivation is not None:
        lines.append(f"  derivation: {result.derivation}")
    for fig in result.figures:
        lines.append(f"  figure:     {fig}")
    if not result.passed:
        lines.append("  nothing written: the certificate failed")
    lines.append("  time: " + ", ".join(f"{step} {s:.2f} s" for step, s in result.seconds))
    return "\n".join(lines)


def _run_build(args: argparse.Namespace) -> int:
    channels = (args.in_channels, args.out_channels)
    result = build(
        args.dims,
        args.symmetry,
        args.out_code,
        args.out_docs,
        channels,
        progress=lambda m: print(m, file=sys.stderr),
    )
    print(build_summary(result, channels))
    return 0 if result.passed else 1


def add_build_parser(subparsers: argparse._SubParsersAction) -> None:
    """`dws-theory build [DIMS] [--symmetry MODE] [--out-code DIR] [--out-docs DIR]`."""
    p = subparsers.add_parser(
        "build", help="basis, verify, generate and docs in one go (exit 1 if verify fails)"
    )
    add_shape_arguments(p, optional_dims=True)
    p.add_argument(
        "--out-code",
        default=DEFAULT_CODE_DIR,
        metavar="DIR",
        help=f"folder for the layer module (default {DEFAULT_CODE_DIR})",
    )
    p.add_argument(
        "--out-docs",
        default=DEFAULT_DOCS_DIR,
        metavar="DIR",
        help=f"folder for the derivation (default {DEFAULT_DOCS_DIR})",
    )
    add_channel_arguments(p)
    p.set_defaults(func=_run_build)
