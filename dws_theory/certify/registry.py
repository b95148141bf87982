"""The certificate's routes, in one registry by name.

A `Route` is a name, a description and a function from a `Check` (the space, its
enumeration and what the routes share) to a `RouteResult`. `certify` runs the registered
routes that apply, in registration order; `register_route` adds one (a test registers a
broken route to see the certificate fail; the module route applies only when a module is
given). The error for an unknown route name lists the registered ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..basis import Basis
from ..spec import WeightSpace
from .counts import closed_form_counts, enumeration_counts
from .explicit import (
    commutant_counts,
    exact_commutation,
    independence_ranks,
    orbit_count_counts,
)
from .per_block import counting_route_per_block, dense_route_per_block
from .reduce import Fits, explicit_space, fits_commutant, fits_dense, fits_pairs
from .result import Counts, RouteResult, compare

__all__ = ["Check", "Route", "ROUTES", "register_route", "select_routes"]


@dataclass(frozen=True)
class Check:
    """What every route of one certificate shares.

    `basis` is the enumeration under test of `space` and `counts` its counts per block;
    `basis_of` enumerates (once) each reduced copy a route runs on; `per_block` says the
    explicit routes run once per class of isomorphic blocks (deep spaces); `source` is the
    module the space was derived from, for the module route (None: no module)."""

    space: WeightSpace
    basis: Basis
    counts: Counts
    basis_of: Callable[[WeightSpace], Basis]
    say: Callable[[str], None]
    per_block: bool
    source: object | None = None


@dataclass(frozen=True)
class Route:
    name: str
    description: str  # Markdown with TeX: the derivation page and `verify` print it
    run: Callable[[Check], RouteResult] = field(repr=False)
    applies: Callable[[Check], bool] = field(default=lambda check: True, repr=False)


ROUTES: dict[str, Route] = {}


def register_route(route: Route) -> Route:
    """Add a route (a new name goes last; an existing name is replaced in place)."""
    ROUTES[route.name] = route
    return route


def select_routes(names: tuple[str, ...] | list[str] | None) -> list[Route]:
    """The routes called `names` (all registered ones when None), in registry order."""
    if names is None:
        return list(ROUTES.values())
    unknown = [n for n in names if n not in ROUTES]
    if unknown:
        raise ValueError(
            f"unknown certificate route {unknown[0]!r}; expected one of {list(ROUTES)}"
        )
    return [r for name, r in ROUTES.items() if name in names]


# -- the routes ------------------------------------------------------------------------------
def _closed_form(check: Check) -> RouteResult:
    check.say("closed form")
    return compare(
        "closed_form", check.space, check.space, closed_form_counts(check.space), check.counts
    )


def _counting(name: str, counts: Callable[[WeightSpace], Counts], fits: Fits) -> Callable:
    def run(check: Check) -> RouteResult:
        if check.per_block:
            check.say(f"{name} per block class")
            return counting_route_per_block(
                name, counts, fits, check.space, check.counts, check.basis_of
            )
        target, note = explicit_space(check.space, fits)
        check.say(f"{name} on widths {target.widths}")
        expected = enumeration_counts(check.basis_of(target))
        return compare(name, target, check.space, counts(target), expected, note)

    return run


def _exact_commutation(check: Check) -> RouteResult:
    if check.per_block:
        check.say("exact_commutation per block class")
        return dense_route_per_block(
            "exact_commutation", fits_dense, check.space, check.counts, check.basis_of
        )
    target, note = explicit_space(check.space, fits_dense)
    check.say(f"exact_commutation on widths {target.widths}")
    small = check.basis_of(target)
    checked, failures = exact_commutation(small)
    total = small.equivariant_linear + small.equivariant_bias + small.invariant_linear
    return RouteResult(
        "exact_commutation", str(target), target != check.space, checked, total, failures, note
    )


def _independence(check: Check) -> RouteResult:
    if check.per_block:
        check.say("independence per block class")
        return dense_route_per_block(
            "independence", fits_dense, check.space, check.counts, check.basis_of
        )
    target, note = explicit_space(check.space, fits_dense)
    check.say(f"independence on widths {target.widths}")
    small = check.basis_of(target)
    ranks = independence_ranks(small)
    return compare("independence", target, check.space, ranks, enumeration_counts(small), note)


register_route(
    Route(
        "closed_form",
        "product over neuron sets of $c_k(t_k)$, computed with sympy",
        _closed_form,
    )
)
register_route(
    Route(
        "orbit_count",
        "connected components of the index pairs under the generators "
        "(sign parity by a double cover)",
        _counting("orbit_count", orbit_count_counts, fits_pairs),
    )
)
register_route(
    Route(
        "commutant",
        "dimension of $\\{L : \\rho(g) L = L \\rho(g)\\}$ over the generators, by "
        "dense linear algebra",
        _counting("commutant", commutant_counts, fits_commutant),
    )
)
register_route(
    Route(
        "exact_commutation",
        "every dense 0/1 element commutes with every generator, in integer arithmetic",
        _exact_commutation,
    )
)
register_route(
    Route(
        "independence",
        "rank of the dense elements of each block equals their number",
        _independence,
    )
)
