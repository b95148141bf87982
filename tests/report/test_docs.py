"""Derivation documents: tables agree with Basis and Certificate, figures are right and stable,
checked-in pages are current, and the site builds in strict mode."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import modes

from dws_theory.basis import enumerate_basis
from dws_theory.certify import certify
from dws_theory.cli import main
from dws_theory.codegen import checked_in_modules, lower
from dws_theory.group import generators, random_element, signed_permutation
from dws_theory.report import (
    Figures,
    block_group,
    derivation_stem,
    draw_architecture,
    draw_sharing,
    render_derivation,
    sharing_matrix,
    sharing_space,
    write_derivation,
)
from dws_theory.spec import Kind, mlp

ROOT = Path(__file__).resolve().parents[2]
DERIVATIONS = ROOT / "docs" / "derivations"


# -- parsing the page back ---------------------------------------------------------------------
def _section(text: str, number: int) -> str:
    start = text.index(f"\n## {number}. ")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _rows(text: str, header_start: str) -> list[list[str]]:
    """Cells of the Markdown table whose header line starts with `header_start`."""
    lines = text.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[i + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def _int(cell: str) -> int:
    return int(cell.replace(",", ""))


def _factors(cell: str) -> int:
    """`n0: 4 × n1: 2` -> 8."""
    product = 1
    for part in cell.split("×"):
        product *= int(part.split(":")[1])
    return product


def _render(dims, mode) -> tuple[str, object, object]:
    space = mlp(dims, mode)
    basis = enumerate_basis(space)
    cert = certify(space)
    shown, reason = sharing_space(space)
    figures = Figures("arch.png", "sharing.png", shown, reason)
    return render_derivation(dims, mode, basis, cert, figures, lower(basis)), basis, cert


def _check_page(text: str, basis, cert) -> None:
    space = basis.space
    # Every block: count column equals Basis, and equals the product of its per-set factors.
    rows = _rows(_section(text, 5), "| block | group |")
    parsed = {}
    for block, _group, factors, _ops, n in rows:
        out, inp = re.fullmatch(r"`(\w+) <- (\w+)`", block).groups()
        parsed[(out, inp)] = _int(n)
        assert _factors(factors) == _int(n), block
    assert parsed == basis.block_counts()
    # Bias and invariant tables.
    for number, counts in ((6, basis.bias_counts()), (7, basis.invariant_counts())):
        rows = _rows(_section(text, number), "| tensor | per-set factors | count |")
        got = {re.fullmatch(r"`(\w+)`", r[0]).group(1): _int(r[2]) for r in rows}
        assert got == counts
        for r in rows:
            assert _factors(r[1]) == _int(r[2])
    # Totals.
    totals = {r[0]: _int(r[1]) for r in _rows(_section(text, 8), "| quantity | count |")}
    assert totals["equivariant linear"] == basis.equivariant_linear
    assert totals["equivariant bias"] == basis.equivariant_bias
    assert totals["invariant linear"] == basis.invariant_linear
    assert totals["parameters, 16 -> 16 channels"] == basis.parameter_count(16, 16)
    # Certificate: one row per route, with its numbers and verdict.
    rows = [r for r in _rows(_section(text, 9), "| route |") if r[0]]
    assert [r[0].strip("`") for r in rows] == [r.name for r in cert.results]
    for row, result in zip(rows, cert.results, strict=True):
        assert _int(row[3]) == result.value and _int(row[4]) == result.expected
        assert row[5] == ("pass" if result.passed else "FAIL")
        assert ("reduced copy" in row[2]) == result.reduced
    assert f"Certificate: **{'PASSED' if cert.passed else 'FAILED'}**" in text
    # The section-5 representatives cover every group, each written out pattern by pattern.
    groups = {block_group(space, a, b) for a, b in basis.block_counts()}
    assert text.count("\n### ") >= len(groups)


@settings(max_examples=12)
@given(
    dims=st.integers(1, 3).flatmap(
        lambda depth: st.lists(st.integers(1, 3), min_size=depth + 1, max_size=depth + 1)
    ),
    mode=modes,
)
def test_rederived_document_tables_match_basis_and_certificate(dims, mode) -> None:
    text, basis, cert = _render(tuple(dims), mode)
    _check_page(text, basis, cert)


def test_large_fixed_widths_page_reports_reduced_routes() -> None:
    """784-32-10: explicit routes and the picture use reduced copies, and the page says so."""
    text, basis, cert = _render((784, 32, 10), "hidden")
    _check_page(text, basis, cert)
    assert any(r.reduced for r in cert.results)
    assert "fixed widths are cut to 2" in _section(text, 10)


def test_generated_code_section_maps_every_pattern_to_its_ops() -> None:
    """Section 11 lists the plan's ops with the patterns they serve; the block table names,
    for each block, exactly the ops whose pattern lists contain the block's patterns."""
    text, basis, _ = _render((2, 4, 4, 1), "hidden")
    plan = lower(basis)
    section = _section(text, 11)
    assert "served by exactly one op of kind" in section
    tables = section.split("\n### ")[1:]  # one table per layer
    listed = [row[0].strip("`") for table in tables for row in _rows(table, "| op |")]
    assert sorted(listed) == sorted(op.name for op in plan.ops)
    for block, _group, _factors_cell, ops, _n in _rows(_section(text, 5), "| block | group |"):
        out, inp = re.fullmatch(r"`(\w+) <- (\w+)`", block).groups()
        mine = {p for p in basis.linear if (p.out, p.inp) == (out, inp)}
        expected = {op.name for op in plan.ops if mine & set(op.patterns)}
        assert {o.strip("` ") for o in ops.split(",")} == expected, block


