"""Atomic outputs beyond one process: leftovers of killed writers removed, concurrent
writers into the same new folder, and no path that quietly means the current folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import dws_theory.atomic as atomic
from dws_theory.errors import InputError


def _dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    return int(done.stdout)


def _leftovers(folder: Path, pid: int) -> list[Path]:
    """What a writer with process id `pid` on this host leaves when killed mid-write."""
    owner = f"{pid}-{atomic._host()}-abcd1234"
    stage = folder / f"{atomic.STAGING_PREFIX}{owner}"
    stage.mkdir()
    (stage / "half.png").write_bytes(b"\x89PNG")
    temporary = folder / f".model.pt.{owner}.tmp"
    temporary.write_bytes(b"half")
    return [stage, temporary]


def test_leftovers_of_dead_writers_are_removed_and_live_ones_kept(tmp_path: Path):
    dead = _leftovers(tmp_path, _dead_pid())
    live = _leftovers(tmp_path, os.getpid())
    foreign = tmp_path / f"{atomic.STAGING_PREFIX}{_dead_pid()}-zzzzzz-abcd"  # not our format
    foreign.mkdir()
    (tmp_path / "keep.tmp").write_text("a user's file\n", encoding="utf-8")
    assert sorted(atomic.remove_stale(tmp_path)) == sorted(dead)
    assert all(p.exists() for p in [*live, foreign, tmp_path / "keep.tmp"])


def test_writing_into_a_folder_removes_a_dead_writers_leftovers(tmp_path: Path):
    dead = _leftovers(tmp_path, _dead_pid())
    atomic.write_text(tmp_path / "result.txt", "done\n")
    assert not any(p.exists() for p in dead)
    with atomic.staged(tmp_path / "sub") as (stage,):
        dead_below = _leftovers(tmp_path / "sub", _dead_pid())
    with atomic.staged(tmp_path / "sub") as (stage,):
        (stage / "x.txt").write_text("x\n", encoding="utf-8")
    assert not any(p.exists() for p in dead_below)
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["x.txt"]


def test_staging_into_a_folder_another_writer_makes_at_the_same_moment(tmp_path, monkeypatch):
    """Both see `a/b` missing; the other makes it first, so our mkdir finds it there."""
    target = tmp_path / "a" / "b"
    real_mkdir = Path.mkdir

    def racing_mkdir(self, *args, **kwargs):
        if self == target and not self.exists():
            real_mkdir(self)  # the other writer wins the race
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", racing_mkdir)
    with pytest.raises(RuntimeError, match="later step"), atomic.staged(target) as (stage,):
        (stage / "x.txt").write_text("x\n", encoding="utf-8")
        raise RuntimeError("a later step failed")
    assert target.is_dir() and list(target.iterdir()) == [], "the other writer's folder stays"
    with atomic.staged(target) as (stage,):
        (stage / "x.txt").write_text("x\n", encoding="utf-8")
    assert [p.name for p in target.iterdir()] == ["x.txt"]


@pytest.mark.parametrize(
    "call",
    [
        lambda: atomic.write_text("", "x"),
        lambda: atomic.check_folder(""),
        lambda: atomic.staged("").__enter__(),
    ],
    ids=["write", "check", "staged"],
)
def test_an_empty_path_is_refused_not_read_as_the_current_folder(call, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="got an empty string"):
        call()
    assert list(tmp_path.iterdir()) == []
