"""The code generator: lowering (ops, slots, counts), rendered source, files, CLI, drift.

Nothing here runs a layer (tests/codegen/test_layers.py does); these tests check the plan
against the basis and the text against its contracts (header, imports, formatting, reproducibility).
"""

from __future__ import annotations

import ast
import contextlib
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import mlp_dims, modes

from dws_theory.basis import enumerate_basis
from dws_theory.cli import main
from dws_theory.codegen import (
    GENERATOR_VERSION,
    Add,
    Mix,
    Pool,
    checked_in_modules,
    lower,
    module_name,
    render,
    source_for,
    write_module,
)
from dws_theory.spec import Kind, NeuronSet, SpecError, Tensor, WeightSpace, mlp

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "generated"


def plan_of(dims, mode):
    return lower(enumerate_basis(mlp(dims, mode)), mode=mode)


# -- the plan --------------------------------------------------------------------------------------
@given(dims=mlp_dims(), mode=modes)
def test_every_pattern_lands_in_exactly_one_mix_and_one_add(dims, mode):
    basis = enumerate_basis(mlp(dims, mode))
    plan = lower(basis, mode=mode)
    eq = plan.equivariant_ops
    in_mix = Counter(p for op in eq if isinstance(op, Mix) for p in op.patterns)
    in_add = Counter(p for op in eq if isinstance(op, Add) for p in op.patterns)
    assert in_mix == Counter(basis.linear)
    assert in_add == Counter(basis.linear) + Counter(basis.bias)
    inv_mix = Counter(p for op in plan.invariant_ops if isinstance(op, Mix) for p in op.patterns)
    assert inv_mix == Counter(basis.invariant)
    # A pool serves exactly the patterns that read its feature, each pattern at most once.
    in_pool = Counter(p for op in eq if isinstance(op, Pool) for p in op.patterns)
    assert all(n == 1 for n in in_pool.values())
    for op in eq:
        if isinstance(op, Pool):
            assert all(p.inp == op.tensor for p in op.patterns)
            assert not op.is_identity


@given(dims=mlp_dims(), mode=modes)
def test_slots_cover_every_basis_element_once(dims, mode):
    """Element ranges [element, element + f_out * f_in) tile 0..E-1; bias ranges tile 0..Eb-1;
    and the weight blocks of one mix do not overlap."""
    basis = enumerate_basis(mlp(dims, mode))
    plan = lower(basis, mode=mode)
    covered = []
    for op in plan.equivariant_ops:
        if isinstance(op, Mix):
            cells = set()
            for s in op.slots:
                assert s.f_out * s.f_in == s.pattern.multiplicity(basis.space)
                covered += range(s.element, s.element + s.f_out * s.f_in)
                block = {
                    (r, c)
                    for r in range(s.row, s.row + s.f_out)
                    for c in range(s.column, s.column + s.f_in)
                }
                assert not cells & block
                cells |= block
            assert len(cells) == op.rows * op.width  # dense: no unused (redundant) entries
    assert sorted(covered) == list(range(basis.equivariant_linear))
    bias = []
    for op in plan.equivariant_ops:
        if isinstance(op, Add):
            for b in op.biases:
                bias += range(b.element, b.element + b.f_out)
    assert sorted(bias) == list(range(basis.equivariant_bias))


@given(dims=mlp_dims(), mode=modes, c_in=st.integers(1, 6), c_out=st.integers(1, 6))
def test_plan_parameter_count_is_the_basis_count(dims, mode, c_in, c_out):
    basis = enumerate_basis(mlp(dims, mode))
    assert lower(basis).parameter_count(c_in, c_out) == basis.parameter_count(c_in, c_out)


@given(dims=mlp_dims(), mode=modes, c_in=st.integers(1, 4), c_out=st.integers(1, 4))
def test_plan_multiply_adds_are_one_per_basis_element_and_position(dims, mode, c_in, c_out):
    """Every basis element is a c_out x c_in block applied at each index value of the sets
    it keeps (labels shared by input and output): the mixes do exactly that work, no more."""
    space = mlp(dims, mode)
    basis = enumerate_basis(space)
    want = 0
    for p in basis.linear:
        kept = [lab for lab in p.permuted_labels if p.role(lab) == "keep"]
        positions = 1
        for lab in kept:
            positions *= space.set(p.set_of(lab)).size
        want += p.multiplicity(space) * positions * c_in * c_out
    assert lower(basis).multiply_adds(c_in, c_out) == want


