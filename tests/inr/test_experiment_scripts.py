"""The scripts behind the --data collections and the page of results."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

import torch

from dws_theory.inr.data.userdata import load_collection, save_collection

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"experiments_{name}", EXPERIMENTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[f"experiments_{name}"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_collections_script_fits_a_recipe_into_a_loadable_collection(tmp_path, capsys) -> None:
    script = _script("collections")
    assert script.main(["--list"]) == 0
    assert "digits-siren-16x3" in capsys.readouterr().out
    tiny = replace(script.COLLECTIONS["digits-siren-16x3"], n=30, steps=3, dims=(2, 4, 4, 1))
    script.COLLECTIONS["tiny"] = tiny
    out = tmp_path / "tiny.pt"
    assert script.main(["tiny", str(out)]) == 0
    data = load_collection(out)
    assert data.dims == (2, 4, 4, 1) and data.n == 30 and data.task.kind == "classification"
    assert data.activation is None  # as a user's file: the recipe must not need it
    assert sum(len(v) for v in data.splits.values()) == 30


def test_stats_baseline_scores_the_test_split_once(tmp_path) -> None:
    torch.manual_seed(0)
    models = [
        torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
        for _ in range(120)
    ]
    labels = torch.arange(120) % 2
    with torch.no_grad():  # class 1: scaled weights, which the statistics see
        for m, y in zip(models, labels.tolist(), strict=True):
            for p in m.parameters():
                p.mul_(4.0 if y else 1.0)
    path = save_collection(tmp_path / "c.pt", models, labels)
    result = _script("stats_baseline").run(str(path))
    assert result["metric"] == "test_accuracy" and result["value"] >= 0.8
    assert result["rounds"] in (25, 50, 100, 200, 400) and result["features"] == 4 * 7


def test_results_rows_become_commands() -> None:
    results = _script("results")
    jobs = results.main_jobs(["digits-dilate", "digits-inr"], results.MAIN_MODELS, [0])
    commands = [j.command() for j in jobs]
    assert "dws-theory train digits-inr --model dws --no-canonicalize --seed 0 --json --quiet" in (
        commands
    )
    assert not any("digits-dilate --model probe" in c for c in commands)  # no probes there
    data = results.data_jobs(["tanh-teachers"], [0])
    argv = next(j for j in data if "activation" in j.model).argv()
    assert argv[:4] == [
        "dws-theory",
        "train",
        "--data",
        "experiments/artifacts/collections/tanh-teachers.pt",
    ]
    assert argv[argv.index("--activation") + 1] == "tanh"


def test_results_transformer_zoo_rows_and_short_rows_render() -> None:
    results = _script("results")
    jobs = results.main_jobs(["transformer-zoo"], ["dws", "nfn", "stats", "mlp"], [0, 1, 2])
    assert sorted({(j.model, j.seed) for j in jobs}) == [
        (m, s) for m in ("dws", "mlp", "stats") for s in (0, 1, 2)
    ]  # every seed of its three rows; nfn is refused on transformers

    def run(task: str, model: str, seed: int, value: float) -> dict[str, object]:
        metric = results.TASKS[task].metric
        cmd = f"dws-theory train {task} --model {model} --seed {seed} --json --quiet"
        return {
            **{"task": task, "model": model, "seed": seed, "metric": metric, "value": value},
            **{"kind": "main", "epochs": 30, "params": 10, "seconds": 1.0, "command": cmd},
        }

    records = [
        run("transformer-zoo", "dws", 0, 0.5),
        run("transformer-zoo", "mlp", 0, 0.1),
        run("transformer-zoo", "mlp", 1, 0.2),
        run("digits-cnn-zoo", "nfn", 0, 0.7),
    ]
    text = "\n".join(results.main_table(records))
    assert "### transformer-zoo: test_kendall_tau" in text
    assert "| `mlp` | 0.1500 ± 0.0707 | 2 |" in text
    assert "| `dws` | 0.5000 | 1 |" in text and "nfn (2026-12-02)" in text  # the earlier page's nfn
    note = " ".join(results.seed_note(records))
    assert "transformer-zoo `dws` (seed 0)" in note and "transformer-zoo `mlp` (seed 0, 1)" in note
