"""The benchmark scripts run end to end on a tiny shape (their numbers are not tested)."""

from __future__ import annotations

import importlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    """A benchmark script or the harness they share, imported by name as the scripts import
    each other (pyproject.toml puts benchmarks/ on the tests' path)."""
    return importlib.import_module(name)


def test_paired_ratio_is_the_median_of_per_round_ratios():
    harness = _load("harness")
    # Round 2 is a slow spell for both sides: its ratio is still 2 (the medians' ratio is 2.1).
    times, base = [2.0, 20.0, 2.2, 1.8], [1.0, 10.0, 1.0, 1.0]
    assert harness.paired_ratio(times, base) == pytest.approx(2.0)


def test_layer_speed_runs_on_a_tiny_shape(tmp_path, capsys):
    layer_speed = _load("layer_speed")
    out = tmp_path / "rows.json"
    args = ["--shapes", "2,3,1", "--batch", "4", "--channels", "2", "--threads", "1"]
    args += ["--repeats", "3", "--min-block", "0.001", "--json", str(out)]
    assert layer_speed.main(args) == 0
    table = capsys.readouterr().out
    assert "x floor (paired)" in table
    rows = json.loads(out.read_text())
    impls = [r["impl"] for r in rows]
    assert impls[:2] == ["floor", "ours-hidden"]
    floor = rows[0]
    assert floor["x_floor"] == pytest.approx(1.0) and floor["x_floor_paired"] == pytest.approx(1.0)
    assert all(r["x_floor_paired"] > 0 and len(r["extra"]["rounds_ms"]) == 3 for r in rows)
    # 2,3,1 hidden, by hand: at each of the 3 values of n1 a 4 x 4 mix (W1's 2 columns, b1,
    # W2 -> the same), and a 5 x 5 mix of the pooled W1 (2), b1, W2, b2: 48 + 25 = 73
    # multiply-adds against P = 13 for the floor.
    assert rows[1]["extra"]["macs_x_floor"] == pytest.approx(73 / 13)
    assert "multiply-adds" in table


def test_steady_allocator_is_requested_once_and_only_from_glibc():
    harness = _load("harness")
    env = harness.steady_malloc_env({"PATH": "/bin"}, "glibc")
    assert env is not None and env["PATH"] == "/bin"
    assert harness.allocator(env) == "steady"
    # Already steady (the re-run), or another C library: no re-run.
    assert harness.steady_malloc_env(env, "glibc") is None
    assert harness.steady_malloc_env({"PATH": "/bin"}, "musl") is None
    assert harness.allocator({"PATH": "/bin"}) == "system"
    # A value the user set differently is not taken for the steady setting.
    other = {**env, "MALLOC_TRIM_THRESHOLD_": "0"}
    assert harness.allocator(other) == "system"


