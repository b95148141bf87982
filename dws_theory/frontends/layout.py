"""Axis layouts: which neuron sets the axes of a traced tensor carry.

Every axis of every tensor the trace meets (an activation, a parameter, a buffer) has a
*layout*: a concatenation of *parts*, each a row-major product of *factors*, each factor a
*slot* of some size. A plain channel axis is one part of one factor; `torch.cat` on it
makes several parts (a U-Net's skip connection); flattening `[B, C, 5, 5]` makes one part
of three factors (the channel slot and two position slots).

Slots are merged with union-find wherever one permutation must move two axes together (a
layer's input with the activation it reads, a bias with its weight's rows, the operands of a
residual addition). A merge of slots of different sizes is never a symmetry and is refused.
A class of merged slots becomes one neuron set of the space; flags on the class say what it
may be:

- `positional`: spatial or token positions that an operation treats by position
  (convolution, windowed pooling, interpolation, a kernel axis): always a fixed set;
- `batch`: the batch axis, which no parameter axis (flag `state`) may join;
- `broadcast`: a size-1 axis that broadcast over a larger one (a scalar offset): its own
  fixed set of size 1;
- `pinned`: an axis a tensor constant made in forward meets: fixed;
- `declared`: fixed although the module might let it move (a depthwise convolution's
  channel multiplier): a declared subgroup, safe, and checked for a note.

`FIXED_FLAGS` are the flags that make a set fixed in every mode.

A class can lie inside the blocks of another (`nest`): the positions inside each attention
head or each group of a group norm, permuted by each block's own permutation (S_d wr S_H).

A class can be *refined* after the fact, when a reshape or a split cuts a set into pieces
(a `chunk` of a layer's output into gates, a view of `3 * E` features as `(3, H, d)`):
every member of the class is replaced by the same structure of fresh slots, merged piece by
piece across the members. Reading a layout always expands refined slots first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = [
    "FIXED_FLAGS",
    "Axis",
    "Factor",
    "LayoutError",
    "Part",
    "Slots",
    "axis_size",
    "part_size",
    "single",
]


FIXED_FLAGS = frozenset({"positional", "broadcast", "pinned", "declared"})


class LayoutError(ValueError):
    """An operation whose axes cannot be given an exact layout; the message says why."""


@dataclass(frozen=True)
class Factor:
    slot: int
    size: int


Part = tuple[Factor, ...]  # a row-major product of factors
Axis = tuple[Part, ...]  # a concatenation of parts


def part_size(part: Part) -> int:
    return math.prod(f.size for f in part)


def axis_size(axis: Axis) -> int:
    return sum(part_size(p) for p in axis)


def single(slot: int, size: int) -> Axis:
    """The layout of an axis that is one slot."""
    return ((Factor(slot, size),),)


@dataclass
class Slots:
    """Union-find over slots, with sizes, flags, descriptions and refinements."""

    parent: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    seen: list[int] = field(default_factory=list)  # when the trace first touched a slot
    flags: dict[int, set[str]] = field(default_factory=dict)  # root -> flags
    members: dict[int, list[int]] = field(default_factory=dict)  # root -> slots
    refined: dict[int, Axis] = field(default_factory=dict)  # slot -> its replacement
    nests: dict[int, int] = field(default_factory=dict)  # root -> a slot of its parent class
    clock: int = 0

    # -- slots -----------------------------------------------------------------------------
    def new(self, name: str, size: int, *flags: str) -> int:
        slot = len(self.parent)
        self.parent.append(slot)
        self.sizes.append(int(size))
        self.names.append(name)
        self.seen.append(-1)
        self.members[slot] = [slot]
        self.flags[slot] = set(flags)
        return slot

    def axis(self, name: str, size: int, *flags: str) -> Axis:
        """A fresh axis of one new slot."""
        return single(self.touch(self.new(name, size, *flags)), size)

    def touch(self, slot: int) -> int:
        if self.seen[slot] < 0:
            self.seen[slot] = self.clock
            self.clock += 1
        return slot

    def find(self, slot: int) -> int:
        while self.parent[slot] != slot:
            self.parent[slot] = self.parent[self.parent[slot]]
            slot = self.parent[slot]
        return slot

    def flag(self, slot: int, name: str) -> None:
        self.flags[self.find(slot)].add(name)

    def has(self, slot: int, name: str) -> bool:
        return name in self.flags[self.find(slot)]

    def size(self, slot: int) -> int:
        return self.sizes[slot]

    # -- merging ---------------------------------------------------------------------------
    def union(self, a: int, b: int) -> None:
        """One permutation on both slots (refinements carried over to the other class)."""
        self.touch(a)
        self.touch(b)
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.sizes[a] != self.sizes[b]:
            raise LayoutError(
                f"merging {self.names[a]} (size {self.sizes[a]}) with {self.names[b]} (size "
                f"{self.sizes[b]}): sets of different sizes cannot move together"
            )
        for x, y in ((ra, rb), (rb, ra)):
            if self.has(x, "batch") and self.has(y, "state"):
                raise LayoutError(
                    f"{self.names[b if x == ra else a]} (a parameter's axis) would move with "
                    f"the batch axis ({self.names[a if x == ra else b]})"
                )
        a_ref, b_ref = self._template(ra), self._template(rb)
        if a_ref is not None and b_ref is None:
            self.refine(rb, a_ref)
        elif b_ref is not None and a_ref is None:
            self.refine(ra, b_ref)
        elif a_ref is not None and b_ref is not None and a_ref != b_ref:
            raise LayoutError(
                f"{self.names[a]} and {self.names[b]} are cut into different pieces "
                f"({a_ref} and {b_ref}); a common refinement is not supported"
            )
        ra, rb = self.find(a), self.find(b)
        keep, drop = min(ra, rb), max(ra, rb)
        self.parent[drop] = keep
        self.members[keep] += self.members.pop(drop)
        self.flags[keep] |= self.flags.pop(drop)
        if a_ref is not None:  # both refined alike now: merge the pieces member by member
            self._merge_pieces(a, b)
        dropped = self.nests.pop(drop, None)
        if dropped is not None:  # one class, one parent class
            self.nest(keep, dropped)

    # -- blocks ------------------------------------------------------------------------------
    def nest(self, child: int, parent: int) -> None:
        """The class of `child` lies inside the blocks of `parent`'s class: its permutation
        may differ from block to block (a head's own dims, a group's own channels)."""
        root = self.find(child)
        if root in self.nests:
            self.union(self.nests[root], parent)
        else:
            self.nests[root] = parent

    def parent_of(self, slot: int) -> int | None:
        """The root of the class `slot`'s class lies inside, or None."""
        root = self.find(slot)
        return self.find(self.nests[root]) if root in self.nests else None

    def merge_axes(self, a: Axis, b: Axis) -> None:
        """Merge two axes of equal layout shape, part by part and factor by factor."""
        a, b = self.expand(a), self.expand(b)
        if shape_of(a) != shape_of(b):
            a, b = self._aligned(a, b)
        for pa, pb in zip(a, b, strict=True):
            for fa, fb in zip(pa, pb, strict=True):
                self.union(fa.slot, fb.slot)

    def _aligned(self, a: Axis, b: Axis) -> tuple[Axis, Axis]:
        """Two layouts of one size with different piece boundaries: cut both to their common
        refinement where that only cuts free (positional, batch) slots; else refuse."""
        if axis_size(a) != axis_size(b):
            raise LayoutError(f"an axis of size {axis_size(a)} meets one of size {axis_size(b)}")
        if len(a) == 1 and len(b) == 1:
            sizes = _common_cuts([f.size for f in a[0]], [f.size for f in b[0]])
            return (self._cut_part(a[0], sizes),), (self._cut_part(b[0], sizes),)
        # one side a single slot (a position embedding), the other a concatenation (a class
        # token and the patches): the slot is cut as the concatenation is
        for one, many in ((b, a), (a, b)):
            if len(one) == 1 and len(one[0]) == 1 and len(many) > 1:
                cut = self.expand(self.split_slot(one[0][0].slot, list(shape_of(many))))
                if shape_of(cut) == shape_of(many):
                    return (many, cut) if one is b else (cut, many)
        raise LayoutError(f"axes cut into different pieces meet: {shape_of(a)} and {shape_of(b)}")

    def _cut_part(self, part: Part, sizes: list[int]) -> Part:
        out: list[Factor] = []
        queue = list(sizes)
        for i, f in enumerate(part):
            # a run of the cuts whose product is f's size: at least one cut each (a size-1
            # factor takes a size-1 cut), and the last factor takes what remains (size 1s)
            take = [queue.pop(0)]
            acc = take[0]
            while acc < f.size or (i == len(part) - 1 and queue):
                take.append(queue.pop(0))
                acc *= take[-1]
            if len(take) <= 1:
                out.append(f)
                continue
            out += self.expand(self.split_slot(f.slot, [tuple(take)]))[0]
        return tuple(out)

    # -- refinement ------------------------------------------------------------------------
    def _template(self, root: int) -> tuple[tuple[int, ...], ...] | None:
        """The shape a refined class was cut into (sizes per part), or None."""
        for m in self.members[root]:
            if m in self.refined:
                return shape_of(self.refined[m])
        return None

    def split_slot(self, slot: int, shape: list[tuple[int, ...]]) -> Axis:
        """Refine the class of `slot` into parts of factors of the given sizes (a concatenation
        of row-major products); returns the layout replacing `slot`."""
        root = self.find(slot)
        if self.has(root, "batch") and len(shape) > 1:
            raise LayoutError(f"a split of the batch axis ({self.names[slot]}) into pieces")
        if sum(math.prod(p) for p in shape) != self.sizes[slot]:
            raise LayoutError(
                f"cannot cut {self.names[slot]} (size {self.sizes[slot]}) into {shape}"
            )
        existing = self._template(root)
        if existing is None:
            self.refine(root, tuple(tuple(p) for p in shape))
        elif existing != tuple(tuple(p) for p in shape):
            raise LayoutError(
                f"{self.names[slot]} is already cut into {existing}; now {shape} is asked"
            )
        return self.refined[slot]

    def refine(self, root: int, shape: tuple[tuple[int, ...], ...]) -> None:
        root = self.find(root)
        flags = tuple(self.flags[root] - {"broadcast"})
        first: Axis | None = None
        for m in list(self.members[root]):
            parts = []
            for p, sizes in enumerate(shape):
                factors = []
                for q, size in enumerate(sizes):
                    piece = self.new(f"{self.names[m]}[piece {p}.{q}]", size, *flags)
                    factors.append(Factor(self.touch(piece), size))
                parts.append(tuple(factors))
            self.refined[m] = tuple(parts)
            if first is None:
                first = self.refined[m]
            else:
                self._union_layouts(first, self.refined[m])

    def _merge_pieces(self, a: int, b: int) -> None:
        self._union_layouts(self.refined[a], self.refined[b])

    def _union_layouts(self, a: Axis, b: Axis) -> None:
        for pa, pb in zip(a, b, strict=True):
            for fa, fb in zip(pa, pb, strict=True):
                self.union(fa.slot, fb.slot)

    def expand(self, axis: Axis) -> Axis:
        """The layout with every refined slot replaced by its pieces (recursively). A slot cut
        into several parts must stand alone in its part, or lead it: a leading concatenation
        in a row-major product distributes, [(a | b), c] = [a, c | b, c], both parts keeping
        the slot of c (one permutation of c for both: a subgroup, never a larger group)."""
        parts: list[Part] = []
        for part in axis:
            parts += self.expand_part(part)
        return tuple(parts)

    def expand_part(self, part: Part) -> list[Part]:
        factors: list[Axis] = []
        for f in part:
            if f.slot in self.refined:
                factors.append(self.expand(self.refined[f.slot]))
            else:
                factors.append(((f,),))
        out: list[Part] = [()]
        for i, sub in enumerate(factors):
            if len(sub) == 1:
                out = [p + sub[0] for p in out]
            elif len(out) == 1 and not out[0]:
                out = [p for p in sub]
            else:
                slot = part[i].slot
                raise LayoutError(
                    f"{self.names[slot]} is cut into pieces inside a product of axes; only a "
                    "leading cut can be read"
                )
        return out


def shape_of(axis: Axis) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(f.size for f in part) for part in axis)


def _common_cuts(a: list[int], b: list[int]) -> list[int]:
    """The common refinement of two factorisations of one number into row-major products:
    sizes each of which divides into a run of both (e.g. [6, 4] and [2, 12] -> [2, 3, 4])."""
    out: list[int] = []
    a, b = list(a), list(b)
    while a and b:
        x, y = a[0], b[0]
        if x == y:
            out.append(x)
            a.pop(0)
            b.pop(0)
        elif x < y and y % x == 0:
            out.append(x)
            a.pop(0)
            b[0] = y // x
        elif y < x and x % y == 0:
            out.append(y)
            b.pop(0)
            a[0] = x // y
        else:
            raise LayoutError(f"sizes {x} and {y} do not divide one another")
    return out + a + b  # what is left on one side is size 1s (the products are equal)
