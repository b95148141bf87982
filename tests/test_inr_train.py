"""Baselines, permutation augmentation, the training loop and the train CLI (tiny runs)."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from dws_theory.inr.baselines import (
    FlatMLP,
    flatten_weights,
    permute_hidden,
    unflatten_weights,
)
from dws_theory.inr.datasets import TASKS, load_dataset
from dws_theory.inr.siren import render, siren_init
from dws_theory.inr.train import (
    MODELS,
    UnsupportedTask,
    add_train_parser,
    batch_loss,
    evaluate,
    get_batch,
    prepare,
    train,
    train_step,
)

N = 24
FIT_STEPS = 30
JSON_KEYS = {"task", "model", "seed", "metric", "value", "params", "seconds"}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("inr-cache"))


@pytest.fixture(scope="module")
def prepared(cache_dir):
    return {
        t: prepare(load_dataset(t, cache_dir, n=N, steps=FIT_STEPS, progress=False)) for t in TASKS
    }


def _batch(dims: tuple[int, ...], b: int, c: int, seed: int):
    ws, bs = siren_init(dims, b * c, torch.Generator().manual_seed(seed))
    return [w.reshape(b, c, *w.shape[1:]) for w in ws], [x.reshape(b, c, -1) for x in bs]


def test_permute_hidden_preserves_the_function() -> None:
    dims = (2, 16, 12, 8, 1)
    ws, bs = _batch(dims, 6, 1, seed=0)
    gen = torch.Generator().manual_seed(1)
    pw, pb = permute_hidden(ws, bs, gen)
    coords = torch.rand(40, 2) * 2 - 1
    torch.testing.assert_close(render(pw, pb, coords), render(ws, bs, coords), atol=1e-5, rtol=1e-4)
    # It really permutes every hidden layer, and each sample differently.
    for k in range(len(dims) - 2):
        assert not torch.equal(pw[k], ws[k])
        assert not torch.equal(pb[k], bs[k])
    rows = pw[0][:, 0]
    match = (rows.unsqueeze(2) == ws[0][:, 0].unsqueeze(1)).all(-1)  # [B, new, old]
    perms = match.float().argmax(-1)
    assert match.sum(-1).eq(1).all()  # rows are a permutation of the old rows
    assert len({tuple(p.tolist()) for p in perms}) > 1  # independent across samples
    # Input and output neurons are untouched: output biases equal, input columns permuted rows.
    assert torch.equal(pb[-1], bs[-1])
    assert torch.equal(pw[-1].sort(-1).values, ws[-1].sort(-1).values)


def test_permute_hidden_with_channels_moves_channels_together() -> None:
    ws, bs = _batch((2, 8, 1), 3, 2, seed=2)
    pw, pb = permute_hidden(ws, bs, torch.Generator().manual_seed(0))
    coords = torch.rand(9, 2) * 2 - 1
    for c in range(2):
        # Each channel, read as its own INR, still computes the same function.
        before = render([w[:, c : c + 1] for w in ws], [b[:, c : c + 1] for b in bs], coords)
        after = render([w[:, c : c + 1] for w in pw], [b[:, c : c + 1] for b in pb], coords)
        torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-4)
    # Channel 0 and channel 1 of each neuron were moved by the same permutation.
    order0 = (pw[0][:, 0].unsqueeze(2) == ws[0][:, 0].unsqueeze(1)).all(-1).float().argmax(-1)
    order1 = (pw[0][:, 1].unsqueeze(2) == ws[0][:, 1].unsqueeze(1)).all(-1).float().argmax(-1)
    assert torch.equal(order0, order1)


def test_flatten_roundtrip_and_flat_mlp_shapes() -> None:
    ws, bs = _batch((2, 8, 4, 1), 5, 1, seed=3)
    flat = flatten_weights(ws, bs)
    assert flat.shape == (5, 8 * 2 + 8 + 4 * 8 + 4 + 4 + 1)
    shapes = ([w.shape[1:] for w in ws], [b.shape[1:] for b in bs])
    uw, ub = unflatten_weights(flat, *shapes)
    assert all(torch.equal(x, y) for x, y in zip(uw + ub, ws + bs, strict=True))
    assert FlatMLP(flat.shape[1], 3, hidden=(7,))(ws, bs).shape == (5, 3)
    gw, gb = FlatMLP(flat.shape[1], out_shapes=shapes, hidden=(7,))(ws, bs)
    assert [g.shape for g in gw + gb] == [x.shape for x in ws + bs]
    assert all(g.abs().max() == 0 for g in gw + gb)  # zero-initialised residual head


def test_normalisation_is_per_tensor_scalar(prepared, cache_dir) -> None:
    data = prepared["digits-inr"]
    train_idx = data.splits["train"]
    for w in data.weights + data.biases:
        rms = w[train_idx].pow(2).mean().sqrt().item()
        assert abs(rms - 1.0) < 1e-4
    # A scalar per tensor commutes with permute_hidden (the symmetry is kept).
    ds = load_dataset("digits-inr", cache_dir, n=N, steps=FIT_STEPS, progress=False)
    gen = torch.Generator().manual_seed(0)
    pw, _ = permute_hidden(ds.weights, ds.biases, gen)
    gen = torch.Generator().manual_seed(0)
    qw, _ = permute_hidden(data.weights, data.biases, gen)
    for p, q, s in zip(pw, qw, data.info.weight_scales, strict=True):
        torch.testing.assert_close(p / s, q)


@pytest.mark.parametrize("task", TASKS)
# The baselines; the equivariant models (and nfn, skipped when missing) have the same test in
# tests/test_inr_models.py.
@pytest.mark.parametrize("name", ["mlp", "mlp-aug", "pixels"])
def test_one_step_decreases_loss(prepared, task: str, name: str) -> None:
    data = prepared[task]
    torch.manual_seed(0)
    try:
        model = MODELS[name](data.info)
    except UnsupportedTask:
        assert name not in {"mlp", "mlp-aug"}, "the flat MLP must support every task"
        pytest.skip(f"{name} does not support {task}")
    batch = get_batch(data, data.splits["train"][:16])
    model.eval()  # a fixed function for measuring (no dropout noise)
    with torch.no_grad():
        before = batch_loss(model, data.info, batch).item()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    train_step(model, data.info, batch, opt)
    model.eval()
    with torch.no_grad():
        after = batch_loss(model, data.info, batch).item()
    assert after < before, (name, task, before, after)


def test_pixels_refuses_weight_outputs(prepared) -> None:
    with pytest.raises(UnsupportedTask):
        MODELS["pixels"](prepared["digits-dilate"].info)


def test_dilate_identity_residual_renders_the_input(prepared, cache_dir) -> None:
    data = prepared["digits-dilate"]
    model = MODELS["mlp"](data.info)  # zero-initialised head: output = input INR
    idx = data.splits["test"]
    with torch.no_grad():
        mse = evaluate(model, data, "test")
    ds = load_dataset("digits-dilate", cache_dir, n=N, steps=FIT_STEPS, progress=False)
    rendered = render([w[idx] for w in ds.weights], [b[idx] for b in ds.biases], ds.coords)
    expected = (rendered[..., 0] - ds.targets[idx].reshape(len(idx), -1)).pow(2).mean().item()
    assert mse == pytest.approx(expected, rel=1e-4)


def test_train_returns_contract_and_selects_on_val(cache_dir) -> None:
    result = train(
        "sine-inr",
        "mlp",
        seed=1,
        epochs=2,
        n=N,
        fit_steps=FIT_STEPS,
        cache_dir=cache_dir,
        progress=False,
    )
    assert set(result) == JSON_KEYS
    assert result["metric"] == "test_mse" and result["value"] >= 0
    assert result["params"] > 0 and result["seconds"] > 0


def _train_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    add_train_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    rc = args.func(args)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_train_cli_json_contract(cache_dir, capsys) -> None:
    common = ["--cache-dir", cache_dir, "--n", str(N), "--fit-steps", str(FIT_STEPS)]
    rc, out, _ = _train_cli(
        ["train", "digits-inr", "--model", "mlp-aug", "--epochs", "2", "--seed", "3", "--json"]
        + common,
        capsys,
    )
    assert rc == 0
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1
    obj = json.loads(lines[0])
    assert set(obj) == JSON_KEYS
    assert obj["task"] == "digits-inr" and obj["model"] == "mlp-aug" and obj["seed"] == 3
    assert obj["metric"] == "test_accuracy" and 0.0 <= obj["value"] <= 1.0
    assert isinstance(obj["params"], int) and obj["params"] > 0
    assert isinstance(obj["seconds"], float) and obj["seconds"] > 0
    # Without --json: a readable one-line summary, not JSON.
    rc, out, _ = _train_cli(
        ["train", "digits-inr", "--model", "mlp", "--epochs", "1"] + common, capsys
    )
    assert rc == 0 and "test_accuracy=" in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)
    # Unknown models and unsupported pairs fail with exit code 2 and a message on stderr.
    rc, out, err = _train_cli(["train", "digits-inr", "--model", "nope", "--json"] + common, capsys)
    assert rc == 2 and out == "" and "registered" in err
    rc, out, err = _train_cli(["train", "digits-dilate", "--model", "pixels"] + common, capsys)
    assert rc == 2 and "pixels" in err


def test_model_selection_keeps_the_best_validation_epoch(cache_dir, monkeypatch) -> None:
    import dws_theory.inr.train as train_module

    val_scores = iter([0.2, 0.9, 0.1])  # accuracy: epoch 2 is the best
    seen: list[tuple[str, torch.Tensor]] = []

    def scripted_evaluate(model, data, split, batch_size=512):
        seen.append((split, torch.cat([p.detach().flatten() for p in model.parameters()])))
        return next(val_scores) if split == "val" else -1.0

    monkeypatch.setattr(train_module, "evaluate", scripted_evaluate)
    result = train_module.train(
        "digits-inr", "mlp", epochs=3, n=N, fit_steps=FIT_STEPS, cache_dir=cache_dir, progress=False
    )
    assert result["value"] == -1.0
    vals = [p for split, p in seen if split == "val"]
    (test_params,) = [p for split, p in seen if split == "test"]
    assert torch.equal(test_params, vals[1]) and not torch.equal(test_params, vals[2])