def _run_without_malloc_tunables(script: str, args: list[str]) -> str:
    """Run a benchmark script in a fresh process with no MALLOC_* set; its stdout, after
    checking that it re-ran itself under the allocator this C library allows."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    run = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    expected = "steady" if platform.libc_ver()[0] == "glibc" else "system"
    assert f"allocator={expected}" in run.stdout
    return run.stdout


def test_layer_speed_reexecs_under_the_steady_allocator(tmp_path):
    out = tmp_path / "rows.json"
    args = ["--shapes", "2,3,1", "--batch", "4", "--channels", "2", "--threads", "1"]
    args += ["--repeats", "2", "--min-block", "0.001", "--json", str(out)]
    _run_without_malloc_tunables("layer_speed.py", args)
    rows = json.loads(out.read_text())
    assert all(r["faults_per_step"] >= 0 for r in rows)


def test_op_breakdown_times_the_layers_ops(capsys):
    op_breakdown = _load("op_breakdown")
    args = ["--dims", "2,3,1", "--batch", "4", "--channels", "2", "--threads", "1"]
    assert op_breakdown.main([*args, "--steps", "2", "--top", "50"]) == 0
    out = capsys.readouterr().out
    # The channel mixes are batched GEMMs; the backward adds their transposed products.
    assert "aten.bmm" in out and "forward+backward" in out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "aten." in line]
    assert rows and all(float(row.split("|")[1]) >= 0 for row in rows)


def test_op_breakdown_reexecs_under_the_steady_allocator():
    args = ["--dims", "2,3,1", "--batch", "4", "--channels", "2", "--threads", "1"]
    out = _run_without_malloc_tunables("op_breakdown.py", [*args, "--steps", "2", "--top", "50"])
    assert "aten.bmm" in out


def test_plan_passes_runs_the_plans_gemms_and_the_full_size_passes():
    """The lower bound does the layer's GEMM arithmetic and, per fused tensor, two pools,
    two gradient reductions and two accumulating GEMMs (forward and input gradient)."""
    plan_passes = _load("plan_passes").plan_passes
    op_timer = _load("op_breakdown").OpTimer  # records (op, input shapes) per call

    # 2,3,1 hidden has no fused tensor (both weights have a fixed axis); its mixes do 73
    # multiply-adds per channel pair (counted by hand in the test above), here C = 2.
    assert plan_passes((2, 3, 1), "hidden", batch=3, channels=2).macs == 73 * 2 * 2

    work = plan_passes((2, 4, 4, 1), "hidden", batch=3, channels=2)
    with op_timer() as record:
        work.step()
    full = (3, 2, 4, 4)  # W2 of 2,4,4,1: the one fused tensor

    def count(prefix: str, first_shape=None) -> int:
        return sum(
            n
            for (op, shapes), n in record.calls.items()
            if op.startswith(prefix) and first_shape in (None, shapes[0])
        )

    assert count("aten.sum.", full) == 4 and count("aten.baddbmm_.") == 2
    assert [tuple(t.shape) for t in work.forward()].count(full) == 1

    # GEMMs only: the same multiply-adds, no pass over the fused tensor but its GEMMs (one
    # forward, two gradient GEMMs: three bmm on [3, 2, 16] operands, no sum, no baddbmm_).
    gemms = plan_passes((2, 4, 4, 1), "hidden", batch=3, channels=2, full_size_passes=False)
    assert gemms.macs == work.macs
    with op_timer() as record:
        gemms.step()
    assert count("aten.sum.", full) == 0 and count("aten.baddbmm_.") == 0
    assert count("aten.bmm.", (3, 2, 16)) + count("aten.bmm.", (3, 2, 2)) == 3


def test_adjoint_sketch_matches_autograd_and_times_all_three(capsys):
    sketch = _load("adjoint_sketch")
    assert sketch.max_gap() < 1e-9  # float64: the hand-written backward is autograd's
    args = ["--batch", "4", "--channels", "2", "--threads", "1", "--repeats", "2"]
    assert sketch.main([*args, "--min-block", "0.001"]) == 0
    out = capsys.readouterr().out
    assert "| hand-written adjoint |" in out and "| emitted layer, autograd |" in out


@pytest.mark.slow
def test_layer_speed_times_the_compiled_layer_against_eager(tmp_path, capsys):
    layer_speed = _load("layer_speed")
    out = tmp_path / "rows.json"
    args = ["--shapes", "2,3,3,1", "--batch", "4", "--channels", "2", "--threads", "1"]
    args += ["--repeats", "3", "--min-block", "0.001", "--no-passes", "--compile"]
    assert layer_speed.main(args + ["--json", str(out)]) == 0
    impls = [r["impl"] for r in json.loads(out.read_text())]
    assert impls[:3] == ["floor", "ours-hidden", "ours-hidden-compiled"]
    assert "ours-hidden-compiled / ours-hidden = " in capsys.readouterr().out


def test_model_speed_times_a_training_step_of_each_model(capsys):
    model_speed = _load("model_speed")
    args = ["--dims", "2,3,1", "--batch", "4", "--channels", "2", "--layers", "2"]
    args += ["--threads", "1", "--repeats", "2", "--min-block", "0.001"]
    assert model_speed.main(args) == 0
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert {"dws", "bound", "nfn", "gemms"} <= set(rows)
    assert rows["dws"].split("|")[5].strip() == "1.00"  # dws against itself, paired
    assert "nfn step / dws step = " in out and "nfn step / bound step = " in out
    assert "nfn step / gemms = " in out


def test_the_gemms_step_runs_the_plans_gemms_once_per_layer_after_the_first():
    model_speed = _load("model_speed")
    plan_passes = _load("plan_passes").plan_passes
    op_timer = _load("op_breakdown").OpTimer

    def gemm_calls(step) -> int:
        with op_timer() as record:
            step()
        gemms = ("aten.bmm.", "aten.mm.", "aten.linear.", "aten.addmm.", "aten.baddbmm")
        return sum(n for (op, _), n in record.calls.items() if op.startswith(gemms))

    one_layer = gemm_calls(
        plan_passes((2, 4, 4, 1), "hidden", 3, 2, "cpu", torch.float32, False).step
    )
    assert one_layer > 0
    assert gemm_calls(model_speed.gemms_step((2, 4, 4, 1), 3, 2, 4, "cpu")) == 3 * one_layer


def test_the_bound_model_mixes_channels_only_with_the_layer_shapes():
    model_speed = _load("model_speed")
    dws = model_speed.make_models((2, 3, 1), 2, 2, compiled=False)["dws"]
    bound = model_speed.bound_model(dws)
    weights = [torch.randn(4, 2, 3, 2), torch.randn(4, 2, 1, 3)]
    biases = [torch.randn(4, 2, 3), torch.randn(4, 2, 1)]
    for ours, mix in zip(dws.layers[1:], bound.layers[1:], strict=True):  # 2 -> 2 channels
        got_w, got_b = mix(weights, biases)
        want_w, want_b = ours(weights, biases)
        assert [t.shape for t in got_w + got_b] == [t.shape for t in want_w + want_b]
        for got, x in zip(got_w + got_b, weights + biases, strict=True):
            torch.testing.assert_close(got, torch.einsum("oc,bc...->bo...", mix.weight, x))


def test_model_speed_steps_change_the_parameters():
    model_speed = _load("model_speed")
    models = model_speed.make_models((2, 3, 1), 2, 2, compiled=False)
    weights = [torch.randn(4, 1, 3, 2), torch.randn(4, 1, 1, 3)]
    biases = [torch.randn(4, 1, 3), torch.randn(4, 1, 1)]
    labels = torch.randint(10, (4,))
    for model in models.values():
        before = [p.detach().clone() for p in model.parameters()]
        model_speed.train_step(model, weights, biases, labels)()
        assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))


def test_kernel_speed_checks_the_kernels_against_torch_then_times_them(tmp_path, capsys):
    kernel_speed = _load("kernel_speed")
    source = tmp_path / "copy.c"  # a second source: the checked-in text under another name
    source.write_text(kernel_speed.fused_module()._KERNEL_SOURCE)
    args = ["--batch", "4", "--threads", "1", "--repeats", "2", "--rounds", "1"]
    args += ["--channels", "5"]  # odd: the kernels' edge tiles, checked against torch
    assert kernel_speed.main(args + ["--cold-mb", "1", "--source", str(source)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("B=4, C=5, ")
    rows = [line.split("|")[1].strip() for line in out.splitlines()[2:]]
    assert "mix_terms [copy.c]" in rows and "mix_bwd+gx [copy.c]" in rows
    assert "torch mm (floor)" in rows and "torch copy (read+write)" in rows


def test_kernel_speed_stops_when_a_kernel_disagrees_with_torch(tmp_path):
    kernel_speed = _load("kernel_speed")
    text = kernel_speed.fused_module()._KERNEL_SOURCE
    store = "memcpy(p, &v, sizeof v);"
    assert text.count(store) == 1
    wrong = tmp_path / "wrong.c"  # every vector store writes twice the value
    wrong.write_text(text.replace(store, "vf twice = v + v; memcpy(p, &twice, sizeof twice);"))
    args = ["--batch", "4", "--threads", "1", "--repeats", "1", "--rounds", "1"]
    with pytest.raises(SystemExit, match="disagrees with torch"):
        kernel_speed.main(args + ["--cold-mb", "1", "--source", str(wrong)])


def test_model_speed_times_only_the_models_asked_for(capsys):
    model_speed = _load("model_speed")
    args = ["--dims", "2,3,1", "--batch", "4", "--channels", "2", "--layers", "2"]
    args += ["--threads", "1", "--repeats", "2", "--min-block", "0.001"]
    assert model_speed.main(args + ["--models", "dws", "nfn"]) == 0
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| ")}
    assert rows == {"model", "dws", "nfn"}
    assert "nfn step / dws step = " in out and "bound step" not in out
    assert model_speed.main(args + ["--models", "dws", "nope"]) == 2
    assert model_speed.main(args + ["--models", "nfn"]) == 2  # the ratios need dws
    assert model_speed.main(args + ["--cudagraphs"]) == 2  # CUDA graphs need CUDA and --compile
    assert "nope" in capsys.readouterr().err


@pytest.mark.parametrize("width", [16, 32, 64])
def test_kernels_of_every_vector_width_agree_with_torch(tmp_path, capsys, width):
    """The tiles of each register file (AVX-512's, AVX's, SSE's), whatever this CPU has."""
    kernel_speed = _load("kernel_speed")
    text = kernel_speed.fused_module()._KERNEL_SOURCE
    assert "#ifndef DWS_VECTOR_BYTES" in text
    source = tmp_path / f"width{width}.c"
    source.write_text(f"#define DWS_VECTOR_BYTES {width}\n" + text)
    args = ["--batch", "3", "--threads", "2", "--repeats", "1", "--rounds", "1"]
    assert kernel_speed.main(args + ["--cold-mb", "1", "--source", str(source)]) == 0
    assert f"mix_bwd+gx [width{width}.c]" in capsys.readouterr().out


def gpu_check_steps() -> list[tuple[str, int, list[str]]]:
    """benchmarks/gpu_check.sh's steps as DRY_RUN=1 prints them: (name, seconds, command)."""
    env = {**os.environ, "DRY_RUN": "1", "PY": "python3", "OUT": "out"}
    script = BENCHMARKS / "gpu_check.sh"
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    steps = []
    for line in done.stdout.splitlines():
        name, seconds, *command = line.split()
        steps.append((name, int(seconds), command))
    return steps


def test_gpu_check_fits_ten_minutes_and_every_command_parses():
    """The one prepared GPU run must not fail for a silly reason: each step's command is
    checked against its script's parser (and its models against the models it makes), the
    tests it runs exist, and the time limits add up to less than ten minutes."""
    steps = gpu_check_steps()
    assert [s[0] for s in steps] == [
        "tests", "layer1024_fp32", "layer1024_bf16", "layer4096", "model512"
    ]  # fmt: skip
    assert sum(seconds for _, seconds, _ in steps) < 600
    root = BENCHMARKS.parent
    for name, _, command in steps:
        assert command[0] == "python3", name
        if command[1] == "-m":  # the tests
            files = [a for a in command if a.endswith(".py")]
            assert files and all((root / f).is_file() for f in files), files
            continue
        script = _load(Path(command[1]).stem)
        args = script.build_parser().parse_args(command[2:])
        assert args.device == "cuda", name
        if name == "model512":
            made = script.make_models((2, 3, 1), 2, 2, compiled=True, cudagraphs=True)
            assert set(args.models) <= {*made, "gemms"}, set(args.models) - {*made, "gemms"}
        else:
            assert "triton" in args.backends and args.cudagraphs and args.json


def test_layer_speed_builds_and_steps_the_triton_backend_on_the_cpu(monkeypatch):
    """`--backends triton` as the GPU run asks for it (candidates built, outputs checked, one
    step each; not timed, as the interpreter is slow), under Triton's interpreter
    (tests/conftest.py) with the layer's compiled forward built by aot_eager."""
    pytest.importorskip("triton", reason="the triton package is not installed")
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("Triton's interpreter is off (a CUDA machine: the GPU run times it)")
    from dws_theory.runtime import layer_classes, load_module

    dims = (2, 3, 3, 1)
    monkeypatch.setattr(load_module(dims, "hidden", "triton"), "COMPILE_BACKEND", "aot_eager")
    layer_speed = _load("layer_speed")
    weights, biases = layer_speed.random_weight_space(dims, 3, 2, "cpu", torch.float32)
    made = layer_speed.candidates(
        dims, weights, biases, 2, layer_classes, ["hidden"], passes=False, backends=["triton"]
    )
    assert [c.name for c in made][:3] == ["floor", "ours-hidden", "ours-hidden-triton"]
    for c in made:
        layer_speed.check_outputs(c, weights, biases)
        layer_speed.step_fn(c)()
    graphed = layer_speed.candidates(
        dims, weights, biases, 2, layer_classes, ["hidden"], passes=False, compiled=True,
        backends=["triton"], cudagraphs=True,
    )  # fmt: skip
    names = [c.name for c in graphed]  # built (torch.compile checks its options), not run
    assert {"ours-hidden-compiled-cudagraphs", "ours-hidden-triton-cudagraphs"} <= set(names)


def test_dwsnet_resnet18_times_a_step_against_the_floor(capsys):
    bench = _load("dwsnet_resnet18")
    assert bench.main(["--width", "2", "--classes", "3", "--channels", "1", "--repeats", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("ResNet-18 width 2, 3 classes: 102 tensors")
    row = lines[-1].split()  # C, build s, step s, floor s, ratio, peak MB
    assert row[0] == "1" and all(float(x) >= 0 for x in row[1:])
    assert float(row[4]) > 0  # step / floor (the printed seconds are rounded: not recomputed)


def test_engine_scaling_times_every_stage_and_costs_the_layer(capsys):
    engine = _load("engine_scaling")
    args = ["--mlp-depths", "3,4", "--mlp-widths", "4", "--resnet-widths", "2"]
    args += ["--resnet-stages", "1", "--classes", "10", "--image", "16", "--threads", "1"]
    assert engine.main([*args, "--layer-memory"]) == 0
    out = capsys.readouterr().out
    sections = {part.split()[0]: part for part in out.split("\n## ")[1:]}
    stages, memory, layer = sections["Stage"], sections["Peak"], sections["One"]
    header = stages.splitlines()[2]
    for stage in ("trace", "check", "basis", "closed_form", "orbit_count", "commutant"):
        assert f"| {stage} s |" in header
    assert "| exact_commutation s | independence s | module s | generate s |" in header
    rows = {line.split(" | ")[0][2:]: line for line in stages.splitlines() if "| " in line}
    mlp3, mlp4 = rows["MLP M=3 w=4"], rows["MLP M=4 w=4"]
    resnet = rows["ResNet-18's first 1 stage w=2 (10 cl)"]
    # x base: each family's first case against itself is 1.00, in the same process.
    assert mlp3.split(" | ")[-2] == "1.00" and resnet.split(" | ")[-2] == "1.00"
    assert float(mlp4.split(" | ")[-2]) > 0
    assert all(float(c) >= 0 for c in mlp3.split(" | ")[1:-1])
    assert "ResNet-18's first 1 stage" in memory and "load average" in out
    # 2,4,4,1 hidden: 6 tensors, 4 sets; W1, b1, W2 share n1 and W2, b2, W3 share n2:
    # 9 + 9 ordered pairs, (W2, W2) in both, so 17 sharing pairs; 82 basis elements.
    cells = next(line for line in layer.splitlines() if line.startswith("| MLP M=3")).split(" | ")
    p, t, s, blocks, sharing, basis = (int(c.replace(",", "")) for c in cells[1:7])
    assert (p, t, s, blocks, sharing) == (37, 6, 4, 36, 17)
    from dws_theory.basis import enumerate_basis
    from dws_theory.spec import mlp

    counted = enumerate_basis(mlp((2, 4, 4, 1)))
    assert basis == counted.equivariant_linear + counted.equivariant_bias == 82
    assert cells[-2] == "12"  # 82 = 36 blocks + 2 x 17 sharing pairs + 12
