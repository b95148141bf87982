"""Weight-space models (equivariant, NFN peer, baselines): training steps and symmetry."""

from __future__ import annotations

import copy

import pytest
import torch

from dws_theory.inr.data.collection import from_dataset
from dws_theory.inr.data.datasets import load_dataset
from dws_theory.inr.data.tasks import TASKS
from dws_theory.inr.models.base import Architecture, UnsupportedTask
from dws_theory.inr.models.equivariant import NFN_MISSING, build_dws, nfn_available
from dws_theory.inr.models.norms import _batch_moments
from dws_theory.inr.models.table import MODELS, get_model
from dws_theory.inr.train.augment import flip_hidden_signs, permute_hidden
from dws_theory.inr.train.loop import batch_loss, evaluate, get_batch, predict, prepare, train_step

N = 24
FIT_STEPS = 30
ARCH = Architecture(probes=0)  # the layers and norms alone (tests/inr/test_probes.py: probes)
EQUIVARIANT = ("dws", "dws-all", "dws-signed", "nfn")
ALL_MODELS = (*EQUIVARIANT, "mlp", "mlp-aug", "stats", "pixels")
SMALL_TASKS = ("digits-inr", "sine-inr", "digits-dilate")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("inr-models-cache"))


@pytest.fixture(scope="module")
def datasets(cache_dir):
    return {
        t: load_dataset(t, cache_dir, n=N, steps=FIT_STEPS, progress=False) for t in SMALL_TASKS
    }


def _prepared(datasets, task: str, model: str = "dws", dtype=torch.float32, canonical=False):
    """The models' own symmetries are tested on raw inputs (no canonical form) unless asked."""
    ds = datasets[task]
    p = prepare(from_dataset(ds), get_model(model).symmetry, canonicalize=canonical)
    if dtype == torch.float64:
        p = _double(p)
    return p


def _double(p):
    from dataclasses import replace

    data = p.data
    data = replace(
        data,
        weights=[w.double() for w in data.weights],
        biases=[b.double() for b in data.biases],
        targets=data.targets.double() if data.targets.is_floating_point() else data.targets,
        coords=None if data.coords is None else data.coords.double(),
    )
    norm = p.normalizer
    norm = replace(
        norm,
        weight_mean=tuple(t.double() for t in norm.weight_mean),
        weight_std=tuple(t.double() for t in norm.weight_std),
        bias_mean=tuple(t.double() for t in norm.bias_mean),
        bias_std=tuple(t.double() for t in norm.bias_std),
    )
    return replace(p, data=data, normalizer=norm, info=replace(p.info, normalizer=norm))


def _build(name: str, p):
    if name == "nfn" and not nfn_available():
        pytest.skip(f"nfn is not installed ({NFN_MISSING})")
    torch.manual_seed(0)
    return get_model(name).build(p.info, ARCH)


def test_registered() -> None:
    get_model("dws")
    assert set(ALL_MODELS) <= set(MODELS)
    with pytest.raises(ValueError, match="registered"):
        get_model("nope")


@pytest.mark.parametrize("task", SMALL_TASKS)
@pytest.mark.parametrize("name", ALL_MODELS)
def test_one_step_decreases_loss(datasets, task: str, name: str) -> None:
    p = _prepared(datasets, task, name)
    try:
        model = _build(name, p)
    except UnsupportedTask:
        assert name in {"stats", "pixels"} and task == "digits-dilate", (name, task)
        return
    idx = p.data.splits["train"][:16]
    ws, bs = get_batch(p, idx)
    # Measured as the step sees it: in training mode (batch statistics; no dropout by
    # default). Eval mode would read running statistics that the step itself moves.
    with torch.no_grad():
        before = batch_loss(model.train(), p, ws, bs, idx).item()
    # A small plain gradient step must descend (Adam's first step is a sign step of fixed
    # size, which need not). The step is sized to lower the loss by about 0.1% to first
    # order, whatever the model's gradient scale.
    model.zero_grad()
    batch_loss(model.train(), p, ws, bs, idx).backward()
    g2 = sum(float(q.grad.pow(2).sum()) for q in model.parameters() if q.grad is not None)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3 * before / max(g2, 1e-12))
    train_step(model, p, ws, bs, idx, opt)
    with torch.no_grad():
        after = batch_loss(model.train(), p, ws, bs, idx).item()
    assert after < before, (name, task, before, after)


def _perturbed(model: torch.nn.Module) -> torch.nn.Module:
    # Random (non-zero) parameters everywhere: the zero-initialised residual head of the
    # weight-to-weight models would make equivariance trivially true.
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for q in model.parameters():
            q.add_(0.2 * torch.randn(q.shape, generator=gen, dtype=q.dtype))
    return model.eval()


