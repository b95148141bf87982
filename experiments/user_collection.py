"""A collection of networks the task defaults were never tuned for, for ``train --data``.

    python experiments/user_collection.py OUT.pt [--n 1200] [--seed 0]
    dws-theory train --data OUT.pt --model dws      # then: stats, mlp

Each network is an MLP 4-16-16-16-3 (tanh) trained for a random number of Adam steps on one
of four fixed synthetic 3-class problems (random teacher MLPs on Gaussian inputs); the label
is which problem it was trained on. The problems share the input distribution and the
output format, so the label is in *what function* a network computes, not in its shape or
scale: a weight-space model must read the function through the arbitrary order of the
hidden neurons (every network starts from its own random init).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import torch
from torch import nn

from dws_theory.inr.data.userdata import save_collection

DIMS = (4, 16, 16, 16, 3)
PROBLEMS = 4


def _mlp(dims: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for m in range(1, len(dims)):
        layers.append(nn.Linear(dims[m - 1], dims[m]))
        if m < len(dims) - 1:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def _problems(gen: torch.Generator) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Shared inputs and, per problem, the class labels a random teacher assigns them."""
    x = torch.randn(512, DIMS[0], generator=gen)
    labels = []
    for _ in range(PROBLEMS):
        teacher = _mlp((DIMS[0], 32, DIMS[-1]))
        for p in teacher.parameters():
            p.data = torch.randn(p.shape, generator=gen) * 1.5
        with torch.no_grad():
            labels.append(teacher(x).argmax(dim=1))
    return x, labels


def build(n: int, seed: int) -> tuple[list[nn.Sequential], torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x, labels = _problems(gen)
    models, targets = [], []
    for i in range(n):
        problem = i % PROBLEMS
        torch.manual_seed(seed * 1_000_003 + i)
        model = _mlp(DIMS)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        steps = int(torch.randint(50, 300, (1,), generator=gen))
        for _ in range(steps):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), labels[problem]).backward()
            opt.step()
        models.append(model)
        targets.append(problem)
    return models, torch.tensor(targets)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out")
    p.add_argument("--n", type=int, default=1200)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    start = time.perf_counter()
    models, targets = build(args.n, args.seed)
    path = save_collection(args.out, models, targets)
    print(f"wrote {path}: {args.n} MLPs {DIMS}, {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
