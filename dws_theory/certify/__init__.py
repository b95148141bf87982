"""Independent certificates that an enumerated basis is right and complete.

Each route computes the counts without the enumeration's code path; the routes sit in one
registry by name (`registry.ROUTES`):

- `closed_form` (counts.py): product over neuron sets of Stirling sums, even-block
  partition numbers and n^t (a set with nested children: one family factor, a sum over
  the partitions of its axes);
- `orbit_count`, `commutant`, `exact_commutation`, `independence` (explicit.py): orbits on
  explicit index pairs, the commutant's dimension, integer commutation of every dense
  element with every generator, and the rank of the dense elements;
- `module` (module_route.py): the space checked against the module it was derived from,
  when one is given (`source=(module, trace)`).

Explicit routes need explicit index pairs. When the space is too large they run on a
reduced copy (reduce.py), and the certificate says so. When it is too deep (more than
MAX_WHOLE_SPACE_BLOCKS blocks) they run once per class of isomorphic blocks, each on a
space holding only that block's tensors (per_block.py, which gives the argument).
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable

from threadpoolctl import threadpool_limits

from ..basis import Basis, enumerate_basis
from ..spec import WeightSpace, require_space
from . import module_route  # noqa: F401  (registers the module route, after registry's own)
from .counts import (
    Factor,
    block_factors,
    closed_form_counts,
    enumeration_counts,
    family_factor,
    set_factor,
)
from .explicit import commutant_counts, exact_commutation, independence_ranks, orbit_count_counts
from .reduce import axes_bound, explicit_space, reduce_space
from .registry import ROUTES, Check, Route, register_route, select_routes
from .result import Certificate, Counts, RouteResult

__all__ = [
    "Certificate",
    "Check",
    "Counts",
    "Factor",
    "MAX_WHOLE_SPACE_BLOCKS",
    "ROUTES",
    "Route",
    "RouteResult",
    "axes_bound",
    "block_factors",
    "certify",
    "closed_form_counts",
    "commutant_counts",
    "enumeration_counts",
    "exact_commutation",
    "explicit_space",
    "family_factor",
    "independence_ranks",
    "orbit_count_counts",
    "reduce_space",
    "register_route",
    "set_factor",
]

# Above this many blocks (4 M^2 = 400: an MLP of depth 10) the explicit routes run once per
# block class (per_block) instead of on the whole space, whose cost grows as M^3.
MAX_WHOLE_SPACE_BLOCKS = 400


def certify(
    space: WeightSpace,
    progress: Callable[[str], None] | None = None,
    enumerator: Callable[[WeightSpace], Basis] = enumerate_basis,
    basis: Basis | None = None,
    per_block: bool | None = None,
    routes: tuple[str, ...] | list[str] | None = None,
    source: object | None = None,
) -> Certificate:
    """Run the certificate's routes; each compares its counts block by block with the
    enumeration.

    `enumerator` is the enumeration under test (tests pass deliberately broken ones to see
    the certificate fail). `basis`, when given, is the enumeration of `space` already made
    (by `build`): it is checked instead of enumerating again. Each reduced copy a route runs
    on is enumerated once. `per_block` runs the explicit routes once per block class
    instead of on the whole space; by default only above MAX_WHOLE_SPACE_BLOCKS blocks,
    where the whole-space routes cost O(M^3). `routes` names the routes to run (default:
    every registered route that applies); `source` is the module the space came from, for
    the module route."""
    say = progress or (lambda _msg: None)
    require_space(space, "certify")
    chosen = select_routes(routes)
    if basis is None:
        basis = enumerator(space)
    elif basis.space != space:
        raise ValueError(f"the basis is for {basis.space}, expected one for {space}")
    bases = {space: basis}

    def basis_of(target: WeightSpace) -> Basis:
        if target not in bases:
            bases[target] = enumerator(target)
        return bases[target]

    counts = enumeration_counts(basis)
    if per_block is None:
        per_block = len(basis.block_counts()) > MAX_WHOLE_SPACE_BLOCKS
    check = Check(space, basis, counts, basis_of, say, per_block, source)
    # One BLAS thread: the explicit routes run many small eigen- and rank problems, too small
    # to split; on a shared 2-core machine (load 5) OpenBLAS's spinning threads made the
    # commutant route of ResNet-18 take 33 s instead of 2.3 s (benchmarks/engine_scaling.py).
    with threadpool_limits(limits=1, user_api="blas"):
        results = tuple(route.run(check) for route in chosen if route.applies(check))
    return Certificate(
        space,
        basis.equivariant_linear,
        basis.equivariant_bias,
        basis.invariant_linear,
        results,
    )


def route_descriptions() -> dict[str, str]:
    """What each registered route checks, in words (Markdown with TeX)."""
    return {name: route.description for name, route in ROUTES.items()}


class _CallableModule(types.ModuleType):
    """`dws_theory.certify` names both this package and its main function; once the package
    is imported the parent's attribute is the package, so calling it calls `certify`."""

    def __call__(self, *args: object, **kwargs: object) -> Certificate:
        return certify(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
