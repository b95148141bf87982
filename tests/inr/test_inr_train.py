"""The training loop, its settings, the train CLI, and a user's own ``--data`` collections."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch._dynamo.testing import CompileCounterWithBackend

from dws_theory.inr.cli import add_train_parser
from dws_theory.inr.data.layout import flatten_weights, unflatten_weights
from dws_theory.inr.data.siren import render, siren_init
from dws_theory.inr.data.tasks import TASKS
from dws_theory.inr.data.userdata import DataFileError, load_collection, save_collection
from dws_theory.inr.models.baselines import FlatMLP
from dws_theory.inr.models.table import PRESETS, get_model
from dws_theory.inr.train.augment import augment, permute_hidden
from dws_theory.inr.train.loop import RunConfig, batches, prepare, resolve, train

N = 24
FIT_STEPS = 30
JSON_KEYS = {"task", "model", "seed", "metric", "value", "val", "best_epoch", "epochs"}
JSON_KEYS |= {"params", "seconds", "canonical", "probes"}
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("inr-cache"))


def _batch(dims: tuple[int, ...], b: int, c: int, seed: int):
    ws, bs = siren_init(dims, b * c, torch.Generator().manual_seed(seed), scheme="siren")
    return [w.reshape(b, c, *w.shape[1:]) for w in ws], [x.reshape(b, c, -1) for x in bs]


def test_permute_hidden_preserves_the_function() -> None:
    dims = (2, 16, 12, 8, 1)
    ws, bs = _batch(dims, 6, 1, seed=0)
    gen = torch.Generator().manual_seed(1)
    pw, pb = permute_hidden(ws, bs, gen)
    coords = torch.rand(40, 2) * 2 - 1
    torch.testing.assert_close(render(pw, pb, coords), render(ws, bs, coords), atol=1e-5, rtol=1e-4)
    # It really permutes every hidden layer, and each sample differently.
    for k in range(len(dims) - 2):
        assert not torch.equal(pw[k], ws[k])
        assert not torch.equal(pb[k], bs[k])
    rows = pw[0][:, 0]
    match = (rows.unsqueeze(2) == ws[0][:, 0].unsqueeze(1)).all(-1)  # [B, new, old]
    perms = match.float().argmax(-1)
    assert match.sum(-1).eq(1).all()  # rows are a permutation of the old rows
    assert len({tuple(p.tolist()) for p in perms}) > 1  # independent across samples
    # Input and output neurons are untouched: output biases equal, input columns permuted rows.
    assert torch.equal(pb[-1], bs[-1])
    assert torch.equal(pw[-1].sort(-1).values, ws[-1].sort(-1).values)


def test_permute_hidden_with_channels_moves_channels_together() -> None:
    ws, bs = _batch((2, 8, 1), 3, 2, seed=2)
    pw, pb = permute_hidden(ws, bs, torch.Generator().manual_seed(0))
    coords = torch.rand(9, 2) * 2 - 1
    for c in range(2):
        # Each channel, read as its own INR, still computes the same function.
        before = render([w[:, c : c + 1] for w in ws], [b[:, c : c + 1] for b in bs], coords)
        after = render([w[:, c : c + 1] for w in pw], [b[:, c : c + 1] for b in pb], coords)
        torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-4)
    # Channel 0 and channel 1 of each neuron were moved by the same permutation.
    order0 = (pw[0][:, 0].unsqueeze(2) == ws[0][:, 0].unsqueeze(1)).all(-1).float().argmax(-1)
    order1 = (pw[0][:, 1].unsqueeze(2) == ws[0][:, 1].unsqueeze(1)).all(-1).float().argmax(-1)
    assert torch.equal(order0, order1)


def test_flatten_roundtrip_and_flat_mlp_shapes() -> None:
    ws, bs = _batch((2, 8, 4, 1), 5, 1, seed=3)
    flat = flatten_weights(ws, bs)
    assert flat.shape == (5, 8 * 2 + 8 + 4 * 8 + 4 + 4 + 1)
    shapes = ([w.shape[1:] for w in ws], [b.shape[1:] for b in bs])
    uw, ub = unflatten_weights(flat, *shapes)
    assert all(torch.equal(x, y) for x, y in zip(uw + ub, ws + bs, strict=True))
    assert FlatMLP(flat.shape[1], 3, hidden=(7,))(ws, bs).shape == (5, 3)
    gw, gb = FlatMLP(flat.shape[1], out_shapes=shapes, hidden=(7,))(ws, bs)
    assert [g.shape for g in gw + gb] == [x.shape for x in ws + bs]
    assert all(g.abs().max() == 0 for g in gw + gb)  # zero-initialised residual head


def test_settings_resolve_config_over_preset_over_model_over_task() -> None:
    task = TASKS["mnist-inr"]
    dws = get_model("dws")
    base = resolve(RunConfig("mnist-inr", "dws"), task.defaults_for("dws"), dws)
    assert base.epochs == task.defaults_for("dws").epochs and base.augment == task.defaults.augment
    paper = resolve(RunConfig("mnist-inr", "dws", preset="paper"), task.defaults, dws)
    assert (paper.lr, paper.batch_size, paper.epochs, paper.amsgrad) == (5e-3, 512, 100, True)
    assert paper.arch == PRESETS["paper"].arch and paper.arch.hidden_channels == 32
    mine = resolve(RunConfig("mnist-inr", "dws", preset="paper", lr=1e-4), task.defaults, dws)
    assert mine.lr == 1e-4 and mine.batch_size == 512
    assert base.arch.probes is None  # the model's own default
    zoo = TASKS["transformer-zoo"].defaults_for("dws")
    assert resolve(RunConfig("transformer-zoo", "dws"), zoo, dws).arch.probes == zoo.probes == 128
    given = resolve(RunConfig("transformer-zoo", "dws", probes=0), zoo, dws)
    assert given.arch.probes == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": 0}, "epochs"),
        ({"epochs": -1}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": float("inf")}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"lr": 0.0}, "positive learning rate"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"augment": ("mirror",)}, "augmentations"),
        ({"normalize": "zscore"}, "normalisation"),
        ({"preset": "huge"}, "preset"),
        ({"activation": "tanh"}, "a task knows its own"),
    ],
)
def test_bad_run_configs_are_refused(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        RunConfig("digits-inr", "dws", **kwargs)


def test_train_returns_contract_and_selects_on_val(cache_dir) -> None:
    kw = {"epochs": 2, "n": N, "fit_steps": FIT_STEPS, "cache_dir": cache_dir, "progress": False}
    result = train("sine-inr", "mlp", seed=1, **kw)
    assert set(result) == JSON_KEYS
    assert result["metric"] == "test_mse" and result["value"] >= 0
    assert result["params"] > 0 and result["seconds"] > 0 and 1 <= result["best_epoch"] <= 2
    with pytest.raises(ValueError, match="geometric augmentations"):
        train("digits-dilate", "mlp", augment=("rotate",), **kw)


def test_model_selection_keeps_the_best_validation_epoch(cache_dir, monkeypatch) -> None:
    import dws_theory.inr.train.loop as train_module

    val_scores = iter([0.2, 0.9, 0.1])  # accuracy: epoch 2 is the best
    seen: list[tuple[str, torch.Tensor]] = []

    def scripted_evaluate(model, p, split, batch_size=512):
        seen.append((split, torch.cat([q.detach().flatten() for q in model.parameters()])))
        return next(val_scores) if split == "val" else -1.0

    monkeypatch.setattr(train_module, "evaluate", scripted_evaluate)
    result = train_module.train(
        "digits-inr", "mlp", epochs=3, n=N, fit_steps=FIT_STEPS, cache_dir=cache_dir, progress=False
    )
    assert result["value"] == -1.0 and result["best_epoch"] == 2
    vals = [q for split, q in seen if split == "val"]
    (test_params,) = [q for split, q in seen if split == "test"]
    assert torch.equal(test_params, vals[1]) and not torch.equal(test_params, vals[2])


def _train_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    add_train_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    rc = args.func(args)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_train_cli_json_contract(cache_dir, capsys) -> None:
    common = ["--cache-dir", cache_dir, "--n", str(N), "--fit-steps", str(FIT_STEPS), "--quiet"]
    rc, out, _ = _train_cli(
        ["train", "digits-inr", "--model", "mlp-aug", "--epochs", "2", "--seed", "3", "--json"]
        + common,
        capsys,
    )
    assert rc == 0
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1
    obj = json.loads(lines[0])
    assert set(obj) == JSON_KEYS
    assert obj["task"] == "digits-inr" and obj["model"] == "mlp-aug" and obj["seed"] == 3
    assert obj["metric"] == "test_accuracy" and 0.0 <= obj["value"] <= 1.0
    assert isinstance(obj["params"], int) and obj["params"] > 0
    assert isinstance(obj["seconds"], float) and obj["seconds"] > 0
    # Without --json: a readable one-line summary, not JSON.
    rc, out, _ = _train_cli(
        ["train", "digits-inr", "--model", "dws", "--epochs", "1", "--augment", "none"] + common,
        capsys,
    )
    assert rc == 0 and "test_accuracy=" in out and "model=dws" in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


def test_train_cli_refuses_bad_values(cache_dir) -> None:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_train_parser(parser.add_subparsers())
    for bad in (
        ["--epochs", "-1"],
        ["--epochs", "0"],
        ["--batch-size", "0"],
        ["--lr", "inf"],
        ["--lr", "nan"],
        ["--weight-decay", "-1"],
        ["--seed", "1180591620717411303424"],
        ["--augment", "mirror"],
        ["--n", "0"],
        ["--fit-steps", "-1"],
    ):
        with pytest.raises((argparse.ArgumentError, SystemExit)):
            parser.parse_args(["train", "digits-inr", "--model", "mlp", *bad])


# ----------------------------------------------------------------------------- user data


def _tanh_mlps(n: int, dims: tuple[int, ...], seed: int) -> list[nn.Sequential]:
    torch.manual_seed(seed)
    models = []
    for _ in range(n):
        layers: list[nn.Module] = []
        for i in range(len(dims) - 1):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < len(dims) - 2:
                layers.append(nn.Tanh())
        models.append(nn.Sequential(*layers))
    return models


def _scale_collection(path: Path, n: int = 60, dims=(3, 5, 4, 2)) -> Path:
    # Label: whether the network's weights were scaled up; a permutation-invariant property.
    models = _tanh_mlps(n, dims, seed=0)
    labels = torch.arange(n) % 2
    with torch.no_grad():
        for m, y in zip(models, labels.tolist(), strict=True):
            for q in m.parameters():
                q.mul_(3.0 if y else 1.0)
    return save_collection(path, models, labels)


def test_save_and_load_collection_round_trip(tmp_path) -> None:
    models = _tanh_mlps(7, (3, 5, 2), seed=1)
    path = save_collection(tmp_path / "c.pt", models, torch.arange(7, dtype=torch.float64))
    data = load_collection(path)
    assert data.dims == (3, 5, 2) and data.task.kind == "regression" and data.n == 7
    w = models[4][0].weight.detach()
    assert torch.equal(data.weights[0][4, 0], w) and data.task.metric == "test_mse"
    # Standardised targets; the split is 70/15/15 by default.
    assert data.target_mean is not None and data.target_mean.item() == pytest.approx(
        torch.arange(7.0)[data.splits["train"]].mean().item(), rel=1e-6
    )
    assert sum(len(v) for v in data.splits.values()) == 7
    # From state_dicts, with splits and an explicit weight-to-weight target.
    states = [m.state_dict() for m in models]
    targets = flatten_weights(*[[w[:, 0] for w in t] for t in _stacked(models)])
    splits = {"train": torch.arange(5), "val": torch.tensor([5]), "test": torch.tensor([6])}
    path = save_collection(tmp_path / "w.pt", states, targets, splits=splits)
    data = load_collection(path)
    assert data.task.kind == "weights" and torch.equal(data.splits["val"], torch.tensor([5]))


def test_train_canonicalises_where_exact_and_says_so(cache_dir, tmp_path, capsys) -> None:
    kw = {"epochs": 1, "n": N, "fit_steps": FIT_STEPS, "cache_dir": cache_dir, "progress": False}
    assert train("digits-inr", "mlp", **kw)["canonical"] == "sign"  # SIRENs: sine is odd
    assert train("digits-inr", "mlp", canonicalize=False, **kw)["canonical"] == "none"
    path = _scale_collection(tmp_path / "tanh.pt", n=24)  # the file does not say tanh
    quick = {"epochs": 1, "progress": False}
    assert train(None, "mlp", data=str(path), **quick)["canonical"] == "none"
    assert train(None, "mlp", data=str(path), activation="tanh", **quick)["canonical"] == "sign"
    sine = train(None, "dws", data=str(path), activation="sine", probes=4, **quick)
    assert sine["canonical"] == "sign"  # and its probes run with the SIREN w0
    rc, out, _ = _train_cli(
        ["train", "--data", str(path), "--model", "mlp", "--epochs", "1", "--quiet", "--json"]
        + ["--activation", "relu", "--canonicalize"],
        capsys,
    )
    assert rc == 0 and json.loads(out)["canonical"] == "scale"
    with pytest.raises(ValueError, match="neither odd nor positively homogeneous"):
        train(None, "mlp", data=str(path), activation="gelu", canonicalize=True, **quick)
    with pytest.raises(ValueError, match="activation is unknown"):
        train(None, "mlp", data=str(path), canonicalize=True, **quick)


def _stacked(models):
    from dws_theory.convert import weights_from_models

    return weights_from_models(models)


def _write(path: Path, blob: dict) -> Path:
    torch.save(blob, path)
    return path


def _good_blob(n: int = 6) -> dict:
    return {
        "weights": [torch.randn(n, 4, 3), torch.randn(n, 2, 4)],
        "biases": [torch.randn(n, 4), torch.randn(n, 2)],
        "targets": torch.arange(n) % 2,
    }


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda b: b.pop("weights"), "'weights': expected a non-empty list"),
        (lambda b: b.update(biases=b["biases"][:1]), "one bias per layer"),
        (lambda b: b["weights"].__setitem__(1, torch.randn(6, 2, 5)), r"weights\[1\]: expected"),
        (lambda b: b["biases"].__setitem__(0, torch.randn(6, 3)), r"biases\[0\]: expected"),
        (lambda b: b["weights"].__setitem__(0, torch.ones(6, 4, 3, dtype=torch.long)), "floating"),
        (lambda b: b["weights"][0].__setitem__((0, 0, 0), float("nan")), "NaN"),
        (lambda b: b["weights"].__setitem__(0, torch.randn(6, 4)), "3 axes"),
        (lambda b: b.update(targets=torch.arange(5)), "expected 6 rows"),
        (lambda b: b.update(targets=torch.zeros(6, dtype=torch.long)), "at least 2 classes"),
        (lambda b: b.update(targets=torch.ones(6, dtype=torch.bool)), "integer or floating"),
        (lambda b: b.update(targets=[1, 2, 3]), "'targets': expected a tensor"),
        (lambda b: b.update(kind="ranking"), "'kind': expected one of"),
        (lambda b: b.update(targets=torch.rand(6, 2), kind="weights"), "D = 26"),
        (lambda b: b.update(splits={"train": torch.arange(4)}), "exactly the keys"),
        (
            lambda b: b.update(
                splits={"train": torch.arange(4), "val": torch.tensor([3]), "test": [5]}
            ),
            "disjoint",
        ),
        (
            lambda b: b.update(
                splits={"train": torch.arange(4), "val": torch.tensor([9]), "test": [5]}
            ),
            r"indices in \[0, 6\)",
        ),
        (
            lambda b: b.update(splits={"train": "0123", "val": [4], "test": [5]}),
            r"splits\['train'\]: expected a 1-D integer tensor or a list of integers, got str",
        ),
        (
            lambda b: b.update(splits={"train": [[0, 1], [2]], "val": [4], "test": [5]}),
            "got list",  # ragged: not a list of integers
        ),
        (
            lambda b: b["weights"].__setitem__(0, b["weights"][0].to_sparse()),
            r"weights\[0\]: expected a dense tensor with data, got a torch.sparse_coo tensor",
        ),
        (
            lambda b: b.update(targets=torch.empty(6, dtype=torch.long, device="meta")),
            "'targets': expected a dense tensor with data, got a meta tensor",
        ),
        (
            lambda b: b["targets"].__setitem__(0, 10**12),
            "expected class labels below 100,000 .* got 1,000,000,000,000",
        ),
        (
            lambda b: b.update(targets=torch.full((6,), 1e300, dtype=torch.float64)),
            "'targets': expected values of magnitude at most 1e\\+18 .* got 1e\\+300",
        ),
        (
            lambda b: b["weights"].__setitem__(
                0, torch.full((6, 4, 3), -1e300, dtype=torch.float64)
            ),
            r"weights\[0\]: expected values of magnitude at most 3.4e\+38",
        ),
    ],
)
def test_malformed_data_files_name_the_problem(tmp_path, edit, match) -> None:
    blob = _good_blob()
    edit(blob)
    path = _write(tmp_path / "bad.pt", blob)
    with pytest.raises(DataFileError, match=match):
        load_collection(path)


def test_unreadable_data_files_are_refused(tmp_path) -> None:
    with pytest.raises(DataFileError, match="existing file"):
        load_collection(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(DataFileError, match="not a torch.save file"):
        load_collection(tmp_path / "junk.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(DataFileError, match="expected a dict"):
        load_collection(tmp_path / "list.pt")
    load_collection(_write(tmp_path / "ok.pt", _good_blob()))  # the control passes


def test_a_fifo_is_refused_not_read_forever(tmp_path) -> None:
    """A FIFO with no writer blocks any reader; checked in a child so a regression fails
    the test instead of hanging it."""
    fifo = tmp_path / "data.pt"
    os.mkfifo(fifo)
    probe = (
        "import sys; from dws_theory.inr.data.userdata import DataFileError, load_collection\n"
        f"try:\n    load_collection({str(fifo)!r})\nexcept DataFileError as e:\n    print(e)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert "expected an existing file written by torch.save, but it is not a regular file" in (
        done.stdout
    )


def test_save_collection_into_a_missing_folder_names_the_path(tmp_path) -> None:
    target = tmp_path / "missing" / "c.pt"
    with pytest.raises(FileNotFoundError, match="No such file") as raised:
        save_collection(target, _tanh_mlps(4, (3, 5, 2), seed=1), torch.arange(4) % 2)
    assert raised.value.filename == str(target), "the path the user named, not a temporary"
    assert not (tmp_path / "missing").exists()


def test_batches_never_end_with_a_batch_of_one() -> None:
    sizes = {n: [len(b) for b in batches(n, 4)] for n in (1, 4, 5, 8, 9, 10)}
    assert sizes == {1: [1], 4: [4], 5: [5], 8: [4, 4], 9: [4, 5], 10: [4, 4, 2]}
    assert torch.equal(torch.cat(batches(9, 4)), torch.arange(9))


def test_geometric_augmentations_need_the_inputs_they_transform() -> None:
    ws, bs = _batch((3, 8, 1), 2, 1, seed=0)
    with pytest.raises(ValueError, match="2-D inputs for --augment rotate .* got 3-D"):
        augment(ws, bs, ["rotate"], torch.Generator().manual_seed(0))
    augment(ws, bs, ["translate", "scale"], torch.Generator().manual_seed(0))  # these apply


def test_train_on_a_users_collection_learns(tmp_path, capsys) -> None:
    path = _scale_collection(tmp_path / "scaled.pt")
    rc, out, _ = _train_cli(
        ["train", "--data", str(path), "--model", "dws", "--epochs", "15", "--json", "--quiet"],
        capsys,
    )
    result = json.loads(out)
    assert rc == 0 and result["metric"] == "test_accuracy" and result["task"] == "scaled"
    assert result["value"] >= 0.75, result  # chance is 0.5; a scale is easy to read


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(
        args, capture_output=True, text=True, env=full_env, cwd=ROOT, timeout=300, check=False
    )


def test_data_parallel_training_matches_one_process(tmp_path) -> None:
    # Two gloo processes with half of each global batch must end where one process with the
    # whole batch ends: same shuffles and augmentations, loss weighted by each slice's share,
    # batch statistics all-reduced.
    path = _scale_collection(tmp_path / "ddp.pt", n=40)
    common = ["train", "--data", str(path), "--model", "dws", "--epochs", "1"]
    common += ["--batch-size", "10", "--augment", "noise", "--quiet", "--json"]
    one = _run([sys.executable, "-m", "dws_theory", *common, "--save", str(tmp_path / "one.pt")])
    assert one.returncode == 0, one.stderr
    two = _run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29561",
            "-m",
            "dws_theory",
            *common,
            "--save",
            str(tmp_path / "two.pt"),
        ]
    )
    assert two.returncode == 0, two.stderr[-3000:]
    assert len([line for line in two.stdout.splitlines() if line.startswith("{")]) == 1
    a = torch.load(tmp_path / "one.pt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "two.pt", weights_only=False)["state_dict"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=2e-5, rtol=1e-4, msg=key)
    # Training moved the parameters, so the agreement is not that of two untouched inits.
    p = prepare(load_collection(path), get_model("dws").symmetry)
    torch.manual_seed(0)
    init = get_model("dws").build(p.info, PRESETS["default"].arch).state_dict()
    assert max((a[k].float() - init[k].float()).abs().max().item() for k in a) > 1e-3


def test_compile_trains_through_torch_compile_to_the_same_parameters(
    cache_dir, monkeypatch
) -> None:
    import dws_theory.inr.train.loop as train_module
    from dws_theory.codegen.preludes import compiled as compiled_prelude

    def trained_parameters(compile: bool) -> torch.Tensor:
        seen: list[torch.Tensor] = []

        def scripted_evaluate(model, p, split, batch_size=512):
            seen.append(torch.cat([q.detach().flatten() for q in model.parameters()]))
            return 0.5

        monkeypatch.setattr(train_module, "evaluate", scripted_evaluate)
        train_module.train(
            "digits-inr", "dws", epochs=2, n=N, fit_steps=FIT_STEPS, cache_dir=cache_dir,
            progress=False, compile=compile,
        )  # fmt: skip
        return seen[-1]

    counter = CompileCounterWithBackend("aot_eager")
    monkeypatch.setattr(compiled_prelude, "COMPILE_BACKEND", counter)
    eager = trained_parameters(compile=False)
    assert counter.frame_count == 0
    compiled = trained_parameters(compile=True)
    assert counter.frame_count >= 1  # the training step ran compiled
    # atol 1e-4: the probe features run sin(30 x), which scales float rounding by w0 = 30.
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)
    parser = argparse.ArgumentParser()
    add_train_parser(parser.add_subparsers())
    assert parser.parse_args(["train", "digits-inr", "--model", "dws", "--compile"]).compile
    assert not parser.parse_args(["train", "digits-inr", "--model", "dws"]).compile


# ----------------------------------------------------------------------------- faults


def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """The whole command line (its one error path included)."""
    from dws_theory.cli import main

    try:
        code = main(argv)
    except SystemExit as e:  # the parser's own exits
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_error_line(code: int, err: str) -> str:
    """The one line of a refusal (exit 2), after checking there is exactly one."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("dws-theory: error: "), err
    return lines[0]


