"""The module route: the space checked against the module it was derived from.

Registered in the certificate's registry; it applies when `certify` is given the module and
its trace (`source=(module, trace)`), as `verify` and `build` do for `--module`. The checks
themselves (shapes against the module's state, random group elements against its function,
notes on under-claiming) live with the front end (`frontends/module_check.py`); torch is
imported only when the route runs.
"""

from __future__ import annotations

from .registry import Check, Route, register_route
from .result import RouteResult

__all__ = ["MODULE_ROUTE"]


def _run(check: Check) -> RouteResult:
    from ..frontends.module_check import run_module_check

    module, trace = check.source
    check.say("module: shapes against the state, random group elements against the function")
    result = run_module_check(module, trace)
    return RouteResult(
        name="module",
        ran_on=str(check.space),
        reduced=False,
        value=result.checks - len(result.failures),
        expected=result.checks,
        mismatches=result.failures,
        note="; ".join(result.notes),
    )


MODULE_ROUTE = register_route(
    Route(
        "module",
        "the space against the module itself: every tensor's shape is its source's in the "
        "module's state, and random group elements applied to the state leave the module's "
        "outputs unchanged (float64; eval and, with batch statistics, train mode)",
        _run,
        applies=lambda check: check.source is not None,
    )
)