@pytest.mark.parametrize("name", ["dws", "dws-all", "dws-signed", "nfn", "mlp-aug", "stats"])
def test_invariant_models_with_their_normalisation_ignore_hidden_permutations(datasets, name):
    # End to end on raw weights: normalisation (fitted for the model's symmetry) + model.
    p = _prepared(datasets, "digits-inr", name, torch.float64)
    model = _perturbed(_build(name, p).double())
    ws, bs = get_batch(p, p.data.splits["train"][:8])
    pw, pb = permute_hidden(ws, bs, torch.Generator().manual_seed(3))
    assert not torch.equal(pw[1], ws[1])
    with torch.no_grad():
        out, out_p = predict(model, p, ws, bs), predict(model, p, pw, pb)
    if name == "mlp-aug":  # augmentation teaches invariance; it does not build it in
        assert not torch.allclose(out_p, out, atol=1e-6)
        return
    torch.testing.assert_close(out_p, out, atol=1e-9, rtol=1e-9)
    assert out.std(0).abs().max() > 1e-6  # the output depends on the input at all


@pytest.mark.parametrize("mode", ["hidden", "signed"])
def test_dilation_model_is_equivariant_to_hidden_permutations(datasets, mode: str) -> None:
    p = _prepared(datasets, "digits-dilate", "dws" if mode == "hidden" else "dws-signed")
    p = _double(p)
    torch.manual_seed(2)
    model = _perturbed(build_dws(p.info, ARCH, mode).double())
    ws, bs = get_batch(p, p.data.splits["train"][:6])
    nw, nb = p.normalizer(ws, bs)
    pw, pb = permute_hidden(nw, nb, torch.Generator().manual_seed(4))
    with torch.no_grad():
        dw, db = model(nw, nb)
        # Permuting the input permutes the output the same way (same generator state).
        expect_w, expect_b = permute_hidden(dw, db, torch.Generator().manual_seed(4))
        got_w, got_b = model(pw, pb)
        for g, e in zip(got_w + got_b, expect_w + expect_b, strict=True):
            torch.testing.assert_close(g, e, atol=1e-9, rtol=1e-9)
        # So the rendered output image (input + residual, decoded) is unchanged.
        rw, rb = permute_hidden(ws, bs, torch.Generator().manual_seed(4))
        torch.testing.assert_close(
            predict(model, p, rw, rb), predict(model, p, ws, bs), atol=1e-8, rtol=1e-8
        )
    assert dw[1].abs().max() > 1e-6


