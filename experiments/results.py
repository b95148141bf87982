"""Run every task x model (x variant) x seed, then render ``docs/results.md`` and its figures.

    python experiments/results.py run      # main table (resumable: finished runs are skipped)
    python experiments/results.py data     # --data collections: the default recipe and baselines
    python experiments/results.py sizes    # mnist-inr test accuracy against training-set size
    python experiments/results.py render   # docs/results.md + docs/figures/results_*.png
    python experiments/results.py all      # run, data and render, in order

A variant is a model with extra flags (``dws --no-canonicalize``, ``dws --probes 0``): the
ablation of the canonical forms and the probe features. The ``--data`` collections are built
by ``experiments/collections.py`` (and ``experiments/user_collection.py``) into
``experiments/artifacts/collections/`` on first use; their gradient-boosting baseline is
``experiments/stats_baseline.py``. The runs of the page before the canonical forms and probes
are kept in ``experiments/results-2026-12-02.jsonl``; its ``dws`` and ``nfn`` rows are shown
beside the new ones as "dws (2026-12-02)" and "nfn (2026-12-02)". A row may have fewer seeds
than ``SEEDS`` (a cut or partial page); ``render`` shows what the log holds and names those rows.

Every run is the CLI command recorded next to it (``dws-theory train ... --json``), started
as a subprocess with one thread (``--jobs`` of them at a time: two single-threaded runs use
two cores better than one two-threaded run), and appends one JSON line to the log (default
``experiments/results.jsonl``) as soon as it finishes, so a killed run continues where it
stopped. ``render`` only reads the log (and, for the dilation figure, the model that the seed-0
``dws`` run on ``mnist-dilate`` saved). The page's generated block sits between two HTML
comments; the text around it is kept on re-render.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from dws_theory.inr.data.tasks import TASKS

ROOT = Path(__file__).resolve().parent.parent
LOG = ROOT / "experiments" / "results.jsonl"
OLD_LOG = ROOT / "experiments" / "results-2026-12-02.jsonl"  # before canonical forms, probes
COLLECTIONS = ROOT / "experiments" / "artifacts" / "collections"
PAGE = ROOT / "docs" / "results.md"
FIGURES = ROOT / "docs" / "figures"
ARTIFACTS = ROOT / "experiments" / "artifacts"  # saved models for figures (not checked in)
BEGIN, END = "<!-- BEGIN GENERATED (experiments/results.py render) -->", "<!-- END GENERATED -->"

TASK_ORDER = (
    "mnist-inr",
    "sine-inr",
    "mnist-dilate",
    "digits-inr",
    "digits-dilate",
    "digits-cnn-zoo",
    "transformer-zoo",
)
NO_CANON, NO_PROBES = "--no-canonicalize", "--probes 0"
# Rows: a model name and its extra flags (the ablation variants of dws).
MAIN_MODELS = (
    "dws",
    f"dws {NO_CANON}",
    f"dws {NO_PROBES}",
    "probe",
    "nfn",
    "stats",
)
UNSUPPORTED = {  # (model row, task kind)
    ("stats", "weights"),
    ("probe", "weights"),
    (f"dws {NO_PROBES}", "weights"),  # weight-to-weight models read no probes anyway
}
# Every task runs every row it supports, except these (nfn is refused on transformers; their
# goal is against stats, with mlp as the floor).
TASK_MODELS: dict[str, tuple[str, ...]] = {"transformer-zoo": ("dws", "stats", "mlp")}
# --data collections (experiments/collections.py, user_collection.py) and their rows.
DATA_COLLECTIONS = ("digits-siren-16x3", "digits-siren-24", "mnist-siren-16x2", "tanh-teachers")
DATA_MODELS = ("dws", f"dws {NO_PROBES}", "dws --activation {activation}", "probe")
CHECK_MODELS = ("dws", f"dws {NO_PROBES}")  # the recipe checked on the other collections
DATA_ACTIVATION = {"tanh-teachers": "tanh"}  # the others are SIRENs
GBT = "gbt-stats"  # experiments/stats_baseline.py
SEEDS = (0, 1, 2)
SIZE_TASK = "mnist-inr"
SIZE_MODELS = ("dws", "mlp")
SIZES = (100, 300, 1000)  # the full training split (3,500) comes from the main table
FIGURE_RUN = ("mnist-dilate", "dws", 0)  # the run whose saved model draws the dilation grid


@dataclass(frozen=True)
class Job:
    """One training run; ``kind`` is main or size."""

    kind: str  # main, size or data
    task: str  # a task, or a --data collection's name (kind data)
    model: str  # a row: the model name and any extra flags
    seed: int
    n_train: int | None = None
    epochs: int | None = None  # None: the task's default

    def key(self) -> tuple[object, ...]:
        return (self.kind, self.task, self.model, self.seed, self.n_train, self.epochs)

    def argv(self) -> list[str]:
        name, *flags = self.model.format(activation=DATA_ACTIVATION.get(self.task, "sine")).split()
        if self.kind == "data":
            where = ["--data", str(collection_path(self.task).relative_to(ROOT))]
        else:
            where = [self.task]
        cmd = ["dws-theory", "train", *where, "--model", name, *flags, "--seed", str(self.seed)]
        if self.epochs is not None:
            cmd += ["--epochs", str(self.epochs)]
        if self.n_train is not None:
            cmd += ["--n-train", str(self.n_train)]
        if (self.task, self.model, self.seed) == FIGURE_RUN and self.kind == "main":
            cmd += ["--save", str(ARTIFACTS.relative_to(ROOT) / "mnist-dilate-dws.pt")]
        return [*cmd, "--json", "--quiet"]

    def command(self) -> str:
        return shlex.join(self.argv())


def collection_path(name: str) -> Path:
    return COLLECTIONS / f"{name}.pt"


def build_collection(name: str) -> Path:
    """Build a --data collection once (its script and recipe are in experiments/)."""
    path = collection_path(name)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        script = "user_collection.py" if name == "tanh-teachers" else "collections.py"
        argv = [str(path)] if name == "tanh-teachers" else [name, str(path)]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, str(ROOT / "experiments" / script), *argv]
        subprocess.run(cmd, check=True, env=env, cwd=ROOT)
    return path


def read_log(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a crash is ignored (and re-run)
            continue
    return out


# The cheapest tasks first, so a run cut short has covered the most tasks.
RUN_ORDER = (
    "digits-inr",
    "digits-dilate",
    "digits-cnn-zoo",
    "transformer-zoo",
    "mnist-dilate",
    "sine-inr",
    "mnist-inr",
)
# What runs with every seed; the rest (the ablation rows and the baselines) with the first
# seed only: a page that fits the shared 2-core machine and still answers each question.
ALL_SEEDS = {  # None: on every task
    "dws": None,
    "nfn": ("mnist-inr", "digits-cnn-zoo"),
    "stats": ("transformer-zoo",),
    "mlp": ("transformer-zoo",),
}


def main_jobs(tasks: Sequence[str], models: Sequence[str], seeds: Sequence[int]) -> list[Job]:
    """Seed by seed (a cut run still has a complete first seed)."""
    jobs: list[Job] = []
    cheap_first = sorted(tasks, key=lambda t: RUN_ORDER.index(t) if t in RUN_ORDER else 0)
    for s in seeds:
        for t in cheap_first:
            jobs += [Job("main", t, m, s) for m in models if _runs(t, m, s == seeds[0])]
    return jobs


def _runs(task: str, model: str, first_seed: bool = True) -> bool:
    if (model, TASKS[task].kind) in UNSUPPORTED or model not in TASK_MODELS.get(task, MAIN_MODELS):
        return False
    if first_seed or model in ALL_SEEDS and ALL_SEEDS[model] is None:
        return True
    return task in (ALL_SEEDS.get(model) or ())


def data_jobs(collections: Sequence[str], seeds: Sequence[int]) -> list[Job]:
    """The held-out-like collection (the first) with every row and seed; the default recipe
    against the old one and the baseline on the others, once (the recipe is checked there)."""
    jobs = [Job("data", collections[0], m, s) for s in seeds for m in (*DATA_MODELS, GBT)]
    for c in collections[1:]:
        jobs += [Job("data", c, m, seeds[0]) for m in (*CHECK_MODELS, GBT)]
    return jobs


def size_jobs(sizes: Sequence[int], seeds: Sequence[int]) -> list[Job]:
    return [Job("size", SIZE_TASK, m, s, n) for n in sizes for s in seeds for m in SIZE_MODELS]


def _run_one(job: Job, log: Path) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "dws_theory", *job.argv()[1:]]
    if job.kind == "data":
        build_collection(job.task)
    if job.model == GBT:
        path = collection_path(job.task).relative_to(ROOT)
        script = ["experiments/stats_baseline.py", str(path), "--seed", str(job.seed), "--json"]
        argv = [sys.executable, *script]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    if proc.returncode != 0:
        return f"FAILED {job.command()}: {proc.stderr.strip().splitlines()[-1:]}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    command = job.command()
    if job.model == GBT:
        command = shlex.join(["python", *argv[1:]])
        result = {**result, "task": job.task, "epochs": "-", "params": 0, "seconds": 0.0}
    record = {
        **result,
        "task": job.task,
        "model": job.model,
        "kind": job.kind,
        "n_train": job.n_train,
        "epochs_arg": job.epochs,
        "command": command,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    with log.open("a") as fh:  # one short append per line: safe from several threads
        fh.write(json.dumps(record) + "\n")
    return (
        f"{job.kind:8s} {job.task:13s} {job.model:10s} seed={job.seed} n={job.n_train} "
        f"{result['metric']}={result['value']:.4f} {result['seconds']:.1f}s"
    )


def run_jobs(jobs: Iterable[Job], log: Path, workers: int) -> None:
    done = {
        (r["kind"], r["task"], r["model"], r["seed"], r["n_train"], r.get("epochs_arg"))
        for r in read_log(log)
    }
    todo = [j for j in jobs if j.key() not in done]
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"{len(todo)} runs to do", flush=True)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for line in pool.map(lambda j: _run_one(j, log), todo):
            print(line, flush=True)


# ----------------------------------------------------------------------------- render


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


def _fmt(metric: str, mean: float, std: float, n: int = 2) -> str:
    """``mean ± std``; a single run has no spread, so only its value is shown."""
    if metric == "test_accuracy":
        return f"{100 * mean:.1f} ± {100 * std:.1f} %" if n > 1 else f"{100 * mean:.1f} %"
    if metric.endswith("kendall_tau"):  # fixed decimals: the zoo rows differ in the third
        return f"{mean:.4f} ± {std:.4f}" if n > 1 else f"{mean:.4f}"
    return f"{mean:.4g} ± {std:.2g}" if n > 1 else f"{mean:.4g}"


def _group(records: Sequence[dict[str, object]]) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((str(r["task"]), str(r["model"])), []).append(r)
    return groups


OLD_ROW = "dws (2026-12-02)"  # the earlier page's dws: no canonical forms, no probes
OLD_NFN = "nfn (2026-12-02)"  # the earlier page's nfn (the bar of the targets against nfn)
OLD_ROWS = {"dws": OLD_ROW, "nfn": OLD_NFN}


def old_groups() -> dict[tuple[str, str], list[dict]]:
    """The earlier page's dws and nfn runs, under their own row names."""
    old = [r for r in read_log(OLD_LOG) if r["kind"] == "main" and r["model"] in OLD_ROWS]
    return {(t, OLD_ROWS[m]): rs for (t, m), rs in _group(old).items()}


