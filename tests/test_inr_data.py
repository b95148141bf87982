"""Batched SIRENs and the cached INR datasets (tiny subsets, temporary cache dirs)."""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch
from torch import nn

from dws_theory.inr import datasets
from dws_theory.inr.datasets import (
    TASKS,
    add_data_parser,
    default_recipe,
    dilate_images,
    load_dataset,
    make_splits,
    resolve_cache_dir,
)
from dws_theory.inr.siren import fit_sirens, render, siren_forward, siren_init

DIGITS_DIMS = (2, 32, 32, 1)


def _reference_siren(ws: list[torch.Tensor], bs: list[torch.Tensor], x: torch.Tensor, w0: float):
    """One INR evaluated with nn.Linear layers: the SIREN-paper convention, written plainly."""
    h = x
    for m, (w, b) in enumerate(zip(ws, bs, strict=True)):
        layer = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            layer.weight.copy_(w)
            layer.bias.copy_(b)
            h = layer(h)
        if m < len(ws) - 1:
            h = torch.sin(w0 * h)
    return h


def test_siren_forward_matches_per_inr_reference() -> None:
    gen = torch.Generator().manual_seed(0)
    ws, bs = siren_init(DIGITS_DIMS, 5, gen)
    coords = torch.rand(17, 2, generator=gen) * 2 - 1
    out = siren_forward(ws, bs, coords, w0=30.0)
    assert out.shape == (5, 17, 1)
    for i in range(5):
        ref = _reference_siren([w[i] for w in ws], [b[i] for b in bs], coords, 30.0)
        torch.testing.assert_close(out[i], ref, rtol=1e-4, atol=1e-5)
    # The batch layout with a channel axis renders the same values.
    torch.testing.assert_close(
        render([w.unsqueeze(1) for w in ws], [b.unsqueeze(1) for b in bs], coords), out
    )


def test_siren_init_bounds_and_independence() -> None:
    w0 = 30.0
    ws, bs = siren_init(DIGITS_DIMS, 50, torch.Generator().manual_seed(1), w0)
    assert ws[0].abs().max() <= 1 / 2 and ws[0].abs().max() > 0.4
    hidden_bound = math.sqrt(6 / 32) / w0
    assert ws[1].abs().max() <= hidden_bound and ws[1].abs().max() > 0.9 * hidden_bound
    # Every pair of INRs has its own init: no two flattened weight vectors coincide.
    flat = torch.cat([w.flatten(1) for w in ws] + [b.flatten(1) for b in bs], dim=1)
    dists = torch.cdist(flat, flat) + torch.eye(50) * 1e9
    assert dists.min() > 1e-3


def test_fit_is_independent_of_chunking() -> None:
    gen = torch.Generator().manual_seed(3)
    coords = torch.linspace(-1, 1, 16).unsqueeze(-1)
    targets = torch.sin(torch.rand(6, 1, 1, generator=gen) * 20 * coords)
    kw = {"steps": 30, "lr": 1e-3, "seed": 5, "progress": False}
    a = fit_sirens(coords, targets, (1, 8, 1), chunk_size=6, **kw)
    b = fit_sirens(coords, targets, (1, 8, 1), chunk_size=4, **kw)
    for x, y in zip(a.weights + a.biases, b.weights + b.biases, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)
    assert a.mse.shape == (6,)


def test_fit_reaches_high_psnr_on_digits(tmp_path) -> None:
    ds = load_dataset("digits-inr", tmp_path, n=8, progress=False)
    assert ds.psnr.min() > 25.0, ds.psnr
    # The stored MSE is what the stored weights actually render.
    out = render(ds.weights, ds.biases, ds.coords, ds.w0)
    mse = (out - ds.signals).pow(2).mean(dim=(1, 2))
    torch.testing.assert_close(mse, ds.mse, rtol=1e-3, atol=1e-9)


@pytest.mark.parametrize(
    ("task", "dims", "points"),
    [
        ("digits-inr", DIGITS_DIMS, 64),
        ("sine-inr", (1, 32, 32, 1), 128),
        ("digits-dilate", DIGITS_DIMS, 64),
    ],
)
def test_dataset_shapes(tmp_path, task: str, dims: tuple[int, ...], points: int) -> None:
    n = 10
    ds = load_dataset(task, tmp_path, n=n, steps=5, progress=False)
    assert ds.dims == dims and ds.n == n
    assert [tuple(w.shape) for w in ds.weights] == [
        (n, 1, dims[m], dims[m - 1]) for m in range(1, len(dims))
    ]
    assert [tuple(b.shape) for b in ds.biases] == [(n, 1, d) for d in dims[1:]]
    assert ds.coords.shape == (points, dims[0])
    assert ds.signals.shape == (n, points, 1)
    assert ds.mse.shape == ds.psnr.shape == (n,)
    assert sum(len(v) for v in ds.splits.values()) == n
    if task == "digits-inr":
        assert ds.targets.dtype == torch.long and set(ds.targets.tolist()) <= set(range(10))
        assert ds.signals.min() >= 0.0 and ds.signals.max() <= 1.0
    elif task == "sine-inr":
        assert ds.targets.shape == (n,) and ds.targets.min() >= 0.5 and ds.targets.max() <= 10
        x = math.pi * ds.coords[:, 0]
        torch.testing.assert_close(ds.signals[:, :, 0], torch.sin(ds.targets[:, None] * x))
    else:
        images = ds.signals.reshape(n, 8, 8)
        assert ds.targets.shape == (n, 8, 8)
        assert (ds.targets >= images).all() and (ds.targets > images).any()


