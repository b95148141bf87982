"""Converters between real models and weight-space tensors in the layout contract.

Any module `from_module` accepts converts (`weights_from_models`, `module_from_weights`,
`state_dict_from_weights(..., template=)`): the tensors of its space, in the space's order
(the module's `state_dict()` order, an entry split into several tensors where the trace split
it: a weight reading concatenated channels, a fused layer cut into gates), those with two or
more axes as weights `[B, C, *shape]` (a conv kernel `[B, C, out, in, *kernel]`, a Linear
after a flatten of positions `[B, C, out, channels, *positions]`), the one-axis ones as
biases `[B, C, d]`; floating-point buffers the module reads (batch norm statistics) are
tensors of the space like parameters. The rest of this docstring is about MLPs.

Layout (the project-wide contract): `weights[m-1]` is `[B, C, d_m, d_{m-1}]` (the
`nn.Linear.weight` orientation with batch and channel in front), `biases[m-1]` is
`[B, C, d_m]`. Models come in as a `torch.nn.Sequential` of `nn.Linear` layers
(activations, dropout, flatten and any other parameter-free module in between are ignored)
or as its `state_dict`.

A Sequential of Linear layers without biases is a general module: its space has no bias
tensors, and converting it gives no biases (a silently invented zero bias would not
round-trip: the rebuilt model would have one). Pass `missing_bias="zeros"` to read it as an
MLP with zero biases instead (the layout of `mlp(dims)`).

Everything returned is a detached copy: converting never aliases or tracks the model's
parameters, and rebuilding never aliases the weight tensors.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

if TYPE_CHECKING:
    from .frontends.module import ModuleTrace

__all__ = [
    "ConversionError",
    "weights_from_model",
    "weights_from_models",
    "model_from_weights",
    "state_dict_from_weights",
    "layer_names",
    "dims_of",
    "validate_weights",
    "module_from_weights",
]

ModelLike = nn.Module | Mapping[str, torch.Tensor]
Activation = Callable[[], nn.Module] | nn.Module | None
MissingBias = Literal["error", "zeros"]
# One Linear layer as read from a model: (name, weight [out, in], bias [out] or None).
_Layer = tuple[str, torch.Tensor, torch.Tensor | None]


class ConversionError(ValueError):
    """A model or tensor list that does not fit the layout; the message says what was expected."""


# -- reading models --------------------------------------------------------------------------
def _layers_of_module(model: nn.Module) -> list[_Layer]:
    if not isinstance(model, nn.Sequential):
        raise ConversionError(
            "expected a torch.nn.Sequential of nn.Linear layers (or its state_dict), "
            f"got {type(model).__name__}"
        )
    layers: list[_Layer] = []
    for name, module in model.named_modules(remove_duplicate=False):
        if isinstance(module, nn.Linear):
            layers.append((name, module.weight, module.bias))
            continue
        # Anything else that carries state would change the function: refuse it.
        own = [n for n, _ in module.named_parameters(recurse=False)]
        own += [n for n, _ in module.named_buffers(recurse=False)]
        if own:
            where = name or "<root>"
            raise ConversionError(
                f"only nn.Linear layers may carry parameters, but module {where!r} "
                f"({type(module).__name__}) has {', '.join(own)}"
            )
    return layers


def _layers_of_state_dict(state: Mapping[str, torch.Tensor]) -> list[_Layer]:
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        prefix, _, leaf = key.rpartition(".")
        if leaf not in ("weight", "bias"):
            raise ConversionError(
                f"state_dict key {key!r} is not a Linear 'weight' or 'bias': only nn.Linear "
                "layers may carry parameters"
            )
        if not isinstance(value, torch.Tensor):
            raise ConversionError(f"state_dict value {key!r} must be a tensor, got {type(value)}")
        groups.setdefault(prefix, {})[leaf] = value
    layers: list[_Layer] = []
    for prefix, group in groups.items():  # dicts keep insertion order = layer order
        if "weight" not in group:
            raise ConversionError(f"state_dict has {prefix}.bias but no {prefix}.weight")
        layers.append((prefix, group["weight"], group.get("bias")))
    return layers


def _read_layers(model: ModelLike, missing_bias: MissingBias) -> list[_Layer]:
    if isinstance(model, nn.Module):
        layers = _layers_of_module(model)
    elif isinstance(model, Mapping):
        layers = _layers_of_state_dict(model)
    else:
        raise ConversionError(
            "expected a torch.nn.Sequential of nn.Linear layers or its state_dict, "
            f"got {type(model).__name__}"
        )
    if not layers:
        raise ConversionError("expected at least one nn.Linear layer, found none")
    if missing_bias not in ("error", "zeros"):
        raise ConversionError(f"missing_bias must be 'error' or 'zeros', got {missing_bias!r}")
    checked: list[_Layer] = []
    for i, (name, weight, bias) in enumerate(layers):
        if weight.dim() != 2:
            raise ConversionError(
                f"layer {name!r}: expected a 2-D Linear weight [out, in], "
                f"got shape {tuple(weight.shape)}"
            )
        if i > 0:
            prev_name, prev_weight, _ = checked[-1]
            if weight.shape[1] != prev_weight.shape[0]:
                raise ConversionError(
                    f"inconsistent widths: layer {name!r} takes {weight.shape[1]} inputs but "
                    f"the previous layer {prev_name!r} has {prev_weight.shape[0]} outputs"
                )
        if bias is None:
            if missing_bias == "error":
                raise ConversionError(
                    f"layer {name!r} has no bias; the weight space needs one per layer "
                    "(pass missing_bias='zeros' to read it as a zero bias)"
                )
            bias = torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device)
        elif tuple(bias.shape) != (weight.shape[0],):
            raise ConversionError(
                f"layer {name!r}: expected bias of shape ({weight.shape[0]},), "
                f"got {tuple(bias.shape)}"
            )
        checked.append((name, weight, bias))
    return checked


def layer_names(model: ModelLike) -> tuple[str, ...]:
    """Names of the Linear layers in order (`'0'`, `'2'`, ... for a plain Sequential).

    Pass them to `state_dict_from_weights(names=...)` to rebuild a state_dict with the
    original keys.
    """
    return tuple(name for name, _, _ in _read_layers(model, "zeros"))


def dims_of(model: ModelLike) -> tuple[int, ...]:
    """Widths d_0, ..., d_M of a Sequential of Linear layers or of its state_dict."""
    layers = _read_layers(model, "zeros")
    return (layers[0][1].shape[1], *(w.shape[0] for _, w, _ in layers))


def _is_general(model: object, missing_bias: MissingBias = "error") -> bool:
    """Whether a model goes through the module trace: any module but a Sequential of Linear
    layers with biases (a bias-free Linear goes too, unless `missing_bias="zeros"` asks for
    the MLP layout with zero biases)."""
    if not isinstance(model, nn.Module):
        return False
    if not isinstance(model, nn.Sequential):
        return True
    from .frontends.ops import lookup

    for module in model.children():
        if isinstance(module, nn.Linear):
            if module.bias is None and missing_bias != "zeros":
                return True
            continue
        op = lookup("call_module", module)
        if op is None or op.group != "elementwise" or list(module.parameters()):
            return True  # a layer that is not elementwise: the trace decides
    return False


def _check_missing_bias(missing_bias: object) -> None:
    if missing_bias not in ("error", "zeros"):
        raise ConversionError(f"missing_bias must be 'error' or 'zeros', got {missing_bias!r}")


def _trace(model: nn.Module, example_input: object = None) -> ModuleTrace:
    """The trace of a module the front end accepts (shapes checked against its state);
    `example_input` as `from_module` takes it (needed where forward takes several inputs)."""
    from .frontends.module import trace_module
    from .spec import SpecError

    try:
        return trace_module(model, example_input=example_input)
    except SpecError as e:
        raise ConversionError(str(e)) from None


def _state_of(model: nn.Module, trace: ModuleTrace) -> dict[str, torch.Tensor]:
    state = model.state_dict()
    return {name: state[name].detach() for name in trace.states if name in state}


def _stack_general(
    models: Sequence[nn.Module], example_input: object = None
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The space's tensors of models of one architecture, stacked: [B, 1, *shape] each, in the
    space's order; two or more axes go to weights, one axis to biases (buffers such as batch
    norm statistics and slices of split parameters included)."""
    trace = _trace(models[0], example_input)
    first = _state_of(models[0], trace)
    states = [first]
    for i, model in enumerate(models[1:], start=1):
        if not isinstance(model, nn.Module):
            raise ConversionError(f"model {i} is a {type(model).__name__}, expected an nn.Module")
        state = _state_of(model, trace)
        got = [(n, tuple(t.shape), t.dtype, t.device) for n, t in state.items()]
        want = [(n, tuple(t.shape), t.dtype, t.device) for n, t in first.items()]
        if got != want:
            raise ConversionError(
                f"model {i} has parameters {_describe(got)}, expected {_describe(want)} (those "
                "of model 0): a batch needs one architecture"
            )
        states.append(state)
    stacked = [
        torch.stack([source.read(state[source.state]) for state in states])[:, None]
        for _, source in trace.sources
    ]
    weights = [t for t in stacked if t.dim() >= 4]
    biases = [t for t in stacked if t.dim() == 3]
    return weights, biases