def main_table(records: Sequence[dict[str, object]]) -> list[str]:
    main = [r for r in records if r["kind"] == "main"]
    groups = {**_group(main), **old_groups()}
    lines: list[str] = []
    for task in TASK_ORDER:
        order = (*TASK_MODELS.get(task, MAIN_MODELS), OLD_ROW, OLD_NFN)
        rows = [(m, groups[(task, m)]) for m in order if (task, m) in groups]
        if not rows:
            continue
        metric = TASKS[task].metric
        arrow = "higher is better" if TASKS[task].higher_is_better else "lower is better"
        lines += [
            f"### {task}: {metric} ({arrow})",
            "",
            f"| model | {metric} (mean ± std) | seeds | epochs | parameters | seconds per run |",
            "|---|---|---|---|---|---|",
        ]
        lines += [_row(model, rs, metric) for model, rs in rows]
        if TASKS[task].kind == "weights":
            value = identity_mse(task)
            lines.append(f"| identity (the input INR, unedited) | {value:.4g} | - | - | 0 | - |")
        lines.append("")
    return lines


def _row(model: str, rs: Sequence[dict[str, object]], metric: str) -> str:
    mean, std = _mean_std([float(r["value"]) for r in rs])
    secs = statistics.fmean(float(r["seconds"]) for r in rs)
    params = f"{int(rs[0]['params']):,}" if rs[0]["params"] else "-"
    label = model if model in OLD_ROWS.values() else f"`{model}`"
    return (
        f"| {label} | {_fmt(metric, mean, std, len(rs))} | {len(rs)} | {rs[0]['epochs']} "
        f"| {params} | {secs:.0f} |"
    )