def test_signed_model_is_invariant_to_sign_flips(datasets) -> None:
    p = _prepared(datasets, "digits-inr", "dws-signed", torch.float64)
    model = _perturbed(_build("dws-signed", p).double())
    ws, bs = get_batch(p, p.data.splits["train"][:8])
    fw, fb = flip_hidden_signs(ws, bs, torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(
            predict(model, p, fw, fb), predict(model, p, ws, bs), atol=1e-9, rtol=1e-9
        )
        # The hidden-mode model is NOT sign invariant: the test can tell the difference.
        q = _prepared(datasets, "digits-inr", "dws", torch.float64)
        plain = _perturbed(_build("dws", q).double())
        assert not torch.allclose(predict(plain, q, fw, fb), predict(plain, q, ws, bs), atol=1e-6)
        # ... unless its inputs are put in the sign-canonical form first (train's default).
        c = _prepared(datasets, "digits-inr", "dws", torch.float64, canonical=True)
        plain = _perturbed(_build("dws", c).double())
        torch.testing.assert_close(
            predict(plain, c, fw, fb), predict(plain, c, ws, bs), atol=1e-9, rtol=1e-9
        )


def test_nfn_missing_names_pip_install(monkeypatch, datasets) -> None:
    import builtins

    real_import = builtins.__import__

    def no_nfn(name, *args, **kwargs):
        if name == "nfn" or name.startswith("nfn."):
            raise ImportError("No module named 'nfn'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_nfn)
    from dws_theory.inr.models.equivariant import build_nfn

    with pytest.raises(ImportError, match="pip install nfn"):
        build_nfn(_prepared(datasets, "digits-inr").info, ARCH)


def test_dilation_models_start_as_identity(datasets) -> None:
    for name in (*EQUIVARIANT, "mlp"):
        if name == "nfn" and not nfn_available():
            continue
        p = _prepared(datasets, "digits-dilate", name)
        nw, nb = p.normalizer(*get_batch(p, p.data.splits["train"][:4]))
        dw, db = _build(name, p)(nw, nb)
        assert all(t.abs().max() == 0 for t in list(dw) + list(db)), name


def test_identity_residual_renders_the_input(datasets) -> None:
    p = _prepared(datasets, "digits-dilate", "mlp")
    model = _build("mlp", p)  # zero-initialised head: output = input INR
    ds = datasets["digits-dilate"]
    idx = ds.splits["test"]
    from dws_theory.inr.data.siren import render

    rendered = render([w[idx] for w in ds.weights], [b[idx] for b in ds.biases], ds.coords)
    expected = (rendered[..., 0] - ds.targets[idx].reshape(len(idx), -1)).pow(2).mean().item()
    assert evaluate(model, p, "test") == pytest.approx(expected, rel=1e-4)


def test_subsample_train_is_fixed_and_leaves_other_splits(datasets) -> None:
    data = from_dataset(datasets["sine-inr"])
    a, b = data.subsample_train(5), data.subsample_train(5)
    assert len(a.splits["train"]) == 5 and torch.equal(a.splits["train"], b.splits["train"])
    assert set(a.splits["train"].tolist()) <= set(data.splits["train"].tolist())
    assert torch.equal(a.splits["test"], data.splits["test"])
    assert data.subsample_train(None) is data
    with pytest.raises(ValueError, match="n_train between 1 and"):
        data.subsample_train(len(data.splits["train"]) + 1)


@pytest.mark.parametrize("mode", ["hidden", "signed"])
def test_batch_statistics_keep_the_symmetry_in_training_mode(datasets, mode: str) -> None:
    # In training mode the norm uses batch statistics: permuting (or sign-flipping) each
    # sample's hidden neurons independently must still leave every prediction unchanged.
    p = _prepared(datasets, "digits-inr", "dws", torch.float64)
    torch.manual_seed(5)
    model = _perturbed(build_dws(p.info, ARCH, mode).double()).train()
    ws, bs = p.normalizer(*get_batch(p, p.data.splits["train"][:8]))
    gw, gb = permute_hidden(ws, bs, torch.Generator().manual_seed(8))
    if mode == "signed":
        gw, gb = flip_hidden_signs(gw, gb, torch.Generator().manual_seed(9))
    with torch.no_grad():
        torch.testing.assert_close(model(gw, gb), model(ws, bs), atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("training", [True, False])
def test_fused_and_explicit_batch_statistics_agree(training: bool) -> None:
    # One process uses F.batch_norm; data-parallel runs compute the moments explicitly (to
    # all-reduce them). Both paths must give the same outputs and running statistics.
    from dws_theory.inr.models.norms import SymmetricBatchNorm

    torch.manual_seed(6)
    xs = [torch.randn(5, 3, 4, 2, dtype=torch.float64), torch.randn(5, 3, 4, dtype=torch.float64)]
    a = SymmetricBatchNorm(2, 3, center=True).double().train(training)
    with torch.no_grad():
        a.scale.uniform_(0.5, 2.0)
        a.shift.uniform_(-1.0, 1.0)
        a.running_mean.uniform_(-1.0, 1.0)
        a.running_var.uniform_(0.5, 2.0)
    b = copy.deepcopy(a)
    for i, x in enumerate(xs):
        torch.testing.assert_close(a._fused(i, x), b._explicit(i, x), atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(a.running_var, b.running_var, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(a.running_mean, b.running_mean, atol=1e-10, rtol=1e-10)
    # And the explicit moments are the plain per-channel ones.
    mean, var, count = _batch_moments(xs[0], center=True)
    torch.testing.assert_close(mean, xs[0].mean(dim=(0, 2, 3)))
    torch.testing.assert_close(var, xs[0].var(dim=(0, 2, 3), correction=0))
    assert count == 5 * 4 * 2


def test_all_tasks_are_known() -> None:
    assert set(SMALL_TASKS) <= set(TASKS)


@pytest.mark.parametrize("mode", ["hidden", "all", "signed"])
def test_max_readout_keeps_the_model_invariant_and_is_read(datasets, mode: str) -> None:
    p = _prepared(datasets, "digits-inr", "dws", torch.float64)
    torch.manual_seed(11)
    arch = Architecture(hidden_channels=4, num_layers=2, max_readout=True, probes=0)
    model = _perturbed(build_dws(p.info, arch, mode).double())
    ws, bs = p.normalizer(*get_batch(p, p.data.splits["train"][:6]))
    gw, gb = permute_hidden(ws, bs, torch.Generator().manual_seed(12))
    if mode == "signed":
        gw, gb = flip_hidden_signs(gw, gb, torch.Generator().manual_seed(13))
    with torch.no_grad():
        out = model(ws, bs)
        torch.testing.assert_close(model(gw, gb), out, atol=1e-9, rtol=1e-9)
        model.max_proj.weight.mul_(2.0)  # the readout reaches the output
        assert (model(ws, bs) - out).abs().max() > 1e-6
