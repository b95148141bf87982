"""One error path for the command line: every bad input gives one line and exit code 2.

A corpus of bad inputs goes through every engine subcommand (basis, verify, generate, docs,
build) and the top level. For each: exit code 2 (130 for Ctrl-C), exactly one line on stderr
that starts `dws-theory: error:` and says what was expected, nothing on stdout, no
traceback, and no file left in the output folders. The `data` and `train` commands go
through the same generic path; their own argument checks live with them (a separate test
function below covers only what the generic path does for them).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import dws_theory.atomic as atomic
import dws_theory.build as build_module
from dws_theory.cli import main

HUGE = "9" * 5000
DEEP = ",".join(["2"] + ["4"] * 20 + ["1"])
WIDE = " ".join(f"T{i}(a)" for i in range(1001))  # a spec with more tensors than the guard
TWELVE = ",".join(["a"] * 12)  # 12 axes on one set: Bell(24) patterns in one block

# (argv with {file} = an existing regular file and {out} = a fresh folder, what the line says)
ENGINE_CORPUS = [
    # shapes
    (["basis", ""], "expected comma-separated integer widths"),
    (["basis", "2"], "at least two widths"),
    (["basis", "2,0,1"], "every width must be a positive integer, got 2,0,1"),
    (["basis", "2,-3,1"], "every width must be a positive integer, got 2,-3,1"),
    (["basis", "2 3 1"], "expected comma-separated integer widths like 2,32,32,1, got '2 3 1'"),
    (["basis", "2,,1"], "expected comma-separated integer widths"),
    (["basis", "2,3.5,1"], "expected comma-separated integer widths"),
    (["basis", "a,b"], "expected comma-separated integer widths"),
    (["basis", "2,٣,1"], "expected comma-separated integer widths"),  # a non-ASCII digit
    (["basis", f"2,{HUGE},1"], "every width must be at most 1,000,000"),
    (["basis", "2,1000001,1"], "every width must be at most 1,000,000, got 1000001"),
    (["verify", "0,1"], "every width must be a positive integer"),
    (["generate", "2;3;1"], "expected comma-separated integer widths"),
    (["docs", "2,3,,"], "expected comma-separated integer widths"),
    (["build", "x"], "expected comma-separated integer widths"),
    (["verify", ",".join(["3"] * 502)], "expected at most 500 layers"),
    (["generate", ",".join(["1"] * 10_000)], "got 9,999 layers"),
    (["verify", "--spec", f"sets[a:2:permuted] tensors[{WIDE}]"], "got 1,001 tensors"),
    (["basis", "--spec", f"sets[a:30:permuted] tensors[T({TWELVE})]"], "orbit patterns"),
    (["generate", "--spec", "sets[a:99999999999999999999:permuted] tensors[T(a)]"], "1,000,000"),
    (["basis", "--spec", "sets[a:²:permuted] tensors[T(a)]"], "digits 0-9, got '²'"),
    (["basis", "--spec", "sets[a:3:permuted] tensors[T(a,,a)]"], "got 'T(a,,a)'"),
    (["basis", "--spec", f"sets[a:3:permuted] tensors[{HUGE}]"], "(5,002 characters)"),
    # modes
    (["basis", "2,3,1", "--symmetry", "hiden"], "unknown symmetry mode 'hiden'; expected one of"),
    (["verify", "2,3,1", "--symmetry", ""], "unknown symmetry mode"),
    (["build", "2,3,1", "--symmetry", "perm"], "unknown symmetry mode"),
    # counts
    (["basis", "2,3,1", "--in-channels", "0"], "expected a positive integer of at most"),
    (["basis", "2,3,1", "--out-channels", "-2"], "expected a positive integer of at most"),
    (["basis", "2,3,1", "--in-channels", "1e3"], "expected a positive integer of at most"),
    (["basis", "2,3,1", "--in-channels", "2.0"], "expected a positive integer of at most"),
    (["docs", "2,3,1", "--out-channels", HUGE], "expected a positive integer of at most"),
    (["build", "2,3,1", "--in-channels", "nan"], "expected a positive integer of at most"),
    # flags and arguments
    (["basis"], "expected DIMS (e.g. 2,32,32,1), --module FILE.py:NAME or --spec SPEC"),
    (["basis", "2,3,1", "--jsn"], "unrecognized arguments: --jsn"),
    (["verify", "2,3,1", "2,3,1"], "unrecognized arguments"),
    (["generate", "2,3,1", "--out"], "argument --out: expected one argument"),
    # output paths
    (["generate", "2,3,1", "--out", "{file}"], "expected a directory, but a file of that name"),
    (["generate", "2,3,1", "--out", "{file}/sub"], "expected a directory, but part of the path"),
    (["docs", "2,3,1", "--out", "{file}"], "expected a directory, but a file of that name"),
    (["build", "2,3,1", "--out-code", "{out}/code", "--out-docs", "{file}"], "expected a dir"),
    (["build", "2,3,1", "--out-code", "{file}/x", "--out-docs", "{out}/docs"], "part of the path"),
    (["generate", "2,3,1", "--out", ""], "argument --out: expected a folder or file path"),
    (["docs", "2,3,1", "--out", ""], "expected a folder or file path, got an empty string"),
    (["build", "2,3,1", "--out-code", ""], "argument --out-code: expected a folder"),
    # the top level
    ([], "the following arguments are required: command"),
    (["bsis", "2,3,1"], "invalid choice: 'bsis' (choose from 'basis', 'verify'"),
    (["--versoin"], "the following arguments are required: command"),
    (["--verbose", "basis", "2,3,1"], "unrecognized arguments: --verbose"),
]


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse's own exits
            code = e.code
    return code, out.getvalue(), err.getvalue()


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _assert_one_error_line(code: int, out: str, err: str, fragment: str) -> None:
    assert code == 2, (code, err)
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dws-theory: error: "), err
    assert fragment in lines[0], err
    assert len(lines[0]) < 400, "a bad value is echoed back shortened"


def _assert_ends_with_one_error_line(code: int, out: str, err: str, fragment: str) -> None:
    """Progress lines may come first (stderr); then exactly one error line, the last."""
    assert code == 2, (code, err)
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("dws-theory: error: ")]
    assert errors == err.splitlines()[-1:], err
    assert fragment in errors[0], err


@pytest.mark.parametrize(("argv", "fragment"), ENGINE_CORPUS, ids=lambda a: str(a)[:60])
def test_bad_input_gives_one_line_and_exit_code_2(argv, fragment, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an output path that falls back to "here" would show below
    (tmp_path / "file.txt").write_text("not a folder\n", encoding="utf-8")
    before = _files(tmp_path)
    argv = [a.format(file=tmp_path / "file.txt", out=tmp_path / "out") for a in argv]
    code, out, err = _run(argv)
    _assert_one_error_line(code, out, err, fragment)
    assert _files(tmp_path) == before, "no file or folder left behind"


@pytest.mark.parametrize(
    ("error", "fragment"),
    [
        (errno.ENOSPC, "expected free space for the file, but the device is full"),
        (errno.EROFS, "expected a writable path, but the file system is read-only"),
        (errno.EACCES, "expected a path this user may write, but permission was denied"),
        (errno.EDQUOT, "disk quota"),
    ],
)
@pytest.mark.parametrize(
    "argv",
    [
        ["generate", "2,3,1", "--out", "{out}"],
        ["docs", "2,3,1", "--out", "{out}"],
        ["build", "2,3,1", "--out-code", "{out}/code", "--out-docs", "{out}/docs"],
    ],
    ids=lambda a: a[0],
)
def test_a_failing_write_leaves_no_file(argv, error, fragment, tmp_path: Path, monkeypatch):
    """The write itself fails (a full disk, a read-only or foreign folder): mocked at the
    flush before the rename, which every output goes through."""

    def fail(path):
        raise OSError(error, os.strerror(error), str(path))

    monkeypatch.setattr(atomic, "_fsync", fail)
    out = tmp_path / "out"
    out.mkdir()
    code, stdout, err = _run([a.format(out=out) for a in argv])
    _assert_ends_with_one_error_line(code, stdout, err, fragment)
    assert ".tmp" not in err, "the message names the target, not the temporary file"
    assert _files(out) == [], "no partial file, no temporary file, no staging folder"


def test_build_writes_nothing_final_when_a_later_step_fails(tmp_path: Path, monkeypatch):
    """docs fails after generate wrote its module and docs wrote one figure."""
    from dws_theory.report import page as docs

    real = docs.write_page

    def half(target, out_dir, *args, **kwargs):
        Path(out_dir, "half_written.png").write_bytes(b"\x89PNG")
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(out_dir, "x.md")))

    monkeypatch.setattr(docs, "write_page", half)
    code, out, err = _run(
        ["build", "2,3,1", "--out-code", str(tmp_path / "c"), "--out-docs", str(tmp_path / "d")]
    )
    _assert_ends_with_one_error_line(code, out, err, "device is full")
    assert _files(tmp_path) == [], "the folders the build made are gone again"
    # The same build with the real step writes both.
    monkeypatch.setattr(docs, "write_page", real)
    code, _, err = _run(
        ["build", "2,3,1", "--out-code", str(tmp_path / "c"), "--out-docs", str(tmp_path / "d")]
    )
    assert code == 0, err
    assert [p for p in _files(tmp_path) if p.endswith((".py", ".md"))] == [
        "c/dws_2_3_1_hidden.py",
        "d/dws_2_3_1_hidden.md",
    ]


def test_an_existing_file_survives_a_failed_rewrite(tmp_path: Path, monkeypatch):
    target = tmp_path / "dws_2_3_1_hidden.py"
    target.write_text("previous version\n", encoding="utf-8")
    monkeypatch.setattr(
        atomic, "_fsync", lambda p: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full", str(p)))
    )
    code, _, _ = _run(["generate", "2,3,1", "--out", str(tmp_path)])
    assert code == 2
    assert target.read_text(encoding="utf-8") == "previous version\n"
    assert _files(tmp_path) == ["dws_2_3_1_hidden.py"]


@pytest.mark.parametrize(
    ("exception", "code", "fragment"),
    [
        (KeyboardInterrupt(), 130, "interrupted (Ctrl-C)"),
        (BrokenPipeError(errno.EPIPE, "Broken pipe"), 2, "broken pipe"),
        (MemoryError(), 2, "out of memory"),
        (OSError(errno.ENOSPC, "No space left on device", "f.py"), 2, "device is full"),
    ],
    ids=["ctrl-c", "pipe", "memory", "disk"],
)
@pytest.mark.parametrize("command", ["basis", "verify", "generate", "docs", "build"])
def test_engine_commands_report_interruptions_and_os_errors(
    command, exception, code, fragment, monkeypatch, tmp_path: Path
):
    import dws_theory.basis as basis_module
    import dws_theory.certify as certify_module
    import dws_theory.codegen.cli as codegen_cli
    import dws_theory.report.cli as docs_cli

    def boom(*args, **kwargs):
        raise exception

    # Each command's first step, as the command module looks it up.
    target = {
        "basis": (basis_module, "enumerate_basis"),
        "verify": (certify_module, "certify"),
        "generate": (codegen_cli, "write_target"),
        "docs": (docs_cli, "write_page"),
        "build": (build_module, "build"),
    }[command]
    monkeypatch.setattr(*target, boom)
    argv = [command, "2,3,1"]
    if command == "generate":
        argv += ["--out", str(tmp_path)]
    got, out, err = _run(argv)
    assert got == code and "Traceback" not in err
    lines = err.splitlines()
    assert lines[-1].startswith("dws-theory: error: ") and fragment in lines[-1], err


def test_a_full_disk_on_stdout_gives_one_line_and_exit_code_2():
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            _command("basis", "2,3,1", "--json"),
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "dws-theory: error: No space left on device: expected free space for the file, but "
        "the device is full"
    ]


def test_version_prints_and_exits_0():
    code, out, err = _run(["--version"])
    assert (code, err) == (0, "")
    assert out.startswith("dws-theory ") and out.strip().split()[1][0].isdigit()


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "dws_theory", *args]


def test_a_closed_pipe_gives_one_line_and_exit_code_2():
    """`dws-theory basis DEEP --json | head -3`: the reader goes away mid-output."""
    proc = subprocess.Popen(
        _command("basis", DEEP, "--json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for _ in range(3):
        proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 2, err
    assert err.splitlines() == [
        "dws-theory: error: the output was closed before everything was written (broken pipe)"
    ]


def test_ctrl_c_gives_one_line_and_exit_code_130():
    deep = ",".join(["2"] + ["64"] * 300 + ["1"])
    proc = subprocess.Popen(
        _command("verify", deep),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell that starts the suite in the background (`cmd &`) ignores SIGINT, and the
        # child would inherit that: restore the default so Python raises KeyboardInterrupt.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stderr.readline().startswith("verifying 2,64x300,1")  # it is running
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert out == ""
    assert err.splitlines()[-1].startswith("dws-theory: error: interrupted (Ctrl-C)")
    assert "Traceback" not in err


# -- data and train: only what the generic error path does for them ---------------------------
@pytest.mark.parametrize(
    ("exception", "code", "fragment"),
    [
        (KeyboardInterrupt(), 130, "interrupted (Ctrl-C)"),
        (BrokenPipeError(errno.EPIPE, "Broken pipe"), 2, "broken pipe"),
        (OSError(errno.EROFS, "Read-only file system", "/cache/x.pt"), 2, "read-only"),
        (MemoryError(), 2, "out of memory"),
    ],
    ids=["ctrl-c", "pipe", "read-only", "memory"],
)
@pytest.mark.parametrize("command", ["data", "train"])
def test_data_and_train_go_through_the_generic_error_path(command, exception, code, fragment):
    """The commands' own work is replaced by one that raises; main() reports it."""
    import dws_theory.inr.cli as module
    from dws_theory.inr.tasks import TASKS

    function = {"data": "_run_data", "train": "_run_train"}[command]

    def boom(args):
        raise exception

    task = next(iter(TASKS))
    argv = [command, task] + (["--model", "mlp"] if command == "train" else [])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, function, boom)
        got, out, err = _run(argv)
    assert (got, out) == (code, "")
    assert err.splitlines() == [f"dws-theory: error: {err.splitlines()[-1][19:]}"]
    assert fragment in err and "Traceback" not in err


