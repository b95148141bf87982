"""The plan: frozen ops of one layer pair, no torch (the first step: plan, lower, emit).

A `LayerPlan` holds the weight space and the ops of the emitted `EquivariantLayer` and
`InvariantLayer`, in emission order. Each op is a frozen value: `Pool` (mean of one input
tensor over some neuron sets, a diagonal where two axes of one set are read together, fixed
axes folded into channels), `Mix` (concatenate features, ONE channel mix) and `Add` (ONE
broadcast sum per output tensor). Every op knows the basis patterns it implements
(`.patterns`) and says in words what it does (`.describe()`), so the derivation pages read
the facts off the plan instead of re-deriving them.

Axes are referred to by position in their tensor (0-based, batch and channel not counted),
never by neuron-set name: one tensor may carry several axes of one set (a tied or recurrent
square weight), and a set may be an axis of many tensors (a residual link).
"""

from __future__ import annotations

import hashlib
import keyword
import math
from dataclasses import dataclass
from typing import ClassVar

from ..orbits import Pattern
from ..spec import WeightSpace

__all__ = ["EQUIVARIANT", "INVARIANT", "Add", "Bias", "Block", "LayerPlan", "Mix", "Op", "Pool"]
__all__ += ["RESERVED", "Slot", "local_name"]

EQUIVARIANT = "EquivariantLayer"
INVARIANT = "InvariantLayer"

Classes = tuple[
    tuple[int, ...], ...
]  # groups of axis positions; a group of two or more: a diagonal


# Names the emitted forward() uses itself; a tensor whose name (or `<name>_out`) is one of
# them, a keyword, or starts like a mix or a helper is renamed `t_<name>` in the source.
RESERVED = frozenset(
    {"batch", "c_in", "c_out", "rest", "term", "step", "self", "weights", "biases", "rows"}
    | {"torch", "nn", "F", "math"}
)


# Longer tensor names (a transformer's `encoder_layer_11_attention_output_LayerNorm_weight`)
# are abbreviated in the emitted source, so that every statement on them fits a line.
MAX_LOCAL_NAME = 28


def local_name(tensor: str) -> str:
    """The identifier of a tensor in the emitted source: its own name unless that clashes or
    is longer than MAX_LOCAL_NAME, then `t_` and an abbreviation that ends in a digest of
    the full name (the comments name the tensors in full)."""
    clash = (
        tensor in RESERVED
        or f"{tensor}_out" in RESERVED
        or keyword.iskeyword(tensor)
        or tensor.startswith(("mix_", "cat_", "_", "t_"))
    )
    if len(tensor) > MAX_LOCAL_NAME:
        return _abbreviated(tensor)
    return f"t_{tensor}" if clash else tensor


def _abbreviated(tensor: str) -> str:
    """`t_` + the first letters of each word (numbers whole) + `_` + 5 hex digits of the
    name's SHA-1: at most MAX_LOCAL_NAME characters, distinct for distinct names."""
    words = [w for w in tensor.split("_") if w]
    short = "_".join(w if w.isdigit() else w[:3] for w in words[:-1]) or "t"
    short = f"{short}_{words[-1][:6]}" if len(words) > 1 else words[0][:12]
    digest = hashlib.sha1(tensor.encode()).hexdigest()[:5]
    return f"t_{short[: MAX_LOCAL_NAME - 8].rstrip('_')}_{digest}"


def _axes_text(classes: Classes) -> str:
    return ", ".join("=".join(str(a) for a in c) for c in classes)


@dataclass(frozen=True)
class Pool:
    """Op: mean over some axes of one input tensor, fixed axes folded into channels.

    The feature has shape [B, C * fold, *kept sizes]: channel index c * fold + f, where f runs
    over the folded axes' values in C order, and one dimension per kept class in the order
    of its first axis. A class of several axes (`keep_axes` or `pool_axes`) is read on its
    diagonal (`T[a, a]`). The feature is computed from `source`: the tensor itself, an
    unfolded feature of it that already pooled part of `pool_axes` (cheaper to read), or a
    feature that folded the same fixed axes (already in the folded channel layout). A
    feature that pools, folds and diagonalises nothing is the input itself and not an op
    (`is_identity`).
    """

    name: str
    layer: str  # EQUIVARIANT or INVARIANT
    tensor: str
    kept: tuple[str, ...]  # neuron set of each kept class, in feature order
    pooled: tuple[str, ...]  # neuron set of each pooled class
    folded: tuple[str, ...]  # fixed neuron sets folded into the channel axis, in axis order
    fold: int  # product of the folded sizes
    source: str  # the tensor, or the feature (unfolded, or folded alike) pooled further
    patterns: tuple[Pattern, ...]  # every pattern that reads this feature
    keep_axes: Classes = ()  # per kept class: its axes of the tensor
    pool_axes: Classes = ()  # per pooled class: its axes
    fold_axes: tuple[int, ...] = ()  # the fixed axes folded into channels
    kind: ClassVar[str] = "pool"
    summary: ClassVar[str] = (
        "a *pool* averages one input tensor over some neuron sets (once, shared by every "
        "pattern that reads it) and folds fixed axes into the channel axis"
    )

    @property
    def diagonal(self) -> bool:
        """Whether some class reads two or more axes on their diagonal."""
        return any(len(c) > 1 for c in self.keep_axes + self.pool_axes)

    @property
    def is_identity(self) -> bool:
        return not self.pool_axes and not self.fold_axes and not self.diagonal

    def describe(self) -> str:
        """What the op reads and does, in words (Markdown)."""
        text = f"reads `{self.tensor}`"
        diagonals = [c for c in self.keep_axes + self.pool_axes if len(c) > 1]
        if diagonals:
            text += f"; diagonal of axes {_axes_text(tuple(diagonals))}"
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
class Block:
    """One output tensor's rows of a mix, and how its result is placed into that tensor.

    The rows `[c_out * row, c_out * (row + f_out))` of the mix result are a term
    [B, c_out * f_out, *kept] of tensor `out`: the fixed axes `fixed_axes` unfold from the
    channel axis, kept dimension k is written along the axes `kept_axes[k]` (several: on
    their diagonal), and the term is constant along each class of `broadcast_axes` (several
    axes: constant on their diagonal, zero off it).
    """

    out: str | None
    row: int
    f_out: int
    name: str  # identifier of these rows in the emitted source
    kept_axes: Classes = ()
    broadcast_axes: Classes = ()
    fixed_axes: tuple[int, ...] = ()

    @property
    def is_identity(self) -> bool:
        """The result is already [B, c_out, *shape] of `out`: every axis kept, in order."""
        flat = tuple(c[0] for c in self.kept_axes)
        return (
            not self.fixed_axes
            and not self.broadcast_axes
            and all(len(c) == 1 for c in self.kept_axes)
            and flat == tuple(range(len(flat)))
        )