def data_table(records: Sequence[dict[str, object]]) -> list[str]:
    """The --data collections: the default recipe against the old one and the baselines."""
    groups = _group([r for r in records if r["kind"] == "data"])
    lines: list[str] = []
    for name in DATA_COLLECTIONS:
        rows = [(m, groups[(name, m)]) for m in (*DATA_MODELS, GBT) if (name, m) in groups]
        if not rows:
            continue
        metric = str(rows[0][1][0]["metric"])
        activation = DATA_ACTIVATION.get(name, "sine")
        lines += [
            f"### --data {name}: {metric}",
            "",
            f"| row | {metric} (mean ± std) | seeds | epochs | parameters | seconds per run |",
            "|---|---|---|---|---|---|",
            *[_row(m.format(activation=activation), rs, metric) for m, rs in rows],
            "",
        ]
    return lines


def identity_mse(task: str) -> float:
    """Test MSE of returning the input INR unchanged: the bar every editing model must beat."""
    from dws_theory.inr.data.datasets import load_dataset
    from dws_theory.inr.data.siren import render

    ds = load_dataset(task, progress=False)
    idx = ds.splits["test"]
    out = render([w[idx] for w in ds.weights], [b[idx] for b in ds.biases], ds.coords, ds.w0)
    return (out[..., 0] - ds.targets[idx].reshape(len(idx), -1)).pow(2).mean().item()


