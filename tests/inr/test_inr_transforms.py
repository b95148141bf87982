"""Input normalisation and weight-space augmentations of INR batches."""

from __future__ import annotations

import math

import pytest
import torch

from dws_theory.inr.data.siren import render, siren_init
from dws_theory.inr.train.augment import (
    AugmentConfig,
    augment,
    flip_hidden_signs,
    permute_hidden,
    rotation_matrices,
)
from dws_theory.inr.train.normalize import fit_normalizer

DIMS = (2, 12, 10, 1)


def _batch(n: int, seed: int, dims=DIMS, scheme: str = "siren"):
    # The SIREN init: every tensor non-zero, so every statistic is informative.
    ws, bs = siren_init(dims, n, torch.Generator().manual_seed(seed), scheme=scheme)
    ws = [w.double().unsqueeze(1) for w in ws]
    bs = [b.double().unsqueeze(1) + 0.3 for b in bs]  # a non-zero mean to subtract
    return ws, bs


def _close(xs, ys) -> None:
    for x, y in zip(xs, ys, strict=True):
        torch.testing.assert_close(x, y, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("symmetry", ["hidden", "all"])
def test_orbit_normalisation_commutes_with_permutations(symmetry: str) -> None:
    ws, bs = _batch(40, 0)
    norm = fit_normalizer(ws, bs, "orbit", symmetry)
    gen = torch.Generator().manual_seed(1)
    pw, pb = permute_hidden(ws, bs, gen)
    gen = torch.Generator().manual_seed(1)
    expected = permute_hidden(*norm(ws, bs), gen)
    _close(norm(pw, pb)[0] + norm(pw, pb)[1], expected[0] + expected[1])
    # Round trip.
    _close(norm.inverse(*norm(ws, bs))[0], ws)


def test_orbit_statistics_vary_only_along_fixed_axes() -> None:
    ws, bs = _batch(200, 2)
    ws[0] = ws[0] * torch.tensor([1.0, 5.0], dtype=torch.float64)  # input x twice ... y 5x
    norm = fit_normalizer(ws, bs, "orbit", "hidden")
    # W1 [d1, d0]: hidden rows pooled, one statistic per input coordinate (fixed columns).
    assert norm.weight_std[0].shape == (1, 1, 1, 2)
    assert norm.weight_std[0][..., 1] > 3 * norm.weight_std[0][..., 0]
    # Interior W2: both axes hidden, one scalar. Output bias b3: fixed, one per output.
    assert norm.weight_std[1].numel() == 1 and norm.bias_std[2].shape == (1, 1, 1)
    # With every neuron set permuted (`all`), W1's columns are pooled too.
    assert fit_normalizer(ws, bs, "orbit", "all").weight_std[0].numel() == 1
    # Per-entry statistics (the reference code's) keep every entry.
    assert fit_normalizer(ws, bs, "entry", None).weight_std[1].shape == (1, 1, 10, 12)
    # Normalised training data: zero mean, unit variance on every orbit.
    nw, _ = norm(ws, bs)
    torch.testing.assert_close(nw[0].mean(dim=(0, 1, 2)), torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(nw[0].std(dim=(0, 1, 2), correction=0), torch.ones(2).double())


def test_entry_normalisation_is_not_permutation_invariant() -> None:
    # The control for the test above: per-entry statistics do not commute with permutations.
    ws, bs = _batch(40, 3)
    norm = fit_normalizer(ws, bs, "entry", None)
    gen = torch.Generator().manual_seed(4)
    pw, pb = permute_hidden(ws, bs, gen)
    gen = torch.Generator().manual_seed(4)
    expected, _ = permute_hidden(*norm(ws, bs), gen)
    assert not torch.allclose(norm(pw, pb)[0][1], expected[1])


def test_signed_normalisation_commutes_with_sign_flips_and_subtracts_no_mean() -> None:
    ws, bs = _batch(40, 5)
    norm = fit_normalizer(ws, bs, "orbit", "signed")
    for t, has_signed_axis in zip(
        norm.weight_mean + norm.bias_mean, [True, True, True, True, True, False], strict=True
    ):
        assert t.abs().max() == 0 if has_signed_axis else t.abs().max() > 0
    gen = torch.Generator().manual_seed(6)
    fw, fb = flip_hidden_signs(ws, bs, gen)
    gen = torch.Generator().manual_seed(6)
    ew, eb = flip_hidden_signs(*norm(ws, bs), gen)
    nw, nb = norm(fw, fb)
    _close(nw + nb, ew + eb)
    # The hidden-mode normalisation subtracts means and so does not commute with flips.
    plain = fit_normalizer(ws, bs, "orbit", "hidden")
    assert not torch.allclose(plain(fw, fb)[1][0], flip_hidden_signs(*plain(ws, bs), gen)[1][0])


def test_scalar_normalisation_is_one_rms_per_tensor() -> None:
    ws, bs = _batch(30, 7)
    norm = fit_normalizer(ws, bs, "scalar")
    for x, m, s in zip(
        ws + bs, norm.weight_mean + norm.bias_mean, norm.weight_std + norm.bias_std, strict=True
    ):
        assert m.abs().max() == 0 and s.numel() == 1
        assert s.item() == pytest.approx(x.pow(2).mean().sqrt().item())


def test_unknown_normalisation_is_refused() -> None:
    ws, bs = _batch(4, 0)
    with pytest.raises(ValueError, match="normalisation"):
        fit_normalizer(ws, bs, "zscore")


# ----------------------------------------------------------------------------- augmentations

COORDS = torch.rand(50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2 - 1


def _render(ws, bs, coords=COORDS):
    return render(ws, bs, coords, 30.0)


def test_rotation_rotates_the_rendered_image() -> None:
    ws, bs = _batch(6, 8, scheme="dwsnets")
    aw, ab = augment(ws, bs, ["rotate"], torch.Generator().manual_seed(9))
    rot = rotation_matrices(6, 45.0, torch.Generator().manual_seed(9))  # the same draws
    assert not torch.allclose(rot[0], torch.eye(2, dtype=torch.float64))
    # g(x) = f(R x) for every sample's own R.
    for i in range(6):
        g = _render([w[i : i + 1] for w in aw], [b[i : i + 1] for b in ab])
        f = _render([w[i : i + 1] for w in ws], [b[i : i + 1] for b in bs], COORDS @ rot[i].T)
        torch.testing.assert_close(g, f, atol=1e-9, rtol=1e-9)
    _close(aw[1:] + ab, ws[1:] + bs)  # only W1 changes


def test_translation_and_scale_act_on_the_coordinates() -> None:
    ws, bs = _batch(5, 10, scheme="dwsnets")
    gen = torch.Generator().manual_seed(11)
    aw, ab = augment(ws, bs, ["translate"], gen)
    t = (
        torch.rand((5, 2), generator=torch.Generator().manual_seed(11), dtype=torch.float64) * 2 - 1
    ) * AugmentConfig().translate
    for i in range(5):
        g = _render([w[i : i + 1] for w in aw], [b[i : i + 1] for b in ab])
        f = _render([w[i : i + 1] for w in ws], [b[i : i + 1] for b in bs], COORDS + t[i])
        torch.testing.assert_close(g, f, atol=1e-9, rtol=1e-9)
    sw, sb = augment(ws, bs, ["scale"], torch.Generator().manual_seed(12))
    s = (
        1
        + (
            torch.rand((5,), generator=torch.Generator().manual_seed(12), dtype=torch.float64) * 2
            - 1
        )
        * AugmentConfig().scale
    )
    for i in range(5):
        g = _render([w[i : i + 1] for w in sw], [b[i : i + 1] for b in sb])
        f = _render([w[i : i + 1] for w in ws], [b[i : i + 1] for b in bs], COORDS * s[i])
        torch.testing.assert_close(g, f, atol=1e-9, rtol=1e-9)
    _close(sb, bs)


def test_noise_and_dropout_perturb_as_documented() -> None:
    ws, bs = _batch(64, 13)
    nw, nb = augment(ws, bs, ["noise"], torch.Generator().manual_seed(14))
    for x, y in zip(ws[:2], nw[:2], strict=True):
        rel = (y - x).flatten(1).std(dim=1) / x.flatten(1).std(dim=1, correction=0)
        assert rel.mean().item() == pytest.approx(0.1, rel=0.15)
    _close(nb[-1:], bs[-1:])  # one entry per sample: no spread to scale noise by
    dw, db = augment(ws, bs, ["dropout"], torch.Generator().manual_seed(15))
    dropped = torch.cat([(d != x).flatten() for d, x in zip(dw + db, ws + bs, strict=True)])
    zeros = torch.cat([(d == 0).flatten() for d in dw + db])
    assert torch.equal(dropped, zeros)  # what changed became zero, nothing was rescaled
    assert dropped.double().mean().item() == pytest.approx(0.01, abs=0.004)


def test_augmentations_of_a_batch_differ_per_sample_and_unknown_names_fail() -> None:
    ws, bs = _batch(4, 16)
    aw, _ = augment(ws, bs, ["rotate", "scale"], torch.Generator().manual_seed(17))
    ratios = (aw[0] / ws[0]).flatten(1)
    assert len({round(r, 6) for r in ratios[:, 0].tolist()}) == 4
    with pytest.raises(ValueError, match="augmentations"):
        augment(ws, bs, ["mirror"], torch.Generator())


def test_sign_flips_preserve_the_function_of_a_siren() -> None:
    ws, bs = _batch(5, 18, scheme="dwsnets")
    fw, fb = flip_hidden_signs(ws, bs, torch.Generator().manual_seed(19))
    assert not torch.equal(fw[0], ws[0])
    torch.testing.assert_close(_render(fw, fb), _render(ws, bs), atol=1e-10, rtol=1e-10)
    assert math.isfinite(_render(fw, fb).abs().max().item())
