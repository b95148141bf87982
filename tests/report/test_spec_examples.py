"""The checked-in spec examples (dws_theory/examples.py `CHECKED_IN_SPECS`: an attention
block written with nested sets).

Their modules under generated/ and derivations under docs/derivations/ are regenerated from
the engine and compared byte for byte; the modules import standalone (torch only) and
compute what the in-memory layers compute; the derivation states the wreath group and
counts that the engine gives.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from spaces import random_tensors, split

from dws_theory.basis import enumerate_basis
from dws_theory.codegen.files import write_target
from dws_theory.examples import CHECKED_IN_SPECS, spec_target
from dws_theory.report import write_page
from dws_theory.runtime import layer_classes

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "generated"
DERIVATIONS = ROOT / "docs" / "derivations"
NAMES = [name for name, _ in CHECKED_IN_SPECS]


@pytest.mark.parametrize("name", NAMES)
def test_spec_example_module_does_not_drift(name, tmp_path):
    target = spec_target(name)
    fresh = write_target(target, tmp_path)
    committed = GENERATED / fresh.name
    assert committed.is_file(), f"{committed} is missing: run dws-theory build {target.origin}"
    assert committed.read_bytes() == fresh.read_bytes(), (
        f"{committed.name} drifted: regenerate it with dws-theory build {target.origin}"
    )


@pytest.mark.parametrize("name", NAMES)
def test_spec_example_derivation_does_not_drift(name, tmp_path):
    target = spec_target(name)
    write_page(target, tmp_path)
    stem = target.stem
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted([f"{stem}.md", f"{stem}_architecture.png", f"{stem}_sharing.png"])
    for file in written:
        assert (tmp_path / file).read_bytes() == (DERIVATIONS / file).read_bytes(), (
            f"{file} drifted: regenerate with dws-theory build {target.origin}"
        )


def test_spec_examples_are_in_the_site_nav():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for name in NAMES:
        assert f"derivations/{spec_target(name).stem}.md" in nav


@pytest.mark.parametrize("name", NAMES)
def test_spec_example_module_imports_standalone_and_matches_runtime(name):
    target = spec_target(name)
    path = GENERATED / f"{target.stem}.py"
    before = set(sys.modules)
    spec = importlib.util.spec_from_file_location(f"_standalone_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert "dws_theory" not in {n.split(".")[0] for n in set(sys.modules) - before}
    assert str(target.space) == module.SPEC and module.MODE is None
    gen = torch.Generator().manual_seed(3)
    standalone = module.EquivariantLayer(2, 2).double()
    with torch.no_grad():
        for p in standalone.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
    runtime = layer_classes(target.space)[0](2, 2).double()
    runtime.load_state_dict(standalone.state_dict())
    x = split(target.space, random_tensors(target.space, 2, 2, gen))
    a, b = standalone(*x), runtime(*x)
    for u, v in zip(a[0] + a[1], b[0] + b[1], strict=True):
        assert torch.equal(u, v)


def test_the_attention_page_states_the_wreath_group_and_the_engines_counts():
    target = spec_target("attention_block")
    text = (DERIVATIONS / f"{target.stem}.md").read_text(encoding="utf-8")
    basis = enumerate_basis(target.space)
    assert "((S_{4} \\times S_{4}) \\wr S_{2})" in text
    assert f"{basis.equivariant_linear:,} equivariant linear basis elements" in text
    # q_w <- q_w: heads family 3 (same head: q dims equal or not; other head) x embed 2.
    assert basis.block_counts()[("q_w", "q_w")] == 6
    assert (
        "c_{\\mathrm{heads}}(\\langle \\mathrm{qk} \\rangle, \\langle \\mathrm{qk} \\rangle)"
        in text
    )


def test_every_block_row_of_the_attention_page_is_the_product_of_its_factors():
    """The "Every block" table: the factors (`heads⟨qk⟩⟨qk⟩: 3 × embed: 2`) multiply to the
    count, and the counts are the engine's."""
    target = spec_target("attention_block")
    text = (DERIVATIONS / f"{target.stem}.md").read_text(encoding="utf-8")
    table = text[text.index("| block | group | per-set factors |") :].split("\n\n")[0]
    rows = [line.strip("|").split("|") for line in table.splitlines()[2:]]
    counts = enumerate_basis(target.space).block_counts()
    assert len(rows) == len(counts)
    for block, _group, factors, _ops, n in rows:
        out, inp = block.strip().strip("`").split(" <- ")
        product = 1
        for part in factors.split("×"):
            product *= int(part.split(":")[1])
        assert product == int(n.replace(",", "")) == counts[(out, inp)], block
