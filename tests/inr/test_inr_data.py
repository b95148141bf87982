"""Batched SIRENs and the cached INR datasets (tiny subsets, temporary cache dirs)."""

from __future__ import annotations

import argparse
import json
import math
import os
import stat
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from torch import nn

from dws_theory.errors import CommandError
from dws_theory.inr.cli import add_data_parser
from dws_theory.inr.data import cache, datasets
from dws_theory.inr.data.datasets import (
    default_recipe,
    estimate_bytes,
    load_dataset,
    make_splits,
    resolve_cache_dir,
    stratified_subset,
)
from dws_theory.inr.data.signals import dilate_images, mnist_images
from dws_theory.inr.data.siren import fit_sirens, render, siren_forward, siren_init
from dws_theory.inr.data.tasks import SOURCES, TASKS

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


def _near_bound(x: torch.Tensor, bound: float) -> bool:
    """Uniform samples on [-bound, bound]: within it, and (with many draws) close to it."""
    return bool(x.abs().max() <= bound and x.abs().max() > 0.9 * bound)


def test_dwsnets_init_bounds_and_independence() -> None:
    w0 = 30.0
    ws, bs = siren_init(DIGITS_DIMS, 50, torch.Generator().manual_seed(1), w0)
    # Every sine layer, the first included, starts at U(+-sqrt(6 / d_in) / w0), zero biases.
    assert _near_bound(ws[0], math.sqrt(6 / 2) / w0)
    assert _near_bound(ws[1], math.sqrt(6 / 32) / w0)
    assert bs[0].eq(0).all() and bs[1].eq(0).all()
    # The last layer is a default nn.Linear: U(+-1/sqrt(d_in)) for weight and bias.
    assert _near_bound(ws[2], 1 / math.sqrt(32)) and _near_bound(bs[2], 1 / math.sqrt(32))
    # Every pair of INRs has its own init: no two flattened weight vectors coincide.
    flat = torch.cat([w.flatten(1) for w in ws] + [b.flatten(1) for b in bs], dim=1)
    dists = torch.cdist(flat, flat) + torch.eye(50) * 1e9
    assert dists.min() > 1e-3


def test_siren_init_keeps_the_papers_first_layer() -> None:
    ws, bs = siren_init(DIGITS_DIMS, 50, torch.Generator().manual_seed(1), 30.0, "siren")
    assert _near_bound(ws[0], 1 / 2)  # U(+-1/d_in): times w0 = 30, high frequency at once
    assert _near_bound(bs[0], 1 / math.sqrt(2)) and _near_bound(bs[1], 1 / math.sqrt(32))
    with pytest.raises(ValueError, match="init scheme"):
        siren_init(DIGITS_DIMS, 2, torch.Generator(), 30.0, "xavier")


def test_fit_is_independent_of_chunking() -> None:
    gen = torch.Generator().manual_seed(3)
    coords = torch.linspace(-1, 1, 16).unsqueeze(-1)
    targets = torch.sin(torch.rand(6, 1, 1, generator=gen) * 20 * coords)
    kw = {"steps": 30, "lr": 1e-3, "seed": 5, "progress": False, "first_lr_scale": 3.0}
    a = fit_sirens(coords, targets, (1, 8, 1), chunk_size=6, **kw)
    b = fit_sirens(coords, targets, (1, 8, 1), chunk_size=4, **kw)
    for x, y in zip(a.weights + a.biases, b.weights + b.biases, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)
    assert a.mse.shape == (6,)
    # The init is returned untouched (the fit works on copies).
    w_init, _ = siren_init((1, 8, 1), 6, torch.Generator().manual_seed(5))
    assert torch.equal(a.init_weights[0], w_init[0]) and not torch.equal(a.weights[0], w_init[0])


def test_fit_rejects_bad_settings() -> None:
    coords, targets = torch.zeros(4, 1), torch.zeros(2, 4, 1)
    for kw, match in (
        ({"steps": 0, "lr": 1e-3}, "at least 1"),
        ({"steps": 3, "lr": float("inf")}, "finite positive"),
        ({"steps": 3, "lr": -1.0}, "finite positive"),
        ({"steps": 3, "lr": 1e-3, "schedule": "step"}, "schedule"),
    ):
        with pytest.raises(ValueError, match=match):
            fit_sirens(coords, targets, (1, 4, 1), seed=0, progress=False, **kw)