def _describe(params: list[tuple]) -> str:
    shown = ", ".join(f"{n} {list(shape)} {dtype}" for n, shape, dtype, _ in params[:6])
    return f"[{shown}{', ...' if len(params) > 6 else ''}]"


def weights_from_model(
    model: ModelLike, missing_bias: MissingBias = "error", example_input: object = None
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """One model as a batch of one: weights `[1, 1, d_m, d_{m-1}]`, biases `[1, 1, d_m]`.

    Any module `from_module` accepts (a CNN, a residual or tied network) gives its parameters
    in named_parameters() order: those with two or more axes as weights `[1, 1, *shape]`, the
    one-axis ones as biases `[1, 1, d]`. `example_input`: as `from_module` takes it, for a
    module whose forward takes several inputs."""
    _check_missing_bias(missing_bias)
    if _is_general(model, missing_bias):
        return _stack_general([model], example_input)
    layers = _read_layers(model, missing_bias)
    weights = [w.detach().clone()[None, None] for _, w, _ in layers]
    biases = [b.detach().clone()[None, None] for _, _, b in layers]
    return weights, biases


def weights_from_models(
    models: Iterable[ModelLike], missing_bias: MissingBias = "error", example_input: object = None
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Models of one architecture stacked into a batch: `[B, 1, d_m, d_{m-1}]`, `[B, 1, d_m]`.

    `models` is any iterable (a list, a generator), read once. For modules other than
    Sequentials of Linear layers (see `weights_from_model`): every parameter stacked as
    `[B, 1, *shape]`, weights (two or more axes) and biases (one axis) in
    named_parameters() order, the layout of `layer_classes(from_module(models[0]))`;
    `example_input` as `from_module` takes it."""
    expected = "expected a non-empty list (or other iterable) of models or state_dicts"
    if isinstance(models, (nn.Module, Mapping, str, bytes)) or not isinstance(models, Iterable):
        raise ConversionError(f"{expected}, got {type(models).__name__}")
    models = list(models)
    if not models:
        raise ConversionError(f"{expected}, got an empty one")
    _check_missing_bias(missing_bias)
    if _is_general(models[0], missing_bias):
        return _stack_general(list(models), example_input)
    per_model = [_read_layers(m, missing_bias) for m in models]
    first = per_model[0]
    dims = (first[0][1].shape[1], *(w.shape[0] for _, w, _ in first))
    for i, layers in enumerate(per_model[1:], start=1):
        other = (layers[0][1].shape[1], *(w.shape[0] for _, w, _ in layers))
        if other != dims:
            raise ConversionError(
                f"model {i} has widths {other}, expected {dims} (the widths of model 0): "
                "a batch needs one architecture"
            )
        for (name, w, _), (_, w0, _) in zip(layers, first, strict=True):
            if w.dtype != w0.dtype or w.device != w0.device:
                raise ConversionError(
                    f"model {i} layer {name!r} is {w.dtype} on {w.device}, expected "
                    f"{w0.dtype} on {w0.device} (as model 0)"
                )
    weights = [
        torch.stack([layers[m][1].detach() for layers in per_model])[:, None]
        for m in range(len(first))
    ]
    biases = [
        torch.stack([layers[m][2].detach() for layers in per_model])[:, None]
        for m in range(len(first))
    ]
    return weights, biases


# -- writing models --------------------------------------------------------------------------
def validate_weights(
    weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor]
) -> tuple[int, ...]:
    """Check the layout contract; return the widths d_0..d_M. Errors name the expected shape."""
    if len(weights) == 0:
        raise ConversionError("expected at least one weight tensor, got none")
    if len(weights) != len(biases):
        raise ConversionError(
            f"expected one bias per weight, got {len(weights)} weights and {len(biases)} biases"
        )
    if weights[0].dim() != 4:
        raise ConversionError(
            f"weights[0]: expected [B, C, d_1, d_0], got shape {tuple(weights[0].shape)}"
        )
    batch, channels, _, d_in = weights[0].shape
    dims = [d_in]
    for m, (w, b) in enumerate(zip(weights, biases, strict=True), start=1):
        d_out = w.shape[-2] if w.dim() == 4 else -1
        expected_w = (batch, channels, d_out, dims[-1])
        if w.dim() != 4 or tuple(w.shape) != expected_w:
            raise ConversionError(
                f"weights[{m - 1}]: expected [B, C, d_{m}, d_{m - 1}] = "
                f"[{batch}, {channels}, d_{m}, {dims[-1]}], got shape {tuple(w.shape)}"
            )
        if tuple(b.shape) != (batch, channels, d_out):
            raise ConversionError(
                f"biases[{m - 1}]: expected [B, C, d_{m}] = [{batch}, {channels}, {d_out}], "
                f"got shape {tuple(b.shape)}"
            )
        dims.append(d_out)
    return tuple(dims)


def _select(
    weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor], index: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Model `index` of the batch as plain (weight [out, in], bias [out]) pairs."""
    validate_weights(weights, biases)
    batch, channels = weights[0].shape[:2]
    if channels != 1:
        raise ConversionError(f"expected one channel (C=1) to read a model back, got C={channels}")
    if not -batch <= index < batch:
        raise ConversionError(f"index {index} out of range for a batch of {batch} models")
    return [(w[index, 0], b[index, 0]) for w, b in zip(weights, biases, strict=True)]


def _activation_module(activation: Activation) -> nn.Module | None:
    if activation is None:
        return None
    if isinstance(activation, nn.Module):
        return copy.deepcopy(activation)
    try:
        module = activation()
    except TypeError as e:  # e.g. torch.tanh, a function that needs its input
        raise ConversionError(
            f"activation must build an nn.Module when called with no arguments (e.g. nn.ReLU): {e}"
        ) from e
    if not isinstance(module, nn.Module):
        raise ConversionError(
            f"activation must build an nn.Module (e.g. nn.ReLU), got {type(module).__name__}"
        )
    return module


def model_from_weights(
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
    activation: Activation = nn.ReLU,
    index: int = 0,
) -> nn.Sequential:
    """Model `index` of the batch as `Sequential(Linear, act, Linear, ..., act, Linear)`.

    `activation` is a module class or factory (called once per gap), a module instance
    (copied per gap) or None (Linear layers only). Dtype and device follow the tensors.
    """
    modules: list[nn.Module] = []
    pairs = _select(weights, biases, index)
    for m, (w, b) in enumerate(pairs):
        if m > 0:
            act = _activation_module(activation)
            if act is not None:
                modules.append(act)
        linear = nn.utils.skip_init(
            nn.Linear, w.shape[1], w.shape[0], device=w.device, dtype=w.dtype
        )
        with torch.no_grad():
            linear.weight.copy_(w)
            linear.bias.copy_(b)
        modules.append(linear)
    return nn.Sequential(*modules)


def module_from_weights(
    template: nn.Module,
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
    index: int = 0,
    example_input: object = None,
) -> nn.Module:
    """A copy of `template` holding model `index` of the batch (the inverse of
    `weights_from_models` for any module): the space's tensors written back into the
    parameters and buffers they came from (two or more axes from `weights`, one axis from
    `biases`, in the space's order). Dtype and device follow the tensors; `example_input` as
    `from_module` takes it."""
    trace = _trace(template, example_input)
    model = copy.deepcopy(template)
    space = trace.space
    names_w = [t.name for t in space.tensors if len(t.axes) >= 2]
    names_b = [t.name for t in space.tensors if len(t.axes) == 1]
    if len(weights) != len(names_w) or len(biases) != len(names_b):
        raise ConversionError(
            f"expected {len(names_w)} weights and {len(names_b)} biases (the tensors of the "
            f"space of {type(template).__name__}), got {len(weights)} and {len(biases)}"
        )
    given = dict(zip(names_w, weights, strict=True)) | dict(zip(names_b, biases, strict=True))
    kinds = {n: ("weights", i) for i, n in enumerate(names_w)}
    kinds |= {n: ("biases", i) for i, n in enumerate(names_b)}
    state = model.state_dict()
    fresh: dict[str, torch.Tensor] = {}
    for tensor, source in trace.sources:
        t = given[tensor]
        shape = space.shape(tensor)
        want = (t.shape[0] if t.dim() else 0, 1, *shape)
        if tuple(t.shape) != want or not -want[0] <= index < want[0]:
            kind, i = kinds[tensor]
            raise ConversionError(
                f"{kind}[{i}] ({source.state}): expected [B, 1, {', '.join(map(str, shape))}] "
                f"with index {index} in range, got shape {tuple(t.shape)}"
            )
        if source.state not in fresh:
            old = state[source.state]
            fresh[source.state] = torch.empty(old.shape, dtype=t.dtype, device=t.device)
        source.write(fresh[source.state], t[index, 0].detach())
    with torch.no_grad():
        for name, value in fresh.items():
            _assign(model, name, value)
    return model


def _assign(model: nn.Module, name: str, value: torch.Tensor) -> None:
    """Set a parameter's data or replace a buffer (dtype and device follow `value`)."""
    owner_name, _, leaf = name.rpartition(".")
    owner = model.get_submodule(owner_name) if owner_name else model
    if leaf in owner._parameters:
        owner._parameters[leaf].data = value
    else:
        owner._buffers[leaf] = value


def state_dict_from_weights(
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
    index: int = 0,
    names: Sequence[str] | None = None,
    template: nn.Module | None = None,
    example_input: object = None,
) -> OrderedDict[str, torch.Tensor]:
    """State_dict of model `index`: keys `{name}.weight`, `{name}.bias` per layer.

    Default names are those of `model_from_weights` with an activation ('0', '2', '4', ...);
    pass `layer_names(original)` to reproduce another model's keys. With `template` (any
    module the front end accepts), the template's state_dict holding model `index` (buffers
    the space does not cover, such as `num_batches_tracked`, are the template's);
    `example_input` as `from_module` takes it.
    """
    if template is not None:
        state = module_from_weights(template, weights, biases, index, example_input).state_dict()
        return OrderedDict((k, v.detach().clone()) for k, v in state.items())
    pairs = _select(weights, biases, index)
    if names is None:
        names = [str(2 * m) for m in range(len(pairs))]
    if len(names) != len(pairs):
        raise ConversionError(f"expected {len(pairs)} layer names, got {len(names)}")
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    for name, (w, b) in zip(names, pairs, strict=True):
        prefix = f"{name}." if name else ""
        state[prefix + "weight"] = w.detach().clone()
        state[prefix + "bias"] = b.detach().clone()
    return state
