"""The ``data`` and ``train`` subcommands (thin: parse, call, print)."""

from __future__ import annotations

import argparse
import os
from dataclasses import replace

import torch

from ..arguments import (
    non_negative_float,
    non_negative_int,
    path_text,
    positive_float,
    positive_int,
    seed,
)
from ..cuda_graphs import AUTOCAST
from ..errors import InputError, strict_json
from .data.activations import ACTIVATIONS
from .data.datasets import load_dataset
from .data.importers import FORMATS, NFN_SPLIT_POINTS
from .data.siren import INIT_SCHEMES, SCHEDULES
from .data.tasks import TASKS
from .data.userdata import write_collection
from .data.zoos import get_zoo
from .models.table import MODELS, PRESETS, get_model
from .train.augment import AUGMENTATIONS
from .train.loop import RunConfig, run, zoo_recipe
from .train.normalize import NORMALIZATIONS

__all__ = ["add_data_parser", "add_train_parser", "format_summary"]


def format_summary(stats: dict[str, object]) -> str:
    recipe = stats["recipe"]
    lines = [
        f"task        {stats['task']}  ({stats['n']} INRs, dims {stats['dims']}, "
        f"{stats['params_per_inr']} params each, {stats['views']} view(s) per training image)",
        f"splits      {stats['splits']}",
        f"recipe      {recipe}",
        f"fit MSE     mean {stats['mean_mse']:.3e}  median {stats['median_mse']:.3e}",
        f"fit PSNR    mean {stats['mean_psnr']:.2f} dB  median {stats['median_psnr']:.2f} dB  "
        f"min {stats['min_psnr']:.2f} dB",
        f"first layer moved {stats['median_first_layer_movement']:.2f}x its init norm (median)",
        f"cache       {stats['path']} ({'built' if stats['built'] else 'loaded'})",
        f"seconds     {stats['seconds']}",
    ]
    if "identity_mse" in stats:
        lines.append(f"identity    MSE(input image, dilated target) = {stats['identity_mse']:.4f}")
    return "\n".join(lines)


def format_zoo_summary(stats: dict[str, object]) -> str:
    q = stats["accuracy_quantiles"]
    quantiles = "  ".join(f"{k} {v:.3f}" for k, v in q.items())  # type: ignore[union-attr]
    return "\n".join(
        [
            f"task        {stats['task']}  ({stats['n']} {stats['networks']}, "
            f"{stats['params_per_network']} params each)",
            f"splits      {stats['splits']}",
            f"recipe      {stats['recipe']}",
            f"accuracy    mean {stats['accuracy_mean']:.3f}  std {stats['accuracy_std']:.3f}  "
            f"min {stats['accuracy_min']:.3f}  max {stats['accuracy_max']:.3f}",
            f"quantiles   {quantiles}",
            f"histogram   {stats['accuracy_histogram']} ({stats['networks']} per 0.1 of accuracy)",
            f"cache       {stats['path']} ({'built' if stats['built'] else 'loaded'})",
            f"seconds     {stats['seconds']}",
        ]
    )


def _run_zoo_data(args: argparse.Namespace) -> int:
    if args.lr is not None or args.device != "cpu":
        raise InputError(f"{args.task}: --lr and --device are INR fitting options")
    config = RunConfig(
        task=args.task,
        model="dws",
        n=args.n,
        fit_steps=args.steps,
        init=args.init,
        views=args.views,
    )
    recipe = zoo_recipe(config)
    if args.seed:  # `data --seed` fixes the zoo itself, as it fixes the INRs of a task
        recipe = replace(recipe, seed=args.seed)
    ds = get_zoo(args.task).load(
        args.cache_dir, recipe, rebuild=args.rebuild, progress=not args.json
    )
    stats = ds.summary()
    print(strict_json(stats) if args.json else format_zoo_summary(stats))
    return 0


def _run_import(args: argparse.Namespace) -> int:
    if args.format is None or args.path is None or args.out is None:
        raise InputError("expected: data import FORMAT PATH --out FILE.pt")
    options: dict[str, object] = {"show": not args.json}
    if args.format == "nfn-siren":
        options |= {"prefix": args.prefix, "split_points": tuple(args.split_points)}
    elif args.format == "small-cnn-zoo":
        options |= {"step": args.step, "order": args.order}
    blob = FORMATS[args.format](args.path, **options)
    out = write_collection(args.out, **blob)  # type: ignore[arg-type]
    splits = {k: len(v) for k, v in blob["splits"].items()}  # type: ignore[union-attr]
    summary = {"format": args.format, "out": str(out), "networks": sum(splits.values())}
    summary |= {"splits": splits, "activation": blob.get("activation")}
    if args.json:
        print(strict_json(summary))
    else:
        print(
            f"wrote {out}: {summary['networks']:,} networks from {args.format} "
            f"(splits {splits}); train with: dws-theory train --data {out} --model dws"
        )
    return 0


