"""How the engine's cost grows with depth: enumerate_basis on 2, (M-1 hidden layers of 64), 1.

There are 4 M^2 blocks, so quadratic growth is the floor. Prints seconds per depth, the
seconds per block (flat if the cost is quadratic), and the fitted exponent of time ~ M^k.

    python benchmarks/engine_scaling.py
"""

from __future__ import annotations

import math
import time

from dws_theory.basis import enumerate_basis
from dws_theory.spec import mlp

DEPTHS = (8, 16, 32, 64, 128)


def seconds(depth: int, width: int = 64, repeats: int = 3) -> float:
    space = mlp((2, *([width] * (depth - 1)), 1))
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        enumerate_basis(space)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    print(f"{'M':>5} {'blocks':>8} {'seconds':>9} {'us/block':>9} {'patterns':>9}")
    rows = []
    for depth in DEPTHS:
        t = seconds(depth)
        blocks = 4 * depth * depth
        patterns = len(enumerate_basis(mlp((2, *([64] * (depth - 1)), 1))).linear)
        rows.append((depth, t))
        print(f"{depth:>5} {blocks:>8} {t:>9.3f} {1e6 * t / blocks:>9.1f} {patterns:>9}")
    (m0, t0), (m1, t1) = rows[1], rows[-1]
    print(
        f"fitted exponent (time ~ M^k) between M={m0} and M={m1}: k = "
        f"{math.log(t1 / t0) / math.log(m1 / m0):.2f}"
    )


if __name__ == "__main__":
    main()