def test_default_digits_fit_reaches_high_psnr_and_moves_the_first_layer(tmp_path) -> None:
    ds = load_dataset("digits-inr", tmp_path, n=10, progress=False)
    assert ds.psnr.median() > 25.0, ds.psnr
    # Fitting grew the first layer by a good fraction of its init norm (from the SIREN init
    # it moves by about 2%: see the next test).
    assert ds.movement.min() > 0.3, ds.movement
    # The stored MSE is what the stored weights actually render.
    out = render(ds.weights, ds.biases, ds.coords, ds.w0)
    mse = (out - ds.signals).pow(2).mean(dim=(1, 2))
    torch.testing.assert_close(mse, ds.mse, rtol=1e-3, atol=1e-9)


def test_siren_init_barely_moves_the_first_layer(tmp_path) -> None:
    ds = load_dataset("digits-inr", tmp_path, n=6, steps=100, init="siren", progress=False)
    assert ds.movement.max() < 0.2, ds.movement
    assert ds.recipe.init == "siren"


@pytest.mark.parametrize(
    ("task", "dims", "points"),
    [
        ("digits-inr", DIGITS_DIMS, 64),
        ("mnist-inr", DIGITS_DIMS, 784),
        ("sine-inr", (1, 32, 32, 1), 256),
        ("digits-dilate", DIGITS_DIMS, 64),
        ("mnist-dilate", DIGITS_DIMS, 784),
    ],
)
def test_dataset_shapes(tmp_path, task: str, dims: tuple[int, ...], points: int) -> None:
    n = 20
    ds = load_dataset(task, tmp_path, n=n, steps=3, progress=False)
    assert ds.dims == dims and ds.n == n
    assert [tuple(w.shape) for w in ds.weights] == [
        (n, 1, dims[m], dims[m - 1]) for m in range(1, len(dims))
    ]
    assert [tuple(b.shape) for b in ds.biases] == [(n, 1, d) for d in dims[1:]]
    assert ds.coords.shape == (points, dims[0])
    assert ds.signals.shape == (n, points, 1)
    assert ds.mse.shape == ds.psnr.shape == ds.movement.shape == (n,)
    assert sum(len(v) for v in ds.splits.values()) == n
    side = round(points**0.5)
    if ds.task.target == "label":
        assert ds.targets.dtype == torch.long and set(ds.targets.tolist()) == set(range(10))
        assert ds.signals.min() >= 0.0 and ds.signals.max() <= 1.0
    elif task == "sine-inr":
        assert ds.targets.shape == (n,) and ds.targets.min() >= 0.5 and ds.targets.max() <= 10
        x = ds.coords[:, 0]  # raw x in [-pi, pi]
        assert x.min() == pytest.approx(-math.pi) and x.max() == pytest.approx(math.pi)
        torch.testing.assert_close(ds.signals[:, :, 0], torch.sin(ds.targets[:, None] * x))
    else:
        images = ds.signals.reshape(n, side, side)
        assert ds.targets.shape == (n, side, side)
        assert (ds.targets >= images).all() and (ds.targets > images).any()


def test_mnist_images_are_real_digits() -> None:
    images, labels = mnist_images()
    assert images.shape == (5000, 28, 28) and labels.shape == (5000,)
    assert torch.bincount(labels).tolist() == [500] * 10
    assert images.min() == 0.0 and images.max() == 1.0
    # A digit's ink sits in the middle of the frame; the border is background.
    assert images[:, 12:16, 12:16].mean() > 5 * images[:, :2, :].mean()


