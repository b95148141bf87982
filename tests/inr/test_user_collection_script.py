"""experiments/user_collection.py writes a collection that ``train --data`` reads back."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from dws_theory.inr.data.userdata import load_collection

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "user_collection.py"


def test_user_collection_script_writes_a_loadable_collection(tmp_path) -> None:
    spec = importlib.util.spec_from_file_location("user_collection", SCRIPT)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "coll.pt"
    assert script.main([str(out), "--n", "8", "--seed", "3"]) == 0
    data = load_collection(out)
    assert data.dims == (4, 16, 16, 16, 3)
    assert data.task.kind == "classification" and data.task.out_dim == 4
    assert data.targets.tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    # Networks of one problem are different networks (own init), not copies.
    assert not torch.equal(data.weights[0][0], data.weights[0][4])