# -- grouping ----------------------------------------------------------------------------------
def test_block_groups_of_a_three_layer_mlp() -> None:
    """Hand-derived for 2-4-4-1: which tensors share which sets, and which end they touch."""
    space = mlp("2,4,4,1", "hidden")
    expected = {
        ("W2", "W2"): ("W <- W, same layer", "interior"),
        ("W1", "W1"): ("W <- W, same layer", "first layer"),
        ("W1", "W2"): ("W <- W, neighbours, next layer", "first layer"),
        ("W3", "W2"): ("W <- W, neighbours, previous layer", "last layer"),
        ("W1", "W3"): ("W <- W, non-neighbours", "first and last layer"),
        ("W2", "b2"): ("W <- b, bias on its rows", "interior"),
        ("W2", "b1"): ("W <- b, bias on its columns", "interior"),
        ("W2", "b3"): ("W <- b, disjoint", "last layer"),
        ("b1", "W2"): ("b <- W, on its columns", "interior"),
        ("b2", "W2"): ("b <- W, on its rows", "interior"),
        ("b1", "b2"): ("b <- b, other layer", "interior"),
        ("b3", "b3"): ("b <- b, same layer", "last layer"),
    }
    for (out, inp), group in expected.items():
        assert block_group(space, out, inp) == group, (out, inp)


# -- figures -------------------------------------------------------------------------------------
def _flat_source(space, g) -> np.ndarray:
    """Global gather map of a group element on the flat weight vector."""
    source = np.zeros(space.dimension, dtype=np.int64)
    for t in space.tensors:
        start = space.offsets()[t.name]
        src, _ = signed_permutation(space, g, t.name)
        source[start : start + space.numel(t.name)] = start + src
    return source


@pytest.mark.parametrize(
    "dims,mode", [("2,2,2,1", "hidden"), ("2,3,2", "all"), ("1,2,2,1", "signed")]
)
def test_sharing_matrix_colours_are_exactly_the_orbits(dims: str, mode: str) -> None:
    """Orbits of G on index pairs (union-find over generators, computed here) never mix
    colours; pattern k's colour covers exactly its multiplicity of orbits (one per value of
    its fixed labels); zeros appear only where signs kill orbits."""
    space = mlp(dims, mode)
    basis = enumerate_basis(space)
    colour = sharing_matrix(basis)
    size = space.dimension
    parent = list(range(size * size))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for g in generators(space):
        src = _flat_source(space, g)
        for r in range(size):
            for c in range(size):
                a, b = find(r * size + c), find(src[r] * size + src[c])
                parent[a] = b
    orbits: dict[int, set[int]] = {}
    for x in range(size * size):
        orbits.setdefault(find(x), set()).add(x)
    flat = colour.ravel()
    for members in orbits.values():
        values = {int(flat[x]) for x in members}
        assert len(values) == 1, "an orbit got two colours"
    per_colour: dict[int, int] = {}
    for members in orbits.values():
        value = int(flat[next(iter(members))])
        per_colour[value] = per_colour.get(value, 0) + 1
    # Pattern k is coloured k + 1 and covers one orbit per value of its fixed labels.
    for k, p in enumerate(basis.linear):
        assert per_colour.get(k + 1) == p.multiplicity(space), str(p)
    assert sum(n for v, n in per_colour.items() if v) == basis.equivariant_linear
    signed = any(s.kind is Kind.SIGNED for s in space.sets)
    assert (flat == 0).any() == signed


