"""Weight-space specifications: neuron sets, tensors over them, and the MLP front end.

A `WeightSpace` is a frozen value object. Each axis of each tensor names a neuron set; the
symmetry group is the direct product over neuron sets of S_n (permuted), the trivial group
(fixed) or the hyperoctahedral group {+-1}^n x| S_n (signed). Nothing here assumes MLP
structure: `mlp()` is one front end among possible others (CNN kernels, residual
connections and weight tying only need new front ends that build a `WeightSpace`).

Nested sets (block symmetries: attention heads, groups of GroupNorm or of a grouped conv).
A set may name a `parent`: `hd:4:permuted@heads` is the position inside a block of the
set `heads`, so a [H * d] axis is stored as two axes, the parent's then the child's (a
query projection [H * d, E] viewed as `Q(heads, hd, e)`). An axis on a child set belongs to
the nearest preceding axis of the same tensor on its parent set (its *parent axis*); a
child axis without one is an error. The group permutes the blocks (one permutation of the
parent) and, inside each block, the positions by that block's own permutation: S_d wr S_H.
Several children of one parent (the query/key dims and the value dims of attention heads)
each get their own permutations inside every block; every tensor on a child set shares
them. Kinds: a permuted child is permuted inside each block, a signed child also takes a
sign per position and block (q and k of one head flipped together is a symmetry of
attention), a fixed child is never moved inside a block and is then exactly a fixed set
(the parent link changes nothing). The parent may be permuted or signed (a sign per whole
block); a fixed parent with a moving child (S_d^H, no block permutation) is refused: its
orbits do not factor into dense fixed labels times partitions; declare the child fixed
(a subgroup, which is safe) or the parent permuted if the blocks may move. One level of
nesting: a parent has no parent of its own.

Gates (LSTM, GRU) need no nesting: a [4H, in] weight is `W(g, h, x)` with `g:4:fixed`
and `h` permuted, one permutation of `h` shared by the four gate blocks, since each gate
block reads and writes the same hidden units in the same order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

import networkx as nx

from .errors import SpecError, cut, shown

__all__ = [
    "Kind",
    "NeuronSet",
    "Tensor",
    "WeightSpace",
    "SpecError",
    "MODES",
    "mlp",
    "mlp_shape",
    "parse_dims",
    "parse_mode",
    "shown",
    "require_space",
    "MAX_WIDTH",
]

# The widest neuron set `parse_dims` accepts: far above any MLP a weight-space model reads,
# low enough that every count and every emitted shape stays a machine integer.
MAX_WIDTH = 1_000_000


class Kind(str, Enum):
    """How the symmetry group acts on a neuron set."""

    PERMUTED = "permuted"
    FIXED = "fixed"
    SIGNED = "signed"


@dataclass(frozen=True)
class NeuronSet:
    """A neuron set; `parent` names the set whose blocks it lies inside (None: a plain set).
    `size` of a child is the size of one block."""

    name: str
    size: int
    kind: Kind
    parent: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _IDENTIFIER.fullmatch(self.name):
            raise SpecError(f"neuron set name must be an identifier, got {shown(self.name)}")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise SpecError(
                f"neuron set {self.name!r} needs a positive integer size, got {shown(self.size)}"
            )
        if self.size > MAX_WIDTH:  # every front end builds its sets here: one limit for all
            raise SpecError(
                f"neuron set {self.name!r} needs a size of at most {MAX_WIDTH:,}, got "
                f"{shown(self.size)}"
            )
        try:
            object.__setattr__(self, "kind", Kind(self.kind))
        except ValueError:
            raise SpecError(
                f"unknown neuron set kind {shown(self.kind)}; expected one of "
                f"{', '.join(k.value for k in Kind)}"
            ) from None
        if self.parent is not None:
            if not _IDENTIFIER.fullmatch(str(self.parent)):
                raise SpecError(
                    f"neuron set {self.name!r}: expected a parent set name, got "
                    f"{shown(self.parent)}"
                )
            if self.parent == self.name:
                raise SpecError(f"neuron set {self.name!r} cannot be its own parent")

    def __str__(self) -> str:
        text = f"{self.name}:{self.size}:{self.kind.value}"
        return f"{text}@{self.parent}" if self.parent is not None else text


@dataclass(frozen=True)
class Tensor:
    """A tensor of the weight space; `axes` are neuron-set names, in storage order."""

    name: str
    axes: tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _IDENTIFIER.fullmatch(self.name):
            raise SpecError(f"tensor name must be an identifier, got {shown(self.name)}")
        object.__setattr__(self, "axes", tuple(self.axes))

    def __str__(self) -> str:
        return f"{self.name}({','.join(self.axes)})"


@dataclass(frozen=True)
class WeightSpace:
    """Neuron sets plus the tensors whose axes they index. Round-trips through `str`."""

    sets: tuple[NeuronSet, ...]
    tensors: tuple[Tensor, ...]
    # Name lookups, derived from the two fields above (O(1) lookups keep the engine's cost
    # quadratic in depth rather than cubic).
    _set_by_name: dict = field(init=False, repr=False, compare=False, hash=False)
    _tensor_by_name: dict = field(init=False, repr=False, compare=False, hash=False)
    _parent_axes: dict = field(init=False, repr=False, compare=False, hash=False)
    _offsets: dict = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sets", tuple(self.sets))
        object.__setattr__(self, "tensors", tuple(self.tensors))
        object.__setattr__(self, "_set_by_name", {s.name: s for s in self.sets})
        object.__setattr__(self, "_tensor_by_name", {t.name: t for t in self.tensors})
        if len(self._set_by_name) != len(self.sets):
            raise SpecError(
                f"neuron set names must be distinct, got {_repeated(s.name for s in self.sets)} "
                "twice"
            )
        if len(self._tensor_by_name) != len(self.tensors):
            raise SpecError(
                f"tensor names must be distinct, got {_repeated(t.name for t in self.tensors)} "
                "twice"
            )
        if not self.tensors:
            raise SpecError("a weight space needs at least one tensor")
        for t in self.tensors:  # dict lookups: linear in the size of the spec
            for axis in t.axes:
                if axis not in self._set_by_name:
                    names = ", ".join(s.name for s in self.sets)
                    raise SpecError(
                        f"tensor {t.name} has axis {shown(axis)}, not a neuron set of "
                        f"{cut(names, 80)}"
                    )
        for s in self.sets:
            _check_parent(self, s)
        object.__setattr__(self, "_parent_axes", {t.name: _attach(self, t) for t in self.tensors})

    # -- lookups ---------------------------------------------------------------------------
    def set(self, name: str) -> NeuronSet:
        return self._set_by_name[name]

    def tensor(self, name: str) -> Tensor:
        return self._tensor_by_name[name]

    def parent_axes(self, tensor: str) -> tuple[int | None, ...]:
        """Per axis of the tensor: the position of its parent axis (the nearest preceding
        axis on its set's parent), None for an axis on a set without a parent."""
        return self._parent_axes[tensor]

    def children(self, name: str) -> tuple[str, ...]:
        """The sets whose parent is `name`, in the space's order."""
        return tuple(s.name for s in self.sets if s.parent == name)

    @property
    def nested(self) -> bool:
        """Whether some set has a parent (a block symmetry)."""
        return any(s.parent is not None for s in self.sets)

    def shape(self, tensor: str) -> tuple[int, ...]:
        return tuple(self.set(a).size for a in self.tensor(tensor).axes)

    def numel(self, tensor: str) -> int:
        n = 1
        for d in self.shape(tensor):
            n *= d
        return n

    @property
    def widths(self) -> str:
        """Neuron-set sizes in order, e.g. `2,32,32,1` for an MLP: a short label for messages."""
        return ",".join(str(s.size) for s in self.sets)

    @property
    def dimension(self) -> int:
        """P, the dimension of the weight space."""
        return sum(self.numel(t.name) for t in self.tensors)

    def offsets(self) -> dict[str, int]:
        """Start of each tensor in the flattened vector (tensors in order, C-order inside):
        a copy of a table made at the first call (callers ask once per pattern)."""
        table = self.__dict__.get("_offsets")
        if table is None:
            table, pos = {}, 0
            for t in self.tensors:
                table[t.name] = pos
                pos += self.numel(t.name)
            object.__setattr__(self, "_offsets", table)
        return dict(table)

    def with_sizes(self, sizes: dict[str, int]) -> WeightSpace:
        """The same space with some neuron-set sizes replaced."""
        sets = tuple(
            NeuronSet(s.name, sizes.get(s.name, s.size), s.kind, s.parent) for s in self.sets
        )
        return WeightSpace(sets, self.tensors)

    def graph(self) -> nx.MultiDiGraph:
        """Architecture graph: neuron sets are nodes; a tensor with two or more axes is an
        edge from its second axis's set to its first's (a weight `[out, in, ...]`), its
        further axes (conv kernels) recorded on the edge as `extra`. Axes on child sets
        ride with their parent axis (a query projection `Q(heads, hd, e)` is an edge
        e -> heads, `hd` in `extra`), and a child set's node records its `parent`.

        Tensors with one axis (biases) are node attributes; tensors without axes are listed
        on the graph as `hyper`, so no tensor is silently dropped. A square weight on one
        set is a self-loop."""
        g = nx.MultiDiGraph()
        for s in self.sets:
            g.add_node(s.name, size=s.size, kind=s.kind.value, tensors=[], parent=s.parent)
        hyper = []
        for t in self.tensors:
            parents = self.parent_axes(t.name)
            main = [a for a, p in zip(t.axes, parents, strict=True) if p is None]
            children = tuple(a for a, p in zip(t.axes, parents, strict=True) if p is not None)
            if len(main) >= 2:
                g.add_edge(main[1], main[0], tensor=t.name, extra=(*main[2:], *children))
            elif len(main) == 1:
                g.nodes[main[0]]["tensors"].append(t.name)
            else:
                hyper.append(t.name)
        g.graph["hyper"] = hyper
        return g

    # -- string form -----------------------------------------------------------------------
    def __str__(self) -> str:
        sets = " ".join(str(s) for s in self.sets)
        tensors = " ".join(str(t) for t in self.tensors)
        return f"sets[{sets}] tensors[{tensors}]"

    @classmethod
    def parse(cls, text: str) -> WeightSpace:
        """The space `str(space)` prints; a clear SpecError (the text echoed shortened) for
        anything else."""
        if not isinstance(text, str):
            raise SpecError(f"expected a spec string, got {type(text).__name__}")
        m = re.fullmatch(r"\s*sets\[(.*)\]\s*tensors\[(.*)\]\s*", text, re.DOTALL)
        if not m:
            raise SpecError(
                f"expected 'sets[name:size:kind ...] tensors[T(a,b) ...]', got {shown(text)}"
            )
        sets = tuple(_parse_set(item) for item in m.group(1).split())
        tensors = tuple(_parse_tensor(item) for item in m.group(2).split())
        return cls(sets, tensors)


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# ASCII only: `\w` and `isdigit()` also take letters and digits of other scripts (`²`).
_SET_ITEM = re.compile(r"([^:]*):([^:]*):([^:]*)")
_TENSOR_ITEM = re.compile(
    r"([A-Za-z_][A-Za-z0-9_]*)\(((?:[A-Za-z_][A-Za-z0-9_]*)(?:,[A-Za-z_][A-Za-z0-9_]*)*)?\)"
)


def _repeated(names: object) -> str:
    """The first name that occurs twice, shortened for a message."""
    seen = set()
    for name in names:
        if name in seen:
            return shown(name)
        seen.add(name)
    return "none"


def _parse_set(item: str) -> NeuronSet:
    m = _SET_ITEM.fullmatch(item)
    if not m:
        raise SpecError(
            f"expected a neuron set 'name:size:kind' or 'name:size:kind@parent', got {shown(item)}"
        )
    name, size, kind_and_parent = m.groups()
    kind, at, parent = kind_and_parent.partition("@")
    if at and not parent:
        raise SpecError(f"expected a parent set name after '@', got {shown(item)}")
    if not re.fullmatch(r"[0-9]+", size):
        raise SpecError(
            f"neuron set {shown(name)} needs a size written with the digits 0-9, got {shown(size)}"
        )
    if len(size.lstrip("0")) > len(str(MAX_WIDTH)):  # before int(): no 5,000-digit parse
        raise SpecError(
            f"neuron set {name!r} needs a size of at most {MAX_WIDTH:,}, got {shown(size)}"
        )
    return NeuronSet(name, int(size), kind, parent or None)


def _parse_tensor(item: str) -> Tensor:
    m = _TENSOR_ITEM.fullmatch(item)
    if not m:
        raise SpecError(
            f"expected a tensor 'T(a,b)' (names joined by single commas), got {shown(item)}"
        )
    return Tensor(m.group(1), tuple(m.group(2).split(",")) if m.group(2) else ())


def _check_parent(space: WeightSpace, s: NeuronSet) -> None:
    """A child's parent exists, has no parent itself, and moves whenever the child does."""
    if s.parent is None:
        return
    if s.parent not in space._set_by_name:
        names = ", ".join(x.name for x in space.sets)
        raise SpecError(
            f"neuron set {s.name} has parent {shown(s.parent)}, not a neuron set of "
            f"{cut(names, 80)}"
        )
    parent = space.set(s.parent)
    if parent.parent is not None:
        raise SpecError(
            f"expected one level of nesting, got {s.name}@{parent.name} whose parent "
            f"{parent.name} is itself a child of {parent.parent}"
        )
    if parent.kind is Kind.FIXED and s.kind is not Kind.FIXED:
        raise SpecError(
            f"expected a permuted or signed parent for the {s.kind.value} child {s.name}, got "
            f"fixed {parent.name} (blocks that never move with positions permuted inside "
            f"each are not supported: declare {s.name} fixed, a subgroup, or {parent.name} "
            "permuted if the blocks may move)"
        )


def _attach(space: WeightSpace, t: Tensor) -> tuple[int | None, ...]:
    """Per axis of `t`, its parent axis (nearest preceding axis on the parent set)."""
    out: list[int | None] = []
    for pos, name in enumerate(t.axes):
        parent = space.set(name).parent
        if parent is None:
            out.append(None)
            continue
        before = [q for q in range(pos) if t.axes[q] == parent]
        if not before:
            raise SpecError(
                f"tensor {t}: axis {pos} is on {name}, a child of {parent}, so it needs an axis "
                f"on {parent} before it (store a [{parent} * {name}] axis as two axes, "
                f"{parent} then {name})"
            )
        out.append(before[-1])
    return tuple(out)


def require_space(value: object, where: str) -> WeightSpace:
    """`value` if it is a WeightSpace, else a TypeError that says what was expected."""
    if not isinstance(value, WeightSpace):
        raise TypeError(
            f"{where} expects a WeightSpace (for an MLP: mlp('2,32,32,1', 'hidden')), got "
            f"{type(value).__name__} {shown(value)}"
        )
    return value


# -- MLP front end ---------------------------------------------------------------------------
MODES = ("hidden", "all", "signed")
_ALIASES = {"hidden": "hidden", "hnp": "hidden", "all": "all", "np": "all", "signed": "signed"}


def parse_mode(mode: str) -> str:
    """Canonical mode name; accepts the NFN aliases `hnp` and `np`."""
    try:
        return _ALIASES[mode.strip().lower()]
    except (KeyError, AttributeError):
        raise SpecError(
            f"unknown symmetry mode {shown(mode)}; expected one of hidden, all, signed "
            "(aliases hnp, np)"
        ) from None


def _joined(dims: tuple[int, ...]) -> str:
    text = ",".join(map(str, dims))
    return text if len(text) <= 60 else shown(text)


def parse_dims(text: str | tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """Parse widths `2,32,32,1` into a tuple, with errors that say what was expected.

    Spaces around a width are allowed (`2, 32, 1`); spaces inside one are not (`"2 3 1"` is
    an error, not the width 231)."""
    expected = "expected comma-separated integer widths like 2,32,32,1"
    if isinstance(text, str):
        items = [p.strip() for p in text.split(",")]
        if any(not re.fullmatch(r"[+-]?[0-9]+", p) for p in items):
            raise SpecError(f"{expected}, got {shown(text)}")
        if any(len(p) > len(str(MAX_WIDTH)) + 1 for p in items):
            raise SpecError(f"every width must be at most {MAX_WIDTH:,}, got {shown(text)}")
        dims = tuple(int(p) for p in items)
    else:
        try:
            dims = tuple(text)
        except TypeError:
            raise SpecError(f"{expected} or a sequence of integers, got {shown(text)}") from None
        if not all(hasattr(type(d), "__index__") and not isinstance(d, bool) for d in dims):
            raise SpecError(f"expected integer widths, got {shown(text)}")
        dims = tuple(d.__index__() for d in dims)  # numpy and other integer types too
    if len(dims) < 2:
        raise SpecError(f"an MLP needs at least two widths (input and output), got {len(dims)}")
    if any(d < 1 for d in dims):
        raise SpecError(f"every width must be a positive integer, got {_joined(dims)}")
    if any(d > MAX_WIDTH for d in dims):
        raise SpecError(f"every width must be at most {MAX_WIDTH:,}, got {shown(max(dims))}")
    return dims


def mlp(dims: str | tuple[int, ...] | list[int], mode: str = "hidden") -> WeightSpace:
    """Weight space of an MLP with widths d_0..d_M: tensors W1, b1, ..., WM, bM.

    Neuron set `n{k}` is layer k. `hidden`: hidden sets permuted, input and output fixed;
    `all`: every set permuted; `signed`: hidden sets signed (odd activations).
    """
    dims = parse_dims(dims)
    mode = parse_mode(mode)
    depth = len(dims) - 1
    sets = []
    for k, d in enumerate(dims):
        hidden = 0 < k < depth
        if mode == "all":
            kind = Kind.PERMUTED
        elif hidden:
            kind = Kind.SIGNED if mode == "signed" else Kind.PERMUTED
        else:
            kind = Kind.FIXED
        sets.append(NeuronSet(f"n{k}", d, kind))
    tensors = []
    for m in range(1, depth + 1):
        tensors.append(Tensor(f"W{m}", (f"n{m}", f"n{m - 1}")))
        tensors.append(Tensor(f"b{m}", (f"n{m}",)))
    return WeightSpace(tuple(sets), tuple(tensors))


def mlp_shape(space: WeightSpace) -> tuple[tuple[int, ...], str] | None:
    """(dims, mode) when the space is `mlp(dims, mode)`, else None."""
    dims = tuple(s.size for s in space.sets)
    if len(dims) >= 2:
        for mode in MODES:
            if mlp(dims, mode) == space:
                return dims, mode
    return None
