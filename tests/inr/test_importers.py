"""`data import`: the public datasets' formats, written here in miniature, as --data files."""

from __future__ import annotations

import csv
import gzip
import json
import random
from collections import OrderedDict

import numpy as np
import pytest
import torch

from dws_theory.cli import main as cli_main
from dws_theory.inr.data.importers import (
    FormatError,
    import_dwsnets,
    import_nfn_siren,
    import_small_cnn_zoo,
)
from dws_theory.inr.data.userdata import load_collection, write_collection
from dws_theory.inr.train.loop import train


def _siren_state(gen: torch.Generator, dims=(2, 4, 4, 1), names=("seq.{}.weight", "seq.{}.bias")):
    state = OrderedDict()
    for m in range(1, len(dims)):
        state[names[0].format(m - 1)] = torch.randn(dims[m], dims[m - 1], generator=gen)
        state[names[1].format(m - 1)] = torch.randn(dims[m], generator=gen)
    return state


def _dwsnets_folder(tmp_path, n_per_split=(6, 3, 3)):
    gen = torch.Generator().manual_seed(0)
    table, states = {}, []
    for split, n in zip(("train", "val", "test"), n_per_split, strict=True):
        table[split] = {"path": [], "label": []}
        for i in range(n):
            state = _siren_state(gen)
            folder = tmp_path / f"mnist_png_{split}_{i % 3}"
            folder.mkdir(exist_ok=True)
            file = folder / f"{i}.pth"
            torch.save(state, file)
            # DWSNets writes absolute paths; a relative one is read from the JSON's folder.
            name = str(file) if i % 2 else str(file.relative_to(tmp_path))
            table[split]["path"].append(name)
            table[split]["label"].append(str(i % 3))
            states.append((state, i % 3))
    (tmp_path / "mnist_splits.json").write_text(json.dumps(table))
    return tmp_path / "mnist_splits.json", states


def test_dwsnets_splits_json_becomes_a_collection(tmp_path) -> None:
    path, states = _dwsnets_folder(tmp_path)
    blob = import_dwsnets(path, show=False)
    assert [len(blob["splits"][s]) for s in ("train", "val", "test")] == [6, 3, 3]
    for i, (state, label) in enumerate(states):
        assert torch.equal(blob["weights"][1][i], state["seq.1.weight"])
        assert torch.equal(blob["biases"][2][i], state["seq.2.bias"])
        assert blob["targets"][i] == label
    out = write_collection(tmp_path / "dws.pt", **blob)
    data = load_collection(out)
    assert data.dims == (2, 4, 4, 1) and data.activation == "sine" and data.w0 == 30.0
    assert torch.equal(data.splits["val"], torch.arange(6, 9))
    result = train(None, "dws", data=str(out), epochs=1, progress=False)
    assert result["canonical"] == "sign" and 0.0 <= result["value"] <= 1.0


def test_dwsnets_problems_name_the_file(tmp_path) -> None:
    path, _ = _dwsnets_folder(tmp_path)
    table = json.loads(path.read_text())
    table["test"]["path"][0] = str(tmp_path / "gone.pth")
    path.write_text(json.dumps(table))
    with pytest.raises(FormatError, match="gone.pth: expected a state_dict file"):
        import_dwsnets(path, show=False)
    path.write_text("{not json")
    with pytest.raises(FormatError, match="splits JSON"):
        import_dwsnets(path, show=False)
    path.write_text(json.dumps({"train": {"path": [], "label": []}}))
    with pytest.raises(FormatError, match="expected the keys"):
        import_dwsnets(path, show=False)


def test_nfn_siren_folders_with_nfn_split_points(tmp_path) -> None:
    gen = torch.Generator().manual_seed(1)
    states = {}
    names = ("net.{}.linear.weight", "net.{}.linear.bias")
    for i in range(12):
        label = (i * 7) % 10
        folder = tmp_path / f"randinit_smaller_{label}s"
        folder.mkdir(exist_ok=True)
        states[i] = (_siren_state(gen, (2, 5, 5, 3), names), label)
        torch.save(states[i][0], folder / f"net{i}.pth")
    aug = tmp_path / "randinit_smaller_aug0_3s"  # an augmentation folder: not the dataset
    aug.mkdir()
    torch.save(_siren_state(gen, (2, 5, 5, 3), names), aug / "net0.pth")
    blob = import_nfn_siren(tmp_path, split_points=(7, 10), show=False)
    assert blob["targets"].tolist() == [states[i][1] for i in range(12)]
    assert torch.equal(blob["weights"][0][4], states[4][0]["net.0.linear.weight"])
    assert blob["splits"]["val"].tolist() == [7, 8, 9] and blob["splits"]["test"].tolist() == [
        10,
        11,
    ]
    data = load_collection(write_collection(tmp_path / "nfn.pt", **blob))
    assert data.dims == (2, 5, 5, 3) and data.task.kind == "classification"
    with pytest.raises(FormatError, match="split points"):
        import_nfn_siren(tmp_path, split_points=(7, 40), show=False)
    (tmp_path / "randinit_smaller_1s" / "net30.pth").write_bytes(b"")
    with pytest.raises(FormatError, match="missing"):
        import_nfn_siren(tmp_path, split_points=(7, 10), show=False)