def test_subsets_and_splits_are_stratified() -> None:
    labels = torch.arange(10).repeat_interleave(500)  # sorted, as the MNIST file
    keep = stratified_subset(labels, 100, seed=0)
    assert torch.bincount(labels[keep], minlength=10).tolist() == [10] * 10
    splits = make_splits(100, seed=0, labels=labels[keep])
    counts = {k: torch.bincount(labels[keep][v], minlength=10) for k, v in splits.items()}
    assert counts["train"].tolist() == [7] * 10
    for name in ("val", "test"):  # 15 of 10 classes: every class once or twice
        assert counts[name].sum() == 15 and counts[name].min() >= 1 and counts[name].max() <= 2
    assert not torch.equal(stratified_subset(labels, 100, seed=1), keep)


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


def test_views_fit_independent_inits_of_training_images_only(tmp_path) -> None:
    one = load_dataset("digits-inr", tmp_path, n=20, steps=10, progress=False)
    three = load_dataset("digits-inr", tmp_path, n=20, steps=10, views=3, progress=False)
    assert three.path != one.path
    # View 0 is the same INR whatever the number of views.
    assert all(torch.equal(x, y) for x, y in zip(one.weights, three.weights, strict=True))
    v = three.views
    train = three.splits["train"]
    assert v is not None and torch.equal(v.image, train.repeat(2))
    assert v.weights[0].shape == (2 * len(train), 1, 32, 2)
    # Extra views of an image are other INRs of the same image: different weights ...
    first_extra = v.weights[0][: len(train)]
    assert (first_extra - three.weights[0][train]).abs().amax(dim=(1, 2, 3)).min() > 1e-3
    # ... that draw the same picture about as well.
    out = render(v.weights, v.biases, three.coords, three.w0)
    mse = (out - three.signals[v.image]).pow(2).mean(dim=(1, 2))
    assert mse.median() < 2 * three.mse[train].median() + 1e-3
    assert (
        load_dataset("digits-inr", tmp_path, n=20, steps=10, views=3, progress=False).built is False
    )


def test_views_reuse_the_cached_first_view(tmp_path, monkeypatch) -> None:
    fitted: list[int] = []
    real_fit = datasets.fit_sirens

    def counting_fit(coords, targets, *args, **kwargs):
        fitted.append(targets.shape[0])
        return real_fit(coords, targets, *args, **kwargs)

    monkeypatch.setattr(datasets, "fit_sirens", counting_fit)
    load_dataset("digits-inr", tmp_path, n=20, steps=5, progress=False)
    two = load_dataset("digits-inr", tmp_path, n=20, steps=5, views=2, progress=False)
    train = len(two.splits["train"])
    assert fitted == [20, train]  # the 20 INRs once, then one extra view of the train images


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
    assert not list(tmp_path.glob(".*tmp*")), "no temporary file is left behind"