@pytest.fixture
def small_data(tmp_path) -> Path:
    return _scale_collection(tmp_path / "small.pt", n=12, dims=(3, 5, 2))


def _never_load(monkeypatch) -> None:
    import dws_theory.inr.train.loop as loop

    def load(config):
        raise AssertionError("the data was loaded before the --save target was checked")

    monkeypatch.setattr(loop, "load_collection_for", load)


@pytest.mark.parametrize(
    ("target", "fragment"),
    [
        ("{dir}/missing/model.pt", "expected an existing path, but there is no such file"),
        ("{dir}", "expected a file, but the path is a directory"),
        ("{dir}/small.pt/model.pt", "expected a directory, but part of the path is a file"),
        ("", "argument --save: expected a folder or file path, got an empty string"),
        ("/dev/null", "expected a regular file or a new name, got '/dev/null'"),
    ],
    ids=["missing-folder", "directory", "under-a-file", "empty", "device"],
)
def test_a_bad_save_target_is_one_line_before_training(
    target, fragment, small_data, monkeypatch, capsys
):
    _never_load(monkeypatch)
    save = target.format(dir=small_data.parent)
    argv = ["train", "--data", str(small_data), "--model", "mlp", "--save", save, "--quiet"]
    code, out, err = _cli(argv, capsys)
    assert fragment in _one_error_line(code, err)


