"""Probe features: the input networks evaluated at learned points, invariant by construction."""

from __future__ import annotations

import pytest
import torch

from dws_theory.convert import weights_from_models
from dws_theory.examples import zoo_cnn
from dws_theory.frontends.module import from_module
from dws_theory.inr.data.siren import siren_forward
from dws_theory.inr.data.tasks import user_task
from dws_theory.inr.models.base import TaskInfo, UnsupportedTask
from dws_theory.inr.models.probes import GUESSES, ProbeFeatures, ProbeNet
from dws_theory.inr.train.augment import flip_hidden_signs, permute_hidden
from dws_theory.inr.train.normalize import fit_normalizer


def _info(dims, ws, bs, **kw) -> TaskInfo:
    return TaskInfo(
        task=user_task("toy", "classification", 3, 4),
        dims=dims,
        channels=1,
        w0=kw.pop("w0", None),
        coords=kw.pop("coords", None),
        normalizer=fit_normalizer(ws, bs, "orbit", "hidden", kw.pop("space", None)),
        **kw,
    )


def _sirens(dims=(2, 6, 6, 1), n=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ws = [torch.randn(n, 1, dims[m], dims[m - 1], generator=gen) / 5 for m in range(1, len(dims))]
    bs = [torch.randn(n, 1, d, generator=gen) / 5 for d in dims[1:]]
    return ws, bs


def test_probes_read_the_networks_at_their_points_and_ignore_the_symmetries() -> None:
    dims = (2, 6, 6, 1)
    ws, bs = _sirens(dims)
    coords = torch.rand(20, 2) * 2 - 1
    info = _info(dims, ws, bs, w0=30.0, coords=coords, activation="sine")
    probe = ProbeFeatures(info, points=8, out_features=4)
    raw = probe._evaluate_raw(ws, bs, probe.points.detach())
    expected = siren_forward([w[:, 0] for w in ws], [b[:, 0] for b in bs], probe.points, 30.0)
    torch.testing.assert_close(raw, expected)
    assert torch.equal(probe.points.detach(), coords[torch.linspace(0, 19, 8).round().long()])
    probe.eval()
    nw, nb = info.normalizer(ws, bs)
    out = probe(nw, nb)
    gen = torch.Generator().manual_seed(1)
    gw, gb = flip_hidden_signs(*permute_hidden(ws, bs, gen), gen)  # a sine network's symmetry
    torch.testing.assert_close(probe(*info.normalizer(gw, gb)), out, rtol=1e-4, atol=1e-5)
    # Gradients reach the points: they are learned.
    probe(nw, nb).sum().backward()
    assert probe.points.grad is not None and probe.points.grad.abs().sum() > 0


def test_probes_run_modules_per_network() -> None:
    torch.manual_seed(2)
    models = [zoo_cnn() for _ in range(3)]
    ws, bs = weights_from_models(models)
    space = from_module(models[0], "hidden")
    info = _info((1, 8, 8, 8, 10), ws, bs, example=zoo_cnn(), activation="relu")
    with pytest.raises(UnsupportedTask, match="input shape"):
        ProbeFeatures(info, 4, 4)
    info = _info(
        (1, 8, 8, 8, 10),
        ws,
        bs,
        example=zoo_cnn(),
        activation="relu",
        input_shape=(1, 8, 8),
        space=space,
    )
    probe = ProbeFeatures(info, 4, 4)
    raw = probe._evaluate_raw(ws, bs, probe.points.detach())
    for i, model in enumerate(models):  # the original networks, run on their own
        torch.testing.assert_close(raw[i], model(probe.points.detach()), rtol=1e-5, atol=1e-6)


def test_probes_put_split_tensors_back_into_the_module() -> None:
    """A transformer's space splits attention's in-projection into per-head query, key and
    value tensors: the probes put them back and run the real networks."""
    from dws_theory.inr.data.transformer_zoo import TransformerZooRecipe

    torch.manual_seed(3)
    recipe = TransformerZooRecipe()
    models = [recipe.module() for _ in range(2)]
    ws, bs = weights_from_models(models)
    assert len(ws) + len(bs) > len(list(models[0].parameters()))  # split, not one per param
    info = _info(
        (8, 16, 10),
        ws,
        bs,
        example=recipe.module(),
        activation="relu",
        input_shape=(8, 8),
        space=from_module(models[0], "hidden"),
    )
    probe = ProbeFeatures(info, 3, 4)
    raw = probe._evaluate_raw(ws, bs, probe.points.detach())
    for i, model in enumerate(models):
        want = model(probe.points.detach())
        torch.testing.assert_close(raw[i], want, rtol=1e-5, atol=1e-5)
    # with inputs of the networks' domain (a zoo's images) the points start at a spread of them
    domain = torch.randn(10, 8, 8)
    info = _info(
        (8, 16, 10),
        ws,
        bs,
        example=recipe.module(),
        activation="relu",
        input_shape=(8, 8),
        space=from_module(models[0], "hidden"),
        domain=domain,
    )
    torch.testing.assert_close(ProbeFeatures(info, 4, 4).points.detach(), domain[[0, 3, 6, 9]])


def test_without_a_declared_activation_the_probes_try_each_guess() -> None:
    dims = (2, 4, 1)
    ws, bs = _sirens(dims)
    guessing = ProbeFeatures(_info(dims, ws, bs), 8, 4)
    raw = guessing._evaluate_raw(ws, bs, guessing.points.detach())
    assert raw.shape == (5, 8, len(GUESSES))
    for i, activation in enumerate(GUESSES):
        one = ProbeFeatures(_info(dims, ws, bs, activation=activation, w0=30.0), 8, 4)
        torch.testing.assert_close(raw[..., i : i + 1], one._evaluate_raw(ws, bs, one.points))
    net = ProbeNet(_info(dims, ws, bs, activation="tanh"), 8)
    assert net(*_info(dims, ws, bs).normalizer(ws, bs)).shape == (5, 3)
    cnn = zoo_cnn()
    cnn_ws, cnn_bs = weights_from_models([cnn, zoo_cnn(), zoo_cnn()])
    with pytest.raises(UnsupportedTask, match="declared activation"):
        ProbeFeatures(
            _info(
                (1, 8, 8, 8, 10),
                cnn_ws,
                cnn_bs,
                example=cnn,
                input_shape=(1, 8, 8),
                space=from_module(cnn, "hidden"),
            ),
            4,
            4,
        )
