"""A gradient-boosted classifier (or regressor) on per-tensor weight statistics: the bar a
weight-space model must clear on a ``--data`` collection.

    python experiments/stats_baseline.py FILE.pt [--seed 0] [--json]

Features: per tensor, the mean, the variance and the 0/25/50/75/100 % quantiles of its
entries (StatNN's, :func:`dws_theory.inr.models.baselines.weight_statistics`), invariant to
every permutation of the hidden neurons. Model: scikit-learn's
``HistGradientBoostingClassifier`` (``...Regressor`` for float targets), its number of
boosting rounds chosen on the collection's validation split; the test split is scored once.
Accuracy for labels, MSE in target units for regression.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import numpy as np
import torch

from dws_theory.inr.data.userdata import load_collection
from dws_theory.inr.models.baselines import weight_statistics

ROUNDS = (25, 50, 100, 200, 400)


def features(path: str) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], str]:
    data = load_collection(path)
    with torch.no_grad():
        x = weight_statistics(data.weights, data.biases).double().numpy()
    y = data.targets.numpy()
    if data.task.kind == "regression":
        y = (data.targets * data.target_std + data.target_mean).numpy()
        y = y[:, 0] if y.shape[1] == 1 else y
    splits = {k: v.numpy() for k, v in data.splits.items()}
    return x, y, splits, data.task.kind


def run(path: str, seed: int = 0) -> dict[str, object]:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    x, y, s, kind = features(path)
    if kind not in ("classification", "regression"):
        raise SystemExit(f"{path}: a {kind} collection has no statistics baseline")
    classify = kind == "classification"

    def fit(rounds: int):
        cls = HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor
        return cls(max_iter=rounds, early_stopping=False, random_state=seed).fit(
            x[s["train"]], y[s["train"]]
        )

    def score(model, split: str) -> float:
        pred = model.predict(x[s[split]])
        if classify:
            return float((pred == y[s[split]]).mean())
        return float(((pred - y[s[split]]) ** 2).mean())

    scored = [(score(m := fit(r), "val"), r, m) for r in ROUNDS]
    best = (max if classify else min)(scored, key=lambda t: t[0])
    return {
        "data": path,
        "model": "gbt-stats",
        "seed": seed,
        "metric": "test_accuracy" if classify else "test_mse",
        "value": score(best[2], "test"),
        "val": best[0],
        "rounds": best[1],
        "features": int(x.shape[1]),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    result = run(args.data, args.seed)
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{args.data}  gbt-stats  {result['metric']}={result['value']:.4f}  "
            f"(val {result['val']:.4f}, {result['rounds']} rounds, {result['features']} features)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
