"""The op table: one entry per supported layer, found by every call it names, and the
README's table of supported layers generated from it."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from dws_theory.frontends.ops import OPS, lookup, with_table

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_table_is_generated_from_the_op_table():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert with_table(readme) == readme, (
        "README.md's supported layers drifted: python -m dws_theory.frontends.ops README.md"
    )
    for op in OPS:
        assert f"| {op.name} |" in readme


def test_every_entry_is_found_by_each_call_it_names():
    names = [op.name for op in OPS]
    assert len(names) == len(set(names))
    for op in OPS:
        assert op.modules or op.functions or op.methods, op.name
        for function in op.functions:
            assert lookup("call_function", function) is op, (op.name, function)
        for method in op.methods:
            assert lookup("call_method", method) is op, (op.name, method)
    assert lookup("call_module", nn.Conv2d(1, 1, 1)).name.startswith("Conv1d/2d/3d")
    assert lookup("call_module", nn.LSTM(1, 1)).name == "RNN, LSTM, GRU"
    assert lookup("call_module", nn.Bilinear(1, 1, 1)) is None  # not supported: refused


def test_a_subclass_of_a_supported_layer_is_that_layer():
    class Scaled(nn.Linear):
        pass

    assert lookup("call_module", Scaled(2, 2)).name == "Linear"
