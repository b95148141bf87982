"""Independent certificates that an enumerated basis is right and complete.

Each route computes the counts without the enumeration's code path:

- `closed_form`: product over neuron sets of Stirling sums (sympy), even-block partition
  numbers from the exponential generating function (cosh x - 1)^j / j!, and n^t for fixed
  sets.
- `orbit_count`: orbits of G on explicit index pairs, as connected components of the graph
  whose edges are the generators' actions (scipy). Sign parity is handled by the double
  cover (index, sign): an orbit with consistent parity splits into two components, an
  inconsistent one (killed by a sign flip) stays one, so surviving = C(cover) - C(base).
- `commutant`: dimension of the solution space of rho_A(g) L = L rho_B(g) for every
  generator g, per block, by dense linear algebra (tiny blocks only).
- `exact_commutation`: every dense 0/1 basis element commutes with every generator, in
  integer arithmetic.
- `independence`: the dense basis elements of each block have full rank.

Explicit routes need explicit index pairs. When the space is too large they run on a
reduced copy (`reduce_space`), and the certificate says so. When it is too deep (more than
MAX_WHOLE_SPACE_BLOCKS blocks) they run once per class of isomorphic blocks, each on a
space holding only that block's tensors (`certify_blocks`, which gives the argument).

Why a reduced copy keeps the count: c_k(t) = sum_{j <= min(t, n)} S(t, j) depends on n
only through min(t, n), and no block has more than t_max(k) axes on set k, so shrinking a
permuted or signed set to min(n, t_max(k)) keeps every count. Fixed sets contribute n^t
and are only shrunk when even the reduced copy would be too large; then the explicit routes
check the reduced copy and the closed form the full shape.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import scipy.sparse as sp
import sympy
from scipy.sparse.csgraph import connected_components

from .basis import Basis, enumerate_basis, pattern_entries
from .group import generators, representation, signed_permutation
from .spec import Kind, WeightSpace, require_space

__all__ = ["Certificate", "RouteResult", "certify", "reduce_space", "ROUTES", "ROUTE_DESCRIPTIONS"]

# Limits for explicit routes: index pairs for orbit counting, unknowns per commutant block,
# and P for dense element checks.
MAX_PAIRS = 4_000_000
MAX_TOTAL_PAIRS = 16_000_000  # all blocks together: about P^2 index pairs
MAX_COMMUTANT_UNKNOWNS = 1600
MAX_DENSE_P = 160
# Above this many blocks (4 M^2 = 400: an MLP of depth 10) the explicit routes run once per
# block class (certify_blocks) instead of on the whole space, whose cost grows as M^3.
MAX_WHOLE_SPACE_BLOCKS = 400

Counts = dict[tuple[str | None, str | None], int]


@dataclass(frozen=True)
class RouteResult:
    name: str
    ran_on: str  # the weight space the route checked (str form)
    reduced: bool  # True when it ran on a reduced copy
    value: int  # total count from this route (or elements checked)
    expected: int  # total count of the enumeration on the same space
    mismatches: tuple[str, ...]  # blocks where route and enumeration disagree
    note: str = ""
    classes: int = 0  # > 0: ran once per block class (certify_blocks), on that many classes

    @property
    def passed(self) -> bool:
        return not self.mismatches and self.value == self.expected

    @property
    def description(self) -> str:
        """What the route checks, in words (Markdown with TeX)."""
        return ROUTE_DESCRIPTIONS.get(self.name, "")


@dataclass(frozen=True)
class Certificate:
    space: WeightSpace
    equivariant_linear: int
    equivariant_bias: int
    invariant_linear: int
    results: tuple[RouteResult, ...]

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    def to_dict(self) -> dict:
        return {
            "space": str(self.space),
            "equivariant_linear": self.equivariant_linear,
            "equivariant_bias": self.equivariant_bias,
            "invariant_linear": self.invariant_linear,
            "passed": self.passed,
            "routes": [
                {
                    "name": r.name,
                    "ran_on": r.ran_on,
                    "reduced": r.reduced,
                    "value": r.value,
                    "expected": r.expected,
                    "passed": r.passed,
                    "mismatches": list(r.mismatches),
                    "note": r.note,
                    "classes": r.classes,
                }
                for r in self.results
            ],
        }


# -- reduction -------------------------------------------------------------------------------
def axes_bound(space: WeightSpace) -> dict[str, int]:
    """t_max per neuron set: the most axes on that set in any block (twice the most in any
    one tensor, since a block has two tensors)."""
    return {s.name: 2 * max(t.axes.count(s.name) for t in space.tensors) or 1 for s in space.sets}


def reduce_space(space: WeightSpace, shrink_fixed: bool = False) -> WeightSpace:
    """The smallest copy with the same counts (permuted and signed sets cut to t_max); with
    `shrink_fixed`, fixed sets are cut to at most 2 as well (counts then change)."""
    bound = axes_bound(space)
    sizes = {}
    for s in space.sets:
        if s.kind is not Kind.FIXED:
            sizes[s.name] = min(s.size, max(bound[s.name], 1))
        elif shrink_fixed:
            sizes[s.name] = min(s.size, 2)
    return space.with_sizes(sizes)


# -- route 1: closed form ----------------------------------------------------------------------
@cache
def _even_partitions(t: int, j: int) -> int:
    """Partitions of t labelled items into j blocks of even size: t! [x^t] (cosh x - 1)^j / j!."""
    x = sympy.Symbol("x")
    series = sympy.series((sympy.cosh(x) - 1) ** j / sympy.factorial(j), x, 0, t + 1).removeO()
    return int(series.coeff(x, t) * sympy.factorial(t))


@cache
def set_factor(kind: Kind, n: int, t: int) -> int:
    """c_k(t): orbits of one neuron set of size n acting on t axes."""
    if kind is Kind.FIXED:
        return n**t
    if kind is Kind.PERMUTED:
        return int(
            sum(sympy.functions.combinatorial.numbers.stirling(t, j) for j in range(min(t, n) + 1))
        )
    return sum(_even_partitions(t, j) for j in range(min(t, n) + 1))


def _closed_form_block(space: WeightSpace, out: str | None, inp: str | None) -> int:
    axes = list(space.tensor(out).axes if out else ()) + list(space.tensor(inp).axes if inp else ())
    count = 1
    for name in dict.fromkeys(axes):  # a set on no axis contributes c_k(0) = 1
        s = space.set(name)
        count *= set_factor(s.kind, s.size, axes.count(name))
    return count


def closed_form_counts(space: WeightSpace) -> Counts:
    return _all_blocks(space, lambda out, inp: _closed_form_block(space, out, inp))


def _all_blocks(space: WeightSpace, count: Callable[[str | None, str | None], int]) -> Counts:
    names = [t.name for t in space.tensors]
    result: Counts = {}
    for a in names:
        for b in names:
            result[(a, b)] = count(a, b)
        result[(a, None)] = count(a, None)
        result[(None, a)] = count(None, a)
    return result


# -- route 2: orbit counting on explicit index pairs ------------------------------------------
def _components(n_nodes: int, sources: list[np.ndarray], targets: list[np.ndarray]) -> int:
    rows = np.concatenate(sources) if sources else np.zeros(0, np.int64)
    cols = np.concatenate(targets) if targets else np.zeros(0, np.int64)
    graph = sp.coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(n_nodes, n_nodes))
    return connected_components(graph, directed=False)[0]


def orbit_count_counts(space: WeightSpace) -> Counts:
    """Orbits with consistent sign parity on index pairs of every block, under generators."""
    actions = [
        {t.name: signed_permutation(space, g, t.name) for t in space.tensors}
        for g in generators(space)
    ]
    unit = (np.zeros(1, np.int64), np.ones(1, np.int64))  # the missing side of bias/invariant

    def count(out: str | None, inp: str | None) -> int:
        n_in = space.numel(inp) if inp else 1
        n = (space.numel(out) if out else 1) * n_in
        base_src, base_dst, cover_src, cover_dst = [], [], [], []
        pair = np.arange(n)
        for act in actions:
            src_a, sign_a = act[out] if out else unit
            src_b, sign_b = act[inp] if inp else unit
            image = src_a[pair // n_in] * n_in + src_b[pair % n_in]
            sign = sign_a[pair // n_in] * sign_b[pair % n_in]
            base_src.append(pair)
            base_dst.append(image)
            # Cover node x + n*s: (x, +) -> (image, sign), (x, -) -> (image, -sign).
            flip = (sign < 0).astype(np.int64)
            cover_src += [pair, pair + n]
            cover_dst += [image + n * flip, image + n * (1 - flip)]
        return _components(2 * n, cover_src, cover_dst) - _components(n, base_src, base_dst)

    return _all_blocks(space, count)


# -- route 3: commutant dimension ------------------------------------------------------------
def commutant_counts(space: WeightSpace) -> Counts:
    """dim {L : rho_A(g) L = L rho_B(g) for all generators g}, per block, by SVD rank."""
    reps = [
        {t.name: representation(space, g, t.name) for t in space.tensors} for g in generators(space)
    ]
    one = np.ones((1, 1), dtype=np.int64)

    def count(out: str | None, inp: str | None) -> int:
        n_out = space.numel(out) if out else 1
        n_in = space.numel(inp) if inp else 1
        unknowns = n_out * n_in
        if not reps:
            return unknowns
        gram = np.zeros((unknowns, unknowns))
        for rep in reps:
            ra = rep[out] if out else one
            rb = rep[inp] if inp else one
            # vec(ra L - L rb) = (ra kron I - I kron rb^T) vec(L), row-major vec.
            k = np.kron(ra, np.eye(n_in)) - np.kron(np.eye(n_out), rb.T)
            gram += k.T @ k
        eig = np.linalg.eigvalsh(gram)
        return int(np.sum(eig < 1e-8 * max(1.0, eig.max())))

    return _all_blocks(space, count)


# -- routes 4 and 5: dense elements ----------------------------------------------------------
def _dense_blocks(basis: Basis) -> dict[tuple[str | None, str | None], list[np.ndarray]]:
    """Each dense 0/1 element as a matrix of its block only (out entries x in entries; a
    missing side is one row or column); every block of `enumeration_counts` is a key,
    possibly with no elements. Built from the pattern's non-zeros directly, so memory grows
    with the blocks, not with P^2 per element."""
    space = basis.space
    offsets = space.offsets()

    def extent(tensor: str | None) -> tuple[int, int]:
        return (offsets[tensor], space.numel(tensor)) if tensor else (0, 1)

    grouped: dict[tuple[str | None, str | None], list[np.ndarray]] = {
        key: [] for key in enumeration_counts(basis)
    }
    for p in basis.linear + basis.bias + basis.invariant:
        e = pattern_entries(space, p, False)
        (row0, rows), (col0, cols) = extent(p.out), extent(p.inp)
        local_rows = e.rows - row0 if p.out else np.zeros_like(e.rows)
        local_cols = e.cols - col0 if p.inp else np.zeros_like(e.cols)
        for k in range(p.multiplicity(space)):
            mask = e.element == k
            matrix = np.zeros((rows, cols), dtype=np.int64)
            matrix[local_rows[mask], local_cols[mask]] = 1
            grouped[(p.out, p.inp)].append(matrix)
    return grouped


def exact_commutation(basis: Basis) -> tuple[int, tuple[str, ...]]:
    """Number of elements checked and the blocks with an element that fails rho E = E rho."""
    space = basis.space
    reps = [
        {t.name: representation(space, g, t.name) for t in space.tensors} for g in generators(space)
    ]
    one = np.ones((1, 1), dtype=np.int64)
    checked, failures = 0, []
    for (out, inp), elements in _dense_blocks(basis).items():
        for e in elements:
            checked += 1
            for rep in reps:
                ra = rep[out] if out else one
                rb = rep[inp] if inp else one
                if not np.array_equal(ra @ e, e @ rb):
                    failures.append(_block_name(out, inp))
                    break
    return checked, tuple(sorted(set(failures)))


def independence_ranks(basis: Basis) -> Counts:
    """Rank of the stacked dense elements of each block."""
    ranks: Counts = {}
    for key, elements in _dense_blocks(basis).items():
        if elements:
            ranks[key] = int(
                np.linalg.matrix_rank(np.stack([e.ravel() for e in elements]).astype(float))
            )
        else:
            ranks[key] = 0
    return ranks


# -- the certificate ---------------------------------------------------------------------------
def _block_name(out: str | None, inp: str | None) -> str:
    return f"{out or '1'}<-{inp or '1'}"


def enumeration_counts(basis: Basis) -> Counts:
    counts: Counts = dict(basis.block_counts())
    counts.update({(a, None): n for a, n in basis.bias_counts().items()})
    counts.update({(None, b): n for b, n in basis.invariant_counts().items()})
    return counts


def _compare(
    name: str,
    space: WeightSpace,
    full: WeightSpace,
    route: Counts,
    expected: Counts,
    note: str = "",
) -> RouteResult:
    keys = [k for k in expected if expected[k] != route.get(k)]
    return RouteResult(
        name=name,
        ran_on=str(space),
        reduced=space != full,
        value=sum(route.values()),
        expected=sum(expected.values()),
        mismatches=tuple(_block_name(*k) for k in keys),
        note=note,
    )


def _fits(space: WeightSpace) -> tuple[bool, bool, bool]:
    """Whether orbit counting, the commutant and dense checks are small enough on `space`."""
    sizes = [space.numel(t.name) for t in space.tensors]
    biggest = max(sizes)
    return (
        biggest * biggest <= MAX_PAIRS and space.dimension**2 <= MAX_TOTAL_PAIRS,
        biggest * biggest <= MAX_COMMUTANT_UNKNOWNS,
        space.dimension <= MAX_DENSE_P,
    )


def explicit_space(space: WeightSpace, route: int) -> tuple[WeightSpace, str]:
    """The space an explicit route runs on: the shape itself, else the reduced copy."""
    if _fits(space)[route]:
        return space, ""
    reduced = reduce_space(space)
    if _fits(reduced)[route]:
        return reduced, "reduced copy: permuted/signed widths cut to t_max, counts unchanged"
    return reduce_space(space, shrink_fixed=True), (
        "reduced copy with fixed widths cut to 2: checks the enumeration there; "
        "the closed form checks the full shape"
    )


def _explicit_routes(
    space: WeightSpace,
    basis_of: Callable[[WeightSpace], Basis],
    say: Callable[[str], None],
) -> list[RouteResult]:
    """orbit_count, commutant, exact_commutation and independence on the whole space (or on
    its reduced copy); `basis_of` enumerates each space a route runs on once."""
    results = []
    for index, (name, fn) in enumerate(
        (("orbit_count", orbit_count_counts), ("commutant", commutant_counts))
    ):
        target, note = explicit_space(space, index)
        say(f"{name} on widths {target.widths}")
        expected = enumeration_counts(basis_of(target))
        results.append(_compare(name, target, space, fn(target), expected, note))
    target, note = explicit_space(space, 2)
    small = basis_of(target)
    say(f"exact_commutation on widths {target.widths}")
    checked, failures = exact_commutation(small)
    total = small.equivariant_linear + small.equivariant_bias + small.invariant_linear
    results.append(
        RouteResult(
            "exact_commutation", str(target), target != space, checked, total, failures, note
        )
    )
    say(f"independence on widths {target.widths}")
    results.append(
        _compare(
            "independence",
            target,
            space,
            independence_ranks(small),
            enumeration_counts(small),
            note,
        )
    )
    return results


def certify(
    space: WeightSpace,
    progress: Callable[[str], None] | None = None,
    enumerator: Callable[[WeightSpace], Basis] = enumerate_basis,
    basis: Basis | None = None,
    per_block: bool | None = None,
) -> Certificate:
    """Run every route; each compares its counts block by block with the enumeration.

    `enumerator` is the enumeration under test (tests pass deliberately broken ones to see
    the certificate fail). `basis`, when given, is the enumeration of `space` already made
    (by `build`): it is checked instead of enumerating again. Each reduced copy a route runs
    on is enumerated once. `per_block` runs the explicit routes once per block class
    (`certify_blocks`) instead of on the whole space; by default only above
    MAX_WHOLE_SPACE_BLOCKS blocks, where the whole-space routes cost O(M^3)."""
    say = progress or (lambda _msg: None)
    require_space(space, "certify")
    if basis is None:
        basis = enumerator(space)
    elif basis.space != space:
        raise ValueError(f"the basis is for {basis.space}, expected one for {space}")
    bases = {space: basis}

    def basis_of(target: WeightSpace) -> Basis:
        if target not in bases:
            bases[target] = enumerator(target)
        return bases[target]

    full_counts = enumeration_counts(basis)
    results = []
    say("closed form")
    results.append(_compare("closed_form", space, space, closed_form_counts(space), full_counts))
    if per_block is None:
        per_block = len(basis.block_counts()) > MAX_WHOLE_SPACE_BLOCKS
    if per_block:
        from .certify_blocks import explicit_routes_per_block

        results += explicit_routes_per_block(space, full_counts, enumerator, say)
    else:
        results += _explicit_routes(space, basis_of, say)
    return Certificate(
        space,
        basis.equivariant_linear,
        basis.equivariant_bias,
        basis.invariant_linear,
        tuple(results),
    )


ROUTES = ("closed_form", "orbit_count", "commutant", "exact_commutation", "independence")

# What each route checks, in words (the derivation page and `verify` print these).
ROUTE_DESCRIPTIONS: dict[str, str] = {
    "closed_form": "product over neuron sets of $c_k(t_k)$, computed with sympy",
    "orbit_count": "connected components of the index pairs under the generators "
    "(sign parity by a double cover)",
    "commutant": "dimension of $\\{L : \\rho(g) L = L \\rho(g)\\}$ over the generators, by "
    "dense linear algebra",
    "exact_commutation": "every dense 0/1 element commutes with every generator, in "
    "integer arithmetic",
    "independence": "rank of the dense elements of each block equals their number",
}


class _CallableModule(types.ModuleType):
    """`dws_theory.certify` names both this module and its main function; once the module is
    imported the package attribute is the module, so calling it calls `certify`."""

    def __call__(self, *args: object, **kwargs: object) -> Certificate:
        return certify(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
