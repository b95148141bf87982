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

from .arguments import add_channel_arguments, add_shape_arguments, target_of
from .atomic import check_folder, staged
from .basis import Basis, enumerate_basis
from .certify import Certificate, certify
from .docs import DEFAULT_DOCS_DIR
from .frontends.target import Target, from_dims
from .spec import WeightSpace

__all__ = ["BuildResult", "build", "build_summary", "add_build_parser"]

DEFAULT_CODE_DIR = "generated"


@dataclass(frozen=True)
class BuildResult:
    dims: tuple[int, ...] | None  # the widths when the target is an MLP
    mode: str | None
    basis: Basis
    certificate: Certificate
    module: Path | None  # None when the certificate failed (nothing written)
    derivation: Path | None
    figures: tuple[Path, ...]
    seconds: tuple[tuple[str, float], ...]  # wall time per step
    target: Target | None = None

    @property
    def passed(self) -> bool:
        return self.certificate.passed


def build(
    dims: Sequence[int] | str | Target,
    mode: str = "hidden",
    out_code: str | Path = DEFAULT_CODE_DIR,
    out_docs: str | Path | None = None,
    channels: tuple[int, int] = (16, 16),
    progress: Callable[[str], None] | None = None,
    enumerator: Callable[[WeightSpace], Basis] = enumerate_basis,
) -> BuildResult:
    """Run the whole pipeline for one MLP shape or `Target` (a traced module, a spec).

    `enumerator` is the enumeration under test (tests pass a broken one to see the build
    refuse to write anything). The space is enumerated once: that one `Basis` is
    certified, lowered into one `LayerPlan`, and both go to the module and the derivation
    (reduced copies the routes and the sharing figure need are enumerated once each)."""
    from .codegen import render
    from .codegen.files import target_plan, write_source
    from .docs import DEFAULT_DOCS_DIR, write_page

    say = progress or (lambda _msg: None)
    target = dims if isinstance(dims, Target) else from_dims(dims, mode)
    out_docs = DEFAULT_DOCS_DIR if out_docs is None else out_docs
    for folder in (out_code, out_docs):  # fail before the work, not after it
        check_folder(folder)
    space = target.space
    seconds: list[tuple[str, float]] = []

    def timed(step: str, fn: Callable[[], object]) -> object:
        start = time.perf_counter()
        value = fn()
        seconds.append((step, time.perf_counter() - start))
        return value

    def result(cert, module=None, derivation=None, figures=()) -> BuildResult:
        return BuildResult(
            target.dims, target.mode, basis, cert, module, derivation, figures,
            tuple(seconds), target,
        )  # fmt: skip

    say(f"[1/4] basis: enumerating orbit patterns of {space.dimension:,} weights")
    basis = timed("basis", lambda: enumerator(space))
    say(
        f"      {basis.equivariant_linear:,} equivariant linear, {basis.equivariant_bias:,} "
        f"bias, {basis.invariant_linear:,} invariant"
    )
    say("[2/4] verify: certifying by independent routes")
    cert = timed(
        "verify",
        lambda: certify(
            space,
            progress=lambda m: say(f"      route: {m}"),
            enumerator=enumerator,
            basis=basis,
            source=target.source,
        ),
    )
    say(f"      certificate {'passed' if cert.passed else 'FAILED'}")
    if not cert.passed:
        say("      stopping: nothing is generated from a basis that failed its certificate")
        return result(cert)
    plan = target_plan(target, basis)
    # Both steps write into staging folders; their files are renamed into place only when
    # both succeeded, so a failure (a read-only docs folder, a full disk) leaves no half build.
    with staged(out_code, out_docs) as (code_stage, docs_stage):
        say(f"[3/4] generate: writing the layer module to {out_code}/")
        module = timed("generate", lambda: write_source(target.stem, render(plan), code_stage))
        say(f"[4/4] docs: writing the derivation to {out_docs}/")
        derivation = timed(
            "docs",
            lambda: write_page(
                target,
                docs_stage,
                channels,
                basis=basis,
                certificate=cert,
                progress=lambda m: say(f"      {m}"),
                plan=plan,
            ),
        )
    module, derivation = Path(out_code) / module.name, Path(out_docs) / derivation.name
    figures = tuple(sorted(Path(out_docs).glob(f"{target.stem}_*.png")))
    return result(cert, module, derivation, figures)


def build_summary(result: BuildResult, channels: tuple[int, int] = (16, 16)) -> str:
    """The closing summary: counts, certificate status, paths written, step times."""
    b, c_in, c_out = result.basis, *channels
    lines = [
        f"build {_label(result)} ({result.mode or 'kinds from the spec'}): "
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


def _label(result: BuildResult) -> str:
    if result.dims is not None:
        return ",".join(map(str, result.dims))
    return result.target.title if result.target is not None else str(result.basis.space)


def _run_build(args: argparse.Namespace) -> int:
    channels = (args.in_channels, args.out_channels)
    result = build(
        target_of(args),
        "hidden",
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