def _zoo_folder(tmp_path, n: int = 10, steps=(0, 86)):
    """A Small CNN Zoo in miniature: conv 1->4->4 (3x3), dense 4->10, TF layouts, flat rows
    per network and checkpoint."""
    gen = torch.Generator().manual_seed(2)
    shapes = [
        ("sequential/conv2d/kernel:0", (3, 3, 1, 4)),
        ("sequential/conv2d/bias:0", (4,)),
        ("sequential/conv2d_1/kernel:0", (3, 3, 4, 4)),
        ("sequential/conv2d_1/bias:0", (4,)),
        ("sequential/dense/kernel:0", (4, 10)),
        ("sequential/dense/bias:0", (10,)),
    ]
    layout, start = [], 0
    for name, shape in shapes:
        size = int(np.prod(shape))
        layout.append({"varname": name, "start_idx": start, "end_idx": start + size})
        layout[-1]["shape"] = str(shape)
        start += size
    rows, metrics, torch_params = [], [], []
    for _ in range(n):
        for step in steps:
            params = [torch.randn(*s, generator=gen) for _, s in shapes]
            rows.append(torch.cat([p.flatten() for p in params]).numpy())
            accuracy = float(torch.rand(1, generator=gen))
            metrics.append({"step": step, "test_accuracy": accuracy, "config.activation": "relu"})
            if step == steps[-1]:
                torch_params.append((params, accuracy))
    np.save(tmp_path / "weights.npy", np.stack(rows))
    with open(tmp_path / "layout.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, ["varname", "start_idx", "end_idx", "shape"])
        writer.writeheader()
        writer.writerows(layout)
    with gzip.open(tmp_path / "metrics.csv.gz", "wt", newline="") as fh:
        writer = csv.DictWriter(fh, ["step", "test_accuracy", "config.activation"])
        writer.writeheader()
        writer.writerows(metrics)
    return torch_params


def test_small_cnn_zoo_folder_becomes_a_cnn_collection(tmp_path) -> None:
    tf_params = _zoo_folder(tmp_path)
    blob = import_small_cnn_zoo(tmp_path, show=False)
    # TF kernels [h, w, in, out] -> torch [out, in, h, w]; dense [in, out] -> [out, in].
    kernel, dense = tf_params[3][0][2], tf_params[3][0][4]
    assert torch.equal(blob["weights"][1][3], kernel.permute(3, 2, 0, 1))
    assert torch.equal(blob["weights"][2][3], dense.T)
    assert blob["targets"][3].item() == pytest.approx(tf_params[3][1])  # the last checkpoint
    # NFN's split: the second half is test; the first half shuffled by random.Random(0).
    first = list(range(5))
    random.Random(0).shuffle(first)
    assert blob["splits"]["test"].tolist() == [5, 6, 7, 8, 9]
    assert blob["splits"]["train"].tolist() == sorted(first[:4])
    out = write_collection(tmp_path / "zoo.pt", **blob)
    data = load_collection(out)
    assert data.example is not None and data.dims == (1, 4, 4, 10)
    assert data.task.kind == "regression" and data.activation is None
    result = train(None, "dws", data=str(out), epochs=1, progress=False)
    assert result["canonical"] == "none"  # mixed activations: nothing declared, nothing done
    assert result["metric"] == "test_kendall_tau"  # the peers' score


def test_small_cnn_zoo_problems(tmp_path) -> None:
    with pytest.raises(FormatError, match="weights.npy is missing"):
        import_small_cnn_zoo(tmp_path, show=False)
    _zoo_folder(tmp_path)
    (tmp_path / "order.txt").write_text("0\n1\n")
    with pytest.raises(FormatError, match="permutation"):
        import_small_cnn_zoo(tmp_path, order=tmp_path / "order.txt", show=False)
    with pytest.raises(FormatError, match="fewer than 3 networks at step 5"):
        import_small_cnn_zoo(tmp_path, step=5, show=False)


def test_the_cli_imports_and_refuses_misplaced_arguments(tmp_path, capsys) -> None:
    path, _ = _dwsnets_folder(tmp_path)
    out = tmp_path / "c.pt"
    assert cli_main(["data", "import", "dwsnets", str(path), "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["networks"] == 12 and summary["activation"] == "sine" and out.is_file()
    assert cli_main(["data", "import", "dwsnets", str(path)]) == 2
    assert "expected: data import FORMAT PATH --out FILE.pt" in capsys.readouterr().err
    assert cli_main(["data", "digits-inr", "dwsnets"]) == 2
    assert "belong to: data import" in capsys.readouterr().err
