"""`dws-theory build`: basis -> verify -> generate -> docs, and refusal on a failed certificate."""

from __future__ import annotations

import contextlib
import dataclasses
import io
from pathlib import Path

import dws_theory.build as build_module
from dws_theory.arguments import target_of
from dws_theory.basis import Basis, enumerate_basis
from dws_theory.build import build, build_summary
from dws_theory.certify import certify
from dws_theory.cli import build_parser, main
from dws_theory.codegen import source_for
from dws_theory.report import derivation_stem


def _broken(space) -> Basis:
    """An enumeration missing its last linear pattern: every certificate route must notice."""
    basis = enumerate_basis(space)
    return dataclasses.replace(basis, linear=basis.linear[:-1])


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_build_writes_module_and_derivation(tmp_path: Path) -> None:
    messages: list[str] = []
    result = build(
        "2,3,3,1", "signed", tmp_path / "gen", tmp_path / "docs", progress=messages.append
    )
    assert result.passed
    stem = derivation_stem((2, 3, 3, 1), "signed")
    assert result.module == tmp_path / "gen" / f"{stem}.py"
    assert result.module.read_text(encoding="utf-8") == source_for((2, 3, 3, 1), "signed")
    assert result.derivation == tmp_path / "docs" / f"{stem}.md"
    assert result.derivation.read_text(encoding="utf-8").startswith("# Derivation: MLP 2-3-3-1")
    assert [p.name for p in result.figures] == [
        f"{stem}_architecture.png",
        f"{stem}_sharing.png",
    ]
    assert [step for step, _ in result.seconds] == ["basis", "verify", "generate", "docs"]
    assert [m[:5] for m in messages if m.startswith("[")] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]


def test_build_refuses_to_write_when_the_certificate_fails(tmp_path: Path) -> None:
    result = build("2,3,1", "hidden", tmp_path / "gen", tmp_path / "docs", enumerator=_broken)
    assert not result.passed
    assert result.module is None and result.derivation is None and result.figures == ()
    assert not (tmp_path / "gen").exists() and not (tmp_path / "docs").exists()
    summary = build_summary(result)
    assert "FAILED" in summary and "nothing written" in summary


def test_build_command_default_shape(tmp_path: Path) -> None:
    """No DIMS: the default 2,32,32,1 hidden; summary to stdout, progress to stderr."""
    target = target_of(build_parser().parse_args(["build"]))
    assert target.dims == (2, 32, 32, 1) and target.mode == "hidden"
    code, out, err = _run(
        ["build", "--out-code", str(tmp_path / "gen"), "--out-docs", str(tmp_path / "docs")]
    )
    assert code == 0, err
    # The reference values of the DWSNets shape (docs/theory.md, section 4).
    assert "equivariant linear 75, equivariant bias 7, invariant linear 7" in out
    assert "certificate: PASSED" in out
    stem = derivation_stem((2, 32, 32, 1), "hidden")
    assert f"module:     {tmp_path / 'gen' / stem}.py" in out
    assert f"derivation: {tmp_path / 'docs' / stem}.md" in out
    assert "[1/4] basis" in err and "[4/4] docs" in err and "[1/4]" not in out


def test_build_command_exits_non_zero_on_a_failed_certificate(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(
        build_module,
        "certify",
        lambda space, progress=None, enumerator=None, basis=None, source=None: certify(
            space, progress, _broken
        ),
    )
    code, out, _ = _run(
        ["build", "2,2,1", "--out-code", str(tmp_path / "gen"), "--out-docs", str(tmp_path / "d")]
    )
    assert code == 1
    assert "certificate: FAILED" in out
    assert not (tmp_path / "gen").exists() and not (tmp_path / "d").exists()


def test_build_command_rejects_a_bad_mode() -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            main(["build", "2,3,1", "--symmetry", "rotations"])
        except SystemExit as exc:
            assert exc.code == 2
        else:
            raise AssertionError("a bad mode must exit with status 2")
    assert "hidden, all, signed" in err.getvalue()


def test_build_enumerates_each_space_once(tmp_path: Path) -> None:
    """One Basis goes through verify, generate and docs: the shape itself is enumerated once,
    and each reduced copy (routes, sharing figure) at most once."""
    calls: list[str] = []

    def counting(space) -> Basis:
        calls.append(str(space))
        return enumerate_basis(space)

    result = build("2,3,3,1", "hidden", tmp_path / "gen", tmp_path / "docs", enumerator=counting)
    assert result.passed
    assert calls[0] == str(result.basis.space)
    assert len(calls) == len(set(calls)), calls
