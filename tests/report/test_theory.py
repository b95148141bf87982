"""The sympy closed forms agree with `enumerate_basis`, exactly, and the theory page is current."""

from __future__ import annotations

from pathlib import Path

import pytest
import sympy
from hypothesis import given
from hypothesis import strategies as st

from dws_theory.basis import enumerate_basis
from dws_theory.certify import set_factor
from dws_theory.spec import Kind, mlp
from dws_theory.theory import (
    BLOCK_CLASSES,
    _symbolic_permuted,
    closed_forms,
    count,
    render_theory,
)

ROOT = Path(__file__).resolve().parents[2]
FORMS = {mode: closed_forms(mode) for mode in ("hidden", "all", "signed")}


def _family(out: str, inp: str) -> tuple[str, str, int | None]:
    """The test's own classification of a block W3 <- b2 into (W, b, delta), independent of
    the module's windows: delta = j - i when the tensors share a neuron set, else None."""
    a, i = out[0], int(out[1:])
    b, j = inp[0], int(inp[1:])
    sets_a = {i, i - 1} if a == "W" else {i}
    sets_b = {j, j - 1} if b == "W" else {j}
    return a, b, (j - i) if sets_a & sets_b else None


def _family_totals(basis) -> dict[tuple[str, str, int | None], int]:
    totals: dict[tuple[str, str, int | None], int] = {}
    for (out, inp), n in basis.block_counts().items():
        key = _family(out, inp)
        totals[key] = totals.get(key, 0) + n
    return totals


@pytest.mark.parametrize("mode", ["hidden", "all", "signed"])
def test_closed_forms_match_enumeration_for_every_depth_and_end_width(mode: str) -> None:
    """M = 1..30, d_0, d_M = 1..5 (hidden widths 2): totals and every family, as integers."""
    forms = FORMS[mode]
    for depth in range(1, 31):
        for d0 in range(1, 6):
            for dm in range(1, 6):
                basis = enumerate_basis(mlp([d0] + [2] * (depth - 1) + [dm], mode))
                where = f"{mode} M={depth} d0={d0} dM={dm}"
                assert count(forms.linear, depth, d0, dm) == basis.equivariant_linear, where
                assert count(forms.bias, depth, d0, dm) == basis.equivariant_bias, where
                assert count(forms.invariant, depth, d0, dm) == basis.invariant_linear, where
                if depth in (1, 2, 3, 4, 9, 30):  # families: every boundary case and beyond
                    totals = _family_totals(basis)
                    for cf in forms.classes:
                        key = (cf.cls.out, cf.cls.inp, cf.cls.delta)
                        assert count(cf.total, depth, d0, dm) == totals.get(key, 0), (where, key)


@given(
    depth=st.integers(1, 7),
    hidden=st.lists(st.integers(2, 5), min_size=6, max_size=6),
    d0=st.integers(1, 5),
    dm=st.integers(1, 5),
    mode=st.sampled_from(["hidden", "all", "signed"]),
)
def test_closed_forms_do_not_depend_on_hidden_widths_at_least_two(
    depth, hidden, d0, dm, mode
) -> None:
    basis = enumerate_basis(mlp([d0, *hidden[: depth - 1], dm], mode))
    assert count(FORMS[mode].linear, depth, d0, dm) == basis.equivariant_linear
    assert count(FORMS[mode].bias, depth, d0, dm) == basis.equivariant_bias


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 7])
def test_signed_forms_hold_for_hidden_width_one(depth: int) -> None:
    for d0 in range(1, 4):
        for dm in range(1, 4):
            for hidden in (1, 3):
                basis = enumerate_basis(mlp([d0] + [hidden] * (depth - 1) + [dm], "signed"))
                assert count(FORMS["signed"].linear, depth, d0, dm) == basis.equivariant_linear
                assert count(FORMS["signed"].bias, depth, d0, dm) == basis.equivariant_bias


def test_reference_values_from_the_brief() -> None:
    """The reference values and the 784-128-128-10 example, typed in by hand (not computed)."""
    assert count(FORMS["hidden"].linear, 3, 2, 1) == 75
    assert count(FORMS["all"].linear, 3, 2, 1) == 57
    assert count(FORMS["signed"].linear, 3, 2, 1) == 15
    assert count(FORMS["hidden"].bias, 3, 2, 1) == 7
    assert count(FORMS["all"].bias, 3, 2, 1) == 6
    assert count(FORMS["signed"].bias, 3, 2, 1) == 1
    assert count(FORMS["hidden"].linear, 4, 2, 1) == 117
    assert count(FORMS["hidden"].linear, 3, 784, 10) == 1_269_190
    same_layer = next(cf for cf in FORMS["hidden"].classes if cf.cls.title == r"W_i \leftarrow W_i")
    # W1 <- W1 alone is 2 d_0^2; the family adds W2<-W2 (4) and W3<-W3 (2 d_M^2).
    assert count(same_layer.total, 3, 784, 10) == 2 * 784**2 + 4 + 2 * 10**2


def test_symbolic_permuted_factor_matches_engine() -> None:
    n = sympy.Symbol("n", positive=True, integer=True)
    for t in range(6):
        expr = _symbolic_permuted(n, t)
        for width in range(1, 8):
            assert int(expr.subs(n, width)) == set_factor(Kind.PERMUTED, width, t), (t, width)


def test_families_cover_every_block_once() -> None:
    """The twelve families partition the 4 M^2 blocks (checked at M = 6 by counting)."""
    keys = [(c.out, c.inp, c.delta) for c in BLOCK_CLASSES]
    assert len(keys) == len(set(keys)) == 12
    depth = 6
    seen = {_family(o, i) for o in _names(depth) for i in _names(depth)}
    assert seen == set(keys)


def _names(depth: int) -> list[str]:
    return [f"{x}{m}" for m in range(1, depth + 1) for x in ("W", "b")]


def test_theory_page_is_current() -> None:
    """docs/theory.md is exactly what `python -m dws_theory.theory` writes."""
    page = (ROOT / "docs" / "theory.md").read_text(encoding="utf-8")
    assert page == render_theory(), "docs/theory.md drifted: run python -m dws_theory.theory"


def test_theory_page_reports_the_large_fixed_width_counts() -> None:
    page = render_theory()
    assert "1,269,190" in page  # 784-128-128-10 hidden, from the brief
    assert f"{2 * 784**2:,}" in page  # W1 <- W1 alone
