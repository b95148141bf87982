"""dws_theory: exact equivariant linear layers for deep weight spaces.

The main entry points, imported lazily (``import dws_theory`` loads neither torch nor the
engine; each name is imported on first use)::

    import dws_theory as dws

    space = dws.mlp("2,32,32,1", "hidden")
    basis = dws.enumerate_basis(space)          # 75 linear, 7 bias, 7 invariant
    assert dws.certify(space).passed
    EquivariantLayer, InvariantLayer = dws.layer_classes("2,32,32,1")
    net = dws.DWSNet("2,32,32,1", out_features=10)
    cnn_space = dws.from_module(cnn, "hidden")  # any torch.nn.Module torch.fx can trace

`dws_theory.testing` checks any layer (this project's or another's) for equivariance,
completeness and over-symmetry.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("dws_theory")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

# Public name -> the module that defines it.
_EXPORTS = {
    "Kind": "spec",
    "NeuronSet": "spec",
    "SpecError": "spec",
    "Tensor": "spec",
    "WeightSpace": "spec",
    "mlp": "spec",
    "parse_dims": "spec",
    "parse_mode": "spec",
    "Basis": "basis",
    "enumerate_basis": "basis",
    "Certificate": "certify",
    "certify": "certify",
    "source_for": "codegen",
    "write_module": "codegen",
    "layer_classes": "runtime",
    "load_module": "runtime",
    "DWSNet": "models",
    "from_module": "frontends.module",
    "ConversionError": "convert",
    "dims_of": "convert",
    "model_from_weights": "convert",
    "module_from_weights": "convert",
    "state_dict_from_weights": "convert",
    "validate_weights": "convert",
    "weights_from_model": "convert",
    "weights_from_models": "convert",
}

__all__ = [
    "__version__",
    "Kind",
    "NeuronSet",
    "SpecError",
    "Tensor",
    "WeightSpace",
    "mlp",
    "parse_dims",
    "parse_mode",
    "Basis",
    "enumerate_basis",
    "Certificate",
    "certify",
    "source_for",
    "write_module",
    "layer_classes",
    "load_module",
    "DWSNet",
    "from_module",
    "ConversionError",
    "dims_of",
    "model_from_weights",
    "module_from_weights",
    "state_dict_from_weights",
    "validate_weights",
    "weights_from_model",
    "weights_from_models",
]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports on demand
    from .basis import Basis, enumerate_basis
    from .certify import Certificate, certify
    from .codegen import source_for, write_module
    from .convert import (
        ConversionError,
        dims_of,
        model_from_weights,
        module_from_weights,
        state_dict_from_weights,
        validate_weights,
        weights_from_model,
        weights_from_models,
    )
    from .frontends.module import from_module
    from .models import DWSNet
    from .runtime import layer_classes, load_module
    from .spec import Kind, NeuronSet, SpecError, Tensor, WeightSpace, mlp, parse_dims, parse_mode


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dws_theory' has no attribute {name!r}")
    submodule = importlib.import_module(f".{module}", __name__)
    # `certify` is a module and its function: importing the module makes the package
    # attribute the module (callable, see certify/__init__.py), so return the module for that name.
    value = submodule if name == module else getattr(submodule, name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
