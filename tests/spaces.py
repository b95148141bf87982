"""General weight spaces for the tests, written out by hand (no front end involved).

Three families, as a person would write their neuron sets down from the architecture:

- CNNs: Conv(c_0 -> c_1) ... Conv(c_{L-1} -> c_L), global average pooling, Linear(c_L -> o);
  kernel axes are fixed sets, one per kernel axis of each conv.
- residual MLPs: Linear(d -> s), blocks s -> m_j -> s added to the stream, Linear(s -> o);
  every tensor touching the stream shares its one set `s`.
- tied networks: Linear(d -> s), one square Linear(s -> s) applied twice, Linear(s -> o);
  the square weight has both axes on `s`.

Block symmetries (nested sets, a child set inside the blocks of its parent):

- attention: q, k, v projections [H * d, E] viewed as [H, d, E] (`Q(heads, qk, e)`), their
  biases [H, d], the output projection [E, H * d_v] viewed as [E, H, d_v]; q and k share
  the child set `qk`, v and the output projection's input the child set `v`;
- gates (LSTM/GRU): [G * H, ...] viewed as [G, H, ...], the gate axis a fixed set and the
  hidden units one permuted set (no nesting needed);
- groups (GroupNorm between two convs): channels [G * c] viewed as [G, c], groups the
  parent, positions inside a group the child.

The mode decides the kinds as for MLPs: `hidden` fixes the input and output sets, `all`
permutes them too, `signed` makes the hidden sets signed. Also: tensors as [B, C, *shape] for
any space, the group action written independently of the engine, and the flat vector in the
space's tensor order.
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import strategies as st

from dws_theory.group import GroupElement
from dws_theory.spec import Kind, NeuronSet, Tensor, WeightSpace

MODES = ("hidden", "all", "signed")
Tensors = dict[str, torch.Tensor]


def _kind(mode: str, end: bool) -> Kind:
    if end:
        return Kind.PERMUTED if mode == "all" else Kind.FIXED
    return Kind.SIGNED if mode == "signed" else Kind.PERMUTED


def cnn_space(
    channels: tuple[int, ...], kernels: tuple[tuple[int, ...], ...], out: int, mode: str
) -> WeightSpace:
    """channels c_0..c_L, one kernel shape per conv (1 or 2 axes), Linear(c_L -> out)."""
    depth = len(channels) - 1
    sets = [NeuronSet("c0", channels[0], _kind(mode, True))]
    tensors = []
    for k in range(1, depth + 1):
        sets.append(NeuronSet(f"c{k}", channels[k], _kind(mode, False)))
        kernel = [f"k{k}_{a}" for a in range(len(kernels[k - 1]))]
        sets += [
            NeuronSet(n, size, Kind.FIXED) for n, size in zip(kernel, kernels[k - 1], strict=True)
        ]
        tensors += [Tensor(f"conv{k}_w", (f"c{k}", f"c{k - 1}", *kernel))]
        tensors += [Tensor(f"conv{k}_b", (f"c{k}",))]
    sets.append(NeuronSet("o", out, _kind(mode, True)))
    tensors += [Tensor("fc_w", ("o", f"c{depth}")), Tensor("fc_b", ("o",))]
    return WeightSpace(tuple(sets), tuple(tensors))


def residual_space(d_in: int, width: int, hidden: tuple[int, ...], out: int, mode: str):
    """Linear(d_in -> width), one block width -> hidden[j] -> width per j, Linear(-> out)."""
    sets = [NeuronSet("i", d_in, _kind(mode, True)), NeuronSet("s", width, _kind(mode, False))]
    tensors = [Tensor("in_w", ("s", "i")), Tensor("in_b", ("s",))]
    for j, m in enumerate(hidden):
        sets.append(NeuronSet(f"m{j}", m, _kind(mode, False)))
        tensors += [Tensor(f"f{j}_w1", (f"m{j}", "s")), Tensor(f"f{j}_b1", (f"m{j}",))]
        tensors += [Tensor(f"f{j}_w2", ("s", f"m{j}")), Tensor(f"f{j}_b2", ("s",))]
    sets.append(NeuronSet("o", out, _kind(mode, True)))
    tensors += [Tensor("out_w", ("o", "s")), Tensor("out_b", ("o",))]
    return WeightSpace(tuple(sets), tuple(tensors))


def tied_space(d_in: int, width: int, out: int, mode: str) -> WeightSpace:
    """Linear(d_in -> width), a square Linear(width -> width) used twice, Linear(-> out)."""
    sets = (
        NeuronSet("i", d_in, _kind(mode, True)),
        NeuronSet("s", width, _kind(mode, False)),
        NeuronSet("o", out, _kind(mode, True)),
    )
    tensors = (
        Tensor("in_w", ("s", "i")),
        Tensor("in_b", ("s",)),
        Tensor("tied_w", ("s", "s")),
        Tensor("tied_b", ("s",)),
        Tensor("out_w", ("o", "s")),
        Tensor("out_b", ("o",)),
    )
    return WeightSpace(sets, tensors)


def attention_space(
    embed: int, heads: int, qk: int, v: int, mode: str, biases: bool = True
) -> WeightSpace:
    """One attention block: Q, K, V projections, their biases, the output projection and
    its bias. `e` (the block's input and output) is fixed in modes hidden and signed; in
    signed mode q/k and v dims are signed (flipping a q dim with its k dim, or a v dim with
    the output projection's column, keeps attention's function)."""
    child = Kind.SIGNED if mode == "signed" else Kind.PERMUTED
    sets = (
        NeuronSet("e", embed, _kind(mode, True)),
        NeuronSet("heads", heads, Kind.PERMUTED),
        NeuronSet("qk", qk, child, "heads"),
        NeuronSet("v", v, child, "heads"),
    )
    names = (("q", "qk"), ("k", "qk"), ("v", "v"))
    tensors = [Tensor(f"{n}_w", ("heads", c, "e")) for n, c in names]
    if biases:
        tensors += [Tensor(f"{n}_b", ("heads", c)) for n, c in names]
    tensors.append(Tensor("o_w", ("e", "heads", "v")))
    if biases:
        tensors.append(Tensor("o_b", ("e",)))
    return WeightSpace(sets, tuple(tensors))


def gated_space(gates: int, hidden: int, d_in: int, mode: str) -> WeightSpace:
    """One LSTM/GRU layer: weight_ih [G H, in] as (g, h, x), weight_hh [G H, H] as (g, h, h),
    both biases as (g, h); one permutation of h shared by every gate block."""
    sets = (
        NeuronSet("g", gates, Kind.FIXED),
        NeuronSet("h", hidden, _kind(mode, False)),
        NeuronSet("x", d_in, _kind(mode, True)),
    )
    tensors = (
        Tensor("w_ih", ("g", "h", "x")),
        Tensor("w_hh", ("g", "h", "h")),
        Tensor("b_ih", ("g", "h")),
        Tensor("b_hh", ("g", "h")),
    )
    return WeightSpace(sets, tensors)


def grouped_space(groups: int, per_group: int, d_in: int, kernel: int, mode: str) -> WeightSpace:
    """Conv1d(in -> G c), GroupNorm(G, G c), Conv1d(G c -> in): the channel axis as
    (grp, ch); whole groups move, and positions inside each group by its own permutation."""
    child = Kind.SIGNED if mode == "signed" else Kind.PERMUTED
    sets = (
        NeuronSet("i", d_in, _kind(mode, True)),
        NeuronSet("grp", groups, Kind.PERMUTED),
        NeuronSet("ch", per_group, child, "grp"),
        NeuronSet("k1", kernel, Kind.FIXED),
        NeuronSet("k2", kernel, Kind.FIXED),
    )
    tensors = (
        Tensor("conv1_w", ("grp", "ch", "i", "k1")),
        Tensor("conv1_b", ("grp", "ch")),
        Tensor("norm_w", ("grp", "ch")),
        Tensor("norm_b", ("grp", "ch")),
        Tensor("conv2_w", ("i", "grp", "ch", "k2")),
        Tensor("conv2_b", ("i",)),
    )
    return WeightSpace(sets, tensors)


# -- strategies (small: widths 1..4 on permuted sets, kernels 1..3) ------------------------------
widths = st.integers(1, 4)
ends = st.integers(1, 3)
modes = st.sampled_from(MODES)


@st.composite
def cnn_spaces(draw, max_convs: int = 2, max_kernel_axes: int = 2) -> WeightSpace:
    depth = draw(st.integers(1, max_convs))
    channels = (draw(ends), *draw(st.lists(widths, min_size=depth, max_size=depth)))
    axes = draw(st.integers(1, max_kernel_axes))
    kernel = st.lists(st.integers(1, 3), min_size=axes, max_size=axes).map(tuple)
    kernels = tuple(draw(kernel) for _ in range(depth))
    return cnn_space(channels, kernels, draw(ends), draw(modes))


@st.composite
def residual_spaces(draw, max_blocks: int = 2) -> WeightSpace:
    hidden = tuple(draw(st.lists(widths, min_size=1, max_size=max_blocks)))
    return residual_space(draw(ends), draw(widths), hidden, draw(ends), draw(modes))


@st.composite
def tied_spaces(draw) -> WeightSpace:
    return tied_space(draw(ends), draw(widths), draw(ends), draw(modes))


small = st.integers(1, 3)
any_kind = st.sampled_from(tuple(Kind))
moving = st.sampled_from((Kind.PERMUTED, Kind.SIGNED))

# Tensors of `nested_spaces`: on the plain set e, the parent p and its children c and w.
_NESTED = (
    ("A", ("p", "c", "e")),
    ("a", ("p", "c")),
    ("O", ("e", "p", "w")),
    ("g", ("p",)),
    ("S", ("p", "c", "p", "w")),
    ("P", ("p", "c", "w")),
    ("D", ("e", "p", "c", "p", "c")),
    ("b", ("e",)),
)


@st.composite
def nested_spaces(draw, width: st.SearchStrategy[int] = small) -> WeightSpace:
    """Random spaces with a nested set: a plain set e, a parent p (permuted or signed) and
    two children c, w of any kind; one to three tensors from `_NESTED`."""
    sets = (
        NeuronSet("e", draw(width), draw(any_kind)),
        NeuronSet("p", draw(width), draw(moving)),
        NeuronSet("c", draw(width), draw(any_kind), "p"),
        NeuronSet("w", draw(width), draw(any_kind), "p"),
    )
    chosen = draw(st.lists(st.sampled_from(_NESTED), min_size=1, max_size=3, unique=True))
    return WeightSpace(sets, tuple(Tensor(n, axes) for n, axes in chosen))


@st.composite
def attention_spaces(draw, width: st.SearchStrategy[int] = small) -> WeightSpace:
    return attention_space(
        draw(width), draw(width), draw(width), draw(width), draw(modes), draw(st.booleans())
    )


@st.composite
def gated_spaces(draw) -> WeightSpace:
    return gated_space(draw(st.integers(1, 4)), draw(small), draw(small), draw(modes))


@st.composite
def grouped_spaces(draw) -> WeightSpace:
    kernel = draw(st.integers(1, 2))
    return grouped_space(draw(small), draw(small), draw(small), kernel, draw(modes))


def block_spaces() -> st.SearchStrategy[WeightSpace]:
    """Attention blocks, gated recurrent layers and grouped channels, at small widths."""
    return st.one_of(attention_spaces(), gated_spaces(), grouped_spaces())


def general_spaces(max_kernel_axes: int = 2) -> st.SearchStrategy[WeightSpace]:
    return st.one_of(cnn_spaces(max_kernel_axes=max_kernel_axes), residual_spaces(), tied_spaces())


# -- tensors of a space ------------------------------------------------------------------------
def random_tensors(space: WeightSpace, batch: int, channels: int, gen: torch.Generator) -> Tensors:
    """Random [B, C, *shape] features per tensor, float64."""
    return {
        t.name: torch.randn(
            batch, channels, *space.shape(t.name), generator=gen, dtype=torch.float64
        )
        for t in space.tensors
    }


def split(space: WeightSpace, x: Tensors) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(weights, biases) of the layout contract: two or more axes, one axis; in order."""
    weights = [x[t.name] for t in space.tensors if len(t.axes) >= 2]
    biases = [x[t.name] for t in space.tensors if len(t.axes) == 1]
    return weights, biases


def joined(space: WeightSpace, weights, biases) -> Tensors:
    """The inverse of `split`."""
    names_w = [t.name for t in space.tensors if len(t.axes) >= 2]
    names_b = [t.name for t in space.tensors if len(t.axes) == 1]
    return dict(zip(names_w, weights, strict=True)) | dict(zip(names_b, biases, strict=True))


def flat(space: WeightSpace, x: Tensors) -> torch.Tensor:
    """[B, C, P]: tensors in the space's order, C order inside."""
    first = x[space.tensors[0].name]
    return torch.cat([x[t.name].reshape(*first.shape[:2], -1) for t in space.tensors], dim=2)


def act(space: WeightSpace, g: GroupElement, x: Tensors) -> Tensors:
    """y[.., i, ..] = sign[i] * x[.., perm[i], ..] along every axis (gather, then multiply)."""

    def one(t: torch.Tensor, name: str) -> torch.Tensor:
        for pos, set_name in enumerate(space.tensor(name).axes):
            dim = 2 + pos
            t = t.index_select(dim, torch.as_tensor(g.perm(set_name)))
            shape = [1] * t.dim()
            shape[dim] = -1
            t = t * torch.as_tensor(g.sign(set_name), dtype=t.dtype).view(shape)
        return t

    return {name: one(t, name) for name, t in x.items()}


def permute_axis(x: Tensors, name: str, axis: int, perm: np.ndarray) -> Tensors:
    """Permute one axis of one tensor alone (usually not a group element)."""
    out = dict(x)
    out[name] = x[name].index_select(2 + axis, torch.as_tensor(perm))
    return out


def relative_gap(a: Tensors, b: Tensors) -> float:
    num = sum(float(((a[k] - b[k]) ** 2).sum().detach()) for k in b) ** 0.5
    den = sum(float((b[k] ** 2).sum().detach()) for k in b) ** 0.5
    return num / den


def canonical(space: WeightSpace) -> tuple:
    """The space up to names: sets renamed by first appearance along the tensors' axes.

    Two spaces with equal canonical forms have the same tensors (in order, with the same
    shapes), the same sharing of sets between axes and the same kinds."""
    rename: dict[str, int] = {}
    tensors = []
    for t in space.tensors:
        for a in t.axes:
            rename.setdefault(a, len(rename))
        tensors.append(tuple(rename[a] for a in t.axes))
    kinds = {rename[s.name]: (s.size, s.kind.value) for s in space.sets if s.name in rename}
    return tuple(tensors), tuple(kinds[k] for k in range(len(rename)))
