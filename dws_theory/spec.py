"""Weight-space specifications: neuron sets, tensors over them, and the MLP front end.

A `WeightSpace` is a frozen value object. Each axis of each tensor names a neuron set; the
symmetry group is the direct product over neuron sets of S_n (permuted), the trivial group
(fixed) or the hyperoctahedral group {+-1}^n x| S_n (signed). Nothing here assumes MLP
structure: `mlp()` is one front end among possible others (CNN kernels, residual
connections and weight tying only need new front ends that build a `WeightSpace`).
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
    name: str
    size: int
    kind: Kind

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
                f"expected a neuron set kind, one of {', '.join(k.value for k in Kind)}, got "
                f"{shown(self.kind)}"
            ) from None

    def __str__(self) -> str:
        return f"{self.name}:{self.size}:{self.kind.value}"


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

    # -- lookups ---------------------------------------------------------------------------
    def set(self, name: str) -> NeuronSet:
        return self._set_by_name[name]

    def tensor(self, name: str) -> Tensor:
        return self._tensor_by_name[name]

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
        """Start of each tensor in the flattened vector (tensors in order, C-order inside)."""
        out, pos = {}, 0
        for t in self.tensors:
            out[t.name] = pos
            pos += self.numel(t.name)
        return out

    def with_sizes(self, sizes: dict[str, int]) -> WeightSpace:
        """The same space with some neuron-set sizes replaced."""
        sets = tuple(NeuronSet(s.name, sizes.get(s.name, s.size), s.kind) for s in self.sets)
        return WeightSpace(sets, self.tensors)

    def graph(self) -> nx.MultiDiGraph:
        """Architecture graph: neuron sets are nodes; a tensor with two or more axes is an
        edge from its second axis's set to its first's (a weight `[out, in, ...]`), its
        further axes (conv kernels) recorded on the edge as `extra`.

        Tensors with one axis (biases) are node attributes; tensors without axes are listed
        on the graph as `hyper`, so no tensor is silently dropped. A square weight on one
        set is a self-loop."""
        g = nx.MultiDiGraph()
        for s in self.sets:
            g.add_node(s.name, size=s.size, kind=s.kind.value, tensors=[])
        hyper = []
        for t in self.tensors:
            if len(t.axes) >= 2:
                g.add_edge(t.axes[1], t.axes[0], tensor=t.name, extra=t.axes[2:])
            elif len(t.axes) == 1:
                g.nodes[t.axes[0]]["tensors"].append(t.name)
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
        raise SpecError(f"expected a neuron set 'name:size:kind', got {shown(item)}")
    name, size, kind = m.groups()
    if not re.fullmatch(r"[0-9]+", size):
        raise SpecError(
            f"neuron set {shown(name)} needs a size written with the digits 0-9, got {shown(size)}"
        )
    if len(size.lstrip("0")) > len(str(MAX_WIDTH)):  # before int(): no 5,000-digit parse
        raise SpecError(
            f"neuron set {name!r} needs a size of at most {MAX_WIDTH:,}, got {shown(size)}"
        )
    return NeuronSet(name, int(size), kind)


def _parse_tensor(item: str) -> Tensor:
    m = _TENSOR_ITEM.fullmatch(item)
    if not m:
        raise SpecError(
            f"expected a tensor 'T(a,b)' (names joined by single commas), got {shown(item)}"
        )
    return Tensor(m.group(1), tuple(m.group(2).split(",")) if m.group(2) else ())


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