# -- data and train: real bad inputs, end to end ---------------------------------------------
_TINY = ["--n", "6", "--steps", "2"]
_TINY_TRAIN = ["--n", "6", "--fit-steps", "2", "--quiet"]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["data", "sine-inr", "--n", "2"], "n >= 3"),
        (["data", "digits-inr", "--n", "5000"], "n <= 1797"),
        (["data", "digits-inr", "--steps", "0"], "positive integer"),
        (["data", "digits-inr", "--steps", "-3"], "positive integer"),
        (["data", "digits-inr", "--lr", "inf"], "finite"),
        (["data", "digits-inr", "--views", "0"], "positive integer"),
        (["data", "digits-inr", "--seed", "1180591620717411303424"], "seed"),
        (["data", "digits-inr", "--init", "xavier"], "invalid choice"),
        (["data", "sine-inr", "--n", "100000000"], "smaller --n"),
        (["data", "nope"], "invalid choice"),
        (["train", "digits-inr", "--model", "mlp", "--epochs", "-1"], "positive integer"),
        (["train", "digits-inr", "--model", "mlp", "--epochs", "0"], "positive integer"),
        (["train", "digits-inr", "--model", "mlp", "--batch-size", "0"], "positive integer"),
        (["train", "digits-inr", "--model", "mlp", "--lr", "inf"], "finite"),
        (["train", "digits-inr", "--model", "mlp", "--lr", "nan"], "finite"),
        (["train", "digits-inr", "--model", "mlp", "--weight-decay", "-1"], "number"),
        (["train", "digits-inr", "--model", "mlp", "--fit-steps", "-1"], "positive integer"),
        (["train", "digits-inr", "--model", "mlp", "--augment", "mirror"], "augmentations"),
        (["train", "digits-inr", "--model", "nope"], "registered"),
        (["train", "digits-inr"], "--model"),
        (["train", "--model", "mlp"], "TASK or --data"),
        (["train", "digits-inr", "--data", "x.pt", "--model", "mlp"], "TASK or --data"),
        (["train", "--data", "missing.pt", "--model", "mlp"], "existing file"),
    ],
)
def test_bad_data_and_train_inputs_give_one_line(argv, fragment, tmp_path):
    code, out, err = _run([*argv, "--cache-dir", str(tmp_path)])
    _assert_one_error_line(code, out, err, fragment)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()], "nothing is cached or left"


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["train", "digits-dilate", "--model", "pixels"], "pixels"),
        (["train", "digits-inr", "--model", "mlp", "--n-train", "100000"], "n_train between"),
        (["train", "digits-dilate", "--model", "mlp", "--augment", "rotate"], "geometric"),
    ],
)
def test_bad_training_choices_fail_after_loading_with_one_line(extra, fragment, tmp_path):
    code, out, err = _run([*extra, *_TINY_TRAIN, "--cache-dir", str(tmp_path)])
    _assert_one_error_line(code, out, err, fragment)


def test_malformed_data_file_gives_one_line(tmp_path):
    import torch

    path = tmp_path / "bad.pt"
    torch.save({"weights": [torch.zeros(4, 3, 2)], "biases": [torch.zeros(4, 3)]}, path)
    code, out, err = _run(["train", "--data", str(path), "--model", "mlp"])
    _assert_one_error_line(code, out, err, "'targets'")