def test_multiply_adds_of_the_reference_shape():
    """2-32-32-1 hidden, by hand: W2's identity at 32 * 32 positions (1024); at each of the
    32 values of n1 a 4 x 4 block mix (W1 with its 2 input columns as channels, b1, W2 pooled
    over n2) -> (W1's 2 columns, b1, W2 broadcast): 16 * 32 = 512; at each value of n2 a
    3 x 3 mix (W2 pooled over n1, b2, W3) -> (W2, b2, W3): 9 * 32 = 288; and a 7 x 7 mix of
    the fully pooled features (49). The floor, one mix per entry, is P = 1185."""
    plan = plan_of((2, 32, 32, 1), "hidden")
    assert plan.multiply_adds() == 1024 + 512 + 288 + 49
    assert plan.multiply_adds(16, 16) == 1873 * 256
    assert plan.space.dimension == 1185


def ops_per_layer(depth: int, mode: str) -> int:
    return len(plan_of((3,) + (4,) * (depth - 1) + (2,), mode).equivariant_ops)


@pytest.mark.parametrize("mode", ["hidden", "all", "signed"])
def test_op_count_grows_linearly_with_depth(mode):
    counts = [ops_per_layer(m, mode) for m in range(1, 9)]
    steps = {b - a for a, b in zip(counts[1:], counts[2:], strict=False)}
    assert len(steps) == 1, counts  # constant increment from M = 2 on
    assert counts[-1] <= 12 * 8 < 4 * 8**2  # far below one op per block at M = 8


def test_op_counts_of_the_reference_shape():
    """2-32-32-1 hidden: pools W1 (2), b1, W2 (3), b2, W3 (2), b3; one mix per neuron set
    n1, n2, one for the constants and one GEMM for W2; one add per tensor."""
    kinds = Counter(op.kind for op in plan_of((2, 32, 32, 1), "hidden").equivariant_ops)
    assert kinds == {"pool": 10, "mix": 4, "add": 6}


def test_lower_takes_general_spaces_and_rejects_what_has_no_layout():
    """A tied square weight lowers (its patterns take diagonals); a tensor without axes has
    no place in forward(weights, biases); an MLP's mode must be its own."""
    sets = (NeuronSet("a", 3, Kind.PERMUTED),)
    plan = lower(enumerate_basis(WeightSpace(sets, (Tensor("T", ("a", "a")),))))
    assert plan.dims is None and plan.mode is None and plan.origin.startswith("--spec")
    assert any(isinstance(op, Pool) and op.diagonal for op in plan.ops)
    scalar = WeightSpace(sets, (Tensor("T", ("a",)), Tensor("s", ())))
    with pytest.raises(SpecError, match="at least one axis"):
        lower(enumerate_basis(scalar))
    with pytest.raises(SpecError, match="mode all"):
        lower(enumerate_basis(mlp((2, 3, 1), "hidden")), mode="all")


