"""Signals and closed streams: SIGTERM is Ctrl-C's twin (clean up, exit 143), a SIGKILL's
leftovers go at the next run, Ctrl-C is reported from the first instant, and a closed
stdout is one line, not a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dws_theory.atomic import STAGING_PREFIX
from dws_theory.cli import main

# `dws-theory build` whose derivation step writes a figure into its staging folder, says
# so, then takes a minute: the moment a signal arrives "while it draws figures".
SLOW_BUILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import dws_theory.report.page as page

    def slow_page(target, out_dir, *args, **kwargs):
        Path(out_dir, "half_drawn.png").write_bytes(b"\\x89PNG")
        print("drawing", file=sys.stderr, flush=True)
        time.sleep(60)

    page.write_page = slow_page
    from dws_theory.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def _start_slow_build(tmp_path: Path) -> subprocess.Popen:
    argv = ["build", "2,3,1", "--out-code", str(tmp_path / "c"), "--out-docs", str(tmp_path / "d")]
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_BUILD, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in proc.stderr:  # progress lines until the figure is being drawn
        if line.strip() == "drawing":
            return proc
    proc.kill()
    raise AssertionError(f"the build never reached its figures: {proc.communicate()}")


def _everything(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_sigterm_cleans_up_like_ctrl_c_and_exits_143(tmp_path: Path):
    proc = _start_slow_build(tmp_path)
    assert any(p.name.startswith(STAGING_PREFIX) for p in (tmp_path / "d").iterdir())
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.splitlines() == [
        "dws-theory: error: terminated (SIGTERM); nothing was left half-written"
    ]
    assert out == ""
    assert _everything(tmp_path) == [], "no staging folder, no file, no folder the build made"


def test_a_killed_builds_staging_folders_go_at_the_next_build(tmp_path: Path):
    proc = _start_slow_build(tmp_path)
    proc.kill()  # SIGKILL: nothing can clean up now
    proc.communicate(timeout=60)
    left = [p for p in _everything(tmp_path) if STAGING_PREFIX in p]
    assert left, "a killed build leaves its staging folders"
    argv = ["build", "2,3,1", "--out-code", str(tmp_path / "c"), "--out-docs", str(tmp_path / "d")]
    assert main(argv) == 0
    assert not [p for p in _everything(tmp_path) if STAGING_PREFIX in p]
    assert "d/dws_2_3_1_hidden.md" in _everything(tmp_path)


def test_the_command_line_loads_nothing_heavy_before_its_error_path():
    """Ctrl-C in the first second lands inside `main`'s try: importing the entry point runs
    only the standard library and `dws_theory.errors`; the commands load inside `main`."""
    probe = (
        "import sys; before = set(sys.modules); import dws_theory.cli; "
        "print('\\n'.join(sorted(set(sys.modules) - before)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = done.stdout.split()
    ours = sorted(m for m in loaded if m.startswith("dws_theory"))
    assert ours == ["dws_theory", "dws_theory.cli", "dws_theory.errors"]
    heavy = {"numpy", "torch", "sympy", "networkx", "scipy", "matplotlib"}
    assert not heavy & {m.partition(".")[0] for m in loaded}


def test_ctrl_c_while_the_commands_load_is_one_line(monkeypatch, capsys):
    import dws_theory.cli as cli

    def interrupted_import(argv=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted_import)
    assert main(["basis", "2,3,1"]) == 130
    assert capsys.readouterr().err.startswith("dws-theory: error: interrupted (Ctrl-C)")


@pytest.mark.parametrize("argv", [["basis", "2,3,1"], ["--version"]], ids=["basis", "version"])
def test_a_closed_stdout_is_one_line_and_exit_code_2(argv):
    done = subprocess.run(
        [sys.executable, "-m", "dws_theory", *argv],
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        check=False,
        pass_fds=(),
        preexec_fn=lambda: os.close(1),  # `>&-`
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "dws-theory: error: expected an open standard output (a terminal, file or pipe), got "
        "a closed one"
    ]
