"""The CNN zoo task: its batched training, stored accuracies, symmetry, cache, CLI and metric."""

from __future__ import annotations

import json

import pytest
import torch
from scipy.stats import kendalltau

from dws_theory.cli import main as cli_main
from dws_theory.inr.data import cache
from dws_theory.inr.data.collection import from_zoo
from dws_theory.inr.data.zoo import (
    ZooRecipe,
    build_zoo,
    digits_split,
    draw_configs,
    init_params,
    load_zoo,
    minibatches,
    train_cnns,
    zoo_cnn,
)
from dws_theory.inr.models.base import Architecture
from dws_theory.inr.models.table import get_model
from dws_theory.inr.train.loop import predict, prepare
from dws_theory.inr.train.metrics import kendall_tau


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kendall_tau_matches_scipy_with_ties(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 5, (40,), generator=gen).double()
    y = x + torch.randint(0, 3, (40,), generator=gen).double()
    assert kendall_tau(x, y) == pytest.approx(kendalltau(x.numpy(), y.numpy()).statistic)


def test_kendall_tau_known_cases() -> None:
    x = torch.arange(5.0)
    assert kendall_tau(x, 2 * x) == pytest.approx(1.0)
    assert kendall_tau(x, -x) == pytest.approx(-1.0)


def test_zoo_build_is_deterministic() -> None:
    recipe = ZooRecipe(n=8, steps=(1, 3), chunk=4)
    a, b = build_zoo(recipe, progress=False), build_zoo(recipe, progress=False)
    assert a["checksum"] == b["checksum"]


# A tiny zoo for everything below: a handful of CNNs trained a few steps (seconds).
TINY = ZooRecipe(n=12, steps=(2, 6), chunk=5, n_pool=200)


def _single_with_torch_adamw(config, pool_x, pool_y, batch_size: int) -> dict[str, torch.Tensor]:
    """One CNN trained the plain way: an nn.Module, torch.optim.AdamW, one batch per step."""
    model = zoo_cnn().double()
    model.load_state_dict(init_params(config, torch.float64))
    opt = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, eps=1e-8
    )
    idx = minibatches(config, len(pool_x), batch_size, config.steps)
    for step in range(config.steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(
            model(pool_x[idx[step]].double()), pool_y[idx[step]]
        )
        loss.backward()
        opt.step()
    return {k: v.detach() for k, v in model.named_parameters()}


def test_batched_training_equals_torch_adamw_one_by_one() -> None:
    """The vmapped, elementwise AdamW of a chunk trains every CNN exactly as torch.optim.AdamW
    trains it alone, including CNNs that stop earlier than others in the chunk."""
    configs = draw_configs(TINY)[:4]
    assert len({c.steps for c in configs}) > 1  # some stop early inside the chunk
    pool_x, pool_y, _, _ = digits_split(TINY.n_pool, TINY.seed)
    batched = train_cnns(configs, pool_x, pool_y, TINY.batch_size, torch.float64)
    for i, config in enumerate(configs):
        alone = _single_with_torch_adamw(config, pool_x, pool_y, TINY.batch_size)
        for name, value in alone.items():
            torch.testing.assert_close(batched[name][i], value, rtol=1e-9, atol=1e-10)
            assert not torch.equal(value, init_params(config, torch.float64)[name])


def test_stored_accuracy_is_the_cnns_accuracy(tmp_path) -> None:
    """Each stored accuracy equals what the stored parameters score in a plain nn.Module on
    the held-out images, CNN by CNN (the zoo is stored in config order, not training order)."""
    ds = load_zoo(tmp_path, TINY, progress=False)
    _, _, held_x, held_y = digits_split(TINY.n_pool, TINY.seed)
    names = [n for n, _ in zoo_cnn().named_parameters()]
    kinds = iter(ds.weights), iter(ds.biases)
    stacks = [next(kinds[0]) if n.endswith("weight") else next(kinds[1]) for n in names]
    hyper = draw_configs(TINY)
    for i in range(ds.n):
        model = zoo_cnn().double()
        model.load_state_dict({n: s[i, 0].double() for n, s in zip(names, stacks, strict=True)})
        with torch.no_grad():
            acc = (model(held_x.double()).argmax(-1) == held_y).double().mean().item()
        assert ds.accuracy[i].item() == pytest.approx(acc)
        assert ds.hyper[i, 3].item() == hyper[i].steps  # rows line up with their configs


def _permute_hidden_channels(ws: list, bs: list, gen: torch.Generator) -> tuple[list, list]:
    """A random hidden-channel permutation of every zoo CNN in the batch layout [N, C, ...]."""
    ws, bs = [w.clone() for w in ws], [b.clone() for b in bs]
    for layer in range(len(ws) - 1):  # the hidden sets: outputs of the three convolutions
        perm = torch.randperm(ws[layer].shape[2], generator=gen)
        ws[layer], bs[layer] = ws[layer][:, :, perm], bs[layer][:, :, perm]
        ws[layer + 1] = ws[layer + 1][:, :, :, perm]
    return ws, bs


def test_hidden_permutation_keeps_the_cnn_function_and_the_models_predictions(tmp_path) -> None:
    """The group is right (permuted CNNs compute the same logits), the invariant models do not
    see it, and a change outside the group (flipping every kernel) does change dws."""
    ds = load_zoo(tmp_path, TINY, progress=False)
    data = from_zoo(ds)
    gen = torch.Generator().manual_seed(0)
    ws, bs = [w.double() for w in ds.weights], [b.double() for b in ds.biases]
    pws, pbs = _permute_hidden_channels(ws, bs, gen)

    def logits(w: list, b: list, i: int) -> torch.Tensor:
        model = zoo_cnn().double()
        params = [t[i, 0] for pair in zip(w, b, strict=True) for t in pair]
        for p, value in zip(model.parameters(), params, strict=True):
            p.data = value
        return model(torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(1)).double())

    for i in range(3):
        torch.testing.assert_close(logits(ws, bs, i), logits(pws, pbs, i))
    for name in ("dws", "nfn", "stats"):
        spec = get_model(name)
        p = prepare(data, spec.symmetry)
        torch.manual_seed(0)
        model = spec.build(p.info, Architecture(hidden_channels=4, head_hidden=8)).eval()
        f32 = [[t.float() for t in group] for group in (ws, bs, pws, pbs)]
        out = predict(model, p, f32[0], f32[1])
        torch.testing.assert_close(predict(model, p, f32[2], f32[3]), out, rtol=1e-4, atol=1e-5)
        if name == "dws":
            flipped = [w.flip(-1) if w.dim() == 6 else w for w in f32[0]]
            assert (predict(model, p, flipped, f32[1]) - out).abs().max() > 1e-3


