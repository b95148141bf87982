"""An example input for a module: given by the user, or made from its first layer.

The trace runs the module once, so it needs an input of the right shape. `example_inputs`
takes the user's (`example_input=`, `--input-shape`) or makes one from the first layer the
graph calls: a Linear `[2, in]` (then `[2, t, in]` for a few token counts t), a convolution
`[2, C, s, ...]` for the first spatial size s every later layer accepts, an Embedding integer
tokens `[2, t]`, a norm layer its normalised shape. Each candidate is run once through the
module (in eval mode, without gradients); the first that runs is the example.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import torch
from torch import fx, nn

from ..spec import SpecError

__all__ = ["batch_axis", "example_inputs"]

BATCH = 2
SPATIAL_SIZES = (
    8,
    16,
    32,
    28,
    64,
    4,
    5,
    6,
    7,
    3,
    2,
    1,
    9,
    10,
    11,
    12,
    13,
    14,
    15,
    24,
    48,
    96,
    128,
    224,
    256,
)
TOKENS = (5, 3, 4, 2, 6, 8, 16, 1, 7, 10, 12, 32)

_CONV = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)
_SEQUENCE = (
    nn.MultiheadAttention,
    nn.TransformerEncoderLayer,
    nn.TransformerDecoderLayer,
    nn.TransformerEncoder,
    nn.TransformerDecoder,
    nn.Transformer,
    nn.RNN,
    nn.LSTM,
    nn.GRU,
)
_NORM_SPATIAL = {
    nn.BatchNorm2d: 2,
    nn.BatchNorm3d: 3,
    nn.InstanceNorm1d: 1,
    nn.InstanceNorm2d: 2,
    nn.InstanceNorm3d: 3,
}


def _first_layer(graph_module: fx.GraphModule | nn.Module) -> nn.Module | None:
    """The first layer the graph calls; for a module fx could not trace, the first one it
    registers."""
    if not isinstance(graph_module, fx.GraphModule):
        return next((m for m in graph_module.modules() if _known_first(m)), None)
    for node in graph_module.graph.nodes:
        if node.op == "call_module":
            sub = graph_module.get_submodule(node.target)
            if _known_first(sub):
                return sub
        if node.op == "get_attr":
            return None  # a functional layer first: its weight tells little; ask the user
    return None


def _known_first(sub: nn.Module) -> bool:
    """A layer an example input can be made for."""
    return isinstance(
        sub,
        (nn.Linear, nn.Embedding, nn.EmbeddingBag, nn.LayerNorm, nn.Bilinear)
        + _CONV
        + _SEQUENCE
        + (nn.modules.batchnorm._NormBase,),
    )


def _dtype(module: nn.Module) -> torch.dtype:
    for p in module.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.get_default_dtype()


def _width_and_order(first: nn.Module) -> tuple[int, bool]:
    """(input width, batch first) of a sequence layer."""
    if isinstance(first, nn.RNN | nn.LSTM | nn.GRU):
        return first.input_size, first.batch_first
    if isinstance(first, nn.MultiheadAttention):
        return first.embed_dim, first.batch_first
    layer = first
    if isinstance(first, nn.Transformer):
        layer = first.encoder.layers[0]
    elif isinstance(first, nn.TransformerEncoder | nn.TransformerDecoder):
        layer = first.layers[0]
    return layer.self_attn.embed_dim, layer.self_attn.batch_first


def batch_axis(graph_module: fx.GraphModule) -> int:
    """Where the batch is in the input: 1 for a sequence layer without batch_first (inputs
    [T, B, E]), else 0."""
    first = _first_layer(graph_module)
    if first is not None and isinstance(first, _SEQUENCE):
        return 0 if _width_and_order(first)[1] else 1
    return 0


def _candidates(
    first: nn.Module, dtype: torch.dtype, arity: int
) -> Iterator[tuple[torch.Tensor, ...]]:
    gen = torch.Generator().manual_seed(0)

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=gen, dtype=dtype)

    if isinstance(first, _SEQUENCE):
        width, batch_first = _width_and_order(first)
        widths = [width] * arity
        if isinstance(first, nn.MultiheadAttention):  # query, key, value of their own widths
            widths = [first.embed_dim, first.kdim, first.vdim][:arity]
        for t in TOKENS:
            shapes = [(BATCH, t, w) if batch_first else (t, BATCH, w) for w in widths]
            same = len(set(shapes)) == 1
            first_input = normal(*shapes[0])
            yield tuple(first_input if same else normal(*shape) for shape in shapes)
    elif isinstance(first, nn.Linear):
        yield (normal(BATCH, first.in_features),)
        for t in TOKENS:
            yield (normal(BATCH, t, first.in_features),)
    elif isinstance(first, nn.Embedding | nn.EmbeddingBag):
        for t in TOKENS:
            yield (torch.randint(0, first.num_embeddings, (BATCH, t), generator=gen),)
    elif isinstance(first, _CONV):
        dims = first.weight.dim() - 2
        for s in SPATIAL_SIZES:
            yield (normal(BATCH, first.in_channels, *(s,) * dims),)
    elif isinstance(first, nn.LayerNorm):
        shape = tuple(first.normalized_shape)
        yield (normal(BATCH, *shape),)
        for t in TOKENS:
            yield (normal(BATCH, t, *shape),)
    elif isinstance(first, nn.modules.batchnorm._NormBase):
        dims = _NORM_SPATIAL.get(type(first))
        channels = first.num_features
        if dims is None:
            yield (normal(BATCH, channels),)
            for t in TOKENS:
                yield (normal(BATCH, channels, t),)
        else:
            for s in SPATIAL_SIZES:
                yield (normal(BATCH, channels, *(s,) * dims),)


def _runs(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> bool:
    try:
        with torch.no_grad():
            module(*inputs)
    except (RuntimeError, ValueError, IndexError, TypeError, AssertionError):
        return False
    return True


def _as_tuple(example: object) -> tuple[torch.Tensor, ...]:
    items = example if isinstance(example, tuple | list) else (example,)
    if not items or not all(isinstance(x, torch.Tensor) for x in items):
        raise SpecError(
            "from_module: expected example_input to be a tensor or a tuple of tensors, got "
            f"{type(example).__name__}"
        )
    return tuple(items)


def _arity(graph_module: nn.Module) -> int:
    """Inputs of forward: the graph's placeholders, or forward's required arguments."""
    if isinstance(graph_module, fx.GraphModule):
        return sum(n.op == "placeholder" for n in graph_module.graph.nodes)
    params = inspect.signature(graph_module.forward).parameters.values()
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(p.kind in positional and p.default is inspect.Parameter.empty for p in params)


def example_inputs(
    module: nn.Module, graph_module: fx.GraphModule | None, example: object = None
) -> Iterator[tuple[torch.Tensor, ...]]:
    """The inputs the trace may run on, in order: the user's alone, else every candidate made
    from the first layer that the module runs on (the trace takes the first one it can
    follow: `[2, d]` may run a token model by accident, reading the batch as tokens)."""
    if example is not None:
        inputs = _as_tuple(example)
        if not _runs(module, inputs):
            shapes = ", ".join(str(list(x.shape)) for x in inputs)
            raise SpecError(f"from_module: the module does not run on the example input {shapes}")
        yield inputs
        return
    first = _first_layer(module if graph_module is None else graph_module)
    sequence = isinstance(first, _SEQUENCE)
    placeholders = _arity(module if graph_module is None else graph_module)
    if placeholders != 1 and not sequence:
        raise SpecError(
            f"from_module: forward takes {placeholders} inputs; pass example_input= (a tuple "
            "of tensors) or --input-shape"
        )
    if first is None:
        raise SpecError(
            "from_module: cannot make an example input (the first layer is not a Linear, "
            "convolution, Embedding or norm layer); pass example_input= or --input-shape"
        )
    found = False
    for inputs in _candidates(first, _dtype(module), placeholders):
        if _runs(module, inputs):
            found = True
            yield inputs
    if not found:
        raise SpecError(
            f"from_module: no input made from the first layer ({type(first).__name__}) runs "
            "the module; pass example_input= or --input-shape"
        )