@dataclass(frozen=True)
class Mix:
    """Op: concatenate `features` on the channel axis and apply ONE channel mix.

    The weight is [c_out * rows, c_in * width]; each `Block` of `blocks` owns some rows and
    says where its result goes. Every block of one mix varies along the same neuron sets
    `kept` (and its own fixed axes, folded into its rows), so terms of several output tensors
    that read the same features share one GEMM.
    """

    name: str
    layer: str
    kept: tuple[str, ...]
    features: tuple[str, ...]
    blocks: tuple[Block, ...]
    slots: tuple[Slot, ...]
    rows: int
    width: int
    kind: ClassVar[str] = "mix"
    summary: ClassVar[str] = (
        "a *mix* concatenates pooled features on the channel axis and applies one "
        "channel-mixing matrix that holds the coefficients of every pattern listed"
    )

    @property
    def outs(self) -> tuple[tuple[str | None, int, int], ...]:
        """(out tensor, first row, f_out) per block."""
        return tuple((b.out, b.row, b.f_out) for b in self.blocks)

    @property
    def patterns(self) -> tuple[Pattern, ...]:
        return tuple(s.pattern for s in self.slots)

    def describe(self) -> str:
        """What the op writes, in words (Markdown)."""
        names = dict.fromkeys(b.out for b in self.blocks if b.out is not None)
        outs = ", ".join(f"`{out}`" for out in names)
        return f"one channel mix holding these coefficients, for {outs or 'the invariant output'}"


@dataclass(frozen=True)
class Bias:
    """One bias orbit of an output tensor: a parameter of c_out * f_out entries.

    It is constant along each class of `broadcast_axes` (a class of several axes: on their
    diagonal only) and dense along the fixed axes; its entries are bias elements
    `element .. element + f_out - 1` in Basis.bias order.
    """

    pattern: Pattern
    name: str  # the parameter, `bias_<tensor>` (numbered when a tensor has several)
    element: int
    f_out: int
    broadcast_axes: Classes = ()
    fixed_axes: tuple[int, ...] = ()


@dataclass(frozen=True)
class Add:
    """Op: ONE broadcast sum into output tensor `out` of its mix terms and bias orbits.

    `terms` are the mixes with a block for `out`, smallest first, and `blocks` the names of
    those blocks (one mix may hold several blocks of one tensor). With `fused`, the last
    term (the identity GEMM, every axis kept) accumulates into the sum of the others
    (`_MixAdd`: one full-size buffer, no separate pass).
    """

    name: str
    layer: str
    out: str
    terms: tuple[str, ...]
    blocks: tuple[str, ...]
    biases: tuple[Bias, ...]
    f_out: int
    fused: bool
    patterns: tuple[Pattern, ...]
    kind: ClassVar[str] = "add"
    summary: ClassVar[str] = (
        "an *add* broadcasts the mixed terms of one output tensor into its shape and sums "
        "them (with the bias orbit)"
    )

    @property
    def bias(self) -> Pattern | None:
        """The first bias orbit's pattern (an MLP tensor has at most one), or None."""
        return self.biases[0].pattern if self.biases else None

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
    invariant mix. `dims` are the widths when the space is an MLP's (None otherwise), `mode`
    the symmetry mode it was derived with (None when the spec gave the set kinds directly),
    and `origin` the command-line arguments that rebuild the space (`2,32,32,1 --symmetry
    hidden`, `--module FILE.py:NAME ...`, `--spec '...'`).
    """

    space: WeightSpace
    dims: tuple[int, ...] | None
    mode: str | None
    equivariant_linear: int
    equivariant_bias: int
    invariant_linear: int
    ops: tuple[Op, ...]
    origin: str = ""

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
            elif isinstance(op, Add):
                total += sum(b.f_out for b in op.biases) * out_channels
        return total
