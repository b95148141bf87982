"""The space checked against the module it was derived from.

A certificate that the basis is right for a space says nothing about whether the space is
right for the module. The space makes two claims that can be checked numerically:

- **Shapes** (`shape_failures`): every tensor of the space is exactly its source in the
  module's `state_dict()` (a parameter or a buffer, or a slice of one, viewed as the
  tensor's shape), and the tensors cover every parameter entry once.
- **Symmetry** (`symmetry_failures`): for random elements g of the claimed group (each
  permuted or signed set moved alone, then the whole group at once), the module with g
  applied to its state computes the same function on random inputs, in float64, in eval
  mode and, where batch statistics enter (batch norm), in train mode. Where the group moves
  the network's input or output sets (mode `all`), the input is moved and the output
  compared after moving it. This catches over-claiming, the dangerous error: a layer
  equivariant to a group larger than the true one is constrained wrongly.

Under-claiming is safe, so it is only noted (`under_claims`): a fixed set that the module in
fact lets move, or a permuted set whose neurons' signs could flip too.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from ..action import act_on
from ..group import GroupElement, identity, random_element
from ..spec import Kind, SpecError, WeightSpace
from .module import STACKED

__all__ = [
    "ModuleCheck",
    "check_shapes",
    "check_symmetry",
    "run_module_check",
    "shape_failures",
    "symmetry_failures",
    "under_claims",
]

RTOL = 1e-6  # float64: a moved state that keeps the function agrees to rounding (a deep
# net in train mode, batch statistics over a small batch, amplifies it to about 1e-8)
TRIALS = 2  # random inputs per check
WHOLE = 2  # random elements of the whole group per check
ALONE_UP_TO = 12  # spaces with at most this many moving sets also move each set alone
NOTES_UP_TO = 16  # at most this many under-claiming probes


@dataclass(frozen=True)
class ModuleCheck:
    """What the module route found: checks run, failures (naming the tensor or set and how
    far the output moved), and notes on under-claiming."""

    checks: int
    failures: tuple[str, ...]
    notes: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures


# -- shapes ----------------------------------------------------------------------------------
def shape_failures(module: nn.Module, trace) -> list[str]:
    """Tensors whose shape is not their source's, and state entries not covered exactly."""
    state = module.state_dict()
    failures = []
    covered: dict[str, int] = {}
    for tensor, source in trace.sources:
        want = trace.space.shape(tensor)
        if source.state not in state:
            failures.append(f"{tensor}: its source {source.state} is not in the module's state")
            continue
        value = state[source.state]
        if len(source.index) != value.dim() or any(
            not 0 <= a < b <= n for (a, b), n in zip(source.index, value.shape, strict=True)
        ):
            failures.append(
                f"{tensor}: range {source.index} outside {source.state} {list(value.shape)}"
            )
            continue
        region = 1
        for a, b in source.index:
            region *= b - a
        if tuple(source.shape) != tuple(want) or region != int(np.prod(want, dtype=np.int64)):
            failures.append(
                f"{tensor}: the space says {list(want)}, its source {source.state}"
                f"{[f'{a}:{b}' for a, b in source.index]} has {region} entries"
            )
            continue
        covered[source.state] = covered.get(source.state, 0) + region
    for name, p in module.named_parameters():
        if covered.get(name, 0) != p.numel():
            failures.append(
                f"parameter {name} {list(p.shape)}: the space covers {covered.get(name, 0)} of "
                f"its {p.numel()} entries"
            )
    return failures


def check_shapes(module: nn.Module, trace) -> None:
    failures = shape_failures(module, trace)
    if failures:
        raise SpecError(f"from_module: the space does not match the module: {failures[0]}")


# -- the group acting on a module's state and on its inputs and outputs ----------------------
def _gather(t: torch.Tensor, axis: int, perm: np.ndarray, sign: np.ndarray | None) -> torch.Tensor:
    t = t.index_select(axis, torch.as_tensor(perm, device=t.device))
    if sign is not None and (sign != 1).any():
        shape = [1] * t.dim()
        shape[axis] = -1
        t = t * torch.as_tensor(sign, dtype=t.dtype, device=t.device).view(shape)
    return t