def size_plot(records: Sequence[dict[str, object]], path: Path) -> list[str]:
    sizes = [r for r in records if r["kind"] == "size" and r["task"] == SIZE_TASK]
    if not sizes:
        return []
    full_n = len_train(SIZE_TASK)
    full = [
        {**r, "n_train": full_n}
        for r in records
        if r["kind"] == "main" and r["task"] == SIZE_TASK and r["model"] in SIZE_MODELS
    ]
    sizes = sizes + full
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    lines = ["| model | training INRs | test accuracy (mean ± std) | seeds |", "|---|---|---|---|"]
    for model in SIZE_MODELS:
        by_n: dict[int, list[float]] = {}
        for r in sizes:
            if r["model"] == model:
                by_n.setdefault(int(r["n_train"]), []).append(float(r["value"]))
        ns = sorted(by_n)
        stats = [_mean_std(by_n[n]) for n in ns]
        ax.errorbar(
            ns,
            [100 * m for m, _ in stats],
            yerr=[100 * s for _, s in stats],
            marker="o",
            capsize=3,
            label=model,
        )
        lines += [
            f"| {model} | {n:,} | {_fmt('test_accuracy', m, s, len(by_n[n]))} | {len(by_n[n])} |"
            for n, (m, s) in zip(ns, stats, strict=True)
        ]
    ax.set_xscale("log")
    ax.set_xlabel("training INRs")
    ax.set_ylabel("test accuracy (%)")
    ax.axhline(10, color="grey", lw=0.8, ls=":", label="chance")
    ax.set_title(f"{SIZE_TASK}: test accuracy against training-set size")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return lines


