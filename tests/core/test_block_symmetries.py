"""The nested-set spec expresses the true symmetries of attention, LSTMs and GroupNorm.

Written by hand, no front end: the parameters of a real torch module are viewed as the
spec's tensors (a [H * d, E] projection as [H, d, E], a [4 H, in] LSTM weight as
[4, H, in], GroupNorm's [G c] affine as [G, c]), a random element of the spec's group is
applied (`dws_theory.testing.act`), the parameters are written back, and the module must
compute the same function (float64). A transformation outside the group (a query dim moved
without its key dim, a position moved between heads, one gate block's units permuted alone)
must change it: the spec claims neither less than it says (equivariance) nor more.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from dws_theory.basis import enumerate_basis
from dws_theory.group import random_element
from dws_theory.spec import WeightSpace
from dws_theory.testing import act


def attention_spec(embed: int, heads: int, dim: int) -> WeightSpace:
    return WeightSpace.parse(
        f"sets[e:{embed}:fixed heads:{heads}:permuted qk:{dim}:signed@heads "
        f"v:{dim}:signed@heads] tensors[q_w(heads,qk,e) k_w(heads,qk,e) v_w(heads,v,e) "
        "o_w(e,heads,v) q_b(heads,qk) k_b(heads,qk) v_b(heads,v) o_b(e)]"
    )


def _attention_tensors(m: nn.MultiheadAttention, heads: int) -> dict[str, torch.Tensor]:
    e = m.embed_dim
    d = e // heads
    w, b = m.in_proj_weight.detach(), m.in_proj_bias.detach()
    out = {}
    for k, name in enumerate("qkv"):
        out[f"{name}_w"] = w[k * e : (k + 1) * e].reshape(heads, d, e)
        out[f"{name}_b"] = b[k * e : (k + 1) * e].reshape(heads, d)
    out["o_w"] = m.out_proj.weight.detach().reshape(e, heads, d)
    out["o_b"] = m.out_proj.bias.detach()
    return out


def _load_attention(m: nn.MultiheadAttention, t: dict[str, torch.Tensor]) -> None:
    e = m.embed_dim
    with torch.no_grad():
        m.in_proj_weight.copy_(torch.cat([t[f"{n}_w"].reshape(e, e) for n in "qkv"]))
        m.in_proj_bias.copy_(torch.cat([t[f"{n}_b"].reshape(e) for n in "qkv"]))
        m.out_proj.weight.copy_(t["o_w"].reshape(e, e))
        m.out_proj.bias.copy_(t["o_b"])


def _moved(space: WeightSpace, t: dict[str, torch.Tensor], mover) -> dict[str, torch.Tensor]:
    """Apply `mover(space, weights, biases)` to the tensors as [1, 1, *shape] features."""
    weights = [n.name for n in space.tensors if len(n.axes) >= 2]
    biases = [n.name for n in space.tensors if len(n.axes) == 1]
    w, b = mover(space, [t[n][None, None] for n in weights], [t[n][None, None] for n in biases])
    return dict(zip(weights + biases, [x[0, 0] for x in w + b], strict=True))


def _attention_output(m: nn.MultiheadAttention, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return m(x, x, x, need_weights=False)[0]


def _attention(embed: int, heads: int, seed: int) -> nn.MultiheadAttention:
    torch.manual_seed(seed)
    m = nn.MultiheadAttention(embed, heads, batch_first=True).double()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_()
    return m


@given(heads=st.integers(1, 3), dim=st.integers(1, 3), seed=st.integers(0, 1000))
def test_the_wreath_group_with_signs_is_a_symmetry_of_multihead_attention(heads, dim, seed):
    embed = heads * dim
    space = attention_spec(embed, heads, dim)
    m = _attention(embed, heads, seed)
    x = torch.randn(2, 5, embed, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    before = _attention_output(m, x)
    g = random_element(space, np.random.default_rng(seed))
    _load_attention(m, _moved(space, _attention_tensors(m, heads), lambda s, w, b: act(s, g, w, b)))
    torch.testing.assert_close(_attention_output(m, x), before, rtol=1e-10, atol=1e-10)


def _changes(m: nn.MultiheadAttention, heads: int, space: WeightSpace, h) -> float:
    x = torch.randn(2, 5, m.embed_dim, dtype=torch.float64)
    before = _attention_output(m, x)
    _load_attention(m, _moved(space, _attention_tensors(m, heads), h))
    return float((_attention_output(m, x) - before).norm() / before.norm())


def test_a_query_dim_moved_without_its_key_dim_changes_attention():
    space = attention_spec(4, 2, 2)
    swap = torch.tensor([1, 0])

    def queries_only(space, weights, biases):
        names = [n.name for n in space.tensors if len(n.axes) >= 2]
        return [
            w.index_select(3, swap) if n in ("q_w", "q_b") else w
            for n, w in zip(names, weights, strict=True)
        ], biases

    assert _changes(_attention(4, 2, 0), 2, space, queries_only) > 1e-6


def test_a_position_moved_between_heads_changes_attention():
    from dws_theory.testing import outside_transformations

    space = attention_spec(4, 2, 2)
    across = [h for h in outside_transformations(space) if h.across_blocks]
    assert {h.set_name for h in across} == {"qk", "v"}
    for h in across:
        assert _changes(_attention(4, 2, 3), 2, space, h) > 1e-6


# -- gates ---------------------------------------------------------------------------------
LSTM_SPEC = (
    "sets[g:4:fixed h:{h}:permuted x:{x}:fixed] "
    "tensors[w_ih(g,h,x) w_hh(g,h,h) b_ih(g,h) b_hh(g,h)]"
)


def _lstm_tensors(m: nn.LSTM) -> dict[str, torch.Tensor]:
    h = m.hidden_size
    return {
        "w_ih": m.weight_ih_l0.detach().reshape(4, h, -1),
        "w_hh": m.weight_hh_l0.detach().reshape(4, h, h),
        "b_ih": m.bias_ih_l0.detach().reshape(4, h),
        "b_hh": m.bias_hh_l0.detach().reshape(4, h),
    }


def _load_lstm(m: nn.LSTM, t: dict[str, torch.Tensor]) -> None:
    h = m.hidden_size
    with torch.no_grad():
        m.weight_ih_l0.copy_(t["w_ih"].reshape(4 * h, -1))
        m.weight_hh_l0.copy_(t["w_hh"].reshape(4 * h, h))
        m.bias_ih_l0.copy_(t["b_ih"].reshape(4 * h))
        m.bias_hh_l0.copy_(t["b_hh"].reshape(4 * h))


def _lstm_output(m: nn.LSTM, x: torch.Tensor) -> torch.Tensor:
    """Hidden states and the final cell state summed over units: what a permutation of h
    must not change."""
    with torch.no_grad():
        out, (_, c_n) = m(x)
    return torch.cat([out.sum(-1).reshape(-1), c_n.sum(-1).reshape(-1)])


def test_the_spec_with_a_fixed_gate_set_expresses_the_lstm_symmetry():
    """weight_ih [4H, in] as (g, h, x) with g fixed: one permutation of h moves every gate
    block's rows, weight_hh's columns and both biases alike, and the LSTM's outputs (summed
    over units, since the units themselves are permuted) do not change. The space needs no
    nesting, so its basis is the plain product of per-set factors."""
    space = WeightSpace.parse(LSTM_SPEC.format(h=3, x=2))
    assert not space.nested
    assert enumerate_basis(space).block_counts()[("w_ih", "w_ih")] == 4 * 4 * 2 * 2 * 2
    torch.manual_seed(0)
    m = nn.LSTM(2, 3, batch_first=True).double()
    x = torch.randn(2, 6, 2, dtype=torch.float64)
    before = _lstm_output(m, x)
    g = random_element(space, np.random.default_rng(4))
    _load_lstm(m, _moved(space, _lstm_tensors(m), lambda s, w, b: act(s, g, w, b)))
    torch.testing.assert_close(_lstm_output(m, x), before, rtol=1e-10, atol=1e-10)
    # One gate block's units permuted alone is no symmetry.
    t = _lstm_tensors(m)
    t["w_ih"] = t["w_ih"].clone()
    t["w_ih"][0] = t["w_ih"][0, [1, 2, 0]]
    _load_lstm(m, t)
    assert float((_lstm_output(m, x) - before).norm()) > 1e-6


# -- groups --------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_groupnorm_is_symmetric_under_the_wreath_product_of_its_groups(seed):
    """GroupNorm(G, G c) between two 1x1 convs, channels viewed as (grp, ch): moving whole
    groups and positions inside each group by its own permutation keeps the function;
    moving one channel into another group does not."""
    space = WeightSpace.parse(
        "sets[i:2:fixed grp:3:permuted ch:2:permuted@grp] tensors[w1(grp,ch,i) "
        "b1(grp,ch) gn_w(grp,ch) gn_b(grp,ch) w2(i,grp,ch) b2(i)]"
    )
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(2, 6), nn.GroupNorm(3, 6), nn.Linear(6, 2)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_()
    params = {
        "w1": net[0].weight,
        "b1": net[0].bias,
        "gn_w": net[1].weight,
        "gn_b": net[1].bias,
        "w2": net[2].weight,
        "b2": net[2].bias,
    }

    def tensors():
        return {n: p.detach().reshape(space.shape(n)) for n, p in params.items()}

    def load(t):
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(t[n].reshape(p.shape))

    x = torch.randn(5, 2, dtype=torch.float64)
    with torch.no_grad():
        before = net(x)
    g = random_element(space, np.random.default_rng(seed))
    load(_moved(space, tensors(), lambda s, w, b: act(s, g, w, b)))
    with torch.no_grad():
        torch.testing.assert_close(net(x), before, rtol=1e-10, atol=1e-10)
    from dws_theory.testing import outside_transformations

    (across,) = [h for h in outside_transformations(space) if h.across_blocks]
    load(_moved(space, tensors(), across))
    with torch.no_grad():
        assert float((net(x) - before).norm()) > 1e-6