def test_recipe_change_changes_file_name() -> None:
    base = default_recipe("digits-inr", n=5, steps=5)
    names = {
        base.filename(),
        default_recipe("digits-inr", n=6, steps=5).filename(),
        default_recipe("digits-inr", n=5, steps=6).filename(),
        default_recipe("digits-inr", n=5, steps=5, lr=2e-3).filename(),
        default_recipe("digits-inr", n=5, steps=5, seed=1).filename(),
        default_recipe("digits-inr", n=5, steps=5, init="siren").filename(),
        default_recipe("digits-inr", n=5, steps=5, views=2).filename(),
        default_recipe("sine-inr", n=5, steps=5).filename(),
        default_recipe("mnist-inr", n=5, steps=5).filename(),
    }
    assert len(names) == 9
    assert default_recipe("digits-dilate", n=5, steps=5).filename() == base.filename()
    # mnist-dilate fits the same INRs as mnist-inr's first view (which its extra views reuse)
    mnist = default_recipe("mnist-inr")
    assert default_recipe("mnist-dilate").filename() == replace(mnist, views=1).filename()
    assert mnist.views == TASKS["mnist-inr"].views > 1  # the task's default, not 1
    assert default_recipe("mnist-inr", views=1).views == 1
    assert base.version >= 2  # the DWSNets init: caches of the SIREN-init recipe are not reused


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 2}, "n >= 3"),
        ({"n": 1798}, "n <= 1797"),
        ({"steps": 0}, "steps"),
        ({"steps": -3}, "steps"),
        ({"lr": float("inf")}, "learning rate"),
        ({"lr": 0.0}, "learning rate"),
        ({"views": 0}, "views"),
        ({"init": "xavier"}, "init scheme"),
    ],
)
def test_bad_recipes_are_refused(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        default_recipe("digits-inr", **kwargs)


def test_fit_too_large_for_memory_is_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(datasets, "_available_bytes", lambda: 10 * 2**20)  # 10 MiB free
    recipe = default_recipe("sine-inr", n=100_000)
    assert estimate_bytes(recipe) > 8 * 2**20
    with pytest.raises(CommandError, match="smaller --n"):
        load_dataset("sine-inr", tmp_path, n=100_000, progress=False)
    assert not list(tmp_path.iterdir())


def test_corrupt_cache_is_rebuilt(tmp_path, capsys) -> None:
    recipe = default_recipe("digits-inr", n=4, steps=3)
    (tmp_path / recipe.filename()).write_bytes(b"not a torch file")
    ds = load_dataset("digits-inr", tmp_path, n=4, steps=3, progress=False)
    assert ds.built and ds.weights[0].shape[0] == 4
    assert "not a readable torch file" in capsys.readouterr().err


def _tamper(path, edit) -> None:
    blob = torch.load(path, weights_only=True)
    edit(blob)
    torch.save(blob, path)


def test_changed_or_non_finite_cache_is_rebuilt(tmp_path, capsys) -> None:
    first = load_dataset("digits-inr", tmp_path, n=4, steps=3, progress=False)

    def shift_weights(blob):
        blob["weights"][1][0, 0, 0] += 1.0

    _tamper(first.path, shift_weights)
    again = load_dataset("digits-inr", tmp_path, n=4, steps=3, progress=False)
    assert again.built and "checksum" in capsys.readouterr().err
    assert torch.equal(again.weights[1], first.weights[1])  # the refit restores the INRs

    def poison(blob):
        blob["weights"][0][1, 0, 0] = float("nan")
        blob["checksum"] = cache.checksum(blob)  # a consistent but non-finite file

    _tamper(first.path, poison)
    third = load_dataset("digits-inr", tmp_path, n=4, steps=3, progress=False)
    assert third.built and "non-finite" in capsys.readouterr().err
    assert torch.isfinite(third.weights[0]).all()


def _resealed(edit):
    """An edit, then a checksum recomputed over the edited blob: a consistent file whose
    contents no longer match what its recipe gives."""

    def apply(blob):
        edit(blob)
        if all(t.layout == torch.strided for t in cache._tensors_of(blob)):  # else not summable
            blob["checksum"] = cache.checksum(blob)

    return apply


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (lambda b: b["weights"].__setitem__(0, b["weights"][0][:3]), "weights[0] has shape"),
        (lambda b: b.update(signals=b["signals"][:, :10]), "signals has shape"),
        (lambda b: b.pop("movement"), "missing ['movement']"),
        (lambda b: b.update(extra=torch.zeros(2)), "unexpected ['extra']"),
        (lambda b: b.update(labels=b["labels"].float()), "expected an integer one"),
        (lambda b: b["labels"].__setitem__(0, 99), "labels holds values outside [0, 10)"),
        (lambda b: b.update(mse=b["mse"].to_sparse()), "mse is not a dense tensor"),
    ],
    ids=["sliced", "sliced-signals", "missing", "extra", "dtype", "labels", "sparse"],
)
def test_a_cache_that_does_not_hold_its_recipe_is_rebuilt(edit, why, tmp_path, capsys) -> None:
    first = load_dataset("digits-inr", tmp_path, n=4, steps=3, progress=False)
    _tamper(first.path, _resealed(edit))
    again = load_dataset("digits-inr", tmp_path, n=4, steps=3, progress=False)
    err = capsys.readouterr().err
    assert again.built and "does not hold what its recipe gives" in err and why in err, err
    assert again.weights[0].shape == first.weights[0].shape
    assert not load_dataset("digits-inr", tmp_path, n=4, steps=3, progress=False).built


