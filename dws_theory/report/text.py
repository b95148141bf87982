"""Small text builders of the derivation page: counts, labels, partitions, pattern tables."""

from __future__ import annotations

from collections.abc import Sequence

from ..certify import Factor, block_factors
from ..orbits import Pattern
from ..spec import WeightSpace
from ..symbolic import display_label, display_labels, pattern_formula, set_tex, tensor_tex

__all__ = [
    "block_axes",
    "block_tex",
    "block_text",
    "dims_text",
    "factor_tex",
    "factor_text",
    "factors",
    "kind_text",
    "partition_text",
    "pattern_code",
    "pattern_rows",
    "reading",
    "set_counts",
    "set_line",
    "tex_int",
    "widths_text",
]


def tex_int(n: int) -> str:
    """Thousands separators that LaTeX does not space out: 1{,}185."""
    return f"{n:,}".replace(",", "{,}")


def dims_text(dims: Sequence[int]) -> str:
    return "-".join(str(d) for d in dims)


def widths_text(space: WeightSpace) -> str:
    return "-".join(str(s.size) for s in space.sets)


def block_axes(space: WeightSpace, out: str | None, inp: str | None) -> list[tuple[str, str]]:
    """(axis name, neuron set) for the block's axes: out axes first, then in axes."""
    axes = []
    if out is not None:
        axes += [(rf"\mathrm{{out}}_{k + 1}", s) for k, s in enumerate(space.tensor(out).axes)]
    if inp is not None:
        axes += [(rf"\mathrm{{in}}_{k + 1}", s) for k, s in enumerate(space.tensor(inp).axes)]
    return axes


def set_counts(space: WeightSpace, out: str | None, inp: str | None) -> list[tuple[str, int]]:
    """(neuron set, t) for sets with at least one axis in the block, in the space's order."""
    names = [s for _, s in block_axes(space, out, inp)]
    return [(s.name, names.count(s.name)) for s in space.sets if s.name in names]


def factors(space: WeightSpace, out: str | None, inp: str | None) -> list[Factor]:
    """The engine's closed-form factors of a block: c(t) per set, and one family factor
    per set with moving children (`Factor.attached`: the child axes on each of its axes);
    in the space's set order."""
    order = {s.name: k for k, s in enumerate(space.sets)}
    return sorted(block_factors(space, out, inp), key=lambda f: order[f.name])


def _attached_text(f: Factor) -> str:
    """`heads⟨qk⟩⟨v⟩`: a set with the child axes attached to each of its axes."""
    return f.name + "".join("⟨" + " ".join(a) + "⟩" for a in f.attached)


def factor_text(space: WeightSpace, out: str | None, inp: str | None) -> str:
    """`n1: 2 × n0: 4`, the plain form the count tables use (parsed back by tests); a
    family with its children attached: `heads⟨qk⟩⟨qk⟩: 3`."""
    return " × ".join(f"{_attached_text(f)}: {f.count}" for f in factors(space, out, inp)) or "1"


def _factor_symbol(f: Factor) -> str:
    if not f.attached:
        return f"c_{{{set_tex(f.name)}}}({f.t})"
    axes = ", ".join(
        r"\langle " + r"\, ".join(set_tex(c) for c in a) + r" \rangle" for a in f.attached
    )
    return f"c_{{{set_tex(f.name)}}}({axes})"


def factor_tex(space: WeightSpace, out: str | None, inp: str | None) -> str:
    facs = factors(space, out, inp)
    lhs = r" \cdot ".join(_factor_symbol(f) for f in facs)
    rhs = r" \cdot ".join(str(f.count) for f in facs)
    total = 1
    for f in facs:
        total *= f.count
    return f"{lhs} = {rhs} = {total}" if len(facs) > 1 else f"{lhs} = {total}"


