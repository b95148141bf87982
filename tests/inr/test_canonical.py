"""Canonical forms of the sign and positive-scale symmetries: exact, unique per orbit, refused
where the activation lacks the symmetry."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import mlp_dims
from torch import nn

from dws_theory.convert import module_from_weights, weights_from_models
from dws_theory.examples import zoo_cnn
from dws_theory.frontends.module import from_module
from dws_theory.inr.data.collection import Collection
from dws_theory.inr.data.siren import siren_forward
from dws_theory.inr.data.tasks import user_task
from dws_theory.inr.train.canonical import (
    CanonicalError,
    canonicalizer,
    for_collection,
    mlp_rules,
    module_rules,
)
from dws_theory.spec import mlp

ACT = {"tanh": nn.Tanh, "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU}
KIND = {"tanh": "sign", "sine": "sign", "relu": "scale", "leaky_relu": "scale"}


def _mlps(dims: tuple[int, ...], activation: str, n: int, seed: int) -> list[nn.Sequential]:
    torch.manual_seed(seed)
    out = []
    for _ in range(n):
        layers: list[nn.Module] = []
        for m in range(1, len(dims)):
            layers.append(nn.Linear(dims[m - 1], dims[m]).double())
            if m < len(dims) - 1:
                layers.append(ACT[activation]())
        out.append(nn.Sequential(*layers))
    return out


def _draw(dims: tuple[int, ...], batch: int, kind: str, gen: torch.Generator):
    """Random per-neuron factors (signs, or positive scales over e^-2..e^2) and permutations
    of every hidden set."""
    factors, perms = [], []
    for d in dims[1:-1]:
        if kind == "sign":
            factors.append(torch.randint(0, 2, (batch, d), generator=gen).double() * 2 - 1)
        else:
            factors.append(torch.exp(4 * torch.rand(batch, d, generator=gen).double() - 2))
        perms.append(torch.randperm(d, generator=gen))
    return factors, perms


def _act(ws, bs, factors, perms):
    """The group element written out layer by layer (independent of the code under test):
    neuron i of hidden layer k: row and bias times s_i, outgoing column divided by s_i, then
    the layer's neurons permuted."""
    ws, bs = [w.clone() for w in ws], [b.clone() for b in bs]
    for k, (s, perm) in enumerate(zip(factors, perms, strict=True)):
        ws[k] = ws[k] * s[:, None, :, None]
        bs[k] = bs[k] * s[:, None, :]
        ws[k + 1] = ws[k + 1] / s[:, None, None, :]
        ws[k], bs[k] = ws[k][:, :, perm], bs[k][:, :, perm]
        ws[k + 1] = ws[k + 1][:, :, :, perm]
    return ws, bs