def test_a_cache_whose_recipe_is_not_json_is_rebuilt(tmp_path, capsys) -> None:
    first = load_dataset("digits-inr", tmp_path, n=4, steps=3, progress=False)
    blob = torch.load(first.path, weights_only=True)
    blob["recipe"] = {**blob["recipe"], "n": torch.tensor(4)}  # loads, but is no JSON
    torch.save(blob, first.path)
    again = load_dataset("digits-inr", tmp_path, n=4, steps=3, progress=False)
    assert again.built and "its recipe is not JSON" in capsys.readouterr().err


def test_a_fifo_at_the_cache_path_is_refused_not_read_forever(tmp_path) -> None:
    """Checked in a child process, so that a regression fails instead of hanging."""
    recipe = default_recipe("digits-inr", n=4, steps=3)
    os.mkfifo(tmp_path / recipe.filename())
    probe = (
        "from dws_theory.inr.data.datasets import load_dataset\n"
        f"ds = load_dataset('digits-inr', {str(tmp_path)!r}, n=4, steps=3, progress=False)\n"
        "print(ds.built)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=True
    )
    assert done.stdout.split() == ["True"]
    assert "it is not a regular file; refitting" in done.stderr
    assert stat.S_ISREG((tmp_path / recipe.filename()).stat().st_mode), "replaced by the fit"


def test_a_full_disk_while_caching_warns_and_leaves_no_file(tmp_path) -> None:
    """Files may not grow past 4 KB in the child (EFBIG, as a full disk refuses a write):
    torch's own file writer raised RuntimeError there, which escaped as a traceback."""
    probe = (
        "import resource, signal, warnings\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "import torch\n"
        "from pathlib import Path\n"
        "from dws_theory.inr.data import cache\n"
        "blob = {'recipe': {}, 'x': torch.zeros(10_000)}\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        f"    print(cache.write(Path({str(tmp_path / 'c.pt')!r}), blob, 'the data is'))\n"
        "print(caught[0].message)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    printed = done.stdout.splitlines()
    assert printed[0] == "False" and "the data is kept in memory" in printed[1], done.stdout
    assert list(tmp_path.iterdir()) == [], "no partial file, no temporary"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_cache_keeps_the_fit_in_memory(tmp_path) -> None:
    cache = tmp_path / "ro"
    cache.mkdir()
    cache.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.warns(UserWarning, match="kept in memory"):
            ds = load_dataset("digits-inr", cache, n=4, steps=3, progress=False)
        assert ds.built and ds.weights[0].shape[0] == 4 and not list(cache.iterdir())
    finally:
        cache.chmod(stat.S_IRWXU)


def test_unwritable_cache_keeps_the_fit_in_memory(tmp_path, monkeypatch) -> None:
    # The same path as a read-only directory, for any user: the rename fails.
    def fail(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(datasets.os, "replace", fail)
    with pytest.warns(UserWarning, match="kept in memory"):
        ds = load_dataset("digits-inr", tmp_path, n=4, steps=3, progress=False)
    assert ds.built and ds.weights[0].shape[0] == 4
    assert not list(tmp_path.iterdir()), "the temporary file is removed"


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
    common = ["--cache-dir", str(tmp_path), "--n", "5", "--steps", "5"]
    args = parser.parse_args(["data", "digits-inr", *common])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "PSNR" in out and "built" in out and str(tmp_path) in out and "first layer" in out
    args = parser.parse_args(["data", "digits-inr", *common])
    assert args.func(args) == 0
    assert "loaded" in capsys.readouterr().out
    args = parser.parse_args(["data", "digits-dilate", *common, "--json"])
    assert args.func(args) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["n"] == 5 and stats["built"] is False and 0 < stats["identity_mse"] < 1
    assert stats["recipe"]["init"] == "dwsnets"
    inr_tasks = {"digits-inr", "mnist-inr", "sine-inr", "digits-dilate", "mnist-dilate"}
    assert set(TASKS) == inr_tasks | {"digits-cnn-zoo", "transformer-zoo"}
    assert set(SOURCES) == {"digits-inr", "mnist-inr", "sine-inr"}