def test_corrupted_zoo_cache_is_rebuilt(tmp_path, capsys) -> None:
    first = load_zoo(tmp_path, TINY, progress=False)
    first.path.write_bytes(first.path.read_bytes()[:100])  # a truncated write
    again = load_zoo(tmp_path, TINY, progress=False)
    assert again.built and "is not used" in capsys.readouterr().err
    torch.testing.assert_close(again.accuracy, first.accuracy)
    assert not load_zoo(tmp_path, TINY, progress=False).built  # the rebuilt file is used


def test_a_zoo_cache_that_does_not_hold_its_recipe_is_rebuilt(tmp_path, capsys) -> None:
    first = load_zoo(tmp_path, TINY, progress=False)
    blob = torch.load(first.path, weights_only=True)
    blob["params"][0] = blob["params"][0][:, :4]  # a sliced kernel, the checksum made to fit
    blob["checksum"] = cache.checksum(blob)
    torch.save(blob, first.path)
    again = load_zoo(tmp_path, TINY, progress=False)
    err = capsys.readouterr().err
    assert again.built and "params[0] has shape" in err, err
    assert [w.shape for w in again.weights] == [w.shape for w in first.weights]


def test_zoo_cli_data_and_train(tmp_path, capsys) -> None:
    common = ["--cache-dir", str(tmp_path), "--n", "30"]
    assert cli_main(["data", "digits-cnn-zoo", "--json", "--steps", "6"] + common) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["n"] == 30 and sum(stats["splits"].values()) == 30
    assert stats["params_per_cnn"] == sum(p.numel() for p in zoo_cnn().parameters())
    argv = ["train", "digits-cnn-zoo", "--model", "stats", "--epochs", "2", "--json", "--quiet"]
    assert cli_main(argv + common + ["--fit-steps", "6"]) == 0  # the zoo just built
    result = json.loads(capsys.readouterr().out)
    assert result["metric"] == "test_kendall_tau" and -1.0 <= result["value"] <= 1.0


@pytest.mark.parametrize(
    "extra, says",
    [
        (["--views", "2"], "INR fitting options"),
        (["--init", "siren"], "INR fitting options"),
        (["--augment", "rotate"], "only noise and dropout"),
        (["--model", "mlp-aug"], "not MLPs"),
    ],
)
def test_zoo_cli_refuses_inr_options(tmp_path, capsys, extra, says) -> None:
    argv = ["train", "digits-cnn-zoo", "--model", "dws", "--cache-dir", str(tmp_path)]
    argv += ["--n", "30", "--fit-steps", "6", "--epochs", "1", "--quiet"]
    assert cli_main(argv + extra) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and says in captured.err and captured.err.count("\n") == 1