# -- the source text -------------------------------------------------------------------------------
def test_generator_never_imports_torch():
    code = (
        "import sys\n"
        "from dws_theory.codegen import source_for\n"
        "source_for((2, 3, 3, 1), 'signed')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def _module_constants(source: str) -> dict[str, object]:
    tree = ast.parse(source)
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            with contextlib.suppress(ValueError):  # not a literal: skip
                out[node.targets[0].id] = ast.literal_eval(node.value)
    return out


@given(dims=mlp_dims(), mode=modes)
def test_source_header_constants_and_imports(dims, mode):
    space = mlp(dims, mode)
    basis = enumerate_basis(space)
    source = source_for(dims, mode)
    assert source.startswith("# DO NOT EDIT")
    assert f"#   generator version: {GENERATOR_VERSION}\n" in source
    assert f"#   mode: {mode}\n" in source
    constants = _module_constants(source)
    assert constants["SPEC"] == str(space)
    assert WeightSpace.parse(constants["SPEC"]) == space
    assert constants["DIMS"] == tuple(dims) and constants["MODE"] == mode
    assert constants["EQUIVARIANT_LINEAR"] == basis.equivariant_linear
    assert constants["EQUIVARIANT_BIAS"] == basis.equivariant_bias
    assert constants["INVARIANT_LINEAR"] == basis.invariant_linear
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported - {"torch"} <= set(sys.stdlib_module_names) | {"__future__"}
    assert "torch" in imported
    classes = {n.name for n in ast.parse(source).body if isinstance(n, ast.ClassDef)}
    assert {"EquivariantLayer", "InvariantLayer"} <= classes


@given(dims=mlp_dims(), mode=modes)
def test_comments_name_every_pattern(dims, mode):
    basis = enumerate_basis(mlp(dims, mode))
    comments = "\n".join(
        line.strip().lstrip("#").strip()
        for line in source_for(dims, mode).splitlines()
        if line.strip().startswith("#")
    )
    for p in basis.linear + basis.bias + basis.invariant:
        assert str(p) in comments, str(p)


@given(dims=mlp_dims(), mode=modes)
def test_no_loops_or_data_dependent_branches_in_forward(dims, mode):
    tree = ast.parse(source_for(dims, mode))
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        for fn in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
            if fn.name in ("forward", "features"):
                kinds = {type(n) for n in ast.walk(fn)}
                assert not kinds & {ast.For, ast.While, ast.If, ast.IfExp}, fn.name


def test_render_is_deterministic_and_lines_fit():
    plan = plan_of((2, 32, 32, 32, 32, 1), "hidden")
    text = render(plan)
    assert text == render(plan_of((2, 32, 32, 32, 32, 1), "hidden"))
    assert max(len(line) for line in text.splitlines()) <= 100
    assert ".repeat(" not in text


# -- files, CLI, reproducibility -------------------------------------------------------------------
def test_write_module_and_cli(tmp_path, capsys):
    path = write_module("2,3,3,1", "np", tmp_path)
    assert path == tmp_path / "dws_2_3_3_1_all.py"
    assert path.read_text(encoding="utf-8") == source_for((2, 3, 3, 1), "all")
    assert main(["generate", "2,4,1", "--symmetry", "signed", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.strip()
    assert Path(printed) == tmp_path / "dws_2_4_1_signed.py" and Path(printed).is_file()
    assert module_name((1, 2), "hnp") == "dws_1_2_hidden"


def test_cli_generate_rejects_bad_shapes(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["generate", "2,0,1", "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "positive" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_checked_in_modules_are_listed_and_cover_the_required_shapes():
    listed = set(checked_in_modules())
    required = {((2, 32, 32, 1), m) for m in ("hidden", "all", "signed")}
    required |= {((1, 32, 32, 1), m) for m in ("hidden", "all", "signed")}
    required |= {((2, 32, 32, 32, 32, 1), "hidden")}
    assert required <= listed
    assert any(d[-1] > 1 and d[0] > 2 for d, _ in listed)  # a classifier-like shape


def test_generated_modules_do_not_drift(tmp_path):
    """Regenerate every checked-in module from the engine; any byte difference fails."""
    for dims, mode in checked_in_modules():
        fresh = write_module(dims, mode, tmp_path)
        committed = GENERATED / fresh.name
        assert committed.is_file(), f"{committed} is missing: run dws-theory generate"
        assert committed.read_bytes() == fresh.read_bytes(), (
            f"{committed.name} drifted from the generator: regenerate it with "
            f"dws-theory generate {','.join(map(str, dims))} --symmetry {mode}"
        )


# The ruff of this interpreter's environment first (a venv's bin/ need not be on PATH).
RUFF = shutil.which(
    "ruff", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
)


@pytest.mark.skipif(
    RUFF is None, reason="ruff is not installed (dev extra); CI's lint step runs it"
)
def test_generated_modules_are_ruff_clean():
    files = sorted(str(p) for p in GENERATED.glob("dws_*.py"))  # MLPs and the examples
    assert len(files) > len(checked_in_modules())
    fmt = subprocess.run([RUFF, "format", "--check", *files], capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    lint = subprocess.run([RUFF, "check", *files], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr


@pytest.mark.skipif(
    RUFF is None, reason="ruff is not installed (dev extra); CI's lint step runs it"
)
def test_rendered_source_is_ruff_format_stable_on_odd_shapes(tmp_path):
    """Width 1, depth 1, a long deep shape and a wide input: every layout path of the printer."""
    shapes = [(1, 1), (3, 1, 2), (2, 1, 3, 1, 2), (5,) * 12, (784, 128, 128, 10), (1000,) * 30]
    files = [str(write_module(d, m, tmp_path)) for d in shapes for m in ("hidden", "all", "signed")]
    config = ["--config", str(ROOT / "pyproject.toml")]  # tmp_path has no ruff settings
    fmt = subprocess.run([RUFF, "format", "--check", *config, *files], capture_output=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    lint = subprocess.run([RUFF, "check", "--no-cache", *config, *files], capture_output=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr


LONG_NAMES = [
    # Parameter names as real networks have them (torchvision's ResNet, a deep U-Net),
    # written into spec strings: pools, mixes and sums of such tensors overflow 100 columns.
    "sets[a:3:permuted b:4:permuted c:2:fixed k:2:fixed] tensors["
    "layer4_1_downsample_0_weight_of_the_last_residual_stage(b,a,k,k) "
    "layer4_1_downsample_1_running_mean_of_the_last_stage(b) "
    "decoder_up_blocks_3_conv_transpose_weight_with_long_name(a,b,k,k) "
    "classifier_head_final_projection_weight_matrix_long(c,a)]",
    "sets[n:2:permuted m:3:signed k:2:fixed] tensors["
    "features_0_weight_of_a_network_with_very_long_parameter_names(m,n,k,k,k) "
    "features_0_bias_of_a_network_with_very_long_parameter_names(m) "
    "features_3_weight_of_a_network_with_very_long_parameter_names(n,m,k,k,k)]",
]


@pytest.mark.skipif(
    RUFF is None, reason="ruff is not installed (dev extra); CI's lint step runs it"
)
@pytest.mark.parametrize("spec", LONG_NAMES, ids=["resnet-like", "signed-3d"])
def test_long_parameter_names_are_wrapped_ruff_stable_and_correct(tmp_path, spec):
    """No line of the emitted module is longer than 100 columns, whatever the names, the
    source is what `ruff format` leaves unchanged, and the layer is still exact."""
    from dws_theory.runtime import layer_classes
    from dws_theory.testing import assert_complete, assert_equivariant

    space = WeightSpace.parse(spec)
    source = source_for(space, None)
    assert max(len(line) for line in source.splitlines()) <= 100
    path = tmp_path / "dws_long_names.py"
    path.write_text(source, encoding="utf-8")
    config = ["--config", str(ROOT / "pyproject.toml")]
    fmt = subprocess.run([RUFF, "format", "--check", *config, str(path)], capture_output=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    lint = subprocess.run([RUFF, "check", "--no-cache", *config, str(path)], capture_output=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    equivariant, _ = layer_classes(space)
    assert_equivariant(equivariant(2, 2), space)
    assert_complete(equivariant(1, 1), space)


# -- the package's steps ---------------------------------------------------------------------------
def test_prelude_is_real_python_pasted_verbatim():
    """The helpers live in codegen/preludes/base.py (imported here, so ruff and tests see them)
    and every module carries them, text for text, from the marker line on."""
    import importlib

    from dws_theory.codegen.preludes import prelude_source

    prelude = importlib.import_module("dws_theory.codegen.preludes.base")
    text = prelude_source()
    assert text.lstrip().startswith("def _mix(")
    assert text in source_for((2, 3, 1), "hidden")
    assert callable(prelude._mix) and callable(prelude._check_inputs)


def test_unknown_backend_lists_the_registered_ones():
    from dws_theory.codegen import BACKENDS

    plan = plan_of((2, 3, 1), "hidden")
    assert render(plan, backend="eager") == render(plan)
    with pytest.raises(SpecError, match="expected one of compiled, eager"):
        render(plan, backend="fused-typo")
    assert "eager" in BACKENDS


def test_ops_describe_what_the_plan_holds():
    plan = plan_of((2, 3, 3, 1), "hidden")
    for op in plan.ops:
        text = op.describe()
        if isinstance(op, Pool):
            assert f"`{op.tensor}`" in text
            assert all(s in text for s in op.pooled + op.folded)
        elif isinstance(op, Add):
            assert text == f"broadcast sum into `{op.out}`"
        else:
            assert all(f"`{out}`" in text for out, _, _ in op.outs if out is not None)


def test_a_folded_pool_reads_the_folded_copy_of_its_tensor():
    """W1's mean over n1 (n0 folded into channels) is computed from W1_on_n1, the folded
    copy the n1 mix already reads, so that it reduces a contiguous last axis (which
    torch.compile's CPU code runs far faster than a reduction over W1's middle axis)."""
    plan = lower(enumerate_basis(mlp((2, 32, 32, 1), "hidden")), mode="hidden")
    pools = {op.name: op for op in plan.equivariant_ops if isinstance(op, Pool)}
    assert pools["W1_on_none"].source == "W1_on_n1" and pools["W1_on_n1"].fold_axes
    assert pools["W3_on_none"].source == "W3_on_n2"


def test_fixed_axes_are_moved_last_by_fixed_last_only_where_they_are_the_tensors_last():
    """A kernel-like W1(c1, c0, k): both fixed axes last, one `_fixed_last(W1_out, 2)`; in
    W1(c0, c1, k) the fixed axes are not all last, so the copy is a plain transpose."""
    last = WeightSpace.parse(
        "sets[c0:2:fixed c1:3:permuted c2:2:fixed k:3:fixed] "
        "tensors[W1(c1,c0,k) b1(c1) W2(c2,c1) b2(c2)]"
    )
    split = WeightSpace.parse(
        "sets[c0:2:fixed c1:3:permuted k:3:fixed] tensors[W1(c0,c1,k) b1(c1)]"
    )
    for space, want in (
        (last, "W1_out = _fixed_last(W1_out, 2)"),
        (split, "W1_out = W1_out.transpose(3, 4).contiguous()"),
    ):
        source = source_for(space, None)
        forward = source[
            source.index("class EquivariantLayer") : source.index("class InvariantLayer")
        ]
        lines = [line.strip() for line in forward.splitlines() if line.strip().startswith("W1_out")]
        assert lines[-1] == want


def test_a_broadcast_sum_is_built_with_fixed_axes_first_and_permuted_once():
    """W1 [d_1, d_0] (d_0 fixed): its terms come out of the mixes as [B, C, d_0, d_1]; the sum
    is built in that order, every term a plain view, and moved once into W1's order (its
    fixed axis last: `_fixed_last`)."""
    source = source_for((2, 32, 32, 1), "hidden")
    forward = source[source.index("class EquivariantLayer") : source.index("class InvariantLayer")]
    lines = [line.strip() for line in forward.splitlines() if line.strip().startswith("W1_out")]
    assert lines[-1] == "W1_out = _fixed_last(W1_out, 1)"
    assert not any(".transpose(" in line or ".permute(" in line for line in lines[:-1])


def test_invariant_pools_use_pool_folded_only_where_a_fixed_axis_is_inside_a_pooled_one():
    """InvariantLayer of 2,32,32,1: W1 [d_1, d_0] is pooled over d_1 with d_0 (fixed, inside
    it) folded: `_pool_folded`, which folds first under torch.compile; W3 [d_3, d_2] has its
    fixed axis outside the pooled one and keeps the plain reduce-then-fold line."""
    source = source_for((2, 32, 32, 1), "hidden")
    features = source[source.index("    def features(") :]
    lines = [line.strip() for line in features.splitlines()]
    assert "W1_on_none = _pool_folded(W1, (2,), (3,))" in lines
    assert "W3_on_none = (W3.sum(3) / 32).reshape(batch, c_in * 1)" in lines
    assert sum("_pool_folded(" in line for line in lines) == 1