def test_a_read_only_save_folder_is_one_line_before_training(small_data, monkeypatch, capsys):
    """Simulated (root may write anywhere): the folder is not writable, on a read-only mount."""
    import dws_theory.atomic as atomic

    _never_load(monkeypatch)
    monkeypatch.setattr(atomic.os, "access", lambda path, mode: False)
    monkeypatch.setattr(atomic.os, "statvfs", lambda path: argparse.Namespace(f_flag=os.ST_RDONLY))
    save = str(small_data.parent / "model.pt")
    argv = ["train", "--data", str(small_data), "--model", "mlp", "--save", save, "--quiet"]
    code, _, err = _cli(argv, capsys)
    line = _one_error_line(code, err)
    assert "expected a writable path, but the file system is read-only" in line


# A process whose files may not grow past LIMIT bytes (EFBIG, as a nearly full disk would
# refuse the write): what torch.save's own writer turned into a RuntimeError and a
# truncated file.
SMALL_DISK = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
from dws_theory.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_save_on_a_nearly_full_disk_keeps_the_old_model(small_data, tmp_path):
    model = tmp_path / "model.pt"
    model.write_bytes(b"a good model from an earlier run\n")
    argv = ["train", "--data", str(small_data), "--model", "mlp", "--epochs", "1", "--quiet"]
    done = subprocess.run(
        [sys.executable, "-c", SMALL_DISK.format(limit=4096), *argv, "--save", str(model)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert f"({str(model)!r})" in _one_error_line(done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    assert model.read_bytes() == b"a good model from an earlier run\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "small.pt"]


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--n", "6"], "--n set how a task's INRs are fitted; with --data"),
        (["--fit-steps", "3", "--init", "siren"], "--fit-steps, --init set how"),
        (["--init", "dwsnets"], "--init set how"),
        (["--views", "2"], "--views set how"),
        (
            ["--augment", "rotate"],
            "2-D inputs for --augment rotate (a rotation of the plane), got 3",
        ),
        (["--model", "dws", "--n-train", "1"], "at least 2 training networks"),
        (["--model", "stats", "--batch-size", "1"], "batch size of at least 2"),
    ],
    ids=["n", "fit-steps", "init", "views", "rotate", "n-train", "batch-size"],
)
def test_options_a_collection_cannot_honour_are_one_line(extra, fragment, small_data, capsys):
    model = [] if "--model" in extra else ["--model", "mlp"]
    argv = ["train", "--data", str(small_data), *model, *extra, "--epochs", "1", "--quiet"]
    code, _, err = _cli(argv, capsys)
    assert fragment in _one_error_line(code, err)


def test_one_network_per_split_is_one_line_for_batch_statistics(tmp_path, capsys):
    models = _tanh_mlps(3, (3, 5, 2), seed=0)
    splits = {"train": torch.tensor([0]), "val": torch.tensor([1]), "test": torch.tensor([2])}
    path = save_collection(tmp_path / "three.pt", models, torch.tensor([0, 1, 0]), splits=splits)
    argv = ["train", "--data", str(path), "--epochs", "1", "--quiet", "--model"]
    code, _, err = _cli([*argv, "dws"], capsys)
    assert "got 1 training networks" in _one_error_line(code, err)
    code, out, err = _cli([*argv, "mlp"], capsys)  # no batch statistics: it trains
    assert code == 0 and "test_accuracy=" in out, err


def test_a_last_batch_of_one_joins_the_batch_before(small_data, capsys):
    """Train split of 8 (12 networks, 70%) in batches of 7: without the join the second
    batch would hold one network, which batch statistics refuse."""
    argv = ["train", "--data", str(small_data), "--model", "stats", "--batch-size", "7"]
    code, out, err = _cli([*argv, "--epochs", "1", "--quiet"], capsys)
    assert code == 0 and "test_accuracy=" in out, err


def test_progress_in_a_log_file_is_whole_lines(cache_dir, monkeypatch) -> None:
    """stderr not a terminal: a line per tenth of the work (and one at the end), no carriage
    returns; the fit of the INRs and the training loop both."""
    import io

    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    train("digits-inr", "mlp", epochs=5, n=N + 1, fit_steps=FIT_STEPS, cache_dir=cache_dir)
    text = log.getvalue()
    assert "\r" not in text
    fit = [line for line in text.splitlines() if line.startswith("fit digits-inr")]
    loop = [line for line in text.splitlines() if line.startswith("digits-inr mlp")]
    assert 2 <= len(fit) <= 11 and 5 <= len(loop) <= 11
    assert loop[-1].startswith("digits-inr mlp: 100%") and "val=" in loop[-1]
    assert all("ETA" in line for line in fit + loop)


def test_data_files_of_cnns_are_checked_against_their_architecture(tmp_path) -> None:
    from dws_theory.inr.data.architecture import build_module
    from dws_theory.inr.data.userdata import write_collection

    arch = [["conv2d", 1, 3, 3, 1, 1], ["act"], ["global_avg_pool2d"], ["flatten"]]
    arch.append(["linear", 3, 2])
    params = [list(build_module(arch).parameters()) for _ in range(6)]
    ws = [torch.stack([p[i].detach() for p in params]) for i in (0, 2)]
    bs = [torch.stack([p[i].detach() for p in params]) for i in (1, 3)]
    ok = write_collection(tmp_path / "ok.pt", ws, bs, torch.arange(6) % 2, architecture=arch)
    assert load_collection(ok).dims == (1, 3, 2)
    for bad, match in (
        ([["conv3x"]], "expected a name in"),
        ([["linear", 3]], "expected 2 non-negative integers"),
        ("conv2d", "expected a non-empty list of layers"),
        ([["linear", 4, 2]], "the architecture has 1 such parameters, got 2"),
    ):
        with pytest.raises(DataFileError, match=match):
            write_collection(tmp_path / "bad.pt", ws, bs, torch.arange(6) % 2, architecture=bad)
    wrong = [["conv2d", 1, 4, 3, 1, 1], *arch[1:4], ["linear", 4, 2]]
    with pytest.raises(DataFileError, match=r"weights\[0\]: expected \[N, 4, 1, 3, 3\]"):
        write_collection(tmp_path / "bad.pt", ws, bs, torch.arange(6) % 2, architecture=wrong)
    assert not (tmp_path / "bad.pt").exists()
