"""The transformer zoo task: batched training, stored accuracies, weight-space layout, the
group of the transformer acting on the zoo, the cache, and the CLI end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dws_theory.cli import main as cli_main
from dws_theory.convert import module_from_weights, weights_from_models
from dws_theory.frontends.module import trace_module
from dws_theory.group import random_element
from dws_theory.inr.data.collection import from_transformer_zoo
from dws_theory.inr.data.layout import flatten_weights, unflatten_weights
from dws_theory.inr.data.transformer_zoo import (
    TransformerZooRecipe,
    build_transformer_zoo,
    digits_tokens,
    init_params,
    load_transformer_zoo,
    minibatches,
    train_transformers,
)
from dws_theory.inr.data.zoo import draw_configs
from dws_theory.inr.models.base import Architecture, UnsupportedTask
from dws_theory.inr.models.table import get_model
from dws_theory.inr.train.loop import predict, prepare
from dws_theory.testing import act

# A tiny zoo for everything below: a dozen transformers trained a few steps (seconds).
TINY = TransformerZooRecipe(n=12, steps=(2, 6), chunk=5, n_pool=200)


def _alone_with_torch_adamw(config, pool_x, pool_y) -> dict[str, torch.Tensor]:
    """One transformer trained the plain way: its nn.Module (default attention kernels),
    torch.optim.AdamW, one minibatch per step."""
    model = TINY.module().double()
    model.load_state_dict(init_params(TINY, config, torch.float64))
    opt = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, eps=1e-8
    )
    idx = minibatches(config, len(pool_x), TINY.batch_size, config.steps)
    for step in range(config.steps):
        opt.zero_grad()
        logits = model(pool_x[idx[step]].double())
        torch.nn.functional.cross_entropy(logits, pool_y[idx[step]]).backward()
        opt.step()
    return {k: v.detach() for k, v in model.named_parameters()}


def test_batched_training_equals_one_transformer_alone() -> None:
    """The vmapped chunk trains every transformer as torch.optim.AdamW trains it alone,
    including those that stop earlier than others in the chunk."""
    configs = draw_configs(TINY)[:4]  # type: ignore[arg-type]
    assert len({c.steps for c in configs}) > 1  # some stop early inside the chunk
    pool_x, pool_y, _, _ = digits_tokens(TINY.n_pool, TINY.seed)
    batched = train_transformers(TINY, configs, pool_x, pool_y, torch.float64)
    for i, config in enumerate(configs):
        alone = _alone_with_torch_adamw(config, pool_x, pool_y)
        for name, value in alone.items():
            torch.testing.assert_close(batched[name][i], value, rtol=1e-9, atol=1e-10)
            assert not torch.equal(value, init_params(TINY, config, torch.float64)[name])


def test_build_is_deterministic() -> None:
    recipe = TransformerZooRecipe(n=6, steps=(1, 3), chunk=4, n_pool=100)
    a, b = build_transformer_zoo(recipe, progress=False), build_transformer_zoo(recipe, False)
    assert a["checksum"] == b["checksum"]


def test_stored_accuracy_and_layout_are_the_networks(tmp_path) -> None:
    """Each stored accuracy is what the stored parameters score in a plain nn.Module in eval
    mode (PyTorch's fused path) on the held-out images, network by network; the dataset's
    weight-space tensors are what the converters read off that module."""
    ds = load_transformer_zoo(tmp_path, TINY, progress=False)
    _, _, held_x, held_y = digits_tokens(TINY.n_pool, TINY.seed)
    names = [n for n, _ in TINY.module().named_parameters()]
    hyper = draw_configs(TINY)  # type: ignore[arg-type]
    for i in range(ds.n):
        model = TINY.module().double().eval()
        model.load_state_dict({n: p[i].double() for n, p in zip(names, ds.params, strict=True)})
        with torch.no_grad():
            acc = (model(held_x.double()).argmax(-1) == held_y).double().mean().item()
        assert ds.accuracy[i].item() == pytest.approx(acc)
        assert ds.hyper[i, 3].item() == hyper[i].steps  # rows line up with their configs
        ws, bs = weights_from_models([model.float()])
        for got, want in zip([*ds.weights, *ds.biases], [*ws, *bs], strict=True):
            torch.testing.assert_close(got[i : i + 1], want)
    assert len(ds.weights) == 12 and len(ds.biases) == 9  # q, k, v split per head
    assert 0.0 <= ds.accuracy.min() < ds.accuracy.max() <= 1.0


def _gap(model, p, ws, bs, gws, gbs) -> float:
    with torch.no_grad():
        return float((predict(model, p, ws, bs) - predict(model, p, gws, gbs)).abs().max())


def test_models_are_invariant_to_the_transformers_group(tmp_path) -> None:
    """Random elements of the group the front end derives (heads as blocks, query/key and
    value dims per head, the residual stream, the feed-forward units) keep every zoo
    transformer's function, and the dws and stats models' predictions (float64: to rounding);
    moving one query dim without its key dim (outside the group) changes dws's."""
    ds = load_transformer_zoo(tmp_path, TINY, progress=False)
    data = from_transformer_zoo(ds)
    space = trace_module(TINY.module()).space
    assert any(s.parent is not None for s in space.sets)  # per-head sets nested in heads
    rng = np.random.default_rng(0)
    x = digits_tokens(TINY.n_pool, TINY.seed)[2][:7].double()
    ws, bs = [w.double() for w in ds.weights], [b.double() for b in ds.biases]
    moved = [act(space, random_element(space, rng), ws, bs) for _ in range(3)]
    template = TINY.module().double().eval()
    for gws, gbs in moved:
        assert any(not torch.equal(a, b) for a, b in zip(ws, gws, strict=True))
        for i in range(3):
            before = module_from_weights(template, ws, bs, i)(x)
            torch.testing.assert_close(module_from_weights(template, gws, gbs, i)(x), before)
    torch.manual_seed(0)
    for name in ("dws", "stats"):
        spec = get_model(name)
        p = prepare(data, spec.symmetry)
        arch = Architecture(hidden_channels=4, head_hidden=8)
        model = spec.build(p.info, arch).double().eval()
        for gws, gbs in moved:
            assert _gap(model, p, ws, bs, gws, gbs) < 1e-9
        if name == "dws":
            q = [t.name for t in space.tensors if len(t.axes) >= 2].index(
                "layers_0_self_attn_in_proj_weight_0"
            )
            outside = [w.clone() for w in ws]
            outside[q] = outside[q][:, :, :, [1, 0, *range(2, outside[q].shape[3])]]
            assert _gap(model, p, ws, bs, outside, bs) > 1e-6


def test_nfn_is_refused_on_attention(tmp_path) -> None:
    data = from_transformer_zoo(load_transformer_zoo(tmp_path, TINY, progress=False))
    spec = get_model("nfn")
    with pytest.raises(UnsupportedTask, match="attention"):
        spec.build(prepare(data, spec.symmetry).info, Architecture(hidden_channels=4))


def test_corrupted_cache_is_rebuilt_and_a_valid_one_used(tmp_path, capsys) -> None:
    first = load_transformer_zoo(tmp_path, TINY, progress=False)
    assert first.built and not load_transformer_zoo(tmp_path, TINY, progress=False).built
    first.path.write_bytes(first.path.read_bytes()[:100])  # a truncated write
    again = load_transformer_zoo(tmp_path, TINY, progress=False)
    assert again.built and "is not used" in capsys.readouterr().err
    torch.testing.assert_close(again.accuracy, first.accuracy)
    assert not load_transformer_zoo(tmp_path, TINY, progress=False).built


def test_recipe_errors_are_one_line() -> None:
    with pytest.raises(ValueError, match="divisible by heads"):
        TransformerZooRecipe(d_model=10, heads=4)
    with pytest.raises(ValueError, match="positive integer"):
        TransformerZooRecipe(layers=0)


def test_cli_data_and_train(tmp_path, capsys) -> None:
    common = ["--cache-dir", str(tmp_path), "--n", "24"]
    assert cli_main(["data", "transformer-zoo", "--json", "--steps", "4"] + common) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["n"] == 24 and sum(stats["splits"].values()) == 24
    assert stats["params_per_network"] == sum(p.numel() for p in TINY.module().parameters())
    assert cli_main(["data", "transformer-zoo", "--steps", "4"] + common) == 0
    assert "24 transformers" in capsys.readouterr().out
    for model in ("dws", "stats", "mlp"):
        argv = ["train", "transformer-zoo", "--model", model, "--epochs", "1", "--json"]
        assert cli_main(argv + ["--quiet", "--fit-steps", "4"] + common) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["metric"] == "test_kendall_tau" and -1.0 <= result["value"] <= 1.0


def test_flat_layout_round_trips_more_weights_than_biases() -> None:
    ws = [torch.randn(3, 1, 2, 4), torch.randn(3, 1, 2, 8, 4), torch.randn(3, 1, 2, 8)]
    bs = [torch.randn(3, 1, 2)]
    flat = flatten_weights(ws, bs)
    assert flat.shape == (3, 8 + 2 + 64 + 16)
    torch.testing.assert_close(flat[:, 8:10], bs[0][:, 0])  # W1, b1, then the rest
    back_w, back_b = unflatten_weights(flat, [w.shape[1:] for w in ws], [b.shape[1:] for b in bs])
    for got, want in zip([*back_w, *back_b], [*ws, *bs], strict=True):
        assert torch.equal(got, want)