def _run_data(args: argparse.Namespace) -> int:
    if args.task == "import":
        return _run_import(args)
    if args.format is not None or args.path is not None or args.out is not None:
        raise InputError("FORMAT, PATH and --out belong to: data import FORMAT PATH --out FILE")
    if TASKS[args.task].is_zoo:
        return _run_zoo_data(args)
    ds = load_dataset(
        args.task,
        args.cache_dir,
        n=args.n,
        steps=args.steps,
        lr=args.lr,
        seed=args.seed,
        init=args.init or INIT_SCHEMES[0],
        views=args.views,
        rebuild=args.rebuild,
        device=args.device,
        progress=not args.json,
    )
    stats = ds.summary()
    print(strict_json(stats) if args.json else format_summary(stats))
    return 0


def _add_fit_options(p: argparse.ArgumentParser, steps_flag: str) -> None:
    p.add_argument(
        "--cache-dir",
        type=path_text,
        default=None,
        help="dataset cache (default $DWS_THEORY_CACHE)",
    )
    p.add_argument("--n", type=positive_int, default=None, help="fit only this many INRs")
    p.add_argument(steps_flag, type=positive_int, default=None, help="Adam steps per INR fit")
    p.add_argument(
        "--init",
        choices=INIT_SCHEMES,
        default=None,
        help="INR init: dwsnets (default) or siren (the SIREN paper's; its INRs carry no "
        "signal a weight-space model can read)",
    )
    p.add_argument(
        "--views",
        type=positive_int,
        default=None,
        help="INRs per training image from independent inits (default: the task's: "
        + ", ".join(f"{t.name} {t.views}" for t in TASKS.values() if t.views > 1)
        + ", others 1)",
    )