def moved_state(
    space: WeightSpace, trace, state: dict[str, torch.Tensor], g: GroupElement
) -> dict[str, torch.Tensor]:
    """The state with g applied to every tensor of the space (entries not in it unchanged)."""
    out = dict(state)
    fresh: dict[str, torch.Tensor] = {}
    moved = {name for name, p in g.perms if _moves(p)}
    moved |= {name for name, v in g.signs if (np.asarray(v) != 1).any()}
    parts = Counter(source.state for _, source in trace.sources)
    for tensor, source in trace.sources:
        axes = space.tensor(tensor).axes
        if not moved.intersection(axes):
            continue  # g leaves this tensor alone
        entry = state[source.state]
        value = act_on(space, g, tensor, source.read(entry), lead=0)
        if parts[source.state] == 1 and value.numel() == entry.numel():
            fresh[source.state] = value.reshape(entry.shape)  # the whole entry: no copy of it
            continue
        if source.state not in fresh:
            fresh[source.state] = entry.clone()
        source.write(fresh[source.state], value)
    out.update(fresh)
    return out


def _moves(perm: object) -> bool:
    """Whether a permutation (or one per block, [H, d]) moves anything."""
    array = np.asarray(perm)
    return bool((array != np.arange(array.shape[-1])).any()) if array.size else False


def _move_output(value: torch.Tensor, end: object, g: GroupElement) -> torch.Tensor:
    """g on an output: a stacked one (final states per layer) entry by entry."""
    if end and end[0] == STACKED:
        return torch.stack([_move_end(v, e, g) for v, e in zip(value, end[1], strict=True)])
    return _move_end(value, end, g)


def _move_end(value: torch.Tensor, layout, g: GroupElement) -> torch.Tensor:
    """g on an input or output tensor: each axis's factors gathered by their sets."""
    for axis, parts in enumerate(layout):
        if all(name is None for part in parts for name, _ in part):
            continue
        pieces = []
        start = 0
        for part in parts:
            size = int(np.prod([s for _, s in part]))
            piece = value.narrow(axis, start, size)
            shape = list(piece.shape)
            piece = piece.reshape(shape[:axis] + [s for _, s in part] + shape[axis + 1 :])
            for k, (name, _) in enumerate(part):
                if name is not None:
                    piece = _gather(piece, axis + k, g.perm(name), g.sign(name))
            pieces.append(piece.reshape(shape))
            start += size
        value = torch.cat(pieces, dim=axis) if len(pieces) > 1 else pieces[0]
    return value


# -- symmetry --------------------------------------------------------------------------------
def _moving(space: WeightSpace) -> list:
    return [
        s for s in space.sets if s.kind is not Kind.FIXED and (s.size > 1 or s.kind is Kind.SIGNED)
    ]


def _alone(space: WeightSpace, whole: GroupElement, name: str) -> GroupElement:
    """`whole` restricted to one set (every other set left in place)."""
    perms = tuple((n, p if n == name else _identity_like(p)) for n, p in whole.perms)
    signs = tuple((n, v if n == name else _ones_like(v)) for n, v in whole.signs)
    return GroupElement(perms, signs)


def _identity_like(perm: object) -> object:
    array = np.asarray(perm)
    return _as_tuple(np.broadcast_to(np.arange(array.shape[-1]), array.shape))


def _ones_like(sign: object) -> object:
    return _as_tuple(np.ones_like(np.asarray(sign)))


def _as_tuple(array: np.ndarray) -> object:
    if array.ndim <= 1:
        return tuple(int(i) for i in array)
    return tuple(_as_tuple(row) for row in array)


def _elements(space: WeightSpace, rng: np.random.Generator) -> list[tuple[str, GroupElement]]:
    """Random elements of the whole group and, for a space of few sets, each set moved alone
    (a large space's sets are moved alone only to name the culprit of a failure)."""
    out = [
        (f"a random element of the whole group ({i + 1})", random_element(space, rng))
        for i in range(WHOLE)
    ]
    if len(_moving(space)) <= ALONE_UP_TO:
        out += _each_alone(space, rng)
    return out


def _each_alone(space: WeightSpace, rng: np.random.Generator) -> list[tuple[str, GroupElement]]:
    whole = random_element(space, rng)
    return [
        (f"set {s.name} ({s.kind.value}, size {s.size})", _alone(space, whole, s.name))
        for s in _moving(space)
    ]


def _inputs(trace, rng: np.random.Generator) -> list[tuple[torch.Tensor, ...]]:
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    out = []
    for _ in range(TRIALS):
        items = []
        for x in trace.example:
            if x.is_floating_point():
                items.append(torch.randn(x.shape, generator=gen, dtype=torch.float64))
            else:
                high = int(x.max()) + 1 if x.numel() else 1
                items.append(torch.randint(0, max(high, 1), x.shape, generator=gen, dtype=x.dtype))
        out.append(tuple(items))
    return out


def _outputs(value: object) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, tuple | list):
        return [v for item in value for v in _outputs(item)]
    if isinstance(value, dict):
        return [v for item in value.values() for v in _outputs(item)]
    return []