def test_sharing_matrix_is_invariant_under_random_elements() -> None:
    space = mlp("2,3,3,2", "all")
    colour = sharing_matrix(enumerate_basis(space))
    rng = np.random.default_rng(0)
    for _ in range(5):
        src = _flat_source(space, random_element(space, rng))
        np.testing.assert_array_equal(colour[np.ix_(src, src)], colour)


def test_figures_are_deterministic_pngs_without_software_metadata(tmp_path: Path) -> None:
    space = mlp("2,3,3,1", "signed")
    basis = enumerate_basis(space)
    blobs = []
    for k in range(2):
        arch, sharing = tmp_path / f"a{k}.png", tmp_path / f"s{k}.png"
        draw_architecture(space, arch, "t")
        draw_sharing(basis, sharing, "t")
        blobs.append((arch.read_bytes(), sharing.read_bytes()))
    assert blobs[0] == blobs[1]
    for blob in blobs[0]:
        assert blob.startswith(b"\x89PNG\r\n\x1a\n")
        assert b"Software" not in blob and b"matplotlib" not in blob


# -- checked-in pages ------------------------------------------------------------------------
@pytest.mark.parametrize("dims,mode", checked_in_modules())
def test_checked_in_derivation_is_current(dims, mode, tmp_path: Path) -> None:
    """Regenerate into a tmp dir; Markdown and both PNGs must match the checked-in bytes."""
    path = write_derivation(dims, mode, tmp_path)
    stem = derivation_stem(dims, mode)
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted([f"{stem}.md", f"{stem}_architecture.png", f"{stem}_sharing.png"])
    for name in written:
        checked_in = DERIVATIONS / name
        assert checked_in.exists(), f"{name} is not checked in: run dws-theory docs"
        assert (tmp_path / name).read_bytes() == checked_in.read_bytes(), (
            f"{name} drifted: regenerate with dws-theory docs "
            f"{','.join(map(str, dims))} --symmetry {mode}"
        )
    assert path == tmp_path / f"{stem}.md"


def test_every_checked_in_derivation_is_in_the_site_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for dims, mode in checked_in_modules():
        assert f"derivations/{derivation_stem(dims, mode)}.md" in nav


# -- command line ------------------------------------------------------------------------------
def test_docs_command_writes_the_page_and_prints_its_path(tmp_path: Path) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(["docs", "2,2,1", "--symmetry", "np", "--out", str(tmp_path)])
    assert code == 0
    path = Path(out.getvalue().strip())
    assert path == tmp_path / f"{derivation_stem((2, 2, 1), 'all')}.md"
    assert path.read_text(encoding="utf-8").startswith("# Derivation: MLP 2-2-1, `all` symmetry")


def test_docs_command_rejects_a_bad_shape() -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exc:
        main(["docs", "2,0,1"])
    assert exc.value.code == 2 and "positive" in err.getvalue()


# -- the site --------------------------------------------------------------------------------
_HAS_MKDOCS = all(importlib.util.find_spec(m) for m in ("mkdocs", "material", "pymdownx"))


@pytest.mark.skipif(
    not _HAS_MKDOCS, reason="mkdocs, mkdocs-material or pymdown-extensions not installed"
)
def test_site_builds_in_strict_mode(tmp_path: Path) -> None:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(tmp_path / "site"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    page = tmp_path / "site" / "derivations" / derivation_stem((2, 32, 32, 1), "hidden")
    html = (page / "index.html").read_text(encoding="utf-8")
    assert 'class="arithmatex"' in html  # the math reached MathJax's markup
    assert "$$" not in html  # every display formula was recognised on its own
    assert not re.search(r"<td [^>]*>", html)  # no cell text was eaten as an attribute list
