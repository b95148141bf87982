"""The command line beyond MLPs: `--module FILE.py:NAME` and `--spec SPEC` on every command,
with the output contracts of DIMS, and one-line errors for bad references."""

from __future__ import annotations

import contextlib
import io
import json
import textwrap
from pathlib import Path

import pytest

from dws_theory.basis import enumerate_basis
from dws_theory.cli import main
from dws_theory.codegen.files import MAX_STEM
from dws_theory.spec import WeightSpace

MODULE_FILE = textwrap.dedent(
    """
    import torch
    from torch import nn


    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(2, 3, 3, padding=1)
            self.skip = nn.Conv1d(3, 3, 1)
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            h = torch.relu(self.conv(x))
            h = h + torch.relu(self.skip(h))
            return self.fc(h.mean(dim=-1))


    instance = Block()


    def factory():
        return Block()


    def needs_argument(width):
        return Block()


    not_a_module = 3
    """
)


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def module_file(tmp_path: Path) -> Path:
    path = tmp_path / "user_model.py"
    path.write_text(MODULE_FILE, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["instance", "factory"])
def test_basis_json_of_a_module(module_file, name):
    code, out, _ = run(["basis", "--module", f"{module_file}:{name}", "--json"])
    assert code == 0
    data = json.loads(out)
    space = WeightSpace.parse(data["spec"])
    basis = enumerate_basis(space)
    assert data["dims"] is None and data["symmetry"] == "hidden"
    assert data["equivariant_linear"] == basis.equivariant_linear
    assert data["equivariant_bias"] == basis.equivariant_bias
    assert data["invariant_linear"] == basis.invariant_linear
    assert len(data["blocks"]) == len(space.tensors) ** 2
    assert sum(b["count"] for b in data["blocks"]) == data["equivariant_linear"]
    skip = space.tensor("skip_weight").axes
    assert skip[0] == skip[1]  # the residual link puts both axes of the 1x1 conv on one set


def test_spec_round_trips_through_basis(capsys):
    spec = "sets[a:3:permuted k:2:fixed] tensors[T(a,a,k) v(a)]"
    assert main(["basis", "--spec", spec, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["spec"] == spec and data["symmetry"] is None
    assert data["equivariant_linear"] == enumerate_basis(WeightSpace.parse(spec)).equivariant_linear


def test_generate_prints_a_short_path_and_verify_passes(module_file, tmp_path):
    ref = f"{module_file}:factory"
    code, out, _ = run(["generate", "--module", ref, "--out", str(tmp_path / "gen")])
    assert code == 0
    path = Path(out.strip())
    assert path.is_file() and path.parent == tmp_path / "gen"
    assert path.stem.startswith("dws_factory_hidden_") and len(path.stem) <= MAX_STEM
    header = path.read_text().replace("\n#     ", " ")  # a long regenerate line wraps
    assert f"dws-theory generate --module {ref} --symmetry hidden" in header
    code, out, _ = run(["verify", "--module", ref])
    assert code == 0 and "certificate: PASSED" in out


def test_a_long_spec_gets_a_short_file_name(tmp_path):
    sets = " ".join(f"s{i}:2:permuted" for i in range(40))
    tensors = " ".join(f"T{i}(s{i},s{i + 1})" for i in range(39))
    code, out, _ = run(
        ["generate", "--spec", f"sets[{sets}] tensors[{tensors}]", "--out", str(tmp_path)]
    )
    assert code == 0
    path = Path(out.strip())
    assert path.is_file() and len(path.stem) <= MAX_STEM and path.stem.startswith("dws_spec_")


def test_docs_and_build_of_a_module(module_file, tmp_path):
    ref = f"{module_file}:instance"
    code, out, _ = run(["docs", "--module", ref, "--out", str(tmp_path / "docs")])
    assert code == 0
    page = Path(out.strip()).read_text(encoding="utf-8")
    assert page.startswith("# Derivation: module instance, `hidden` symmetry")
    assert "residual addition" in page
    code, out, _ = run(
        [
            "build",
            "--module",
            ref,
            "--out-code",
            str(tmp_path / "g"),
            "--out-docs",
            str(tmp_path / "d"),
        ]
    )
    assert code == 0 and "OK" in out
    assert len(list((tmp_path / "g").glob("*.py"))) == 1


def test_an_mlp_module_gets_the_mlp_names(tmp_path):
    path = tmp_path / "mlp.py"
    path.write_text(
        "from torch import nn\nnet = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))\n"
    )
    code, out, _ = run(["basis", "--module", f"{path}:net", "--symmetry", "signed", "--json"])
    assert code == 0
    data = json.loads(out)
    assert data["dims"] == [2, 3, 1] and data["symmetry"] == "signed" and "spec" not in data


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["basis", "--module", "{file}"], "expected --module FILE.py:NAME"),
        (["basis", "--module", "{dir}/missing.py:net"], "no file"),
        (["basis", "--module", "{file}:absent"], "defines no 'absent'"),
        (["basis", "--module", "{file}:not_a_module"], "expected not_a_module to be an nn.Module"),
        (["basis", "--module", "{file}:needs_argument"], "take no arguments"),
        (["basis", "2,3,1", "--module", "{file}:factory"], "expected one of DIMS, --module"),
        (
            ["basis", "--spec", "sets[a:2:permuted] tensors[T(a)]", "--symmetry", "all"],
            "no meaning",
        ),
        (["basis", "--spec", "sets[a:2] tensors[T(a)]"], "name:size:kind"),
        (["generate"], "expected DIMS"),
    ],
)
def test_bad_references_are_one_line_errors(module_file, args, fragment):
    args = [a.format(file=module_file, dir=module_file.parent) for a in args]
    code, out, err = run(args)
    assert code == 2 and not out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dws-theory: error:") and fragment in lines[0]


