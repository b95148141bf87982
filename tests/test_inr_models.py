"""Equivariant INR models (dws, dws-all, dws-signed, nfn): training, symmetry, CLI contract."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from dws_theory.inr.baselines import permute_hidden
from dws_theory.inr.datasets import TASKS, load_dataset
from dws_theory.inr.equivariant import NFN_MISSING, build_dws, nfn_available
from dws_theory.inr.train import (
    MODELS,
    add_train_parser,
    batch_loss,
    get_batch,
    predict,
    prepare,
    subsample_train,
    train_step,
)

N = 24
FIT_STEPS = 30
EQUIVARIANT = ("dws", "dws-all", "dws-signed", "nfn")
JSON_KEYS = {"task", "model", "seed", "metric", "value", "params", "seconds"}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("inr-models-cache"))


@pytest.fixture(scope="module")
def prepared(cache_dir):
    return {
        t: prepare(load_dataset(t, cache_dir, n=N, steps=FIT_STEPS, progress=False)) for t in TASKS
    }


def _double(ws, bs):
    return [w.double() for w in ws], [b.double() for b in bs]


def _flip_hidden_signs(ws, bs, gen: torch.Generator):
    """Flip the sign of random hidden neurons (rows of W_k, b_k and columns of W_{k+1})."""
    ws, bs = list(ws), list(bs)
    batch = ws[0].shape[0]
    for k in range(1, len(ws)):
        d = ws[k - 1].shape[-2]
        s = torch.randint(0, 2, (batch, 1, d), generator=gen).to(ws[0].dtype) * 2 - 1
        ws[k - 1] = ws[k - 1] * s.unsqueeze(-1)
        bs[k - 1] = bs[k - 1] * s
        ws[k] = ws[k] * s.unsqueeze(-2)
    return ws, bs


def test_registered() -> None:
    for name in ("dws", "dws-all", "dws-signed"):
        assert name in MODELS
    assert ("nfn" in MODELS) or not nfn_available()


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("name", EQUIVARIANT)
def test_one_step_decreases_loss(prepared, task: str, name: str) -> None:
    if name == "nfn" and not nfn_available():
        pytest.skip(f"nfn is not installed ({NFN_MISSING})")
    data = prepared[task]
    torch.manual_seed(0)
    model = MODELS[name](data.info)
    batch = get_batch(data, data.splits["train"][:16])
    model.eval()
    with torch.no_grad():
        before = batch_loss(model, data.info, batch).item()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    train_step(model, data.info, batch, opt)
    model.eval()
    with torch.no_grad():
        after = batch_loss(model, data.info, batch).item()
    assert after < before, (name, task, before, after)


def _perturbed(model: torch.nn.Module) -> torch.nn.Module:
    # Random (non-zero) parameters everywhere: the zero-initialised residual head of the
    # weight-to-weight models would make equivariance trivially true.
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model.eval()


@pytest.mark.parametrize("mode", ["hidden", "all", "signed"])
def test_classifier_is_invariant_to_hidden_permutations(prepared, mode: str) -> None:
    data = prepared["digits-inr"]
    torch.manual_seed(1)
    model = _perturbed(build_dws(data.info, mode).double())
    ws, bs, _ = get_batch(data, data.splits["train"][:8])
    ws, bs = _double(ws, bs)
    pw, pb = permute_hidden(ws, bs, torch.Generator().manual_seed(3))
    assert not torch.equal(pw[1], ws[1])
    with torch.no_grad():
        out, out_p = model(ws, bs), model(pw, pb)
    torch.testing.assert_close(out_p, out, atol=1e-9, rtol=1e-9)
    assert out.std(0).abs().max() > 1e-6  # the output depends on the input at all


@pytest.mark.parametrize("mode", ["hidden", "signed"])
def test_dilation_model_is_equivariant_to_hidden_permutations(prepared, mode: str) -> None:
    data = prepared["digits-dilate"]
    info = data.info
    torch.manual_seed(2)
    model = _perturbed(build_dws(info, mode).double())
    ws, bs, _ = get_batch(data, data.splits["train"][:6])
    ws, bs = _double(ws, bs)
    gen = torch.Generator().manual_seed(4)
    pw, pb = permute_hidden(ws, bs, gen)
    with torch.no_grad():
        dw, db = model(ws, bs)
        # Permuting the input permutes the output the same way (same generator state).
        expect_w, expect_b = permute_hidden(dw, db, torch.Generator().manual_seed(4))
        got_w, got_b = model(pw, pb)
        for g, e in zip(got_w + got_b, expect_w + expect_b, strict=True):
            torch.testing.assert_close(g, e, atol=1e-9, rtol=1e-9)
        # So the rendered output image (input + residual, decoded) is unchanged.
        info64 = _info_double(info)
        img = predict(model, info64, ws, bs)
        img_p = predict(model, info64, pw, pb)
    torch.testing.assert_close(img_p, img, atol=1e-8, rtol=1e-8)
    assert dw[1].abs().max() > 1e-6


def _info_double(info):
    from dataclasses import replace

    return replace(info, coords=info.coords.double())


def test_signed_model_is_invariant_to_sign_flips(prepared) -> None:
    data = prepared["digits-inr"]
    torch.manual_seed(3)
    model = _perturbed(build_dws(data.info, "signed").double())
    ws, bs, _ = get_batch(data, data.splits["train"][:8])
    ws, bs = _double(ws, bs)
    fw, fb = _flip_hidden_signs(ws, bs, torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(model(fw, fb), model(ws, bs), atol=1e-9, rtol=1e-9)
        # The hidden-mode model is NOT sign invariant: the test can tell the difference.
        plain = _perturbed(build_dws(data.info, "hidden").double())
        assert not torch.allclose(plain(fw, fb), plain(ws, bs), atol=1e-6)


def test_nfn_peer_is_invariant(prepared) -> None:
    if not nfn_available():
        pytest.skip(f"nfn is not installed ({NFN_MISSING})")
    data = prepared["digits-inr"]
    torch.manual_seed(4)
    model = _perturbed(MODELS["nfn"](data.info).double())
    ws, bs, _ = get_batch(data, data.splits["train"][:8])
    ws, bs = _double(ws, bs)
    pw, pb = permute_hidden(ws, bs, torch.Generator().manual_seed(6))
    with torch.no_grad():
        torch.testing.assert_close(model(pw, pb), model(ws, bs), atol=1e-9, rtol=1e-9)


def test_nfn_missing_names_pip_install(monkeypatch, prepared) -> None:
    import builtins

    real_import = builtins.__import__

    def no_nfn(name, *args, **kwargs):
        if name == "nfn" or name.startswith("nfn."):
            raise ImportError("No module named 'nfn'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_nfn)
    from dws_theory.inr.equivariant import build_nfn

    with pytest.raises(ImportError, match="pip install nfn"):
        build_nfn(prepared["digits-inr"].info)


def test_dilation_models_start_as_identity(prepared) -> None:
    data = prepared["digits-dilate"]
    ws, bs, _ = get_batch(data, data.splits["train"][:4])
    for name in EQUIVARIANT:
        if name == "nfn" and not nfn_available():
            continue
        dw, db = MODELS[name](data.info)(ws, bs)
        assert all(t.abs().max() == 0 for t in list(dw) + list(db)), name


def test_subsample_train_is_fixed_and_leaves_other_splits(prepared) -> None:
    data = prepared["sine-inr"]
    a, b = subsample_train(data, 5), subsample_train(data, 5)
    assert len(a.splits["train"]) == 5 and torch.equal(a.splits["train"], b.splits["train"])
    assert set(a.splits["train"].tolist()) <= set(data.splits["train"].tolist())
    assert torch.equal(a.splits["test"], data.splits["test"])
    assert subsample_train(data, None) is data


def test_train_cli_json_contract_for_dws(cache_dir, capsys) -> None:
    parser = argparse.ArgumentParser()
    add_train_parser(parser.add_subparsers())
    argv = ["train", "digits-inr", "--model", "dws", "--epochs", "1", "--seed", "2", "--json"]
    argv += ["--cache-dir", cache_dir, "--n", str(N), "--fit-steps", str(FIT_STEPS)]
    argv += ["--n-train", "8", "--quiet"]
    args = parser.parse_args(argv)
    rc = args.func(args)
    out = capsys.readouterr().out
    assert rc == 0
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1
    obj = json.loads(lines[0])
    assert set(obj) == JSON_KEYS
    assert obj["model"] == "dws" and obj["seed"] == 2 and obj["task"] == "digits-inr"
    assert obj["metric"] == "test_accuracy" and 0.0 <= obj["value"] <= 1.0
    assert obj["params"] == sum(p.numel() for p in build_dws(_info(cache_dir)).parameters())


def _info(cache_dir: str):
    ds = load_dataset("digits-inr", cache_dir, n=N, steps=FIT_STEPS, progress=False)
    return prepare(ds).info


@pytest.mark.parametrize("mode", ["hidden", "signed"])
def test_batch_statistics_keep_the_symmetry_in_training_mode(prepared, mode: str) -> None:
    # In training mode the norm uses batch statistics: permuting (or sign-flipping) each
    # sample's hidden neurons independently must still leave every prediction unchanged.
    data = prepared["digits-inr"]
    torch.manual_seed(5)
    model = _perturbed(build_dws(data.info, mode).double()).train()
    ws, bs, _ = get_batch(data, data.splits["train"][:8])
    ws, bs = _double(ws, bs)
    gw, gb = permute_hidden(ws, bs, torch.Generator().manual_seed(8))
    if mode == "signed":
        gw, gb = _flip_hidden_signs(gw, gb, torch.Generator().manual_seed(9))
    with torch.no_grad():
        torch.testing.assert_close(model(gw, gb), model(ws, bs), atol=1e-9, rtol=1e-9)
