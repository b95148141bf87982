"""The plan: frozen ops of one layer pair, no torch (step 1 of 3: plan, lower, emit).

A `LayerPlan` holds the weight space and the ops of the emitted `EquivariantLayer` and
`InvariantLayer`, in emission order. Each op is a frozen value: `Pool` (mean of one input
tensor over some neuron sets, fixed axes folded into channels), `Mix` (concatenate features,
ONE channel mix) and `Add` (ONE broadcast sum per output tensor). Every op knows the basis
patterns it implements (`.patterns`) and says in words what it does (`.describe()`), so the
derivation pages read the facts off the plan instead of re-deriving them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from ..orbits import Pattern
from ..spec import WeightSpace

__all__ = ["EQUIVARIANT", "INVARIANT", "Add", "LayerPlan", "Mix", "Op", "Pool", "Slot"]

EQUIVARIANT = "EquivariantLayer"
INVARIANT = "InvariantLayer"


@dataclass(frozen=True)
class Pool:
    """Op: mean over `pooled` axes of one input tensor, fixed axes folded into channels.

    The feature has shape [B, C * fold, *kept sizes]: channel index c * fold + f, where f runs
    over the folded axes' values in C order. It is computed from `source`: the tensor itself
    or an unfolded feature of it that already pooled part of `pooled` (cheaper to read). A
    feature that pools and folds nothing is the input itself and not an op (`is_identity`).
    """

    name: str
    layer: str  # EQUIVARIANT or INVARIANT
    tensor: str
    kept: tuple[str, ...]  # neuron sets kept, in the tensor's axis order
    pooled: tuple[str, ...]  # neuron sets averaged over
    folded: tuple[str, ...]  # fixed neuron sets folded into the channel axis
    fold: int  # product of the folded sizes
    source: str  # the tensor, or the feature this one is pooled further from
    patterns: tuple[Pattern, ...]  # every pattern that reads this feature
    kind: ClassVar[str] = "pool"
    summary: ClassVar[str] = (
        "a *pool* averages one input tensor over some neuron sets (once, shared by every "
        "pattern that reads it) and folds fixed axes into the channel axis"
    )

    @property
    def is_identity(self) -> bool:
        return not self.pooled and not self.folded

    def describe(self) -> str:
        """What the op reads and does, in words (Markdown)."""
        text = f"reads `{self.tensor}`"
        text += f"; mean over {', '.join(self.pooled)}" if self.pooled else ""
        text += f"; fixed {', '.join(self.folded)} folded into channels" if self.folded else ""
        return text


@dataclass(frozen=True)
class Slot:
    """Where one pattern's coefficients sit in a mix weight.

    Rows `[c_out * row, c_out * (row + f_out))` and columns `[c_in * column, c_in * (column +
    f_in))` of the weight, viewed as [c_out, f_out] x [c_in, f_in], hold the pattern's
    f_out x f_in basis elements (C order over its fixed labels, output axes first): basis
    elements `element .. element + f_out * f_in - 1`. `fan` is the fan-in (in units of c_in)
    that the initialisation divides by.
    """

    pattern: Pattern
    feature: str
    out: str | None
    element: int
    row: int
    column: int
    f_out: int
    f_in: int
    fan: int


@dataclass(frozen=True)
class Mix:
    """Op: concatenate `features` on the channel axis and apply ONE channel mix.

    The weight is [c_out * rows, c_in * width]; output tensor `out` owns rows
    [c_out * row, c_out * (row + f_out)) for each `(out, row, f_out)` in `outs`. Every output
    of one mix varies along the same neuron sets `kept` (and its own fixed axes, folded into
    its rows), so terms of several output tensors that read the same features share one GEMM.
    """

    name: str
    layer: str
    kept: tuple[str, ...]
    features: tuple[str, ...]
    outs: tuple[tuple[str | None, int, int], ...]
    slots: tuple[Slot, ...]
    rows: int
    width: int
    kind: ClassVar[str] = "mix"
    summary: ClassVar[str] = (
        "a *mix* concatenates pooled features on the channel axis and applies one "
        "channel-mixing matrix that holds the coefficients of every pattern listed"
    )

    @property
    def patterns(self) -> tuple[Pattern, ...]:
        return tuple(s.pattern for s in self.slots)

    def describe(self) -> str:
        """What the op writes, in words (Markdown)."""
        outs = ", ".join(f"`{out}`" for out, _, _ in self.outs if out is not None)
        return f"one channel mix holding these coefficients, for {outs or 'the invariant output'}"


@dataclass(frozen=True)
class Add:
    """Op: ONE broadcast sum into output tensor `out` of its mix terms and its bias orbit.

    `terms` are the mixes with a block for `out`, smallest first. With `fused`, the last
    term (the identity GEMM, every axis kept) accumulates into the sum of the others
    (`_MixAdd`: one full-size buffer, no separate pass).
    """

    name: str
    layer: str
    out: str
    terms: tuple[str, ...]
    bias: Pattern | None
    bias_element: int  # first bias element in Basis.bias order (-1: no bias orbit)
    f_out: int
    fused: bool
    patterns: tuple[Pattern, ...]
    kind: ClassVar[str] = "add"
    summary: ClassVar[str] = (
        "an *add* broadcasts the mixed terms of one output tensor into its shape and sums "
        "them (with the bias orbit)"
    )

    def describe(self) -> str:
        """What the op writes, in words (Markdown)."""
        return f"broadcast sum into `{self.out}`"


Op = Pool | Mix | Add


@dataclass(frozen=True)
class LayerPlan:
    """Everything `render` needs: the weight space and the ops of both layers.

    `ops` holds the ops of both layers in emission order; each has `.name` (its identifier
    in the emitted source), `.patterns` (the basis patterns it implements) and `.layer`
    (`"EquivariantLayer"` or `"InvariantLayer"`). A linear pattern appears in the pool that
    reads its input (unless that is the input itself), in its mix and in its output's add;
    a bias pattern in its output's add; an invariant pattern in its pool and in the
    invariant mix.
    """

    space: WeightSpace
    dims: tuple[int, ...]
    mode: str
    equivariant_linear: int
    equivariant_bias: int
    invariant_linear: int
    ops: tuple[Op, ...]

    def layer_ops(self, layer: str = EQUIVARIANT) -> tuple[Op, ...]:
        return tuple(op for op in self.ops if op.layer == layer)

    @property
    def equivariant_ops(self) -> tuple[Op, ...]:
        return self.layer_ops(EQUIVARIANT)

    @property
    def invariant_ops(self) -> tuple[Op, ...]:
        return self.layer_ops(INVARIANT)

    def ops_of(self, pattern: Pattern) -> tuple[Op, ...]:
        """Every op that implements a pattern."""
        return tuple(op for op in self.ops if pattern in op.patterns)

    def multiply_adds(
        self, in_channels: int = 1, out_channels: int = 1, layer: str = EQUIVARIANT
    ) -> int:
        """Multiply-adds of the layer's channel mixes for one sample, forward.

        Each mix is one GEMM of its weight [c_out * rows, c_in * width] at every position of
        its kept sets. Pools and broadcast sums add only additions on top. For scale: one
        c_out x c_in mix of every weight-space entry (the benchmarks' floor) is
        `space.dimension * c_in * c_out`. With ordinary GEMMs no implementation of the
        complete basis does less: every mix block is a free parameter, applied at every
        position it varies along.
        """
        total = 0
        for op in self.layer_ops(layer):
            if isinstance(op, Mix):
                positions = math.prod(self.space.set(s).size for s in op.kept)
                total += op.rows * out_channels * op.width * in_channels * positions
        return total

    def parameter_count(self, in_channels: int = 1, out_channels: int = 1) -> int:
        """Parameters of the emitted EquivariantLayer (must equal Basis.parameter_count)."""
        total = 0
        for op in self.equivariant_ops:
            if isinstance(op, Mix):
                total += op.rows * out_channels * op.width * in_channels
            elif isinstance(op, Add) and op.bias is not None:
                total += op.f_out * out_channels
        return total
