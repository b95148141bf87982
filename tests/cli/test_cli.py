"""The command line: the JSON contract, the human table, verify, and one-line errors."""

import json
import subprocess
import sys

import pytest

from dws_theory.basis import enumerate_basis
from dws_theory.cli import main
from dws_theory.spec import mlp


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dws_theory.cli", *args], capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize(
    ("dims", "mode"), [("2,32,32,1", "hidden"), ("3,4,5,2", "all"), ("1,3,1", "signed")]
)
def test_basis_json_contract(dims, mode, capsys):
    assert main(["basis", dims, "--symmetry", mode, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {
        "dims",
        "symmetry",
        "equivariant_linear",
        "equivariant_bias",
        "invariant_linear",
        "blocks",
    }
    widths = [int(d) for d in dims.split(",")]
    depth = len(widths) - 1
    assert data["dims"] == widths and data["symmetry"] == mode
    assert len(data["blocks"]) == 4 * depth**2
    names = {f"{k}{m}" for m in range(1, depth + 1) for k in "Wb"}
    assert {(b["out"], b["in"]) for b in data["blocks"]} == {(a, c) for a in names for c in names}
    assert sum(b["count"] for b in data["blocks"]) == data["equivariant_linear"]
    basis = enumerate_basis(mlp(dims, mode))
    assert data["equivariant_bias"] == basis.equivariant_bias
    assert data["invariant_linear"] == basis.invariant_linear


def test_basis_json_reference_values(capsys):
    assert main(["basis", "2,32,32,1", "--symmetry", "np", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["symmetry"], data["equivariant_linear"], data["equivariant_bias"]) == (
        "all",
        57,
        6,
    )


def test_basis_table_groups_blocks_and_counts_parameters(capsys):
    assert main(["basis", "2,32,32,1", "--in-channels", "16", "--out-channels", "8"]) == 0
    out = capsys.readouterr().out
    for group in ("W <- W", "W <- b", "b <- W", "b <- b"):
        assert group in out
    assert "W2 <- W2" in out and "b3 <- b3" in out
    assert "equivariant linear" in out and " 75" in out
    assert f"{75 * 16 * 8 + 7 * 8:,}" in out


def test_verify_passes_and_prints_every_route():
    result = run("verify", "2,32,32,1", "--symmetry", "signed")
    assert result.returncode == 0, result.stderr
    for route in ("closed_form", "orbit_count", "commutant", "exact_commutation", "independence"):
        assert route in result.stdout
    assert "certificate: PASSED" in result.stdout
    assert "FAIL" not in result.stdout


def test_verify_json(capsys):
    assert main(["verify", "2,3,1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["passed"] is True and len(data["routes"]) == 5


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["basis", "2,0,1"], "positive integer"),
        (["basis", "2"], "at least two widths"),
        (["basis", "2,x,1"], "integer widths"),
        (["basis", "2,3,1", "--symmetry", "weird"], "hidden, all, signed"),
        (["verify", "4,-1"], "positive integer"),
        (["basis"], "DIMS"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_two(args, fragment):
    result = run(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("dws-theory: error:") and fragment in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["basis", "2,3,1"], ["generate", "2,3,1", "--out", "{tmp}"]])
def test_light_commands_do_not_load_torch(command, tmp_path):
    """The symbolic commands start without torch (seconds to import); data/train load it."""
    args = [a.format(tmp=tmp_path) for a in command]
    code = (
        "import sys; from dws_theory.cli import main; "
        f"assert main({args!r}) == 0; "
        "print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"


def test_torch_commands_are_registered_for_help_and_typos():
    assert "data" in run("--help").stdout and "train" in run("--help").stdout
    typo = run("bassis", "2,3,1")
    assert typo.returncode == 2 and "'train'" in typo.stderr


def test_torch_command_stubs_carry_the_real_parsers_help():
    """`dws-theory --help` lists data and train from lazy stubs (no torch); their help texts
    are those the real parsers in dws_theory/inr/cli.py register."""
    import argparse
    import importlib

    from dws_theory.cli import _TORCH_COMMANDS

    for name, (module, function, help_text) in _TORCH_COMMANDS.items():
        sub = argparse.ArgumentParser().add_subparsers()
        getattr(importlib.import_module(module), function)(sub)
        (real,) = [a.help for a in sub._choices_actions if a.dest == name]
        assert help_text == real, name
