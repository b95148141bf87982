"""CUDA graphs where they pay (`dws_theory.cuda_graphs`), the parts a CPU can check: which path
a step takes, static-shape batches, the options that reach torch.compile, autocast, and the
plumbing through `DWSNet` and `dws-theory train`. The graphed path itself runs in
tests/codegen/test_cuda.py where there is a CUDA device.
"""

from __future__ import annotations

import argparse
import sys
import warnings

import pytest
import torch
from torch import nn

from dws_theory import cuda_graphs, models
from dws_theory.codegen.preludes import compiled as compiled_prelude
from dws_theory.cuda_graphs import (
    GRAPH_OPTION,
    StepModule,
    autocast,
    batch_count,
    graph_options,
    mark_step,
    static_batches,
    step_module,
    uses_cuda_graphs,
)
from dws_theory.models import DWSNet

DIMS = (3, 4, 4, 1)  # a shape no other test builds layers of (see `fresh_compile_states`)


def test_graphs_only_for_a_compiled_step_on_cuda_that_wants_them():
    assert uses_cuda_graphs("cuda", wanted=True, compiled=True)
    assert uses_cuda_graphs(torch.device("cuda", 1), wanted=True, compiled=True)
    assert not uses_cuda_graphs("cuda", wanted=False, compiled=True)
    assert not uses_cuda_graphs("cuda", wanted=True, compiled=False)
    assert not uses_cuda_graphs("cpu", wanted=True, compiled=True)


def test_graph_options_add_the_inductor_option_to_a_copy():
    passes = {"post_grad_custom_post_pass": object()}
    merged = graph_options(passes, True)
    assert merged == {**passes, GRAPH_OPTION: True} and GRAPH_OPTION not in passes
    assert graph_options(None, True) == {GRAPH_OPTION: True}
    assert graph_options(passes, False) is passes and graph_options(None, False) is None


@pytest.mark.parametrize(
    "size, batch, static, sizes",
    [
        (10, 4, True, [4, 4]),  # the partial batch dropped
        (10, 4, False, [4, 4, 2]),
        (8, 4, True, [4, 4]),
        (3, 4, True, [3]),  # no full batch: the one there is kept
        (0, 4, True, []),
    ],
)
def test_static_batches_keep_one_shape(size, batch, static, sizes):
    batches = static_batches(size, batch, static)
    assert [len(b) for b in batches] == sizes
    assert batch_count(size, batch, static) == len(sizes)
    flat = torch.cat(batches) if batches else torch.empty(0, dtype=torch.long)
    assert flat.tolist() == list(range(len(flat)))  # in order, no repeats


def test_autocast_names_a_dtype_or_changes_nothing():
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with autocast("cpu", "bf16"):
        assert (a @ b).dtype == torch.bfloat16
    with autocast("cpu", None):
        assert (a @ b).dtype == torch.float32
    with pytest.raises(ValueError, match="expected an autocast dtype in \\('bf16',\\)"):
        autocast("cpu", "fp8")


def test_mark_step_tells_the_graphs_only_when_graphing(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: calls.append(1))
    mark_step(False)
    assert calls == []
    mark_step(True)
    assert calls == [1]


def test_step_module_is_the_module_itself_unless_compiled_or_autocast():
    model = nn.Linear(3, 2)
    assert step_module(model) is model
    assert step_module(model, cuda_graphs=False) is model
    with pytest.raises(ValueError, match="autocast"):
        step_module(model, autocast_name="half")


def test_step_module_under_autocast_returns_float32_from_bfloat16_work():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    step = step_module(model, autocast_name="bf16")
    assert isinstance(step, StepModule) and not step.graphs
    x = torch.randn(5, 8)
    got, want = step(x), model(x)
    assert got.dtype == torch.float32
    assert 0 < (got - want).abs().max() < 0.05 * want.abs().max()  # rounded like bfloat16
    assert list(step.state_dict()) == [f"module.{k}" for k in model.state_dict()]


class TwoInputs(nn.Module):
    """A model with the (weights, biases) forward that the compiled wrapper calls."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 2)

    def forward(self, weights: torch.Tensor, biases: torch.Tensor) -> torch.Tensor:
        return self.linear(weights) + biases


class RecordingCompile:
    """Stands in for torch.compile: records its keyword arguments, returns the function."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.names: list[str] = []

    def __call__(self, fn, **kwargs):
        self.calls.append(kwargs)
        self.names.append(fn.__name__)
        return fn

    def of(self, name: str) -> list[dict]:
        return [c for c, n in zip(self.calls, self.names, strict=True) if n == name]