HOSTILE_MODULE_FILE = textwrap.dedent(
    """
    import sys

    from torch import nn


    def exits():
        sys.exit(0)


    def exits_3():
        raise SystemExit(3)


    def raises():
        raise RuntimeError("x" * 10_000)


    def raises_key():
        raise KeyError("weights")


    def recurses():
        return recurses()


    class Exits(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            sys.exit(4)


    def exits_in_forward():
        return Exits()
    """
)


@pytest.mark.parametrize(
    ("source", "name", "fragment"),
    [
        ("import sys\nsys.exit(0)\n", "net", "running {file} called sys.exit(0)"),
        ("raise SystemExit(3)\n", "net", "called sys.exit(3), expected it to return"),
        ("raise ValueError('bad file')\n", "net", "failed: ValueError: bad file"),
        ("def f():\n    return f()\nf()\n", "net", "failed: RecursionError"),
        (HOSTILE_MODULE_FILE, "exits", "calling exits() called sys.exit(0)"),
        (HOSTILE_MODULE_FILE, "exits_3", "calling exits_3() called sys.exit(3)"),
        (HOSTILE_MODULE_FILE, "raises", "calling raises() failed: RuntimeError: xxx"),
        (HOSTILE_MODULE_FILE, "raises_key", "failed: KeyError: 'weights'"),
        (HOSTILE_MODULE_FILE, "recurses", "calling recurses() failed: RecursionError"),
        (HOSTILE_MODULE_FILE, "exits_in_forward", "tracing exits_in_forward called sys.exit(4)"),
    ],
)
def test_a_module_file_that_exits_raises_or_recurses_is_one_line(source, name, fragment, tmp_path):
    path = tmp_path / "hostile.py"
    path.write_text(source, encoding="utf-8")
    code, out, err = run(["basis", "--module", f"{path}:{name}"])
    assert (code, out) == (2, ""), err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dws-theory: error: --module: "), err
    assert fragment.format(file=path) in lines[0]
    assert len(lines[0]) < 400


def test_an_input_shape_too_large_to_make_is_one_line(module_file):
    shape = ",".join(["4096"] * 8)
    code, out, err = run(["basis", "--module", f"{module_file}:instance", "--input-shape", shape])
    assert (code, out) == (2, ""), err
    assert err.splitlines() == [
        "dws-theory: error: expected an --input-shape of at most 67,108,864 elements, got "
        f"{4096**8:,}"
    ]