def _has_batch_statistics(module: nn.Module) -> bool:
    return any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training is not None
        for m in module.modules()
    )


@contextmanager
def _one_thread() -> Iterator[None]:
    """Torch on one thread for the duration. The checks run a module on a batch of two
    small inputs and permute its parameters, ops too small to split over threads: on two
    cores, one thread takes the same time as two, and on a loaded machine OpenMP's threads,
    waiting for each other, take many times longer (benchmarks/engine_scaling.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _float64(module: nn.Module) -> nn.Module:
    """A float64 copy of the module to run the checks on, its dropout layers in eval mode
    (random masks would hide or fake a difference)."""
    work = copy.deepcopy(module).double()
    for m in work.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.eval()
    return work


def _runner(work: nn.Module, train: bool) -> tuple[Callable, dict[str, torch.Tensor]]:
    """A function running the float64 copy `work` on a state in train or eval mode (set at
    each call: the copy is shared between the modes), and the copy's own state."""
    buffers = {name for name, _ in work.named_buffers()}

    def run(state: dict[str, torch.Tensor], inputs: tuple) -> list[torch.Tensor]:
        work.train(train)
        for m in work.modules():
            if isinstance(m, nn.modules.dropout._DropoutNd):
                m.eval()
        if train:  # train mode updates running statistics in place: give it copies
            state = {k: v.clone() if k in buffers else v for k, v in state.items()}
        with torch.no_grad():
            return _outputs(functional_call(work, state, inputs))

    # each tensor once (a tied weight under its first name: functional_call refuses two
    # values for one tensor)
    named = dict(work.named_parameters()) | dict(work.named_buffers())
    return run, {k: v.detach() for k, v in named.items()}


