"""General weight spaces for the tests, written out by hand (no front end involved).

Three families, as a person would write their neuron sets down from the architecture:

- CNNs: Conv(c_0 -> c_1) ... Conv(c_{L-1} -> c_L), global average pooling, Linear(c_L -> o);
  kernel axes are fixed sets, one per kernel axis of each conv.
- residual MLPs: Linear(d -> s), blocks s -> m_j -> s added to the stream, Linear(s -> o);
  every tensor touching the stream shares its one set `s`.
- tied networks: Linear(d -> s), one square Linear(s -> s) applied twice, Linear(s -> o);
  the square weight has both axes on `s`.

The mode decides the kinds as for MLPs: `hidden` fixes the input and output sets, `all`
permutes them too, `signed` makes the hidden sets signed. Also: tensors as [B, C, *shape] for
any space, the group action written independently of the engine, and the flat vector in the
space's tensor order.
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import strategies as st

from dws_theory.action import act_on_axes
from dws_theory.group import GroupElement
from dws_theory.spec import Kind, NeuronSet, Tensor, WeightSpace
from dws_theory.testing import random_inputs

MODES = ("hidden", "all", "signed")
NamedTensors = dict[str, torch.Tensor]  # by tensor name


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


def general_spaces(max_kernel_axes: int = 2) -> st.SearchStrategy[WeightSpace]:
    return st.one_of(cnn_spaces(max_kernel_axes=max_kernel_axes), residual_spaces(), tied_spaces())


# -- tensors of a space ------------------------------------------------------------------------
def random_tensors(
    space: WeightSpace, batch: int, channels: int, gen: torch.Generator
) -> NamedTensors:
    """Random float64 [B, C, *shape] features per tensor (`testing.random_inputs`)."""
    return joined(space, *random_inputs(space, batch, channels, gen))


def split(space: WeightSpace, x: NamedTensors) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(weights, biases) of the layout contract: two or more axes, one axis; in order."""
    weights = [x[t.name] for t in space.tensors if len(t.axes) >= 2]
    biases = [x[t.name] for t in space.tensors if len(t.axes) == 1]
    return weights, biases


def joined(space: WeightSpace, weights, biases) -> NamedTensors:
    """The inverse of `split`."""
    names_w = [t.name for t in space.tensors if len(t.axes) >= 2]
    names_b = [t.name for t in space.tensors if len(t.axes) == 1]
    return dict(zip(names_w, weights, strict=True)) | dict(zip(names_b, biases, strict=True))


def flat(space: WeightSpace, x: NamedTensors) -> torch.Tensor:
    """[B, C, P]: tensors in the space's order, C order inside."""
    first = x[space.tensors[0].name]
    return torch.cat([x[t.name].reshape(*first.shape[:2], -1) for t in space.tensors], dim=2)


def act(space: WeightSpace, g: GroupElement, x: NamedTensors) -> NamedTensors:
    """The group action (`dws_theory.action`, the one the package uses) on named tensors."""
    return {name: act_on_axes(t, space.tensor(name).axes, g) for name, t in x.items()}


def permute_axis(x: NamedTensors, name: str, axis: int, perm: np.ndarray) -> NamedTensors:
    """Permute one axis of one tensor alone (usually not a group element)."""
    out = dict(x)
    out[name] = x[name].index_select(2 + axis, torch.as_tensor(perm))
    return out


def relative_gap(a: NamedTensors, b: NamedTensors) -> float:
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
