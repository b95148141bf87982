"""The CNN zoo task: Kendall tau against scipy, and the zoo build on a tiny setting."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import kendalltau

from dws_theory.inr.metrics import kendall_tau
from dws_theory.inr.zoo import ZooRecipe, build_zoo


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
