"""Run every INR task x model x seed, then render ``docs/results.md`` and its plot.

    python experiments/results.py run      # main table (resumable: finished runs are skipped)
    python experiments/results.py sizes    # test metric against training-set size
    python experiments/results.py render   # docs/results.md + docs/figures/results_*.png
    python experiments/results.py all      # the three above, in order

Every run calls :func:`dws_theory.inr.train.train` in-process with the same arguments as the
CLI command recorded next to it (``dws-theory train ... --json``), and appends one JSON line
to the log (default ``experiments/results.jsonl``) as soon as it finishes, so a crashed or
killed run continues where it stopped. ``render`` only reads the log. The page's generated
block sits between two HTML comments; text outside it (the discussion) is kept on re-render.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from dws_theory.inr.train import METRICS, MODELS, UnsupportedTask, train

ROOT = Path(__file__).resolve().parent.parent
LOG = ROOT / "experiments" / "results.jsonl"
PAGE = ROOT / "docs" / "results.md"
FIGURES = ROOT / "docs" / "figures"
BEGIN, END = "<!-- BEGIN GENERATED (experiments/results.py render) -->", "<!-- END GENERATED -->"

TASKS = ("digits-inr", "sine-inr", "digits-dilate")
MAIN_MODELS = ("dws", "dws-all", "dws-signed", "nfn", "mlp", "mlp-aug", "pixels")
# dws-all and nfn cost 3-6x a dws epoch on CPU: they run after the cheaper models' seeds.
SLOW_MODELS = ("dws-all", "nfn")
SEEDS = (0, 1, 2)
# Far fewer epochs than the CLI default (60): the whole run must fit ~40 minutes on 2 busy cores.
EPOCHS = 10
SIZE_TASKS = ("digits-inr", "digits-dilate")
SIZE_MODELS = ("dws", "mlp")
SIZES = (100, 300, 600)  # the full training set (1257) comes from the main table's seed 0
HIGHER_IS_BETTER = {"test_accuracy"}
# Size of the train split (70 %) of each task.
FULL_TRAIN = {"digits-inr": 1257, "digits-dilate": 1257, "sine-inr": 2100}


@dataclass(frozen=True)
class Job:
    """One training run; ``kind`` is main / identity / size."""

    kind: str
    task: str
    model: str
    seed: int
    epochs: int
    n_train: int | None = None

    def key(self) -> tuple[object, ...]:
        return (self.kind, self.task, self.model, self.seed, self.epochs, self.n_train)

    def command(self) -> str:
        cmd = f"dws-theory train {self.task} --model {self.model} --seed {self.seed}"
        cmd += f" --epochs {self.epochs}"
        if self.n_train is not None:
            cmd += f" --n-train {self.n_train}"
        return cmd + " --json"


def _key(record: dict[str, object]) -> tuple[object, ...]:
    return tuple(record[k] for k in ("kind", "task", "model", "seed", "epochs", "n_train"))


def read_log(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    # A line cut by a crash is ignored (and re-run).
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def main_jobs(
    tasks: Sequence[str], models: Sequence[str], seeds: Sequence[int], epochs: int
) -> list[Job]:
    """Seed by seed (a cut run still has a complete first seed), slow models last."""
    fast = [m for m in models if m not in SLOW_MODELS]
    slow = [m for m in models if m in SLOW_MODELS]
    jobs = []
    if "digits-dilate" in tasks:
        # The zero-initialised residual MLP untrained is the identity map: the bar to beat.
        jobs.append(Job("identity", "digits-dilate", "mlp", 0, 0))
    for group in (fast, slow):
        jobs += [Job("main", t, m, s, epochs) for s in seeds for t in tasks for m in group]
    return jobs


def size_jobs(
    tasks: Sequence[str],
    models: Sequence[str],
    sizes: Sequence[int],
    seeds: Sequence[int],
    epochs: int,
) -> list[Job]:
    return [
        Job("size", t, m, s, epochs, n) for t in tasks for n in sizes for s in seeds for m in models
    ]


def run_jobs(jobs: Iterable[Job], log: Path, cache_dir: str | None) -> None:
    done = {_key(r) for r in read_log(log)}
    log.parent.mkdir(parents=True, exist_ok=True)
    for job in jobs:
        if job.key() in done:
            continue
        if job.model not in MODELS:
            print(f"skip {job.model}: not registered (is its package installed?)", flush=True)
            continue
        try:
            result = train(
                job.task,
                job.model,
                seed=job.seed,
                epochs=job.epochs,
                cache_dir=cache_dir,
                n_train=job.n_train,
                progress=False,
            )
        except (UnsupportedTask, ImportError) as exc:
            print(f"skip {job.task} {job.model}: {exc}", flush=True)
            continue
        record = {
            **result,
            "kind": job.kind,
            "epochs": job.epochs,
            "n_train": job.n_train,
            "command": job.command(),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        with log.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        done.add(job.key())
        print(
            f"{job.kind:8s} {job.task:13s} {job.model:10s} seed={job.seed} n={job.n_train} "
            f"{result['metric']}={result['value']:.4f} {result['seconds']:.1f}s",
            flush=True,
        )


# ----------------------------------------------------------------------------- render


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


def _fmt(metric: str, mean: float, std: float, n: int = 2) -> str:
    """``mean ± std``; a single run has no spread, so only its value is shown."""
    if metric == "test_accuracy":
        return f"{100 * mean:.1f} ± {100 * std:.1f} %" if n > 1 else f"{100 * mean:.1f} %"
    return f"{mean:.4g} ± {std:.2g}" if n > 1 else f"{mean:.4g}"


def _group(records: Sequence[dict[str, object]]) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((str(r["task"]), str(r["model"])), []).append(r)
    return groups


def main_table(records: Sequence[dict[str, object]]) -> list[str]:
    """One table per task and epoch budget (runs with different budgets are never mixed)."""
    main = [r for r in records if r["kind"] in ("main", "identity")]
    lines: list[str] = []
    for task in TASKS:
        metric = METRICS[task]
        arrow = "higher is better" if metric in HIGHER_IS_BETTER else "lower is better"
        budgets = sorted({int(r["epochs"]) for r in main if r["kind"] == "main"})
        for epochs in budgets:
            runs = [r for r in main if r["kind"] == "main" and int(r["epochs"]) == epochs]
            groups = _group(runs)
            rows = [(m, groups[(task, m)]) for m in MAIN_MODELS if (task, m) in groups]
            if not rows:
                continue
            lines += [
                f"### {task}, {epochs} epochs: {metric} ({arrow})",
                "",
                "| model | " + metric + " (mean ± std) | seeds | parameters | seconds per run |",
                "|---|---|---|---|---|",
            ]
            for model, rs in rows:
                mean, std = _mean_std([float(r["value"]) for r in rs])
                secs = statistics.fmean(float(r["seconds"]) for r in rs)
                params = int(rs[0]["params"])
                lines.append(
                    f"| {model} | {_fmt(metric, mean, std, len(rs))} | {len(rs)} | {params:,} "
                    f"| {secs:.0f} |"
                )
            for r in (r for r in main if r["kind"] == "identity" and r["task"] == task):
                lines.append(
                    f"| identity (untrained zero residual) | {float(r['value']):.4g} | - | 0 | "
                    f"{float(r['seconds']):.0f} |"
                )
            lines.append("")
    return lines


def size_plot(records: Sequence[dict[str, object]], task: str, path: Path) -> list[str]:
    sizes = [r for r in records if r["kind"] == "size" and r["task"] == task]
    if not sizes:
        return []
    epochs = {r["epochs"] for r in sizes}
    full = [
        {**r, "n_train": FULL_TRAIN[task]}
        for r in records
        if r["kind"] == "main"
        and r["task"] == task
        and r["model"] in SIZE_MODELS
        and r["epochs"] in epochs
        and r["seed"] in {s["seed"] for s in sizes}
    ]
    sizes = sizes + full
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = METRICS[task]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    lines = [
        f"| model | n_train | {metric} (mean ± std) | seeds |",
        "|---|---|---|---|",
    ]
    for model in dict.fromkeys(str(r["model"]) for r in sizes):
        by_n: dict[int, list[float]] = {}
        for r in sizes:
            if r["model"] == model:
                by_n.setdefault(int(r["n_train"]), []).append(float(r["value"]))
        ns = sorted(by_n)
        stats = [_mean_std(by_n[n]) for n in ns]
        scale = 100 if metric == "test_accuracy" else 1
        ax.errorbar(
            ns,
            [scale * m for m, _ in stats],
            yerr=[scale * s for _, s in stats],
            marker="o",
            capsize=3,
            label=model,
        )
        lines += [
            f"| {model} | {n} | {_fmt(metric, m, s, len(by_n[n]))} | {len(by_n[n])} |"
            for n, (m, s) in zip(ns, stats, strict=True)
        ]
    ax.set_xscale("log")
    ax.set_xlabel("training INRs")
    ax.set_ylabel("test accuracy (%)" if metric == "test_accuracy" else metric)
    if metric == "test_accuracy":
        ax.axhline(10, color="grey", lw=0.8, ls=":", label="chance")
    ax.set_title(f"{task}: test metric against training-set size")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return lines


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return (
        f"{cpu}, {os.cpu_count()} logical CPUs (shared with other jobs), "
        f"Python {platform.python_version()}, torch {torch.__version__}, CPU only"
    )


def generated_block(records: Sequence[dict[str, object]]) -> str:
    main = [r for r in records if r["kind"] in ("main", "identity")]
    epochs = sorted({int(r["epochs"]) for r in main if r["kind"] == "main"})
    first = min((str(r["finished"]) for r in records), default="-")
    last = max((str(r["finished"]) for r in records), default="-")
    lines = [
        BEGIN,
        "",
        f"Runs finished between {first} and {last} (UTC) on: {_machine()}.",
        f"Main tables: {' and '.join(map(str, epochs))} epochs per run (CLI defaults: 60 for "
        "mlp/mlp-aug/pixels, 15 for the equivariant models), "
        "best-validation epoch, test metric of that epoch; seconds include loading the cached "
        "dataset.",
        "",
        *main_table(records),
    ]
    for task in TASKS:
        name = f"results_train_size_{task}.png"
        size_lines = size_plot(records, task, FIGURES / name)
        if size_lines:
            lines += [
                f"### {task}: test metric against training-set size",
                "",
                f"![{task}: test metric against training-set size](figures/{name})",
                "",
                *size_lines,
                "",
            ]
    lines += [
        "### Commands",
        "",
        "Every number above comes from one of these commands (`{0,1,2}`: one run per seed; "
        "run in-process by `python experiments/results.py all`, which appends each result to "
        "`experiments/results.jsonl`). Wall times vary by up to 20x between runs because "
        "other jobs shared the 2 cores; compare them only within one run of the page.",
        "",
        "```",
        *_commands(records),
        "```",
        "",
        END,
    ]
    return "\n".join(lines)


def _commands(records: Sequence[dict[str, object]]) -> list[str]:
    """One line per command with the seeds folded into ``--seed {0,1,2}``."""
    seeds: dict[str, set[int]] = {}
    for r in records:
        cmd = str(r["command"]).replace(f" --seed {r['seed']} ", " --seed {} ")
        seeds.setdefault(cmd, set()).add(int(r["seed"]))
    out = []
    for cmd, ss in sorted(seeds.items()):
        folded = str(next(iter(ss))) if len(ss) == 1 else "{" + ",".join(map(str, sorted(ss))) + "}"
        out.append(cmd.replace("{}", folded))
    return out


HEADER = """# Results: equivariant models on INR weight spaces

