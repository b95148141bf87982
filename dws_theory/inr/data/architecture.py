"""Architectures a ``--data`` file can name for networks that are not plain MLPs.

A file's optional ``architecture`` is a list of layers, each a list whose first item is the
layer's name, rebuilt here as an ``nn.Sequential`` (the example module the weight space is
traced from with ``from_module``):

``["linear", in, out]``                                    ``nn.Linear``
``["conv1d" | "conv2d", in, out, kernel, stride, padding]`` ``nn.Conv1d`` / ``nn.Conv2d``
``["act"]``                                                the hidden activation
``["global_avg_pool1d" | "global_avg_pool2d"]``            average over every position
``["flatten"]``                                            ``nn.Flatten``

``act`` is the file's ``activation`` where torch has a module for it, else (none declared,
or ``sine``) a ReLU stand-in: the weight space under permutations is the same for every
pointwise activation, and what depends on the activation (canonical forms, probes) reads the
declared name, never the stand-in.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ...errors import InputError

__all__ = ["LAYERS", "ArchitectureError", "build_module", "chain_dims"]

LAYERS = (
    "linear",
    "conv1d",
    "conv2d",
    "act",
    "global_avg_pool1d",
    "global_avg_pool2d",
    "flatten",
)
_ARITY = {"linear": 2, "conv1d": 5, "conv2d": 5}


class ArchitectureError(InputError):
    """An ``architecture`` entry that does not describe a network."""


_MODULES: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
    "softplus": nn.Softplus,
}


def _activation(name: str | None) -> nn.Module:
    if name is None or name == "sine":  # no torch module is a sine: the stand-in
        return nn.ReLU()
    return _MODULES[name]()


def build_module(spec: object, activation: str | None = None) -> nn.Sequential:
    """The ``nn.Sequential`` an ``architecture`` list describes (see the module docstring)."""
    if not isinstance(spec, Sequence) or isinstance(spec, str) or not spec:
        raise ArchitectureError(f"expected a non-empty list of layers, got {type(spec).__name__}")
    layers: list[nn.Module] = []
    for i, entry in enumerate(spec):
        if isinstance(entry, str) or not isinstance(entry, Sequence) or not entry:
            raise ArchitectureError(f"layer {i}: expected a list like ['linear', 4, 8]")
        name, args = entry[0], list(entry[1:])
        if name not in LAYERS:
            raise ArchitectureError(f"layer {i}: expected a name in {LAYERS}, got {name!r}")
        arity = _ARITY.get(name, 0)
        if len(args) != arity or not all(
            isinstance(a, int) and not isinstance(a, bool) and a >= 0 for a in args
        ):
            raise ArchitectureError(
                f"layer {i} ({name}): expected {arity} non-negative integers, got {args}"
            )
        if name in _ARITY and min(args[:2]) < 1 or name.startswith("conv") and args[2:4] < [1, 1]:
            raise ArchitectureError(f"layer {i} ({name}): expected positive sizes, got {args}")
        layers.append(_layer(name, args, activation))
    return nn.Sequential(*layers)


def _layer(name: str, args: list[int], activation: str | None) -> nn.Module:
    if name == "linear":
        return nn.Linear(*args)
    if name in ("conv1d", "conv2d"):
        cls = nn.Conv1d if name == "conv1d" else nn.Conv2d
        return cls(args[0], args[1], args[2], stride=args[3], padding=args[4])
    if name == "act":
        return _activation(activation)
    if name == "global_avg_pool1d":
        return nn.AdaptiveAvgPool1d(1)
    if name == "global_avg_pool2d":
        return nn.AdaptiveAvgPool2d(1)
    return nn.Flatten()


def chain_dims(module: nn.Module) -> tuple[int, ...]:
    """Channels in and out of each layer with a weight: ``(c_0, c_1, ..., c_M)``."""
    weights = [p for p in module.parameters() if p.dim() >= 2]
    return (int(weights[0].shape[1]), *(int(w.shape[0]) for w in weights))