def kind_text(space: WeightSpace, name: str) -> str:
    """`permuted`, or for a child set `permuted inside each block of heads`."""
    s = space.set(name)
    if s.parent is None:
        return s.kind.value
    return f"{s.kind.value} inside each block of ${set_tex(s.parent)}$"


def set_line(space: WeightSpace, name: str) -> str:
    s = space.set(name)
    return f"${set_tex(name)}$ ({kind_text(space, name)}, $d = {s.size}$)"


def block_tex(out: str | None, inp: str | None) -> str:
    left = tensor_tex(out) if out else "z"
    right = tensor_tex(inp) if inp else "1"
    return f"{left} \\leftarrow {right}"


_SUBSCRIPTS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def block_text(out: str | None, inp: str | None) -> str:
    """A block in plain text, for headings (the table of contents shows no TeX): W₂ ← b₁;
    a name that does not end in digits stays as it is (p8_weight ← p8_bias)."""

    def one(name: str | None, missing: str) -> str:
        if name is None:
            return missing
        stem = name.rstrip("0123456789")
        return stem + name[len(stem) :].translate(_SUBSCRIPTS) if stem else name

    return f"{one(out, 'z')} ← {one(inp, '1')}"


def pattern_code(p: Pattern) -> str:
    out = f"{p.out}[{display_labels(p.out_labels)}]" if p.out else "z"
    inp = f"{p.inp}[{display_labels(p.in_labels)}]" if p.inp else "1"
    return f"`{out} <- {inp}`"


def partition_text(space: WeightSpace, p: Pattern) -> str:
    """Per neuron set, the blocks of the partition as sets of axis names (all in math mode:
    bare braces at the end of a table cell would read as Markdown attribute lists)."""
    axes = block_axes(space, p.out, p.inp)
    labels = p.out_labels + p.in_labels
    parts = []
    for name, _ in set_counts(space, p.out, p.inp):
        blocks = []
        for label, set_name in p.label_sets:
            if set_name == name:
                members = [axes[k][0] for k, x in enumerate(labels) if x == label]
                blocks.append(r"\{" + ", ".join(members) + r"\}")
        parts.append(f"${set_tex(name)}$: $" + r"\ ".join(blocks) + "$")
    return "; ".join(parts)


def _values(space: WeightSpace, set_name: str) -> str:
    n = space.set(set_name).size
    return f"{n} value{'s' if n != 1 else ''}"


def reading(space: WeightSpace, p: Pattern) -> str:
    """The pattern as the layer's operations: pool, keep (diagonal), broadcast, dense."""
    words = []
    for label, set_name in p.label_sets:
        x, where = display_label(label), f"${set_tex(set_name)}$"
        role = p.role(label)
        if role == "pool":
            words.append(f"mean over ${x}$ ({where})")
        elif role == "keep":
            diagonal = p.in_labels.count(label) > 1 or p.out_labels.count(label) > 1
            words.append(f"keep ${x}$ ({where}{', diagonal' if diagonal else ''})")
        elif role == "broadcast":
            diagonal = p.out_labels.count(label) > 1
            words.append(
                f"broadcast along ${x}$ ({where}{', on the diagonal' if diagonal else ''})"
            )
        elif label in p.in_labels:
            words.append(f"dense sum over ${x}$ ({where}, {_values(space, set_name)})")
        else:
            words.append(f"one output per ${x}$ ({where}, {_values(space, set_name)})")
    return "; ".join(words) if words else "constant"


def pattern_rows(space: WeightSpace, patterns: Sequence[Pattern]) -> list[str]:
    rows = [
        "| # | pattern | partition by neuron set | reading | elements | formula |",
        "|---|---|---|---|---|---|",
    ]
    for k, p in enumerate(patterns, start=1):
        tex = pattern_formula(space, p, str(k)).latex()
        rows.append(
            f"| {k} | {pattern_code(p)} | {partition_text(space, p)} | {reading(space, p)} "
            f"| {p.multiplicity(space):,} | ${tex}$ |"
        )
    return rows
