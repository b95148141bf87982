"""The Python API as users meet it: empty batches, bad arguments, dtypes and devices, NFN's
feature type, pickling across processes, and the package surface (lazy, versioned)."""

from __future__ import annotations

import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import random_inputs

import dws_theory
from dws_theory.models import DWSNet
from dws_theory.runtime import layer_classes

ROOT = Path(__file__).resolve().parents[2]
MODES = ("hidden", "all", "signed")


def _inputs(dims, batch: int, channels: int, dtype=torch.float32):
    weights, biases = random_inputs(dims, batch, channels, torch.Generator().manual_seed(0))
    return [w.to(dtype) for w in weights], [b.to(dtype) for b in biases]


# -- empty batches ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dims", [(2, 32, 32, 1), (3, 1, 4), (5, 2)])
def test_an_empty_batch_gives_empty_outputs_and_gradients(dims, mode):
    equivariant, invariant = layer_classes(dims, mode)
    weights, biases = _inputs(dims, 0, 2)
    layer = equivariant(2, 3)
    out_w, out_b = layer(weights, biases)
    assert [tuple(w.shape) for w in out_w] == [
        (0, 3, dims[m], dims[m - 1]) for m in range(1, len(dims))
    ]
    assert [tuple(b.shape) for b in out_b] == [(0, 3, dims[m]) for m in range(1, len(dims))]
    sum(t.sum() for t in out_w + out_b).backward()
    assert all(torch.count_nonzero(p.grad) == 0 for p in layer.parameters())
    assert tuple(invariant(2, 5)(weights, biases).shape) == (0, 5)
    net = DWSNet(dims, mode, in_channels=2, out_features=4)
    assert tuple(net(weights, biases).shape) == (0, 4)


# -- constructor arguments -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ((0, 4), ValueError, "in_channels must be a positive integer, got 0"),
        ((4, -1), ValueError, "out_channels must be a positive integer, got -1"),
        ((2.5, 4), TypeError, "in_channels must be a positive integer, got 2.5"),
        ((True, 4), TypeError, "in_channels must be a positive integer, got True"),
        (("3", 4), TypeError, "in_channels must be a positive integer, got '3'"),
    ],
)
@pytest.mark.parametrize("which", [0, 1])
def test_layer_constructors_validate_channels(args, error, message, which):
    cls = layer_classes("2,4,1")[which]
    with pytest.raises(error, match=f"{cls.__name__}: {message}"):
        cls(*args)


# -- dtypes and devices ----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.int64, torch.bool])
@pytest.mark.parametrize("which", [0, 1])
def test_a_dtype_mismatch_says_what_was_expected(dtype, which):
    layer = layer_classes("2,4,1")[which](1, 2)
    weights, biases = _inputs((2, 4, 1), 3, 1, dtype)
    name = type(layer).__name__
    with pytest.raises(TypeError, match=f"{name}: weights.0. has dtype {dtype}, expected "):
        layer(weights, biases)
    assert layer.double()(*_inputs((2, 4, 1), 3, 1, torch.float64)) is not None


def test_one_wrong_tensor_among_right_ones_is_named():
    layer = layer_classes("2,4,1")[0](1, 1)
    weights, biases = _inputs((2, 4, 1), 3, 1)
    biases[1] = biases[1].double()
    with pytest.raises(TypeError, match=r"biases\[1\] has dtype torch.float64"):
        layer(weights, biases)
    biases[1] = [1.0, 2.0]
    with pytest.raises(TypeError, match=r"biases\[1\] must be a torch.Tensor, got list"):
        layer(weights, biases)


def test_a_device_mismatch_says_what_was_expected():
    layer = layer_classes("2,4,1")[0](1, 1).to("meta")
    weights, biases = _inputs((2, 4, 1), 3, 1)
    with pytest.raises(ValueError, match="weights.0. is on cpu, expected meta"):
        layer(weights, biases)


# -- NFN's feature type ----------------------------------------------------------------------
class _Features:
    """Anything with .weights and .biases (here not a sequence at all)."""

    def __init__(self, weights, biases):
        self.weights, self.biases = weights, biases


