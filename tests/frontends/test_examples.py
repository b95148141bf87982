"""The checked-in examples beyond MLPs (dws_theory/examples.py): the zoo CNN, the residual
MLP and the network with a tied square weight.

Their modules under generated/ and derivations under docs/derivations/ are regenerated from
the engine and compared byte for byte; the modules import standalone (torch only) and
compute what the in-memory layers compute; the architecture facts the issue names hold.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from spaces import random_tensors, split

from dws_theory.codegen.cli import write_target
from dws_theory.examples import CHECKED_IN, example_target
from dws_theory.report import write_page
from dws_theory.runtime import layer_classes
from dws_theory.spec import Kind

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "generated"
DERIVATIONS = ROOT / "docs" / "derivations"


@pytest.mark.parametrize("name,mode", CHECKED_IN)
def test_example_module_does_not_drift(name, mode, tmp_path):
    target = example_target(name, mode)
    fresh = write_target(target, tmp_path)
    committed = GENERATED / fresh.name
    assert committed.is_file(), f"{committed} is missing: run dws-theory generate {target.origin}"
    assert committed.read_bytes() == fresh.read_bytes(), (
        f"{committed.name} drifted: regenerate it with dws-theory generate {target.origin}"
    )


@pytest.mark.parametrize("name,mode", CHECKED_IN)
def test_example_derivation_does_not_drift(name, mode, tmp_path):
    target = example_target(name, mode)
    write_page(target, tmp_path)
    written = sorted(p.name for p in tmp_path.iterdir())
    stem = target.stem
    assert written == sorted([f"{stem}.md", f"{stem}_architecture.png", f"{stem}_sharing.png"])
    for file in written:
        assert (tmp_path / file).read_bytes() == (DERIVATIONS / file).read_bytes(), (
            f"{file} drifted: regenerate with dws-theory docs {target.origin}"
        )


def test_examples_are_in_the_site_nav():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for name, mode in CHECKED_IN:
        assert f"derivations/{example_target(name, mode).stem}.md" in nav


@pytest.mark.parametrize("name,mode", CHECKED_IN)
def test_example_module_imports_standalone_and_matches_runtime(name, mode):
    target = example_target(name, mode)
    path = GENERATED / f"{target.stem}.py"
    before = set(sys.modules)
    spec = importlib.util.spec_from_file_location(f"_standalone_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert "dws_theory" not in {n.split(".")[0] for n in set(sys.modules) - before}
    assert str(target.space) == module.SPEC and mode == module.MODE
    gen = torch.Generator().manual_seed(3)
    standalone = module.EquivariantLayer(2, 2).double()
    with torch.no_grad():
        for p in standalone.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
    runtime = layer_classes(target.space, mode)[0](2, 2).double()
    runtime.load_state_dict(standalone.state_dict())
    x = split(target.space, random_tensors(target.space, 2, 2, gen))
    a, b = standalone(*x), runtime(*x)
    for u, v in zip(a[0] + a[1], b[0] + b[1], strict=True):
        assert torch.equal(u, v)


def test_the_examples_have_the_sets_the_issue_names():
    cnn = example_target("zoo_cnn").space
    channels = [s for s in cnn.sets if s.kind is Kind.PERMUTED]
    assert [s.size for s in channels] == [8, 8, 8]
    assert [cnn.shape(t.name) for t in cnn.tensors if len(t.axes) == 4] == [
        (8, 1, 3, 3),
        (8, 8, 3, 3),
        (8, 8, 3, 3),
    ]
    residual = example_target("residual_mlp").space
    stream = residual.tensor("inp_weight").axes[0]
    assert (
        sum(t.axes.count(stream) for t in residual.tensors) == 9
    )  # in (weight, bias), 2 x (fc1, fc2, bias), out
    tied = example_target("tied_mlp").space
    axes = tied.tensor("tied_weight").axes
    assert axes[0] == axes[1] and tied.set(axes[0]).size == 32