def len_train(task: str) -> int:
    from dws_theory.inr.data.tasks import SOURCES

    source = TASKS[task].source
    assert source is not None
    return round(SOURCES[source].n * 0.7)


def dilation_figure(path: Path, model_path: Path, count: int = 8) -> bool:
    """Original / INR / dws-edited INR / dilated target for test digits of mnist-dilate; False
    when there is neither the saved model to draw it from nor an earlier figure."""
    if not model_path.exists():  # saved models are not checked in: keep a committed figure
        return path.exists()
    from dws_theory.inr.data.collection import from_dataset
    from dws_theory.inr.data.datasets import load_dataset
    from dws_theory.inr.data.siren import render
    from dws_theory.inr.models.table import PRESETS, get_model
    from dws_theory.inr.train.loop import get_batch, predict, prepare

    ds = load_dataset("mnist-dilate", progress=False)
    spec = get_model("dws")
    p = prepare(from_dataset(ds), spec.symmetry)
    model = spec.build(p.info, PRESETS["default"].arch)
    model.load_state_dict(torch.load(model_path, weights_only=False)["state_dict"])
    model.eval()
    idx = ds.splits["test"][:count]
    ws, bs = get_batch(p, idx)
    with torch.no_grad():
        edited = predict(model, p, ws, bs).reshape(count, 28, 28)
        inr = render(ws, bs, ds.coords, ds.w0).reshape(count, 28, 28)
    rows = [
        ("image", ds.signals[idx].reshape(count, 28, 28)),
        ("its INR", inr),
        ("dws output", edited),
        ("dilated", ds.targets[idx]),
    ]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), count, figsize=(count * 0.9, len(rows) * 0.95))
    for r, (label, images) in enumerate(rows):
        for c in range(count):
            ax = axes[r, c]
            ax.imshow(images[c].clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=7)
    fig.tight_layout(pad=0.2)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs (shared with other jobs), "
        f"Python {platform.python_version()}, torch {torch.__version__}, CPU only"
    )


