"""Closed-form basis counts for MLPs, derived with sympy, and the theory page (docs/theory.md).

Nothing here is typed in by hand. A block A_i <- B_j of an MLP touches the neuron sets of W_i
(sets i and i-1) or b_i (set i) and those of B_j; its count is the product over those sets of
the engine's per-set factor `certify.set_factor(kind, n, t)`. What a set contributes depends
only on whether it is the input set 0, the output set M or a hidden set, so summing a block
family over its layer index i splits into a few boundary positions (next to set 0 or set M)
and an interior run whose length is linear in M (a sympy `summation`). Families of blocks on
disjoint sets factorise: sum_{i,j far} F_A(i) F_B(j) = (sum F_A)(sum F_B) minus the
overlapping pairs. Hidden widths are taken >= 2 (= the most axes a block puts on one set), so
hidden sets contribute width-free factors; the input and output widths stay symbolic, and in
`all` mode their small-width behaviour enters through min(d, 2).

The derivation assumes M large enough that the boundary positions do not meet (M >= 8); the
page states, for every formula, the smallest M from which it holds (checked with sympy
against the same sums at concrete M) and lists the smaller depths separately.

Regenerate the page with `python -m dws_theory.theory` (a test fails on drift).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import sympy

from .atomic import write_text
from .basis import enumerate_basis
from .certify import set_factor
from .spec import MODES, Kind, mlp

__all__ = [
    "M",
    "D0",
    "DM",
    "ClassForm",
    "Form",
    "ModeForms",
    "closed_forms",
    "count",
    "render_theory",
    "write_theory",
    "BLOCK_CLASSES",
]

M = sympy.Symbol("M", positive=True, integer=True)
D0 = sympy.Symbol("d_0", positive=True, integer=True)
DM = sympy.Symbol("d_M", positive=True, integer=True)
MU0 = sympy.Symbol(r"\mu_0", positive=True, integer=True)
MUM = sympy.Symbol(r"\mu_M", positive=True, integer=True)
_I = sympy.Symbol("i", integer=True)

# Sets touched by a tensor of layer i: (offset from i, axes on that set).
WINDOWS = {"W": ((0, 1), (-1, 1)), "b": ((0, 1),)}
HIDDEN_WIDTH = 2  # t_max: hidden widths at least this give width-free factors
_EDGE = 3  # boundary positions per side (window offsets span -2..+1)
_SAFE_M = 8  # from here the boundary positions cannot meet

Factors = tuple[tuple[int, int], ...]  # (set offset from i, t), one factor each


# -- per-set factors -----------------------------------------------------------------------------
def _symbolic_permuted(n: sympy.Expr, t: int) -> sympy.Expr:
    """c(t) of a permuted set of symbolic width n >= 1, from the engine's integer factors:
    c_n(t) depends on n through min(n, t), so c_n(t) = c_1(t) + sum_m (c_m - c_{m-1}) [n >= m]
    with [n >= m] = min(n, m) - min(n, m - 1)."""
    expr = sympy.Integer(set_factor(Kind.PERMUTED, 1, t))
    for m in range(2, t + 1):
        step = set_factor(Kind.PERMUTED, m, t) - set_factor(Kind.PERMUTED, m - 1, t)
        expr += step * (sympy.Min(n, m) - sympy.Min(n, m - 1))
    return expr


def set_contribution(mode: str, where: str, t: int) -> sympy.Expr:
    """Factor of one neuron set with t axes; `where` is 'in' (set 0), 'out' (set M), 'hidden'."""
    if where == "hidden":
        kind = Kind.SIGNED if mode == "signed" else Kind.PERMUTED
        return sympy.Integer(set_factor(kind, HIDDEN_WIDTH, t))
    width = D0 if where == "in" else DM
    if mode == "all":
        return _symbolic_permuted(width, t)
    return sympy.sympify(set_factor(Kind.FIXED, width, t))  # n**t, symbolic in the width


# -- block families ------------------------------------------------------------------------------
@dataclass(frozen=True)
class BlockClass:
    """A family A_i <- B_{i+delta} (delta None: all j whose sets are disjoint from A_i's)."""

    out: str  # "W" or "b"
    inp: str
    delta: int | None
    title: str  # LaTeX
    group: str  # the document's group name


def _near_deltas(out: str, inp: str) -> tuple[int, ...]:
    """Shifts delta for which A_i and B_{i+delta} share a neuron set."""
    deltas = {a - b for a, _ in WINDOWS[out] for b, _ in WINDOWS[inp]}
    return tuple(sorted(deltas, key=lambda d: (d != 0, -d)))  # same layer first


_TITLES = {
    ("W", "W", 0): (r"W_i \leftarrow W_i", "W <- W, same layer"),
    ("W", "W", 1): (r"W_i \leftarrow W_{i+1}", "W <- W, neighbours"),
    ("W", "W", -1): (r"W_i \leftarrow W_{i-1}", "W <- W, neighbours"),
    ("W", "W", None): (r"W_i \leftarrow W_j,\ \lvert i-j \rvert \geq 2", "W <- W, non-neighbours"),
    ("W", "b", 0): (r"W_i \leftarrow b_i", "W <- b, adjacent"),
    ("W", "b", -1): (r"W_i \leftarrow b_{i-1}", "W <- b, adjacent"),
    ("W", "b", None): (r"W_i \leftarrow b_j,\ j \notin \{i-1, i\}", "W <- b, non-adjacent"),
    ("b", "W", 1): (r"b_i \leftarrow W_{i+1}", "b <- W, adjacent"),
    ("b", "W", 0): (r"b_i \leftarrow W_i", "b <- W, adjacent"),
    ("b", "W", None): (r"b_i \leftarrow W_j,\ j \notin \{i, i+1\}", "b <- W, non-adjacent"),
    ("b", "b", 0): (r"b_i \leftarrow b_i", "b <- b, same layer"),
    ("b", "b", None): (r"b_i \leftarrow b_j,\ j \neq i", "b <- b, other layer"),
}


def _classes() -> tuple[BlockClass, ...]:
    out = []
    for a in ("W", "b"):
        for b in ("W", "b"):
            for delta in (*_near_deltas(a, b), None):
                title, group = _TITLES[(a, b, delta)]
                out.append(BlockClass(a, b, delta, title, group))
    return tuple(out)


BLOCK_CLASSES = _classes()


def _where(offset_from_edge: int, edge: str) -> str:
    if edge == "left":
        return "in" if offset_from_edge == 0 else "hidden"
    return "out" if offset_from_edge == 0 else "hidden"


def _product(mode: str, wheres: list[tuple[str, int]]) -> sympy.Expr:
    value = sympy.Integer(1)
    for where, t in wheres:
        value *= set_contribution(mode, where, t)
    return value


def _sum_over_i(mode: str, factors: Factors, i_lo: int, i_hi_off: int, depth) -> sympy.Expr:
    """sum_{i = i_lo}^{depth - i_hi_off} prod_factors c(set i + offset, t); `depth` is an int
    (direct sum) or the symbol M (boundary positions + sympy summation over the interior)."""
    if isinstance(depth, int):
        total = sympy.Integer(0)
        for i in range(i_lo, depth - i_hi_off + 1):
            wheres = []
            for o, t in factors:
                s = i + o
                wheres.append(("in" if s == 0 else "out" if s == depth else "hidden", t))
            total += _product(mode, wheres)
        return total
    total = sympy.Integer(0)
    for a in range(_EDGE):  # i = i_lo + a: only set 0 can be touched
        total += _product(mode, [(_where(i_lo + a + o, "left"), t) for o, t in factors])
    for a in range(_EDGE):  # i = M - i_hi_off - a: only set M can be touched
        total += _product(mode, [(_where(-i_hi_off - a + o, "right"), t) for o, t in factors])
    interior = _product(mode, [("hidden", t) for _, t in factors])
    total += sympy.summation(interior, (_I, i_lo + _EDGE, depth - i_hi_off - _EDGE))
    return total


def _merged(out: str, inp: str, delta: int) -> Factors:
    """Factors of the block A_i <- B_{i+delta}: axes on the same set add up."""
    t: dict[int, int] = {}
    for o, k in WINDOWS[out]:
        t[o] = t.get(o, 0) + k
    for o, k in WINDOWS[inp]:
        t[o + delta] = t.get(o + delta, 0) + k
    return tuple(sorted(t.items()))


def _range(delta: int) -> tuple[int, int]:
    """i_lo and i_hi_off so that both i and i + delta lie in 1..M."""
    return max(1, 1 - delta), max(0, delta)


def class_sum(mode: str, cls: BlockClass, depth) -> sympy.Expr:
    """Total count of a block family at depth M (symbol or int)."""
    if cls.delta is not None:
        lo, hi = _range(cls.delta)
        return _sum_over_i(mode, _merged(cls.out, cls.inp, cls.delta), lo, hi, depth)
    # Disjoint sets: the block count factorises into F_A(i) F_B(j).
    everything = _sum_over_i(mode, WINDOWS[cls.out], 1, 0, depth) * _sum_over_i(
        mode, WINDOWS[cls.inp], 1, 0, depth
    )
    for delta in _near_deltas(cls.out, cls.inp):
        lo, hi = _range(delta)
        shifted = tuple((o + delta, t) for o, t in WINDOWS[cls.inp])
        everything -= _sum_over_i(mode, WINDOWS[cls.out] + shifted, lo, hi, depth)
    return everything


def interior_block(mode: str, cls: BlockClass) -> sympy.Expr:
    """Count of one block of the family deep inside the network (every set hidden)."""
    if cls.delta is not None:
        factors = _merged(cls.out, cls.inp, cls.delta)
    else:
        factors = WINDOWS[cls.out] + WINDOWS[cls.inp]
    return _product(mode, [("hidden", t) for _, t in factors])


def _tensor_sum(mode: str, depth) -> sympy.Expr:
    """Equivariant bias (= invariant) count: one factor product per tensor."""
    return _sum_over_i(mode, WINDOWS["W"], 1, 0, depth) + _sum_over_i(
        mode, WINDOWS["b"], 1, 0, depth
    )


# -- forms ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Form:
    """`general` holds for M >= valid_from; `small` lists the depths below (M, expression)."""

    general: sympy.Expr
    valid_from: int
    small: tuple[tuple[int, sympy.Expr], ...]

    def at(self, depth: int) -> sympy.Expr:
        if depth >= self.valid_from:
            return sympy.expand(self.general.subs(M, depth))
        return dict(self.small)[depth]


def _form(fn: Callable[[object], sympy.Expr]) -> Form:
    general = sympy.expand(fn(M))
    for m in range(_SAFE_M, _SAFE_M + 5):  # by construction; checked all the same
        if sympy.expand(general.subs(M, m) - fn(m)) != 0:
            raise AssertionError(f"closed form disagrees with the direct sum at M = {m}")
    valid_from = _SAFE_M
    while (
        valid_from > 1 and sympy.expand(general.subs(M, valid_from - 1) - fn(valid_from - 1)) == 0
    ):
        valid_from -= 1
    small = tuple((m, sympy.expand(fn(m))) for m in range(1, valid_from))
    return Form(general, valid_from, small)


@dataclass(frozen=True)
class ClassForm:
    cls: BlockClass
    interior: sympy.Expr
    total: Form


@dataclass(frozen=True)
class ModeForms:
    mode: str
    classes: tuple[ClassForm, ...]
    linear: Form
    bias: Form
    invariant: Form


def closed_forms(mode: str) -> ModeForms:
    """Every closed form of one mode (hidden widths >= 2; d_0, d_M >= 1 symbolic)."""
    classes = tuple(
        ClassForm(c, interior_block(mode, c), _form(lambda depth, c=c: class_sum(mode, c, depth)))
        for c in BLOCK_CLASSES
    )
    linear = _form(lambda depth: sum((class_sum(mode, c, depth) for c in BLOCK_CLASSES), 0))
    bias = _form(lambda depth: _tensor_sum(mode, depth))
    invariant = _form(lambda depth: _tensor_sum(mode, depth))
    return ModeForms(mode, classes, linear, bias, invariant)


@cache
def _compiled(expr: sympy.Expr) -> Callable[[int, int, int], int]:
    """The expression as a Python function of (M, d_0, d_M) in exact integer arithmetic."""
    return sympy.lambdify((M, D0, DM), expr, modules=[{"Min": min}])


def count(form: Form, depth: int, d0: int, dm: int) -> int:
    """The integer a form gives for depth M and end widths d_0, d_M."""
    expr = form.general if depth >= form.valid_from else dict(form.small)[depth]
    value = _compiled(expr)(depth, d0, dm)
    if not isinstance(value, int):  # a float or a symbol would mean an inexact evaluation
        raise TypeError(f"closed form gave {value!r}, not an integer")
    return value


# -- rendering -----------------------------------------------------------------------------------
def _tex(expr: sympy.Expr) -> str:
    """LaTeX with min(d, 2) written mu and the polynomial collected in M."""
    expr = expr.subs({sympy.Min(D0, 2): MU0, sympy.Min(DM, 2): MUM})
    expr = sympy.collect(sympy.expand(expr), M)
    return sympy.latex(expr)


def _smaller(form: Form) -> str:
    return "; ".join(f"$M={m}$: ${_tex(e)}$" for m, e in form.small) or "none"


def _mode_section(forms: ModeForms) -> list[str]:
    lines = [
        f"### Mode `{forms.mode}`",
        "",
        "| block family | one interior block | family total (all layers) | holds for "
        "| smaller depths |",
        "|---|---|---|---|---|",
    ]
    for cf in forms.classes:
        lines.append(
            f"| ${cf.cls.title}$ | ${sympy.latex(cf.interior)}$ | ${_tex(cf.total.general)}$ "
            f"| $M \\geq {cf.total.valid_from}$ | {_smaller(cf.total)} |"
        )
    lines += [
        "",
        "Totals (one input and one output channel):",
        "",
        "| quantity | closed form | holds for | smaller depths |",
        "|---|---|---|---|",
    ]
    for name, form in (
        ("equivariant linear $E$", forms.linear),
        ("equivariant bias $B$", forms.bias),
        ("invariant linear", forms.invariant),
    ):
        lines.append(
            f"| {name} | ${_tex(form.general)}$ | $M \\geq {form.valid_from}$ | {_smaller(form)} |"
        )
    e, b = forms.linear.general, forms.bias.general
    lines += [
        "",
        "Parameters of one equivariant layer with $c_{in}$ input and $c_{out}$ output "
        "channels: $E \\, c_{in} c_{out} + B \\, c_{out}$; with 16 channels in and out, for "
        f"$M \\geq {max(forms.linear.valid_from, forms.bias.valid_from)}$: "
        f"${_tex(sympy.expand(256 * e + 16 * b))}$.",
        "",
    ]
    return lines


_SHAPES = ((2, 32, 32, 1), (2, 32, 32, 32, 1), (1, 32, 32, 1), (3, 64, 64, 64, 3), (28, 64, 10))


def _comparison_table() -> list[str]:
    header = "| shape | " + " | ".join(f"{m}: linear / bias / invariant" for m in MODES) + " |"
    lines = [header, "|---|" + "---|" * len(MODES)]
    for dims in _SHAPES:
        cells = []
        for mode in MODES:
            b = enumerate_basis(mlp(dims, mode))
            cells.append(
                f"{b.equivariant_linear:,} / {b.equivariant_bias:,} / {b.invariant_linear:,}"
            )
        lines.append(f"| {'-'.join(map(str, dims))} | " + " | ".join(cells) + " |")
    return lines


def _factor_table() -> list[str]:
    lines = [
        "| set kind, width $n$ | $t=0$ | $t=1$ | $t=2$ | $t=3$ | $t=4$ |",
        "|---|---|---|---|---|---|",
    ]
    n = sympy.Symbol("n", positive=True, integer=True)
    for kind in (Kind.FIXED,):
        row = [f"${sympy.latex(set_factor(kind, n, t))}$" for t in range(5)]
        lines.append(f"| fixed, $n$ | {' | '.join(row)} |")
    for kind in (Kind.PERMUTED, Kind.SIGNED):
        for width in (1, 2, 3, 4):
            row = [str(set_factor(kind, width, t)) for t in range(5)]
            lines.append(f"| {kind.value}, $n={width}$ | {' | '.join(row)} |")
    return lines


def render_theory() -> str:
    """The whole theory page, as Markdown."""
    forms = {mode: closed_forms(mode) for mode in MODES}
    big = enumerate_basis(mlp((784, 128, 128, 10), "hidden"))
    big_w1 = big.block_counts()[("W1", "W1")]
    hidden = forms["hidden"]
    lines = [
        "# Theory: equivariant linear layers on MLP weight spaces",
        "",
        "<!-- Generated by `python -m dws_theory.theory`; do not edit by hand. -->",
        "",
        "This page states the characterisation that every part of `dws_theory` implements and "
        "derives, with sympy, closed forms for the number of basis elements of an MLP as "
        "functions of its depth $M$ and its input and output widths $d_0$, $d_M$. The "
        "derivation documents (one per checked-in layer) write the same argument out for a "
        "concrete shape, with every basis element and a certificate.",
        "",
        "## 1. Weight space and symmetry",
        "",
        "An MLP with widths $d_0, \\dots, d_M$ has weights "
        "$W_m \\in \\mathbb{R}^{d_m \\times d_{m-1}}$ and biases $b_m \\in \\mathbb{R}^{d_m}$, "
        "$m = 1, \\dots, M$, so the weight space $V = \\bigoplus_m (W_m \\oplus b_m)$ has "
        "dimension $P = \\sum_m d_m d_{m-1} + d_m$. Every axis belongs to a neuron set: "
        "$W_m$ to $(n_m, n_{m-1})$, $b_m$ to $n_m$. The group acts on each set separately, "
        "as a gather on every axis of every tensor on that set: "
        "$(g \\cdot T)_{\\dots i \\dots} = s_k(i)\\, T_{\\dots \\pi_k(i) \\dots}$.",
        "",
        "| mode | group | $n_0$ and $n_M$ | hidden sets |",
        "|---|---|---|---|",
        "| `hidden` (NFN: HNP) | $S_{d_1} \\times \\dots \\times S_{d_{M-1}}$ | fixed | permuted |",
        "| `all` (NFN: NP) | $S_{d_0} \\times \\dots \\times S_{d_M}$ | permuted | permuted |",
        "| `signed` | $\\prod_{k=1}^{M-1} \\{\\pm 1\\}^{d_k} \\rtimes S_{d_k}$ | fixed "
        "| signed permutations |",
        "",
        "`hidden` is the exact symmetry of an MLP; `all` is a deliberate approximation; "
        "`signed` is exact for odd activations (tanh, sine: every SIREN), where flipping a "
        "hidden neuron's sign negates its row of $W_k$, its entry of $b_k$ and its column of "
        "$W_{k+1}$.",
        "",
        "## 2. Characterisation",
        "",
        "A linear map $L: V \\to V$ commutes with $\\rho(g)$ for every $g \\in G$ if and only "
        "if, for a permutation representation, $L_{rc} = L_{g r, g c}$, that is, $L$ is "
        "constant on the orbits of $G$ on pairs (output index, input index). So one 0/1 "
        "matrix per orbit is a basis, and the dimension is the number of orbits. $L$ splits "
        "into $4M^2$ blocks $L_{A \\leftarrow B}$. Within a block, group the axes of $A$ and "
        "$B$ by neuron set; since $G$ is a direct product over sets,",
        "",
        "$$ \\#\\text{orbits}(A \\leftarrow B) = \\prod_k c_k(t_k), $$",
        "",
        "with $t_k$ the number of axes of the block on set $k$ and $c_k(t)$ the number of "
        "orbits of that set on $t$-tuples: $n^t$ for a fixed set, "
        "$\\sum_{j=0}^{\\min(t,n)} S(t, j)$ (Stirling numbers of the second kind: partitions "
        "of the $t$ axes into at most $n$ blocks) for a permuted set, and the number of such "
        "partitions with every block of even size for a signed set (an odd block changes "
        "sign under a flip, so its orbit carries no invariant). The engine's factors:",
        "",
        *_factor_table(),
        "",
        "A basis element is a *pattern*: a partition of the permuted axes of each set "
        "together with a dense parameter over the fixed axes. Read as an operation, input "
        "axes in a block without an output axis are pooled (averaged), axes of one block "
        "are kept on their diagonal, and output axes in blocks without an input axis are "
        "broadcast. The layers use the non-strict pattern matrices (1 wherever indices "
        "sharing a block are equal); they differ from the orbit indicators by a "
        "unit-triangular change of basis over the partition lattice, so they span the same "
        "space. Bias: one constant per orbit of $G$ on the output indices; invariant "
        "functionals $V \\to \\mathbb{R}$: one per orbit on the input indices of each tensor.",
        "",
        "## 3. Closed forms",
        "",
        "In an MLP no block puts more than two axes on one set, so once every hidden width "
        "is at least 2 the counts no longer depend on the hidden widths, and the closed "
        "forms below depend only on $M$, $d_0$ and $d_M$. They are derived by sympy "
        "(`dws_theory/theory.py`), by summing the engine's per-set factors over the layer "
        "index of every block family: positions next to the input or output set are summed "
        "one by one, the interior run symbolically. In `all` mode the end sets are permuted "
        "and a width of 1 matters: there $\\mu_0 = \\min(d_0, 2)$ and "
        "$\\mu_M = \\min(d_M, 2)$. Each formula holds from the depth stated; smaller depths "
        "are listed separately (there the input and output sets fall into the same blocks). "
        "The test suite compares every formula with `enumerate_basis` for $M = 1..30$ and "
        "$d_0, d_M = 1..5$, as integers. In `signed` mode a hidden width of 1 changes "
        "nothing either (a signed set contributes 1, 0, 1 for $t = 0, 1, 2$ at any width), so "
        "there the formulas hold for every hidden width.",
        "",
        "For example, at $M = 3$, $d_0 = 2$, $d_M = 1$ (the 2-32-32-1 image INR) the totals "
        "give "
        + ", ".join(f"{count(forms[m].linear, 3, 2, 1)} (`{m}`)" for m in MODES)
        + " equivariant linear elements.",
        "",
    ]
    for mode in MODES:
        lines += _mode_section(forms[mode])
    w_same = next(cf for cf in hidden.classes if cf.cls.delta == 0 and cf.cls.out == "W")
    lines += [
        "## 4. The three modes side by side",
        "",
        "Counts from `enumerate_basis` (one channel in and out):",
        "",
        *_comparison_table(),
        "",
        "## 5. Large fixed widths",
        "",
        "Fixed sets contribute $n^t$, so wide inputs or outputs explode the count. "
        f"784-128-128-10 in `hidden` mode has {big.equivariant_linear:,} equivariant linear "
        f"basis elements; {big_w1:,} of them ($2 d_0^2$, $d_0 = 784$) are in "
        "$W_1 \\leftarrow W_1$ alone (the family total of "
        f"$W_i \\leftarrow W_i$ in `hidden` mode is ${_tex(w_same.total.general)}$). "
        "The generated layers implement the fixed axes as dense parameter dimensions, like "
        "channels, so these counts are parameters, not ops. DWSNets answers the explosion "
        "with a learned down-projection of the input axis before the equivariant layers; "
        "the engine reports the exact counts instead of hiding them.",
        "",
        "## 6. Completeness of published layers",
        "",
        "An equivariant layer can still be incomplete (missing basis elements) or redundant "
        "(linearly dependent parameters). Reported in the literature and measured by others, "
        "not re-derived here:",
        "",
        "- DWSNets' official layer (Navon et al., ICML 2023) misses basis elements whenever "
        "$d_M > 1$: $W_{M-1} \\to W_M$ gets 2 instead of $2 d_M$, and $b_i \\to W_M$ for a "
        "non-neighbour $i$ gets 1 instead of $d_M$. Its tests checked equivariance, not "
        "expressivity.",
        "- NFN's `HNPLinear` (Zhou et al., NeurIPS 2023) misses the $b_{M-1} \\to W_M$ term "
        "(effective rank 81 of 82 on 2-32-32-1) and carries redundant parameters (113 raw for "
        "81 effective). This project's own measurement of NFN's rank is in "
        "[benchmarks](benchmarks.md) (`benchmarks/completeness.py`).",
        "- UNF enumerates $\\mathrm{Bell}(t)$ partitions regardless of width, so it "
        "overcounts when a width is smaller than the number of axes, and cannot fix axes.",
        "",
        "Every layer `dws_theory` emits is therefore checked three ways: equivariant, not "
        "over-symmetric, and complete (the rank of its parameter-to-output Jacobian equals "
        "the orbit count).",
        "",
    ]
    from .report.theory_blocks import block_section  # the report package is heavier

    lines += block_section(7)
    return "\n".join(lines)


def write_theory(path: str | Path = "docs/theory.md") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, render_theory())  # atomic: complete or absent
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate the theory page.")
    parser.add_argument("--out", default="docs/theory.md")
    args = parser.parse_args(argv)
    print(write_theory(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
