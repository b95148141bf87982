"""Symbolic (sympy) formula of every basis pattern, and its LaTeX.

A pattern out[labels] <- inp[labels] reads as one line of index notation:

    y^A_{out labels} = theta_{fixed labels} / prod(d_pool) * sum_{input-only labels} x^B_{in labels}

Labels only in the input are summed: permuted ones are *pooled* (mean, hence 1/d, exactly as
`Basis.dense(normalised=True)`), fixed ones are the dense contraction of a parameter axis.
Labels in the output only are broadcast (the right side does not depend on them). A label
repeated in the output is written on the diagonal: its second and later output axes get
their own index symbol and a Kronecker delta. Fixed labels index the coefficient, so one
formula stands for `pattern.multiplicity(space)` basis elements.

Bias patterns have no input (y = theta); invariant patterns have no output tensor (the
left side is the scalar z).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np
import sympy

from .orbits import LABELS, Pattern
from .spec import WeightSpace

__all__ = [
    "PatternFormula",
    "pattern_formula",
    "size_symbol",
    "tensor_tex",
    "set_tex",
    "evaluate_formula",
    "display_label",
    "display_labels",
]

# Letters for printed indices: the engine's labels a, b, c, d, ... minus d (taken by the
# widths d_k), n (neuron sets) and x, y, z (tensors).
_DISPLAY = "abcefghijklmpqrstuvwABCEFGHIJKLMPQRSTUVW"


def display_label(label: str) -> str:
    """The printed index letter of an engine label (stable: by the label's position)."""
    position = LABELS.index(label)
    return _DISPLAY[position] if position < len(_DISPLAY) else label


def display_labels(labels: str) -> str:
    return "".join(display_label(label) for label in labels)


def _split_name(name: str) -> tuple[str, str]:
    """`W12` -> (`W`, `12`); names without a trailing number give (name, '')."""
    m = re.fullmatch(r"([A-Za-z_]*?[A-Za-z_])(\d+)", name)
    return (m.group(1), m.group(2)) if m else (name, "")


def tensor_tex(name: str) -> str:
    """LaTeX of a tensor name: W2 -> W_{2}."""
    stem, number = _split_name(name)
    if number:
        return f"{stem}_{{{number}}}"
    return rf"\mathrm{{{name}}}".replace("_", r"\_")


def set_tex(name: str) -> str:
    """LaTeX of a neuron-set name: n1 -> n_{1}."""
    return tensor_tex(name)


def size_symbol(set_name: str) -> sympy.Symbol:
    """d_k for the MLP set n_k, d_{name} otherwise (a positive integer)."""
    stem, number = _split_name(set_name)
    label = number if (stem == "n" and number) else set_name
    return sympy.Symbol(f"d_{{{label}}}", positive=True, integer=True)


def _index(label: str) -> sympy.Symbol:
    return sympy.Symbol(label, integer=True, nonnegative=True)


@dataclass(frozen=True)
class PatternFormula:
    """One pattern as `lhs = rhs`. `rhs` keeps 1/d unevaluated for printing; `doit()` it to
    compute. `free_out` are the index symbols of the output axes, in axis order."""

    pattern: Pattern
    lhs: sympy.Expr
    rhs: sympy.Expr
    free_out: tuple[sympy.Symbol, ...]
    inputs: sympy.IndexedBase | None
    output: sympy.IndexedBase | sympy.Symbol
    coefficient: sympy.IndexedBase | sympy.Symbol
    sizes: tuple[tuple[str, sympy.Symbol], ...]  # neuron set name -> size symbol
    names: tuple[tuple[sympy.Symbol, str], ...]  # LaTeX names for the printer

    def latex(self) -> str:
        # evaluate=False: printing needs the relation, not sympy's attempt to decide it
        # (which asks the assumptions system about every term: most of a page's time).
        equation = sympy.Eq(self.lhs, self.rhs, evaluate=False)
        return sympy.latex(equation, symbol_names=dict(self.names))


def pattern_formula(space: WeightSpace, p: Pattern, coefficient: str = "1") -> PatternFormula:
    """The formula of pattern `p`; `coefficient` names its parameter (theta^{(coefficient)})."""
    sizes = {label: size_symbol(set_name) for label, set_name in p.label_sets}
    names: dict[sympy.Symbol, str] = {_index(label): display_label(label) for label in p.labels}

    # Output side: one symbol per axis; a repeated label gets a primed symbol and a delta.
    out_symbols: list[sympy.Symbol] = []
    first: dict[str, sympy.Symbol] = {}
    deltas = []
    for k, label in enumerate(p.out_labels):
        if label in first:
            primed = _index(f"{label}_{k}")
            names[primed] = f"{display_label(label)}'"
            out_symbols.append(primed)
            deltas.append(sympy.KroneckerDelta(first[label], primed))
        else:
            first[label] = _index(label)
            out_symbols.append(first[label])

    theta_name = f"theta{coefficient}"
    if p.fixed:
        theta = sympy.IndexedBase(theta_name)
        coef = theta[tuple(_index(label) for label in p.fixed)]
    else:
        theta = sympy.Symbol(theta_name)
        coef = theta
    names[theta.label if p.fixed else theta] = rf"\theta^{{({coefficient})}}"

    x = None
    if p.inp is None:
        body: sympy.Expr = coef
        prefactor = sympy.Integer(1)
    else:
        x = sympy.IndexedBase(f"x_{p.inp}")
        names[x.label] = f"x^{{{tensor_tex(p.inp)}}}"
        term = coef * x[tuple(_index(label) for label in p.in_labels)]
        summed = [label for label in dict.fromkeys(p.in_labels) if label not in p.out_labels]
        limits = [(_index(label), 0, sizes[label] - 1) for label in summed]
        body = sympy.Sum(term, *limits) if limits else term
        prefactor = sympy.Integer(1)
        for label in summed:
            if p.role(label) == "pool":
                prefactor /= sizes[label]

    if p.out is None:
        y = sympy.Symbol("z")
        lhs: sympy.Expr = y
    else:
        y = sympy.IndexedBase(f"y_{p.out}")
        names[y.label] = f"y^{{{tensor_tex(p.out)}}}"
        lhs = y[tuple(out_symbols)]
    rhs = sympy.Mul(*deltas, body)
    if prefactor != 1:
        rhs = sympy.Mul(sympy.UnevaluatedExpr(prefactor), rhs, evaluate=False)
    size_of_set = {set_name: size_symbol(set_name) for _, set_name in p.label_sets}
    return PatternFormula(
        pattern=p,
        lhs=lhs,
        rhs=rhs,
        free_out=tuple(out_symbols),
        inputs=x,
        output=y,
        coefficient=theta,
        sizes=tuple(sorted(size_of_set.items())),
        names=tuple(names.items()),
    )


def evaluate_formula(
    space: WeightSpace, formula: PatternFormula, x: np.ndarray | None, theta: np.ndarray | float
) -> np.ndarray:
    """Evaluate a formula with sympy on concrete sizes: the output tensor (shape of the output
    tensor; a 0-d array for an invariant). `x` is the input tensor in its own shape, `theta`
    has one axis per fixed label (a scalar when there is none). For tiny shapes: this expands
    every sum symbolically."""
    p = formula.pattern
    subs = {sym: space.set(name).size for name, sym in formula.sizes}
    rhs = formula.rhs.doit().subs(subs).doit()
    theta = np.asarray(theta, dtype=np.float64)
    values: dict[sympy.Expr, float] = {}
    if x is not None:
        for idx in itertools.product(*(range(n) for n in x.shape)):
            values[formula.inputs[idx]] = float(x[idx])
    if p.fixed:
        for idx in itertools.product(*(range(n) for n in theta.shape)):
            values[formula.coefficient[idx]] = float(theta[idx])
    else:
        values[formula.coefficient] = float(theta)
    shape = space.shape(p.out) if p.out is not None else ()
    out = np.zeros(shape)
    for idx in itertools.product(*(range(n) for n in shape)):
        at = dict(zip(formula.free_out, idx, strict=True))
        entry = rhs.subs(at).doit().xreplace(values)
        out[idx] = float(entry)
    return out