def _feature_types():
    types = [_Features]
    try:
        from nfn.common import WeightSpaceFeatures
    except ImportError:  # nfn is in the test extra; without it only the local type runs
        return types
    return [*types, WeightSpaceFeatures]


@pytest.mark.parametrize("features", _feature_types(), ids=lambda t: t.__name__)
@pytest.mark.parametrize("mode", MODES)
def test_feature_objects_go_in_and_come_out_as_their_own_type(features, mode):
    dims = (2, 5, 3, 1)
    equivariant, invariant = layer_classes(dims, mode)
    layer = equivariant(2, 3)
    weights, biases = _inputs(dims, 4, 2)
    out = layer(features(weights, biases))
    assert type(out) is features
    plain_w, plain_b = layer(weights, biases)
    assert all(torch.equal(a, b) for a, b in zip(out.weights, plain_w, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(out.biases, plain_b, strict=True))
    inv = invariant(2, 6)
    assert torch.equal(inv(features(weights, biases)), inv(weights, biases))
    net = DWSNet(dims, mode, in_channels=2, equivariant_output=True)
    assert type(net(features(weights, biases))) is features


def test_one_argument_without_weights_and_biases_is_refused():
    layer = layer_classes("2,4,1")[0](1, 1)
    weights, _ = _inputs((2, 4, 1), 3, 1)
    with pytest.raises(TypeError, match="expects .weights, biases. or one object with"):
        layer(weights)


# -- pickling across processes ---------------------------------------------------------------
_SAVE = """
import pickle, sys, torch
from dws_theory.models import DWSNet
from dws_theory.runtime import layer_classes
torch.manual_seed(0)
equivariant, invariant = layer_classes("2,5,4,1", "signed")
objects = {
    "net": DWSNet("2,5,4,1", "all", out_features=3),
    "layer": equivariant(1, 2),
    "class": invariant,
}
torch.save(objects, sys.argv[1])
with open(sys.argv[2], "wb") as f:
    pickle.dump(objects, f)
"""

_LOAD = """
import pickle, sys, torch
x = torch.load(sys.argv[3])
for objects in (torch.load(sys.argv[1], weights_only=False), pickle.load(open(sys.argv[2], "rb"))):
    print(objects["net"](*x["inputs"]).tolist() == x["net"])
    print(torch.equal(objects["layer"](*x["inputs"])[0][1], x["layer"]))
    print(objects["class"].__qualname__, objects["class"].__module__)
"""


def test_generated_classes_and_models_load_in_a_fresh_process(tmp_path: Path):
    saved, pickled, expected = tmp_path / "a.pt", tmp_path / "a.pkl", tmp_path / "x.pt"
    run = [sys.executable, "-c"]
    subprocess.run([*run, _SAVE, str(saved), str(pickled)], check=True, timeout=300)
    # What the objects compute, measured in this process on the saved copies.
    objects = torch.load(saved, weights_only=False)
    inputs = _inputs((2, 5, 4, 1), 3, 1)
    torch.save(
        {
            "inputs": inputs,
            "net": objects["net"](*inputs).tolist(),
            "layer": objects["layer"](*inputs)[0][1],
        },
        expected,
    )
    result = subprocess.run(
        [*run, _LOAD, str(saved), str(pickled), str(expected)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert lines[:3] == ["True", "True", "InvariantLayer dws_theory._generated.dws_2_5_4_1_signed"]
    assert lines[3:6] == lines[:3]


def test_pickling_a_class_by_reference_round_trips():
    equivariant, _ = layer_classes("3,2,2", "hidden")
    assert pickle.loads(pickle.dumps(equivariant)) is equivariant


# -- package surface -------------------------------------------------------------------------
def _python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    return result.stdout.strip()


def test_version_is_the_installed_distributions():
    # tomllib is not in Python 3.10's standard library: read the one line.
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    project = {"version": re.search(r'^version = "([^"]+)"$', text, re.M).group(1)}
    assert dws_theory.__version__ == project["version"]
    result = subprocess.run(
        [sys.executable, "-m", "dws_theory", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, f"dws-theory {project['version']}\n")


def test_import_is_light_and_names_load_on_first_use():
    out = _python(
        "import sys, dws_theory\n"
        "print('torch' in sys.modules, 'dws_theory.basis' in sys.modules)\n"
        "print(dws_theory.enumerate_basis(dws_theory.mlp('2,32,32,1')).equivariant_linear)\n"
        "print('torch' in sys.modules)\n"
        "print(dws_theory.DWSNet.__module__, 'torch' in sys.modules)\n"
    )
    assert out.split("\n") == ["False False", "75", "False", "dws_theory.models True"]


def test_every_public_name_resolves():
    for name in dws_theory.__all__:
        assert getattr(dws_theory, name) is not None, name
    assert set(dws_theory.__all__) <= set(dir(dws_theory))
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        _ = dws_theory.nope


def test_cli_usage_and_typos_do_not_import_torch():
    out = _python(
        "import sys, contextlib, io\n"
        "from dws_theory.cli import main\n"
        "for argv in (['bsis'], ['--help'], ['basis', '--help'], ['data', '--help']):\n"
        "    err = io.StringIO()\n"
        "    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit as e:\n"
        "            code = e.code\n"
        "    print(argv[0], code, 'torch' in sys.modules)\n"
    )
    # `data --help` is the one that needs the data command's real parser (and torch).
    assert out.split("\n") == ["bsis 2 False", "--help 0 False", "basis 0 False", "data 0 True"]


# -- entry points given the wrong kind of argument ----------------------------------------------
@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: dws_theory.enumerate_basis("2,3,1"), TypeError, "expects a WeightSpace"),
        (lambda: dws_theory.certify([2, 3, 1]), TypeError, "expects a WeightSpace"),
        (lambda: dws_theory.layer_classes(5), ValueError, "or a sequence of integers, got 5"),
        (lambda: dws_theory.mlp(None), ValueError, "comma-separated integer widths"),
        (lambda: dws_theory.mlp([2, True, 1]), ValueError, "expected integer widths"),
        (lambda: dws_theory.mlp("2,3,1", None), ValueError, "unknown symmetry mode None"),
        (lambda: DWSNet("2,3,1", out_features=2.0), TypeError, "out_features must be"),
    ],
)
def test_entry_points_say_what_they_expected(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_integer_types_other_than_int_are_widths():
    import numpy as np

    assert dws_theory.mlp(np.array([2, 3, 1])) == dws_theory.mlp("2,3,1")
    assert layer_classes(np.array([2, 3, 1]))[0] is layer_classes("2,3,1")[0]


def test_certify_is_callable_whichever_import_came_first():
    """`dws_theory.certify` is both a module and its function."""
    out = _python(
        "import dws_theory as d\n"
        "print(d.certify(d.mlp('2,3,1')).passed)\n"
        "import dws_theory.cli\n"
        "print(d.certify(d.mlp('2,3,1')).passed, list(d.certify.ROUTES)[0])\n"
    )
    assert out.split("\n") == ["True", "True closed_form"]
    out = _python(
        "import dws_theory.certify, dws_theory as d\n"
        "from dws_theory import certify\n"
        "print(certify(d.mlp('2,3,1')).passed, d.certify is certify)\n"
    )
    assert out == "True True"


# -- the same for general spaces (a CNN's, a residual MLP's, a tied weight's) ----------------
def _general_spaces():
    from spaces import cnn_space, residual_space, tied_space

    return {
        "cnn": cnn_space((1, 3, 2), ((3, 3), (2,)), 4, "hidden"),
        "residual": residual_space(2, 3, (2,), 1, "all"),
        "tied": tied_space(2, 3, 1, "signed"),
    }


def _general_inputs(space, batch: int, channels: int, dtype=torch.float32):
    from spaces import random_tensors, split

    weights, biases = split(space, random_tensors(space, batch, channels, torch.Generator()))
    return [w.to(dtype) for w in weights], [b.to(dtype) for b in biases]


@pytest.mark.parametrize("name", ["cnn", "residual", "tied"])
def test_general_layers_take_empty_batches_features_and_check_their_inputs(name):
    space = _general_spaces()[name]
    equivariant, invariant = layer_classes(space)
    layer = equivariant(2, 3)
    weights, biases = _general_inputs(space, 0, 2)
    out_w, out_b = layer(weights, biases)
    assert [w.shape[:2] for w in out_w + out_b] == [(0, 3)] * len(weights + biases)
    sum(t.sum() for t in out_w + out_b).backward()
    assert tuple(invariant(2, 5)(weights, biases).shape) == (0, 5)
    assert tuple(DWSNet(space, in_channels=2, out_features=4)(weights, biases).shape) == (0, 4)
    # One feature object in, the same type out.
    weights, biases = _general_inputs(space, 3, 2)
    out = layer(_Features(weights, biases))
    assert type(out) is _Features
    plain_w, _ = layer(weights, biases)
    assert all(torch.equal(a, b) for a, b in zip(out.weights, plain_w, strict=True))
    # Channels, dtypes and devices say what was expected.
    with pytest.raises(ValueError, match="EquivariantLayer: in_channels must be a positive"):
        equivariant(0, 1)
    with pytest.raises(TypeError, match=r"weights\[0\] has dtype torch.float64, expected"):
        layer(*_general_inputs(space, 3, 2, torch.float64))
    with pytest.raises(ValueError, match=r"weights\[0\] is on cpu, expected meta"):
        equivariant(2, 3).to("meta")(weights, biases)


_SAVE_GENERAL = """
import pickle, sys, torch
sys.path.insert(0, sys.argv[3])
from spaces import cnn_space
from dws_theory.models import DWSNet
from dws_theory.runtime import layer_classes
torch.manual_seed(0)
space = cnn_space((1, 3, 2), ((3, 3), (2,)), 4, "hidden")
equivariant, _ = layer_classes(space)
objects = {"net": DWSNet(space, out_features=3), "layer": equivariant(1, 2)}
torch.save(objects, sys.argv[1])
with open(sys.argv[2], "wb") as f:
    pickle.dump(objects, f)
print(type(objects["layer"]).__module__)
"""

_LOAD_GENERAL = """
import pickle, sys, torch
x = torch.load(sys.argv[3])
for objects in (torch.load(sys.argv[1], weights_only=False), pickle.load(open(sys.argv[2], "rb"))):
    print(objects["net"](*x["inputs"]).tolist() == x["net"])
    print(torch.equal(objects["layer"](*x["inputs"])[0][1], x["layer"]))
    print(type(objects["layer"]).__module__)
"""


def test_general_space_layers_and_models_load_in_a_fresh_process(tmp_path: Path):
    """A space that is no MLP's: its module is named by its short stem, and its layers pickle
    with their spec, so a fresh process that never built the space loads them."""
    saved, pickled, expected = tmp_path / "a.pt", tmp_path / "a.pkl", tmp_path / "x.pt"
    run = [sys.executable, "-c"]
    tests = str(ROOT / "tests")
    made = subprocess.run(
        [*run, _SAVE_GENERAL, str(saved), str(pickled), tests],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    name = made.stdout.strip()
    # layer_classes(space) without a mode: the kinds are the space's own ("spec").
    assert re.fullmatch(r"dws_theory\._generated\.dws_space_spec_[0-9a-f]{10}", name), name
    objects = torch.load(saved, weights_only=False)
    space = _general_spaces()["cnn"]
    inputs = _general_inputs(space, 3, 1)
    torch.save(
        {
            "inputs": inputs,
            "net": objects["net"](*inputs).tolist(),
            "layer": objects["layer"](*inputs)[0][1],
        },
        expected,
    )
    result = subprocess.run(
        [*run, _LOAD_GENERAL, str(saved), str(pickled), str(expected)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:6] == ["True", "True", name] * 2


def test_general_layers_pickle_by_reference_and_deep_copy_in_process():
    import copy

    space = _general_spaces()["residual"]
    equivariant, invariant = layer_classes(space)
    assert pickle.loads(pickle.dumps(equivariant)) is equivariant
    layer = invariant(1, 2)
    twin = copy.deepcopy(layer)
    assert type(twin) is invariant and twin is not layer
    pairs = zip(layer.parameters(), twin.parameters(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)

    class Mine(equivariant):  # a subclass defined elsewhere pickles as usual, by its name
        pass

    assert type(copy.deepcopy(Mine(1, 1))) is Mine