def _gap(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        if x.shape != y.shape:
            return float("inf")
        if not x.is_floating_point():
            worst = max(worst, float((x != y).any()))
            continue
        scale = max(1.0, float(y.abs().max())) if y.numel() else 1.0
        worst = max(worst, float((x - y).abs().max()) / scale if y.numel() else 0.0)
    return worst


def symmetry_failures(module: nn.Module, trace, seed: int = 0) -> tuple[int, list[str]]:
    """(checks run, failures) of the claimed group against the module's function."""
    with _one_thread():
        return _symmetry_failures(_float64(module), trace, seed)


def _symmetry_failures(work: nn.Module, trace, seed: int) -> tuple[int, list[str]]:
    """Each element's moved state is made once and run in every mode on every input (the
    cases); a large space's sets are moved one by one only to name a culprit."""
    rng = np.random.default_rng(seed)
    space = trace.space
    elements = _elements(space, rng)
    modes = [False] + ([True] if _has_batch_statistics(work) else [])
    trials = TRIALS if len(space.tensors) <= 40 else 1
    cases = [(train, inputs) for train in modes for inputs in _inputs(trace, rng)[:trials]]
    runners = {train: _runner(work, train) for train in modes}
    runs = {train: run for train, (run, _) in runners.items()}
    state = runners[False][1]
    references = []
    for k, (train, inputs) in enumerate(cases):
        inputs, reference = _reference(runs[train], state, inputs, trace.example)
        cases[k], references = (train, inputs), [*references, reference]

    def gaps(g: GroupElement, which: list[int]) -> dict[int, float]:
        moved = moved_state(space, trace, state, g)
        return {
            k: _moved_gap(runs[cases[k][0]], trace, moved, cases[k][1], references[k], g)
            for k in which
        }

    everywhere = list(range(len(cases)))
    named: dict[int, list[str]] = {k: [] for k in everywhere}  # failures per case
    whole: dict[int, float] = {}  # cases a whole-group element moved, by the largest gap
    checks = 0
    for what, g in elements:
        for k, gap in gaps(g, everywhere).items():
            checks += 1
            if gap > RTOL and what.startswith("set "):
                named[k].append(_failure(what, gap, cases[k][0]))
            elif gap > RTOL:
                whole[k] = max(whole.get(k, 0.0), gap)
    if whole and not any(named.values()):
        # name the sets that move the output (a large space's sets, one by one)
        for what, g in _each_alone(space, rng):
            for k, gap in gaps(g, sorted(whole)).items():
                checks += 1
                if gap > RTOL:
                    named[k].append(_failure(what, gap, cases[k][0]))
        for k, gap in whole.items():
            if not named[k]:
                named[k].append(_failure("a random element of the whole group", gap, cases[k][0]))
    failures = [f for k in everywhere for f in named[k]]  # eval mode's cases first
    return checks, list(dict.fromkeys(failures))


def _reference(run, state, inputs: tuple, example: tuple) -> tuple[tuple, list[torch.Tensor]]:
    """(inputs, the module's outputs on them). Integer inputs drawn at random may mean
    nothing to the module (offsets, lengths, indices into each other): where it refuses
    them, the example's own integers are used, with random floats beside them."""
    try:
        return inputs, run(state, inputs)
    except Exception:  # noqa: BLE001 - any refusal of drawn integers; retried below
        kept = tuple(
            x if x.is_floating_point() else e for x, e in zip(inputs, example, strict=True)
        )
        if all(x.is_floating_point() for x in inputs):
            raise
        return kept, run(state, kept)


def _failure(what: str, gap: float, train: bool) -> str:
    mode = "train" if train else "eval"
    return f"{what}: the output moved by {gap:.3g} (relative, {mode} mode)"


def _moved_gap(run, trace, moved: dict, inputs: tuple, reference: list, g: GroupElement) -> float:
    """How far the module with the moved state `moved`, on g's inputs, is from g's outputs."""
    moved_inputs = tuple(
        _move_end(x, layout, g) if x.is_floating_point() else x
        for x, layout in zip(inputs, trace.inputs, strict=False)
    )
    got = run(moved, moved_inputs)
    want = [_move_output(y, end, g) for y, end in zip(reference, trace.outputs, strict=False)]
    return _gap(got, want + reference[len(want) :])


def _end_sets(trace) -> set[str]:
    """The sets on the network's input and output axes."""
    ends = list(trace.inputs)
    for end in trace.outputs:
        ends += list(end[1]) if end and end[0] == STACKED else [end]
    return {name for end in ends for axis in end for part in axis for name, _ in part if name}


def under_claims(module: nn.Module, trace, seed: int = 1) -> list[str]:
    """Notes: fixed sets the module might let move (`trace.declared`: a declared subgroup,
    an axis a constant meets) that it does let move, and, in mode signed, permuted sets whose
    signs it lets flip (at most NOTES_UP_TO probes)."""
    with _one_thread():
        return _under_claims(_float64(module), trace, seed)


def _under_claims(work: nn.Module, trace, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    space = trace.space
    ends = _end_sets(trace)
    run, state = _runner(work, False)
    inputs = _inputs(trace, rng)[0]
    reference = run(state, inputs)
    base = identity(space)
    base_perms, base_signs = dict(base.perms), dict(base.signs)
    notes, probes = [], 0
    for s in space.sets:
        if s.parent is not None:
            continue  # positions inside blocks: probed with their blocks, not alone
        tries = []
        if s.kind is Kind.FIXED and s.size >= 2 and s.name in trace.declared:
            order = rng.permutation(s.size)  # one cycle through a random order: moves every index
            cycle = np.empty(s.size, dtype=np.int64)
            cycle[order] = np.roll(order, -1)
            perm = tuple(int(i) for i in cycle)
            tries.append(("is fixed, but permuting it alone", {s.name: perm}, {}))
        if trace.mode == "signed" and s.kind is Kind.PERMUTED and s.name not in ends:
            flips = rng.choice([-1, 1], s.size)
            flips[rng.integers(s.size)] = -1  # at least one neuron flipped
            what = "is permuted, but flipping the signs of its neurons"
            tries.append((what, {}, {s.name: tuple(int(v) for v in flips)}))
        for what, perms, signs in tries:
            probes += 1
            if probes > NOTES_UP_TO:
                return notes
            g = GroupElement(
                tuple((n, perms.get(n, p)) for n, p in base_perms.items()),
                tuple((n, signs.get(n, v)) for n, v in base_signs.items()),
            )
            if _gap(run(moved_state(space, trace, state, g), inputs), reference) <= RTOL:
                notes.append(
                    f"set {s.name} {what} keeps the outputs: the space may under-claim here"
                )
    return notes


def run_module_check(module: nn.Module, trace, notes: bool = True) -> ModuleCheck:
    """Shapes, symmetry and (optionally) under-claiming notes, as one record."""
    shapes = shape_failures(module, trace)
    if shapes:
        return ModuleCheck(len(trace.sources), tuple(shapes), ())
    with _one_thread():
        work = _float64(module)  # one copy for every check
        checks, failures = _symmetry_failures(work, trace, 0)
        found = _under_claims(work, trace, 1) if notes and not failures else []
    return ModuleCheck(len(trace.sources) + checks, tuple(failures), tuple(found))


def check_symmetry(module: nn.Module, trace) -> None:
    checks, failures = symmetry_failures(module, trace)
    if failures:
        raise SpecError(
            f"from_module: the derived group is not a symmetry of {type(module).__name__}: "
            f"{failures[0]}; the space is refused (please report this module)"
        )