def generated_block(records: Sequence[dict[str, object]]) -> str:
    first = min((str(r["finished"]) for r in records), default="-")
    last = max((str(r["finished"]) for r in records), default="-")
    lines = [
        BEGIN,
        "",
        f"Runs finished between {first} and {last} (UTC) on: {_machine()}.",
        "Every run uses the task's default settings (`epochs` column) with the flags its row "
        "names, keeps the epoch with the best validation metric and reports the test metric of "
        "that epoch; seconds include loading the cached dataset; one thread per run, two or "
        "three runs at a time beside other jobs. The `seeds` column counts the seeds a row ran "
        f"(the protocol is {len(SEEDS)}: {', '.join(map(str, SEEDS))}); a row with one seed "
        "shows its value without a spread. `dws` is the default (canonical "
        "forms where exact, probe features where they run); `--no-canonicalize` and "
        "`--probes 0` take one of them away; "
        f"{OLD_ROW} and {OLD_NFN} are the earlier page's `dws` and `nfn` runs "
        f"(`experiments/results-2026-12-02.jsonl`; that `dws` is the same as "
        f"`dws {NO_CANON} {NO_PROBES}`), made with the code of that day, not re-run here.",
        "",
        *seed_note(records),
        *main_table(records),
        *data_table(records),
    ]
    size_name = f"results_train_size_{SIZE_TASK}.png"
    size_lines = size_plot(records, FIGURES / size_name)
    if size_lines:
        lines += [
            f"### {SIZE_TASK}: test accuracy against training-set size",
            "",
            f"![{SIZE_TASK}: test accuracy against training-set size](figures/{size_name})",
            "",
            *size_lines,
            "",
        ]
    grid = "results_mnist_dilate_grid.png"
    if dilation_figure(FIGURES / grid, ROOT / Job("main", *FIGURE_RUN).argv()[-3]):
        lines += [
            "### mnist-dilate: what the edited INRs draw",
            "",
            f"![mnist-dilate test digits: image, its INR, the dws-edited INR, the dilated "
            f"target](figures/{grid})",
            "",
            "Test digits, top to bottom: the image, its fitted INR, the INR after the seed-0 "
            "`dws` model edited its weights (rendered), and the dilated target"
            + (
                "."
                if any(
                    (r["kind"], r["task"], r["model"], r["seed"]) == ("main", *FIGURE_RUN)
                    for r in records
                )
                else " (the figure of the earlier page: mnist-dilate was not re-run for this "
                "log, so it shows that page's `dws` model)."
            ),
            "",
        ]
    lines += [
        "### Commands",
        "",
        "Every number above comes from one of these commands (`{0,1,2}`: one run per seed), "
        "run by `python experiments/results.py all`, which builds the --data collections "
        "(`experiments/collections.py`, `experiments/user_collection.py`) and appends each "
        "result to "
        "`experiments/results.jsonl`. Wall times depend on what else shared the 2 cores; "
        "compare them only within one run of the page.",
        "",
        "```",
        *_commands(records),
        "```",
        "",
        END,
    ]
    return "\n".join(lines)


def seed_note(records: Sequence[dict[str, object]]) -> list[str]:
    """The rows of this page's log that ran fewer seeds than the protocol, named."""
    short = [
        f"{'--data ' * (rs[0]['kind'] == 'data')}{task} `{model}` "
        f"(seed {', '.join(str(r['seed']) for r in rs)})"
        for (task, model), rs in sorted(_group([r for r in records if r["kind"] != "size"]).items())
        if len({r["seed"] for r in rs}) < len(SEEDS)
    ]
    if not short:
        return []
    return [f"Rows with fewer than {len(SEEDS)} seeds: " + "; ".join(short) + ".", ""]


def _commands(records: Sequence[dict[str, object]]) -> list[str]:
    """One line per command with the seeds folded into ``--seed {0,1,2}``."""
    seeds: dict[str, set[int]] = {}
    for r in records:
        if f" --seed {r['seed']} " not in str(r["command"]):
            r = {**r, "command": f"{r['command']} "}
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
    p.add_argument("action", choices=("run", "data", "sizes", "render", "all"))
    p.add_argument("--log", type=Path, default=LOG)
    p.add_argument("--page", type=Path, default=PAGE)
    p.add_argument("--tasks", nargs="+", default=list(TASK_ORDER), choices=TASK_ORDER)
    p.add_argument("--models", nargs="+", default=list(MAIN_MODELS))
    p.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    p.add_argument("--sizes", nargs="+", type=int, default=list(SIZES))
    p.add_argument("--collections", nargs="+", default=list(DATA_COLLECTIONS))
    p.add_argument("--jobs", type=int, default=2, help="runs at a time (one thread each)")
    args = p.parse_args(argv)
    main_list = main_jobs(args.tasks, args.models, args.seeds)
    sizes = size_jobs(args.sizes, args.seeds)
    if args.action in ("run", "all"):
        run_jobs(main_list, args.log, args.jobs)
    if args.action in ("data", "all"):
        run_jobs(data_jobs(args.collections, args.seeds), args.log, args.jobs)
    if args.action == "sizes":
        run_jobs(sizes, args.log, args.jobs)
    if args.action in ("render", "all"):
        render(args.log, args.page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
