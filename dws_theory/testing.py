"""Checks for weight-space layers, this project's or anyone else's.

Three properties every equivariant weight-space layer must have, each one assertion:

- `assert_equivariant(layer, space)`: L(g x) = g L(x) for random group elements g (for a
  layer whose output is one tensor per sample: L(g x) = L(x), invariance).
- `assert_not_over_symmetric(layer, space)`: L does NOT commute with transformations that
  are not in the group (the rows of one weight permuted alone, a fixed set permuted, for a
  nested set a position moved from one block to another) where the complete equivariant
  layer does not either. Equivariance alone cannot see a layer that respects a larger group
  than it should.
- `assert_complete(layer, space)`: the rank of the Jacobian of L's outputs with respect to
  its parameters equals the orbit count (c_in c_out per linear basis element plus c_out per
  bias orbit): nothing missing. Raw parameters above the rank are redundant, not wrong.

A layer is called as `layer(weights, biases)` with `weights[m-1]` `[B, C, d_m, d_{m-1}]` and
`biases[m-1]` `[B, C, d_m]`; a layer whose `forward` takes one argument (NFN's layers) gets
one `WeightSpaceBatch`, which has `.weights`, `.biases` and NFN's sequence interface. Its
output may be `(weights, biases)`, an object with `.weights` and `.biases`, or one tensor.
The checks run on a float64 copy of the layer with random parameters (the layer passed in
is left untouched), so their tolerances are float64 ones.

`space` is a `WeightSpace` (`mlp("2,32,32,1", "hidden")`, `from_module(cnn)`, ...) or a
widths string, read with `mode`. Every check takes any space whose tensors are weights (two
or more axes) and biases (one axis); the last two compare with this project's complete
layer of that space (`runtime.layer_classes(space)`).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .basis import enumerate_basis
from .group import GroupElement, random_element
from .spec import Kind, WeightSpace, mlp

__all__ = [
    "Transformation",
    "WeightSpaceBatch",
    "act",
    "act_on",
    "assert_complete",
    "assert_equivariant",
    "assert_not_over_symmetric",
    "jacobian_rank",
    "outside_transformations",
    "random_inputs",
]

Tensors = list[torch.Tensor]
# Gaps below this (relative, float64) are rounding; equivariance holds.
EQUIVARIANCE_RTOL = 1e-9
# Gaps above this (relative, float64) are real; the layer does not commute.
DETECTION_GAP = 1e-6


class WeightSpaceBatch(Sequence):
    """Weights and biases of a batch, with NFN's `WeightSpaceFeatures` interface (`.weights`,
    `.biases`, `len`, iteration and indexing by layer), for layers that take one argument."""

    def __init__(self, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor]) -> None:
        self.weights, self.biases = tuple(weights), tuple(biases)

    def __len__(self) -> int:
        return len(self.weights)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return zip(self.weights, self.biases, strict=True)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        return self.weights[index], self.biases[index]


# -- spaces, inputs and calls ----------------------------------------------------------------
def _space(space: WeightSpace | str, mode: str) -> WeightSpace:
    return mlp(space, mode) if isinstance(space, str) else space


def _names(space: WeightSpace) -> tuple[list[str], list[str]]:
    """(weight tensors, bias tensors) of the space, in the order a layer receives them."""
    weights = [t.name for t in space.tensors if len(t.axes) >= 2]
    biases = [t.name for t in space.tensors if len(t.axes) == 1]
    if len(weights) + len(biases) != len(space.tensors):
        raise ValueError(f"expected a space whose tensors all have one or more axes, got {space}")
    return weights, biases


def _in_channels(layer: nn.Module, given: int | None) -> int:
    if given is not None:
        return given
    for attribute in ("in_channels", "c_in"):
        value = getattr(layer, attribute, None)
        if isinstance(value, int):
            return value
    return 1


def _float64_copy(layer: nn.Module, seed: int) -> nn.Module:
    """A float64 copy with standard-normal parameters (biases included)."""
    twin = copy.deepcopy(layer).to(torch.float64)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in twin.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return twin


def random_inputs(
    space: WeightSpace, batch: int, channels: int, gen: torch.Generator
) -> tuple[Tensors, Tensors]:
    """Standard-normal float64 features `[B, C, *shape]` for every weight and bias."""
    weights, biases = _names(space)

    def one(name: str) -> torch.Tensor:
        shape = (batch, channels, *space.shape(name))
        return torch.randn(shape, generator=gen, dtype=torch.float64)

    return [one(n) for n in weights], [one(n) for n in biases]


def _takes_one_argument(layer: Callable) -> bool:
    forward = layer.forward if isinstance(layer, nn.Module) else layer
    try:
        params = inspect.signature(forward).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(positional) == 1


def _call(layer: nn.Module, weights: Tensors, biases: Tensors) -> tuple[Tensors, Tensors] | Tensors:
    """Outputs as (weights, biases) lists, or [tensor] for an invariant layer."""
    if _takes_one_argument(layer):
        out = layer(WeightSpaceBatch(weights, biases))
    else:
        out = layer(weights, biases)
    if isinstance(out, torch.Tensor):
        return [out]
    if hasattr(out, "weights") and hasattr(out, "biases"):
        return list(out.weights), list(out.biases)
    if isinstance(out, tuple | list) and len(out) == 2:
        return list(out[0]), list(out[1])
    raise TypeError(
        "expected the layer to return (weights, biases), an object with .weights and "
        f".biases, or one tensor, got {type(out).__name__}"
    )


def _flat(out: tuple[Tensors, Tensors] | Tensors) -> torch.Tensor:
    tensors = [*out[0], *out[1]] if isinstance(out, tuple) else out
    return torch.cat([t.reshape(-1) for t in tensors])


def _relative_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    scale = float(b.norm())
    return float((a - b).norm()) / scale if scale > 0 else float((a - b).norm())


# -- the group action, and transformations outside the group ---------------------------------
def _gather(
    t: torch.Tensor, axis: int, perm: np.ndarray, sign: np.ndarray | None, lead: int = 2
) -> torch.Tensor:
    dim = lead + axis
    t = t.index_select(dim, torch.as_tensor(perm, device=t.device))
    if sign is not None:
        shape = [1] * t.dim()
        shape[dim] = -1
        t = t * torch.as_tensor(sign, dtype=t.dtype, device=t.device).view(shape)
    return t


def _gather_in_blocks(
    t: torch.Tensor, parent: int, axis: int, perm: np.ndarray, sign: np.ndarray, lead: int = 2
) -> torch.Tensor:
    """y[.., h, .., i, ..] = sign[h, i] * t[.., h, .., perm[h, i], ..]: a child axis gathered
    by the permutation of the block its parent axis (`parent`, earlier) indexes."""
    shape = [1] * t.dim()
    shape[lead + parent], shape[lead + axis] = perm.shape
    index = torch.as_tensor(perm, device=t.device).view(shape).expand(t.shape)
    t = torch.gather(t, lead + axis, index)
    return t * torch.as_tensor(sign, dtype=t.dtype, device=t.device).view(shape)


def act(
    space: WeightSpace, g: GroupElement, weights: Tensors, biases: Tensors
) -> tuple[Tensors, Tensors]:
    """g acting on `[B, C, *shape]` features: every axis gathered by its set's permutation
    and multiplied by its signs. An axis on a child set is gathered after its parent axis
    (which comes first), by the permutation of the block the output index lies in:
    (g x)[.., h, .., i, ..] = s_p(h) s_c(h, i) x[.., sigma(h), .., tau_h(i), ..]."""
    names_w, names_b = _names(space)
    return (
        [act_on(space, g, n, t) for t, n in zip(weights, names_w, strict=True)],
        [act_on(space, g, n, t) for t, n in zip(biases, names_b, strict=True)],
    )


def act_on(
    space: WeightSpace, g: GroupElement, tensor: str, t: torch.Tensor, lead: int = 2
) -> torch.Tensor:
    """g acting on one tensor of the space with `lead` leading axes (batch and channel: 2;
    a module's own parameter: 0). The project's one group action on torch tensors."""
    parents = space.parent_axes(tensor)
    for axis, set_name in enumerate(space.tensor(tensor).axes):
        perm, sign = g.perm(set_name), g.sign(set_name)
        if parents[axis] is None:
            t = _gather(t, axis, perm, sign, lead)
        else:
            t = _gather_in_blocks(t, parents[axis], axis, perm, sign, lead)
    return t


@dataclass(frozen=True)
class Transformation:
    """A map of the weight space that is not a group element: `perm` applied to one axis of
    one tensor alone (`tensor` set), or to every axis on one fixed set (`tensor` None).

    With `across_blocks`, `set_name` is a child set and `perm` permutes its flat (block,
    position) index, h * d + i, on every axis of that set together with its parent axis:
    a position moved into another block, which no element of S_d wr S_H does."""

    description: str
    set_name: str
    perm: tuple[int, ...]
    tensor: str | None = None
    axis: int = 0
    across_blocks: bool = False

    def __call__(
        self, space: WeightSpace, weights: Tensors, biases: Tensors
    ) -> tuple[Tensors, Tensors]:
        names_w, names_b = _names(space)
        perm = np.array(self.perm)

        def one(t: torch.Tensor, name: str) -> torch.Tensor:
            parents = space.parent_axes(name)
            for axis, set_name in enumerate(space.tensor(name).axes):
                chosen = name == self.tensor and axis == self.axis
                if self.across_blocks and set_name == self.set_name:
                    t = _gather_flat(t, parents[axis], axis, perm)
                elif chosen or (self.tensor is None and set_name == self.set_name):
                    t = _gather(t, axis, perm, None)
            return t

        return (
            [one(t, n) for t, n in zip(weights, names_w, strict=True)],
            [one(t, n) for t, n in zip(biases, names_b, strict=True)],
        )


def _gather_flat(t: torch.Tensor, parent: int, axis: int, perm: np.ndarray) -> torch.Tensor:
    """y[.., h, .., i, ..] = t[.., q // d, .., q % d, ..] with q = perm[h * d + i]: the parent
    and child axes read as one flat axis of H * d and gathered by `perm`."""
    blocks, size = t.shape[2 + parent], t.shape[2 + axis]
    moved = t.movedim((2 + parent, 2 + axis), (-2, -1))
    flat = moved.reshape(*moved.shape[:-2], blocks * size)
    flat = flat.index_select(-1, torch.as_tensor(perm, device=t.device))
    return flat.reshape(moved.shape).movedim((-2, -1), (2 + parent, 2 + axis))


def _shift(n: int) -> tuple[int, ...]:
    """A permutation that moves every index (a cycle), for n >= 2."""
    return tuple((i + 1) % n for i in range(n))


def _across(space: WeightSpace, child: str) -> Transformation:
    """Position 0 of block 0 swapped with position 0 of block 1 (flat 0 <-> d)."""
    d = space.set(child).size
    blocks = space.set(space.set(child).parent).size
    perm = list(range(blocks * d))
    perm[0], perm[d] = d, 0
    return Transformation(
        f"position 0 of {child} moved between blocks 0 and 1 of {space.set(child).parent}",
        child,
        tuple(perm),
        across_blocks=True,
    )


def outside_transformations(space: WeightSpace) -> list[Transformation]:
    """Transformations outside the group: each fixed set of width >= 2 permuted everywhere
    (a fixed set is not permuted by G), each axis of width >= 2 of each tensor permuted
    alone (G moves an axis only together with every other axis on its set), and for each
    child set of a parent with two or more blocks, one position moved from block 0 to
    block 1 on every tensor (G moves positions only inside a block, or whole blocks)."""
    found = []
    for s in space.sets:
        if s.kind is Kind.FIXED and s.size >= 2:
            found.append(Transformation(f"fixed set {s.name} permuted", s.name, _shift(s.size)))
        if s.parent is not None and space.set(s.parent).size >= 2:
            found.append(_across(space, s.name))
    for t in space.tensors:
        for axis, set_name in enumerate(t.axes):
            size = space.set(set_name).size
            shared = sum(u.axes.count(set_name) for u in space.tensors) > 1
            if size >= 2 and shared:
                found.append(
                    Transformation(
                        f"axis {axis} of {t.name} (set {set_name}) permuted alone",
                        set_name,
                        _shift(size),
                        t.name,
                        axis,
                    )
                )
    return found


# -- the three checks --------------------------------------------------------------------------
def assert_equivariant(
    layer: nn.Module,
    space: WeightSpace | str,
    mode: str = "hidden",
    *,
    in_channels: int | None = None,
    trials: int = 3,
    batch: int = 2,
    seed: int = 0,
    rtol: float = EQUIVARIANCE_RTOL,
) -> None:
    """L(g x) = g L(x) (or L(g x) = L(x) for a one-tensor output) for `trials` random group
    elements g, on a float64 copy with random parameters; AssertionError otherwise."""
    space = _space(space, mode)
    twin = _float64_copy(layer, seed)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    channels = _in_channels(layer, in_channels)
    for trial in range(trials):
        weights, biases = random_inputs(space, batch, channels, gen)
        g = random_element(space, rng)
        with torch.no_grad():
            out = _call(twin, weights, biases)
            moved = _call(twin, *act(space, g, weights, biases))
        expected = _flat(act(space, g, *out) if isinstance(out, tuple) else out)
        gap = _relative_gap(_flat(moved), expected)
        if not gap <= rtol:
            what = "equivariant" if isinstance(out, tuple) else "invariant"
            raise AssertionError(
                f"expected the layer to be {what} under the group of {space.widths} "
                f"({trial + 1} of {trials} random elements), got a relative gap of {gap:.3g} "
                f"(tolerance {rtol:g}) for the element {g}"
            )


def _reference_layer(space: WeightSpace, out: tuple[Tensors, Tensors] | Tensors, channels: int):
    from .runtime import layer_classes

    equivariant, invariant = layer_classes(space)
    if isinstance(out, tuple):
        return equivariant(channels, out[0][0].shape[1])
    return invariant(channels, out[0].reshape(out[0].shape[0], -1).shape[1])


def assert_not_over_symmetric(
    layer: nn.Module,
    space: WeightSpace | str,
    mode: str = "hidden",
    *,
    in_channels: int | None = None,
    batch: int = 2,
    seed: int = 0,
) -> list[str]:
    """For every transformation h outside the group (`outside_transformations`) that the
    complete equivariant layer of this space does not commute with, the layer must not
    either; AssertionError naming the first h it commutes with. Returns the descriptions of
    the transformations that were checked."""
    space = _space(space, mode)
    twin = _float64_copy(layer, seed)
    channels = _in_channels(layer, in_channels)
    gen = torch.Generator().manual_seed(seed)
    weights, biases = random_inputs(space, batch, channels, gen)
    with torch.no_grad():
        out = _call(twin, weights, biases)
    reference = _float64_copy(_reference_layer(space, out, channels), seed + 1)
    checked = []
    for h in outside_transformations(space):

        def gap(module: nn.Module, h: Transformation = h) -> float:
            with torch.no_grad():
                left = _call(module, *h(space, weights, biases))
                right = _call(module, weights, biases)
            if isinstance(right, tuple):
                right = h(space, *right)
            return _relative_gap(_flat(left), _flat(right))

        if gap(reference) <= DETECTION_GAP:
            continue  # the complete layer commutes with h too: h tells nothing here
        checked.append(h.description)
        found = gap(twin)
        if found <= DETECTION_GAP:
            raise AssertionError(
                f"expected the layer to notice that {h.description} is not a group element "
                f"of {space.widths} (the complete equivariant layer does), got a relative "
                f"gap of {found:.3g}: the layer is over-symmetric"
            )
    if not checked:
        raise ValueError(
            f"expected a space with some transformation outside its group to test, got "
            f"{space.widths} (every width is 1?)"
        )
    return checked


def jacobian_rank(
    layer: nn.Module,
    space: WeightSpace,
    weights: Tensors,
    biases: Tensors,
    seed: int = 0,
) -> int:
    """Numerical rank of d(outputs at the given inputs) / d(parameters), from R J for a
    random R with a few more rows than parameters (one backward pass per row)."""
    params = [p for p in layer.parameters() if p.requires_grad]
    count = sum(p.numel() for p in params)
    out = _flat(_call(layer, weights, biases))
    gen = torch.Generator().manual_seed(seed)
    project = torch.randn(count + 8, out.numel(), generator=gen, dtype=out.dtype)
    rows = []
    for r in project:
        grads = torch.autograd.grad(out @ r, params, retain_graph=True, allow_unused=True)
        rows.append(
            torch.cat(
                [
                    (g if g is not None else torch.zeros_like(p)).reshape(-1)
                    for g, p in zip(grads, params, strict=True)
                ]
            )
        )
    singular = torch.linalg.svdvals(torch.stack(rows).detach())
    if singular.numel() == 0 or float(singular[0]) == 0.0:
        return 0
    return int((singular > singular[0] * 1e-9).sum())


def assert_complete(
    layer: nn.Module,
    space: WeightSpace | str,
    mode: str = "hidden",
    *,
    in_channels: int | None = None,
    seed: int = 0,
    max_batch: int | None = None,
) -> int:
    """The parameter Jacobian's rank equals the orbit count: for an equivariant layer
    c_in c_out per linear basis element plus c_out per bias orbit, for an invariant one
    c_in c_out per invariant element plus c_out (its bias). Random inputs are doubled from 8
    until this project's complete layer reaches that rank (at most P c_in + 1, where every
    affine map is pinned down), then the layer is measured on the same inputs. Returns the rank."""
    space = _space(space, mode)
    twin = _float64_copy(layer, seed)
    channels = _in_channels(layer, in_channels)
    gen = torch.Generator().manual_seed(seed)
    x = random_inputs(space, 1, channels, gen)
    with torch.no_grad():
        out = _call(twin, *x)
    basis = enumerate_basis(space)
    if isinstance(out, tuple):
        c_out = out[0][0].shape[1]
        expected = basis.parameter_count(channels, c_out)
    else:
        c_out = out[0].reshape(1, -1).shape[1]
        expected = basis.invariant_linear * channels * c_out + c_out
    reference = _float64_copy(_reference_layer(space, out, channels), seed + 1)
    # P c_in + 1 generic inputs pin down every affine map of c_in-channel features.
    limit = max_batch or space.dimension * channels + 1
    batch = min(8, limit)
    while True:
        x = random_inputs(space, batch, channels, gen)
        if jacobian_rank(reference, space, *x, seed) >= expected or batch >= limit:
            break
        batch = min(2 * batch, limit)
    rank = jacobian_rank(twin, space, *x, seed)
    raw = sum(p.numel() for p in twin.parameters())
    if rank < expected:
        raise AssertionError(
            f"expected the parameter Jacobian to have rank {expected} (the orbit count with "
            f"{channels} -> {c_out} channels on {space.widths}), got {rank}: "
            f"{expected - rank} basis direction(s) missing ({raw} raw parameters, "
            f"{batch} random inputs)"
        )
    if rank > expected:
        raise AssertionError(
            f"expected the parameter Jacobian to have rank {expected} (the orbit count), got "
            f"{rank}: the layer reaches maps outside the equivariant space (not equivariant)"
        )
    return rank