@pytest.mark.parametrize("activation", ["tanh", "relu", "leaky_relu"])
def test_the_networks_compute_the_same_function(activation: str) -> None:
    dims = (3, 7, 5, 6, 2)
    models = _mlps(dims, activation, 6, seed=1)
    ws, bs = weights_from_models(models)
    canon = canonicalizer(mlp(dims), mlp_rules(dims, activation))
    cw, cb = canon(ws, bs)
    x = torch.randn(11, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    for i, model in enumerate(models):
        rebuilt = module_from_weights(model, cw, cb, i)
        torch.testing.assert_close(rebuilt(x), model(x), rtol=1e-10, atol=1e-12)
    assert not all(torch.equal(a, b) for a, b in zip(cw + cb, ws + bs, strict=True))


def test_sirens_render_the_same_image() -> None:
    dims = (2, 16, 16, 1)
    gen = torch.Generator().manual_seed(3)
    ws = [torch.randn(4, 1, dims[m], dims[m - 1], generator=gen) / 4 for m in range(1, 4)]
    bs = [torch.randn(4, 1, dims[m], generator=gen) for m in range(1, 4)]
    cw, cb = canonicalizer(mlp(dims), mlp_rules(dims, "sine"))(ws, bs)
    coords = torch.rand(50, 2, generator=gen) * 2 - 1
    image = siren_forward([w[:, 0] for w in ws], [b[:, 0] for b in bs], coords)
    again = siren_forward([w[:, 0] for w in cw], [b[:, 0] for b in cb], coords)
    torch.testing.assert_close(again, image)


@given(dims=mlp_dims(max_depth=4, max_width=5), seed=st.integers(0, 2**16))
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_every_element_of_the_symmetry_has_the_same_canonical_form(
    activation: str, dims: tuple[int, ...], seed: int
) -> None:
    """canonical(P g x) = P canonical(x) for random flips / positive scalings g composed with
    hidden permutations P: one form for the whole orbit, up to the permutations that the
    equivariant models handle."""
    gen = torch.Generator().manual_seed(seed)
    ws = [
        torch.randn(3, 1, dims[m], dims[m - 1], generator=gen, dtype=torch.float64)
        for m in range(1, len(dims))
    ]
    bs = [torch.randn(3, 1, d, generator=gen, dtype=torch.float64) for d in dims[1:]]
    canon = canonicalizer(mlp(dims), mlp_rules(dims, activation))
    factors, perms = _draw(dims, 3, KIND[activation], gen)
    got_w, got_b = canon(*_act(ws, bs, factors, perms))
    ones = [torch.ones_like(f) for f in factors]
    want_w, want_b = _act(*canon(ws, bs), ones, perms)
    for a, b in zip(got_w + got_b, want_w + want_b, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_canonical_form_is_a_fixed_point() -> None:
    dims = (2, 6, 6, 1)
    for activation in ("tanh", "relu"):
        ws, bs = weights_from_models(_mlps(dims, activation, 5, seed=4))
        canon = canonicalizer(mlp(dims), mlp_rules(dims, activation))
        once = canon(ws, bs)
        twice = canon(*once)
        for a, b in zip(once[0] + once[1], twice[0] + twice[1], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_the_documented_rule() -> None:
    """Scale: incoming (row, bias) of unit norm. Sign: the largest-magnitude incoming entry
    positive; a tie of opposite signs falls to the sum of all incoming entries; a neuron with
    no incoming weight gets a zero outgoing column."""
    dims = (2, 3, 1)
    w1 = torch.tensor([[[[3.0, -4.0], [2.0, -2.0], [0.0, 0.0]]]], dtype=torch.float64)
    b1 = torch.tensor([[[1.0, 1.0, 0.0]]], dtype=torch.float64)
    w2 = torch.tensor([[[[1.0, 2.0, 5.0]]]], dtype=torch.float64)
    b2 = torch.tensor([[[0.5]]], dtype=torch.float64)
    (cw1, cw2), (cb1, cb2) = canonicalizer(mlp(dims), {"n1": "sign"})([w1, w2], [b1, b2])
    # neuron 0: -4 is the largest entry -> flipped; neuron 1: |2| = |-2| = |... tie of
    # opposite signs among {2, -2}: their sum is 0, the sum of all (2 - 2 + 1) = 1 > 0 -> kept
    torch.testing.assert_close(
        cw1[0, 0], torch.tensor([[-3.0, 4.0], [2.0, -2.0], [0.0, 0.0]]).double()
    )
    torch.testing.assert_close(cb1[0, 0], torch.tensor([-1.0, 1.0, 0.0]).double())
    torch.testing.assert_close(cw2[0, 0], torch.tensor([[-1.0, 2.0, 0.0]]).double())
    assert cb2.item() == 0.5
    (sw1, sw2), (sb1, _) = canonicalizer(mlp(dims), {"n1": "scale"})([w1, w2], [b1, b2])
    norms = torch.tensor([math.sqrt(26), 3.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(sw1[0, 0], w1[0, 0] / norms[:, None])
    torch.testing.assert_close(sb1[0, 0], b1[0, 0] / norms)
    torch.testing.assert_close(sw2[0, 0], torch.tensor([[math.sqrt(26), 6.0, 0.0]]).double())


def _zoo_batch(n: int, seed: int) -> tuple[list[nn.Module], list, list]:
    torch.manual_seed(seed)
    models = [zoo_cnn().double() for _ in range(n)]
    ws, bs = weights_from_models(models)
    return models, ws, bs


def test_the_cnn_zoo_gets_scale_forms_that_keep_its_function_and_unify_its_orbit() -> None:
    template = zoo_cnn()
    rules = module_rules(template, "relu")
    assert module_rules(template) == rules  # the trace finds the same from the ReLUs
    assert rules == {"n1": "scale", "n2": "scale", "n3": "scale"}
    canon = canonicalizer(from_module(template, "hidden"), rules)
    models, ws, bs = _zoo_batch(3, seed=5)
    cw, cb = canon(ws, bs)
    images = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    for i, model in enumerate(models):
        torch.testing.assert_close(module_from_weights(template, cw, cb, i)(images), model(images))
    # Scale every hidden channel (kernel slice and bias by s, the next layer's input by 1/s).
    gen = torch.Generator().manual_seed(6)
    sw, sb = [w.clone() for w in ws], [b.clone() for b in bs]
    for k in range(3):
        s = torch.exp(4 * torch.rand(3, 8, generator=gen, dtype=torch.float64) - 2)
        sw[k] = sw[k] * s.view(3, 1, 8, *[1] * (sw[k].dim() - 3))
        sb[k] = sb[k] * s.view(3, 1, 8)
        view = (3, 1, 1, 8) + (1,) * (sw[k + 1].dim() - 4)
        sw[k + 1] = sw[k + 1] / s.view(view)
    for a, b in zip(sum(canon(sw, sb), []), cw + cb, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("activation", ["gelu", "sigmoid", "silu"])
def test_an_activation_without_the_symmetry_is_refused(activation: str) -> None:
    with pytest.raises(CanonicalError, match="neither odd nor positively homogeneous"):
        mlp_rules((2, 4, 1), activation)


def test_refusals_name_the_reason() -> None:
    with pytest.raises(CanonicalError, match="expected an activation"):
        mlp_rules((2, 4, 1), "swish")
    with pytest.raises(CanonicalError, match="input set"):
        canonicalizer(mlp((2, 4, 1)), {"n0": "sign"})
    with pytest.raises(CanonicalError, match="output set"):
        canonicalizer(mlp((2, 4, 1)), {"n2": "scale"})
    gelu = nn.Sequential(nn.Linear(2, 4), nn.GELU(), nn.Linear(4, 1))
    assert module_rules(gelu) == {}
    pool = [nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 1)]
    sigmoid = nn.Sequential(nn.Conv1d(1, 4, 3), nn.Sigmoid(), *pool)
    assert module_rules(sigmoid) == {}
    with pytest.raises(CanonicalError, match="neither odd"):
        module_rules(sigmoid, "sigmoid")
    assert module_rules(sigmoid, "tanh") == {"n1": "sign"}  # the declared one stands for it
    odd = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1))
    assert module_rules(odd) == {"n1": "sign", "n2": "scale"}  # per set, from the trace


def _collection(activation: str | None, kind: str = "classification") -> Collection:
    dims = (2, 4, 1)
    n = 6
    ws = [torch.randn(n, 1, 4, 2), torch.randn(n, 1, 1, 4)]
    bs = [torch.randn(n, 1, 4), torch.randn(n, 1, 1)]
    idx = torch.arange(n)
    return Collection(
        task=user_task("toy", kind, 2, 2),
        dims=dims,
        weights=ws,
        biases=bs,
        targets=idx % 2,
        splits={"train": idx[:2], "val": idx[2:4], "test": idx[4:]},
        views=idx.unsqueeze(1),
        activation=activation,
    )


def test_train_canonicalises_where_exact_and_refuses_when_asked_where_not() -> None:
    assert for_collection(_collection("tanh")).kinds == ("sign",)
    assert for_collection(_collection("relu")).kinds == ("scale",)
    assert for_collection(_collection("tanh"), request=False) is None
    for activation in (None, "gelu"):
        assert for_collection(_collection(activation)) is None  # default: only where exact
        with pytest.raises(CanonicalError, match="cannot canonicalise toy"):
            for_collection(_collection(activation), request=True)
    given_targets = _collection("tanh", kind="weights")
    assert for_collection(given_targets) is None
    with pytest.raises(CanonicalError, match="targets are networks"):
        for_collection(given_targets, request=True)


def test_sets_that_read_each_other_are_refused_not_guessed() -> None:
    """A residual stream and the blocks on it read each other (no set can go first); a tied
    square weight has both axes on one set: the map is refused, never approximated."""
    from dws_theory.examples import residual_mlp, tied_mlp

    for module, match in ((residual_mlp(), "cycle"), (tied_mlp(), "two axes")):
        rules = module_rules(module)
        assert rules and set(rules.values()) == {"scale"}  # the trace finds the symmetry
        with pytest.raises(CanonicalError, match=match):
            canonicalizer(from_module(module, "hidden"), rules)
