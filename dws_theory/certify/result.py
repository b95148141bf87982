"""What a certificate reports: one `RouteResult` per route, gathered in a `Certificate`."""

from __future__ import annotations

from dataclasses import dataclass

from ..spec import WeightSpace

__all__ = ["Block", "Certificate", "Counts", "RouteResult", "block_name", "compare"]

# Basis elements per block: (out tensor, in tensor); None on one side for bias (no input)
# and invariant (no output) blocks.
Block = tuple[str | None, str | None]
Counts = dict[Block, int]


@dataclass(frozen=True)
class RouteResult:
    name: str
    ran_on: str  # the weight space the route checked (str form)
    reduced: bool  # True when it ran on a reduced copy
    value: int  # total count from this route (or elements checked)
    expected: int  # total count of the enumeration on the same space
    mismatches: tuple[str, ...]  # blocks (or tensors, sets) where the route disagrees
    note: str = ""
    classes: int = 0  # > 0: ran once per block class (per_block), on that many classes

    @property
    def passed(self) -> bool:
        return not self.mismatches and self.value == self.expected

    @property
    def description(self) -> str:
        """What the route checks, in words (Markdown with TeX)."""
        from .registry import ROUTES

        route = ROUTES.get(self.name)
        return route.description if route is not None else ""


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

    def route(self, name: str) -> RouteResult:
        """The result of the route called `name` (KeyError naming the routes that ran)."""
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(
            f"no route {name!r} in this certificate; ran {[r.name for r in self.results]}"
        )

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


def block_name(out: str | None, inp: str | None) -> str:
    return f"{out or '1'}<-{inp or '1'}"


def compare(
    name: str,
    space: WeightSpace,
    full: WeightSpace,
    route: Counts,
    expected: Counts,
    note: str = "",
) -> RouteResult:
    """A counting route's result: its counts against the enumeration's, block by block."""
    keys = [k for k in expected if expected[k] != route.get(k)]
    return RouteResult(
        name=name,
        ran_on=str(space),
        reduced=space != full,
        value=sum(route.values()),
        expected=sum(expected.values()),
        mismatches=tuple(block_name(*k) for k in keys),
        note=note,
    )