def test_compiled_step_on_cuda_asks_inductor_for_graphs_and_marks_steps(monkeypatch):
    recorder, marks = RecordingCompile(), []
    monkeypatch.setattr(torch, "compile", recorder)
    monkeypatch.setattr(compiled_prelude, "COMPILE_BACKEND", "inductor")
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    model = TwoInputs()
    monkeypatch.setattr(cuda_graphs, "module_device", lambda m: torch.device("cuda"))
    step = step_module(model, compile=True)
    assert step.graphs
    x = (torch.randn(4, 3), torch.randn(4, 2))
    torch.testing.assert_close(step(*x), model(*x))
    assert recorder.calls == [{"backend": "inductor", "options": {GRAPH_OPTION: True}}]
    assert marks == [1]
    off = step_module(model, compile=True, cuda_graphs=False)
    off(*x)
    assert not off.graphs and recorder.calls[-1] == {"backend": "inductor"}


@pytest.fixture
def fresh_compile_states():
    """The layer classes' compiled wrappers cache what torch.compile returned (here the
    stand-in's plain function): forget it afterwards, so later tests compile for real."""
    built: list[type] = []
    yield built
    for cls in built:
        cls.forward.compile_state.clear()


@pytest.mark.parametrize("backend", ["compiled", "fused", "triton"])
def test_dwsnet_on_cuda_compiles_with_graphs_and_its_layers_passes(
    backend, monkeypatch, fresh_compile_states
):
    recorder = RecordingCompile()
    monkeypatch.setattr(torch, "compile", recorder)
    monkeypatch.setattr(compiled_prelude, "COMPILE_BACKEND", "inductor")
    monkeypatch.setattr(models, "_COMPILED", {})
    monkeypatch.setattr(models, "module_device", lambda m: torch.device("cuda"))
    with warnings.catch_warnings():  # (triton without CUDA or its interpreter warns once)
        warnings.simplefilter("ignore")
        net = DWSNet(DIMS, hidden_channels=2, num_layers=1, out_features=2, backend=backend)
    fresh_compile_states += [type(net.layers[0]), type(net.invariant)]
    layers = sys.modules[type(net.layers[0]).__module__]
    weights = [torch.randn(2, 1, DIMS[m], DIMS[m - 1]) for m in (1, 2, 3)]
    biases = [torch.randn(2, 1, DIMS[m]) for m in (1, 2, 3)]
    net(weights, biases)
    (options,) = [c["options"] for c in recorder.of("_forward")]  # the model's, not a layer's
    assert options[GRAPH_OPTION] is True
    passes = getattr(layers, "COMPILE_OPTIONS", None) or {}
    assert passes.items() <= options.items()
    assert (DWSNet, backend, True) in models._COMPILED
    net.cuda_graphs = False
    net(weights, biases)
    assert GRAPH_OPTION not in (recorder.of("_forward")[-1].get("options") or {})


def test_dwsnet_cuda_graphs_is_a_bool():
    with pytest.raises(TypeError, match="cuda_graphs must be True or False"):
        DWSNet(DIMS, cuda_graphs="yes")


def test_train_cli_has_the_graph_and_autocast_options():
    from dws_theory.inr.cli import add_train_parser

    parser = argparse.ArgumentParser()
    add_train_parser(parser.add_subparsers())
    args = parser.parse_args(["train", "digits-inr", "--model", "dws"])
    assert not args.no_cuda_graphs and args.autocast is None
    args = parser.parse_args(
        ["train", "digits-inr", "--model", "dws", "--no-cuda-graphs", "--autocast", "bf16"]
    )
    assert args.no_cuda_graphs and args.autocast == "bf16"


def test_training_with_static_shapes_drops_the_partial_batch_and_autocast_runs(
    tmp_path, monkeypatch
):
    from dws_theory.inr.data.userdata import save_collection
    from dws_theory.inr.train import loop

    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)) for _ in range(20)]
    path = save_collection(tmp_path / "c.pt", nets, torch.arange(20) % 2)
    sizes: list[int] = []
    step = loop.train_step

    def counted(model, p, weights, biases, idx, optimizer, weight=1.0):
        sizes.append(len(idx))
        return step(model, p, weights, biases, idx, optimizer, weight)

    monkeypatch.setattr(loop, "train_step", counted)
    common = {"data": str(path), "epochs": 1, "batch_size": 8, "progress": False}
    loop.train(None, "dws", **common)
    assert sizes == [8, 6]  # 14 training networks (the seeded 70 % split)
    sizes.clear()
    monkeypatch.setattr(loop, "uses_cuda_graphs", lambda device, wanted, compiled: True)
    result = loop.train(None, "dws", autocast="bf16", **common)
    assert sizes == [8]  # graphed steps: one shape, the partial batch dropped
    assert 0.0 <= result["value"] <= 1.0
    with pytest.raises(Exception, match="autocast"):
        loop.train(None, "dws", autocast="fp8", **common)