def test_dilation_is_a_3x3_max_filter() -> None:
    img = torch.zeros(1, 8, 8)
    img[0, 4, 4] = 1.0
    out = dilate_images(img, 3)
    assert out[0, 3:6, 3:6].eq(1).all() and out.sum() == 9


def test_same_seed_gives_identical_tensors(tmp_path) -> None:
    a = load_dataset("sine-inr", tmp_path / "a", n=6, steps=10, seed=4, progress=False)
    b = load_dataset("sine-inr", tmp_path / "b", n=6, steps=10, seed=4, progress=False)
    c = load_dataset("sine-inr", tmp_path / "c", n=6, steps=10, seed=5, progress=False)
    assert a.built and b.built
    for x, y in zip(a.weights + a.biases, b.weights + b.biases, strict=True):
        assert torch.equal(x, y)
    assert torch.equal(a.targets, b.targets)
    assert all(torch.equal(a.splits[k], b.splits[k]) for k in a.splits)
    assert not torch.equal(a.targets, c.targets)
    assert not torch.equal(a.weights[0], c.weights[0])


def test_inrs_have_distinct_weights(tmp_path) -> None:
    ds = load_dataset("digits-inr", tmp_path, n=6, steps=5, progress=False)
    flat = torch.cat([w.flatten(1) for w in ds.weights], dim=1)
    dists = torch.cdist(flat, flat) + torch.eye(6) * 1e9
    assert dists.min() > 1e-2


def test_cache_hit_does_not_refit(tmp_path, monkeypatch) -> None:
    calls = []
    real_fit = datasets.fit_sirens

    def counting_fit(*args, **kwargs):
        calls.append(1)
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(datasets, "fit_sirens", counting_fit)
    first = load_dataset("digits-inr", tmp_path, n=5, steps=5, progress=False)
    second = load_dataset("digits-inr", tmp_path, n=5, steps=5, progress=False)
    assert len(calls) == 1 and first.built and not second.built
    assert first.path == second.path and first.path.exists()
    assert torch.equal(first.weights[1], second.weights[1])
    # digits-dilate reuses the digits INRs: no refit either.
    dilate = load_dataset("digits-dilate", tmp_path, n=5, steps=5, progress=False)
    assert len(calls) == 1 and dilate.path == first.path
    # --rebuild refits.
    load_dataset("digits-inr", tmp_path, n=5, steps=5, rebuild=True, progress=False)
    assert len(calls) == 2


def test_recipe_change_changes_file_name() -> None:
    base = default_recipe("digits-inr", n=5, steps=5)
    names = {
        base.filename(),
        default_recipe("digits-inr", n=6, steps=5).filename(),
        default_recipe("digits-inr", n=5, steps=6).filename(),
        default_recipe("digits-inr", n=5, steps=5, lr=2e-3).filename(),
        default_recipe("digits-inr", n=5, steps=5, seed=1).filename(),
        default_recipe("sine-inr", n=5, steps=5).filename(),
    }
    assert len(names) == 6
    assert default_recipe("digits-dilate", n=5, steps=5).filename() == base.filename()
    assert default_recipe("digits-inr", n=5000) == default_recipe("digits-inr")  # clamped to 1797


def test_corrupt_cache_is_rebuilt(tmp_path) -> None:
    recipe = default_recipe("digits-inr", n=4, steps=3)
    (tmp_path / recipe.filename()).write_bytes(b"not a torch file")
    ds = load_dataset("digits-inr", tmp_path, n=4, steps=3, progress=False)
    assert ds.built and ds.weights[0].shape[0] == 4


def test_cache_dir_resolution(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DWS_THEORY_CACHE", str(tmp_path / "env"))
    assert resolve_cache_dir() == tmp_path / "env"
    assert resolve_cache_dir(tmp_path / "arg") == tmp_path / "arg"
    ds = load_dataset("digits-inr", n=4, steps=3, progress=False)
    assert ds.path.parent == tmp_path / "env" and ds.path.exists()
    monkeypatch.delenv("DWS_THEORY_CACHE")
    assert "dws_theory" in str(resolve_cache_dir())


def test_splits_are_disjoint_and_fixed() -> None:
    s = make_splits(100, seed=0)
    assert [len(s[k]) for k in ("train", "val", "test")] == [70, 15, 15]
    together = torch.cat(list(s.values()))
    assert sorted(together.tolist()) == list(range(100))
    assert torch.equal(make_splits(100, seed=0)["test"], s["test"])
    assert not torch.equal(make_splits(100, seed=1)["test"], s["test"])


def test_data_cli_prints_statistics(tmp_path, capsys) -> None:
    parser = argparse.ArgumentParser()
    add_data_parser(parser.add_subparsers())
    args = parser.parse_args(
        ["data", "digits-inr", "--cache-dir", str(tmp_path), "--n", "5", "--steps", "5"]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "PSNR" in out and "built" in out and str(tmp_path) in out
    args = parser.parse_args(
        ["data", "digits-inr", "--cache-dir", str(tmp_path), "--n", "5", "--steps", "5"]
    )
    assert args.func(args) == 0
    assert "loaded" in capsys.readouterr().out
    args = parser.parse_args(
        [
            "data",
            "digits-dilate",
            "--cache-dir",
            str(tmp_path),
            "--n",
            "5",
            "--steps",
            "5",
            "--json",
        ]
    )
    assert args.func(args) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["n"] == 5 and stats["built"] is False and 0 < stats["identity_mse"] < 1
    assert set(TASKS) == {"digits-inr", "sine-inr", "digits-dilate"}