def _check_device(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda requested but CUDA is not available")


def add_data_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``data TASK``: fit (or load) the INRs of a task and print fit statistics."""
    p = subparsers.add_parser(
        "data",
        help="build or load an INR dataset and print its fit statistics",
        description="Fit (or load from the cache) the INRs of TASK and print fit statistics; "
        "or `data import FORMAT PATH --out FILE.pt`: turn a public dataset you have "
        f"({', '.join(FORMATS)}) into a --data collection (nothing is downloaded).",
    )
    p.add_argument("task", choices=(*TASKS, "import"), metavar="TASK|import")
    p.add_argument("format", nargs="?", choices=tuple(FORMATS), help="import: the format")
    p.add_argument("path", nargs="?", help="import: the dataset's file or folder")
    p.add_argument("--out", default=None, metavar="FILE.pt", help="import: the collection")
    p.add_argument("--prefix", default="randinit_smaller", help="nfn-siren: the folders' prefix")
    p.add_argument(
        "--split-points",
        type=positive_int,
        nargs=2,
        default=list(NFN_SPLIT_POINTS),
        metavar=("VAL", "TEST"),
        help="nfn-siren: first validation and first test index (default: NFN's 45000 50000)",
    )
    p.add_argument(
        "--step",
        type=non_negative_int,
        default=None,
        help="small-cnn-zoo: the checkpoint step to keep (default: the last)",
    )
    p.add_argument(
        "--order",
        default=None,
        metavar="FILE",
        help="small-cnn-zoo: row indices, one per line, applied before the split (NFN's)",
    )
    _add_fit_options(p, "--steps")
    p.add_argument("--lr", type=positive_float, default=None, help="fitting learning rate")
    p.add_argument("--seed", type=seed, default=0, help="dataset seed (subset, inits, splits)")
    p.add_argument("--rebuild", action="store_true", help="refit even if the cache is valid")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_run_data)
    return p


def _run_train(args: argparse.Namespace) -> int:
    _check_device(args.device)
    get_model(args.model)  # an unknown name fails before any data is loaded
    if (args.task is None) == (args.data is None):
        raise InputError("expected a TASK or --data FILE.pt (exactly one)")
    config = RunConfig(
        task=args.task,
        model=args.model,
        seed=args.seed,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        augment=None if args.augment is None else tuple(args.augment),
        schedule=args.schedule,
        normalize=args.normalize,
        preset=args.preset,
        device=args.device,
        data=args.data,
        cache_dir=args.cache_dir,
        n=args.n,
        fit_steps=args.fit_steps,
        init=args.init,
        views=args.views,
        n_train=args.n_train,
        save=args.save,
        progress=not args.quiet,
        compile=args.compile,
        canonicalize=args.canonicalize,
        activation=args.activation,
        probes=args.probes,
        cuda_graphs=not args.no_cuda_graphs,
        autocast=args.autocast,
    )
    result = run(config)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    if args.json:
        print(strict_json(result))
    else:
        print(
            f"{result['task']}  model={result['model']}  seed={result['seed']}  "
            f"{result['metric']}={result['value']:.4f}  (best epoch {result['best_epoch']} of "
            f"{result['epochs']})  params={result['params']:,}  {result['seconds']:.1f} s"
        )
    return 0


def _augment_list(text: str) -> list[str]:
    names = [t for t in text.split(",") if t and t != "none"]
    unknown = sorted(set(names) - set(AUGMENTATIONS))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"expected augmentations from {', '.join(AUGMENTATIONS)} (or none), got {unknown}"
        )
    return names


def add_train_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``train TASK|--data FILE --model MODEL``."""
    p = subparsers.add_parser(
        "train",
        help="train a model on a weight-space task or on your own collection of networks",
        description="Train MODEL on TASK (or on --data FILE.pt), keep the best-validation "
        "epoch, report its test metric.",
    )
    p.add_argument("task", nargs="?", choices=tuple(TASKS), default=None)
    p.add_argument(
        "--data", type=path_text, default=None, metavar="FILE.pt", help="a collection of your own"
    )
    p.add_argument("--model", required=True, help=f"the model: {', '.join(sorted(MODELS))}")
    p.add_argument("--preset", choices=tuple(PRESETS), default="default")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--epochs", type=positive_int, default=None, help="default: per task/model")
    p.add_argument("--batch-size", type=positive_int, default=None)
    p.add_argument("--lr", type=positive_float, default=None)
    p.add_argument("--weight-decay", type=non_negative_float, default=None, help="AdamW decay")
    p.add_argument(
        "--augment",
        type=_augment_list,
        default=None,
        metavar="A,B",
        help=f"weight-space augmentations ({', '.join(AUGMENTATIONS)}, or none); "
        "default: the task's",
    )
    p.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default=None,
        help="learning rate over the run (default: the task's, cosine)",
    )
    p.add_argument(
        "--normalize",
        choices=NORMALIZATIONS,
        default="orbit",
        help="input normalisation (default orbit: per-entry statistics pooled over the "
        "model's symmetry)",
    )
    p.add_argument("--n-train", type=positive_int, default=None, help="train on a fixed subset")
    p.add_argument(
        "--save",
        type=path_text,
        default=None,
        metavar="PATH",
        help="save the selected model (its folder must exist; checked before training)",
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object to stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--compile",
        action="store_true",
        help="run the training step through torch.compile (eager, after one warning, where "
        "it cannot be built): faster steps for large models and batches, after compiles that "
        "take from tens of seconds to minutes, so it pays only on long runs",
    )
    p.add_argument(
        "--canonicalize",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="put every network in the canonical form of its exact sign (odd activations) or "
        "positive scale (ReLU) symmetry before the model reads it (default: wherever that is "
        "exact; --canonicalize refuses where it is not)",
    )
    p.add_argument(
        "--activation",
        choices=ACTIVATIONS,
        default=None,
        help="the hidden activation of a --data collection (when the file has no "
        "'activation' key); a task knows its own",
    )
    p.add_argument(
        "--probes",
        type=non_negative_int,
        default=None,
        metavar="N",
        help="add the networks' outputs at N learned input points to dws's invariant readout "
        "(probe features; 0: none); the model probe uses them alone",
    )
    p.add_argument(
        "--no-cuda-graphs",
        action="store_true",
        help="with --compile on CUDA, do not replay the step as CUDA graphs (by default it is, "
        "and an epoch's last partial batch is dropped so that every step has one shape)",
    )
    p.add_argument(
        "--autocast",
        choices=sorted(AUTOCAST),
        default=None,
        help="run the training step's forward under torch.autocast to this dtype",
    )
    _add_fit_options(p, "--fit-steps")
    p.set_defaults(func=_run_train)
    return p