Generated by `python experiments/results.py all`; the discussion below the generated block
is written by hand.

"""


def render(log: Path, page: Path) -> None:
    records = read_log(log)
    block = generated_block(records)
    text = page.read_text() if page.exists() else HEADER + BEGIN + "\n" + END + "\n"
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(head + block + tail)
    print(f"wrote {page} from {len(records)} runs")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=("run", "sizes", "render", "all"))
    p.add_argument("--log", type=Path, default=LOG)
    p.add_argument("--page", type=Path, default=PAGE)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--models", nargs="+", default=list(MAIN_MODELS))
    p.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument("--sizes", nargs="+", type=int, default=list(SIZES))
    p.add_argument("--size-seeds", nargs="+", type=int, default=[0])
    p.add_argument("--size-tasks", nargs="+", default=list(SIZE_TASKS), choices=TASKS)
    args = p.parse_args(argv)
    main_list = main_jobs(args.tasks, args.models, args.seeds, args.epochs)
    sizes = size_jobs(args.size_tasks, SIZE_MODELS, args.sizes, args.size_seeds, args.epochs)
    if args.action == "all":
        # First seed of the fast models, then the size sweep, then everything else.
        first = [j for j in main_list if j.seed == args.seeds[0] and j.model not in SLOW_MODELS]
        run_jobs(first + sizes + main_list, args.log, args.cache_dir)
    elif args.action == "run":
        run_jobs(main_list, args.log, args.cache_dir)
    elif args.action == "sizes":
        run_jobs(sizes, args.log, args.cache_dir)
    if args.action in ("render", "all"):
        render(args.log, args.page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
