"""Layers of sequence models: attention, transformer layers and recurrent nets.

torch.fx cannot trace into these modules (their forwards branch on fast paths), so each is
one call whose layout is derived here from what the module computes:

- **Multi-head attention.** Heads move as wholes (one set `heads`), and inside each head its
  query and key dims share one permutation (a set nested in the heads: the scores
  q . k do not change), its value dims and the output projection's inputs another (nested
  too): (S_d x S_d) wr S_H. `in_proj_weight` [3E, E] is split into its query, key and value
  rows, each viewed as [H, d, E]; the output projection's input axis as [H, d]. Attention
  also has a continuous GL(d) symmetry between queries and keys; leaving it out is a
  subgroup, which is safe. Masks pin the token axes (positions then matter).
- **Transformer encoder and decoder layers** (and stacks of them): attention, the residual
  stream (one set through every addition), layer norms on it, the feed-forward net.
- **RNN, LSTM, GRU** (any number of layers, either direction, `batch_first` either way,
  LSTM projections): each gate block of `weight_ih`, `weight_hh` and both biases is viewed
  as (gate: fixed) x (hidden: one set), so one permutation moves the hidden units of every
  gate together with the recurrent weight's input axis. A tanh RNN is odd (signed in mode
  `signed`); gated nets are not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .layout import Axis, Factor
from .values import Call, Layout, Stacked, Traced

if TYPE_CHECKING:
    from .module import Tracer

__all__ = ["attention", "recurrent", "transformer", "RECURRENT", "TRANSFORMER_LAYERS"]

RECURRENT = (nn.RNN, nn.LSTM, nn.GRU)
TRANSFORMER_LAYERS = (
    nn.TransformerEncoderLayer,
    nn.TransformerDecoderLayer,
    nn.TransformerEncoder,
    nn.TransformerDecoder,
    nn.Transformer,
)


def _factor(axis: Axis) -> Factor:
    return axis[0][0]


def _channel(t: Tracer, call: Call, value: object, what: str) -> Traced:
    if not isinstance(value, Traced):
        raise t.fail(call, f"expected a traced tensor as the {what}, got {type(value).__name__}")
    return value


def _state(t: Tracer, call: Call, prefix: str, name: str) -> Traced | None:
    full = t.state_name(f"{prefix}{name}")
    if full not in t.state:
        return None
    return t.read_state(call.node, full)


# -- attention -----------------------------------------------------------------------------------
def _heads(t: Tracer, where: str, heads: int, dims: int) -> tuple[Axis, Axis]:
    """Fresh (heads, query/key dims) and (heads, value dims) axes, the dims nested."""
    head = _factor(t.fresh(f"heads of {where}", heads))
    qk = _factor(t.fresh(f"query/key dims of {where}", dims))
    v = _factor(t.fresh(f"value dims of {where}", dims))
    t.slots.nest(qk.slot, head.slot)
    t.slots.nest(v.slot, head.slot)
    return ((head, qk),), ((head, v),)


def _attention_core(
    t: Tracer,
    call: Call,
    module: nn.MultiheadAttention,
    prefix: str,
    query: Axis,
    key: Axis,
    value: Axis,
) -> Axis:
    """The sets of one attention module reading channel axes query, key, value; returns the
    output projection's output axis."""
    heads, dims = module.num_heads, module.head_dim
    qk, v = _heads(t, prefix or call.node.name, heads, dims)
    if module._qkv_same_embed_dim:
        weight = _state(t, call, prefix, "in_proj_weight")
        rows = t.slots.split_slot(
            _factor(t.slots.expand(weight.layout[0])).slot, [(heads, dims)] * 3
        )
        for part, blocks in zip(rows, (qk, qk, v), strict=True):
            t.slots.merge_axes((part,), blocks)
        for source in (query, key, value):  # one parameter reads all three
            t.bind(call, weight.layout[1], source)
        t.role(weight, (1, -1))
    else:
        for name, blocks, source in (
            ("q_proj_weight", qk, query),
            ("k_proj_weight", qk, key),
            ("v_proj_weight", v, value),
        ):
            weight = _state(t, call, prefix, name)
            t.bind(call, weight.layout[0], blocks)
            t.bind(call, weight.layout[1], source)
            t.role(weight, (1, -1))
    bias = _state(t, call, prefix, "in_proj_bias")
    if bias is not None:
        rows = t.slots.split_slot(_factor(t.slots.expand(bias.layout[0])).slot, [(heads, dims)] * 3)
        for part, blocks in zip(rows, (qk, qk, v), strict=True):
            t.slots.merge_axes((part,), blocks)
        t.role(bias, (1,))
    for name, blocks in (("bias_k", qk), ("bias_v", v)):
        extra = _state(t, call, prefix, name)
        if extra is not None:  # [1, 1, E]: a learned key / value appended to every sequence
            t.broadcast(extra.layout[0])
            t.broadcast(extra.layout[1])
            t.bind(call, extra.layout[2], blocks)
            t.role(extra, (0, 0, 1))
    out = _state(t, call, prefix + "out_proj.", "weight")
    t.bind(call, out.layout[1], v)
    t.meet(out.layout[0])
    t.role(out, (1, -1))
    out_bias = _state(t, call, prefix + "out_proj.", "bias")
    if out_bias is not None:
        t.bind(call, out_bias.layout[0], out.layout[0])
        t.role(out_bias, (1,))
    t.touch((((qk[0][0],),),), False, False, "attention heads (softmax per head)")
    t.touch((((qk[0][1],),),), True, False, "query . key (even in a joint sign flip)")
    return out.layout[0]


def _tokens(t: Tracer, query: Traced, key: Traced, value: Traced, batch_first: bool) -> None:
    """Keys and values come in one sequence: their batch and token axes merge; the query's
    batch axis too."""
    if len(key.layout) == 3:
        t.slots.merge_axes(key.layout[0], value.layout[0])
        t.slots.merge_axes(key.layout[1], value.layout[1])
        batch = 0 if batch_first else 1
        t.slots.merge_axes(query.layout[batch], key.layout[batch])
    elif len(key.layout) == 2:
        t.slots.merge_axes(key.layout[0], value.layout[0])


def _pin_tokens(t: Tracer, call: Call, *values: Traced, batch_first: bool = True) -> None:
    """A mask or causal attention ties the tokens' positions: their axes become fixed."""
    for x in values:
        if len(x.layout) == 3:
            t.pin(x.layout[1 if batch_first else 0], f"the attention mask of {call.node.name}")
        elif len(x.layout) == 2:
            t.pin(x.layout[0], f"the attention mask of {call.node.name}")


def _masked(call: Call, *names: str) -> bool:
    masks = [call.kwargs.get(n) for n in names]
    return any(m is not None and m is not False for m in masks)


def attention(t: Tracer, call: Call) -> object:
    """nn.MultiheadAttention(query, key, value, ...): (output, weights or None)."""
    module: nn.MultiheadAttention = call.target
    query = _channel(t, call, call.arg(0, "query"), "query")
    key = _channel(t, call, call.arg(1, "key"), "key")
    value = _channel(t, call, call.arg(2, "value"), "value")
    prefix = f"{call.node.target}."
    _tokens(t, query, key, value, module.batch_first)
    out = _attention_core(
        t, call, module, prefix, query.layout[-1], key.layout[-1], value.layout[-1]
    )
    extra = [v for v in call.args[3:] if v is not None and v is not False]
    if extra or _masked(call, "key_padding_mask", "attn_mask", "is_causal"):
        _pin_tokens(t, call, query, key, batch_first=module.batch_first)
    output, weights = call.out
    traced = Traced(output, query.layout[:-1] + (out,))
    if weights is None:
        return (traced, None)
    lead = query.layout[:-1]
    keys = key.layout[1 if module.batch_first else 0] if len(key.layout) == 3 else key.layout[0]
    fresh = tuple(t.fresh(f"axis of {call.node.name}", s) for s in weights.shape)
    return (traced, Traced(weights, fresh if weights.dim() != len(lead) + 1 else lead + (keys,)))


# -- transformer layers ----------------------------------------------------------------------------
def _norm(t: Tracer, call: Call, prefix: str, stream: Axis) -> None:
    for name in ("weight", "bias"):
        s = _state(t, call, prefix, name)
        if s is not None:
            t.bind(call, s.layout[0], stream)
            t.role(s, (0,))
    t.touch((stream,), False, False, f"{prefix[:-1]} (layer norm)")


def _feed_forward(t: Tracer, call: Call, layer: nn.Module, prefix: str, stream: Axis) -> None:
    first = _state(t, call, prefix + "linear1.", "weight")
    t.bind(call, first.layout[1], stream)
    t.meet(first.layout[0])
    t.role(first, (1, -1))
    bias = _state(t, call, prefix + "linear1.", "bias")
    if bias is not None:
        t.bind(call, bias.layout[0], first.layout[0])
        t.role(bias, (1,))
    odd, homogeneous = _activation(layer.activation)
    t.touch((first.layout[0],), odd, homogeneous, f"{prefix}activation")
    second = _state(t, call, prefix + "linear2.", "weight")
    t.bind(call, second.layout[1], first.layout[0])
    t.bind(call, second.layout[0], stream)
    t.role(second, (1, -1))
    bias = _state(t, call, prefix + "linear2.", "bias")
    if bias is not None:
        t.bind(call, bias.layout[0], stream)
        t.role(bias, (1,))


def _activation(activation: object) -> tuple[bool, bool]:
    """(odd, homogeneous) of a feed-forward activation (a function or a module)."""
    if activation in (F.relu, torch.relu) or isinstance(activation, nn.ReLU):
        return False, True
    if activation in (torch.tanh, F.tanh) or isinstance(activation, nn.Tanh):
        return True, False
    return False, False


def _encoder_layer(t: Tracer, call: Call, layer: nn.Module, prefix: str, stream: Axis) -> None:
    out = _attention_core(t, call, layer.self_attn, prefix + "self_attn.", stream, stream, stream)
    t.slots.merge_axes(out, stream)  # the residual addition
    _norm(t, call, prefix + "norm1.", stream)
    _feed_forward(t, call, layer, prefix, stream)
    _norm(t, call, prefix + "norm2.", stream)


def _decoder_layer(
    t: Tracer, call: Call, layer: nn.Module, prefix: str, stream: Axis, memory: Axis
) -> None:
    out = _attention_core(t, call, layer.self_attn, prefix + "self_attn.", stream, stream, stream)
    t.slots.merge_axes(out, stream)
    _norm(t, call, prefix + "norm1.", stream)
    attn = layer.multihead_attn
    out = _attention_core(t, call, attn, prefix + "multihead_attn.", stream, memory, memory)
    t.slots.merge_axes(out, stream)
    _norm(t, call, prefix + "norm2.", stream)
    _feed_forward(t, call, layer, prefix, stream)
    _norm(t, call, prefix + "norm3.", stream)


def _stack(
    t: Tracer, call: Call, stack: nn.Module, prefix: str, stream: Axis, memory: Axis | None
) -> None:
    for i, layer in enumerate(stack.layers):
        if memory is None:
            _encoder_layer(t, call, layer, f"{prefix}layers.{i}.", stream)
        else:
            _decoder_layer(t, call, layer, f"{prefix}layers.{i}.", stream, memory)
    if stack.norm is not None:
        _norm(t, call, f"{prefix}norm.", stream)


def transformer(t: Tracer, call: Call) -> Traced:
    """Encoder or decoder layers, stacks of them, or nn.Transformer: the residual stream is
    one set through every layer (norms, attention outputs and feed-forward outputs on it)."""
    module = call.target
    prefix = f"{call.node.target}."
    first = _channel(t, call, call.arg(0, "src" if _is_encoder(module) else "tgt"), "input")
    stream = first.layout[-1]
    batch_first = getattr(module, "batch_first", True)
    if isinstance(module, nn.TransformerEncoderLayer):
        _encoder_layer(t, call, module, prefix, stream)
    elif isinstance(module, nn.TransformerEncoder):
        _stack(t, call, module, prefix, stream, None)
        batch_first = module.layers[0].self_attn.batch_first if module.layers else True
    else:
        memory_value = call.arg(1, "memory" if not isinstance(module, nn.Transformer) else "tgt")
        second = _channel(t, call, memory_value, "second input")
        if isinstance(module, nn.Transformer):  # (src, tgt): the encoder's stream is memory
            source, first = first, second
            stream = first.layout[-1]
            memory = source.layout[-1]
            _stack(t, call, module.encoder, prefix + "encoder.", memory, None)
            _stack(t, call, module.decoder, prefix + "decoder.", stream, memory)
        elif isinstance(module, nn.TransformerDecoderLayer):
            _decoder_layer(t, call, module, prefix, stream, second.layout[-1])
        else:
            _stack(t, call, module, prefix, stream, second.layout[-1])
    masked = [n for n in call.kwargs if "mask" in n or n.endswith("is_causal")]
    extra = call.args[1 if _is_encoder(module) and not isinstance(module, nn.Transformer) else 2 :]
    given = [*extra, *(call.kwargs.get(n) for n in masked)]  # tensors: compared by identity
    if any(v is not None and v is not False for v in given):
        _pin_tokens(t, call, first, batch_first=batch_first)
    return Traced(call.out, first.layout[:-1] + (stream,))


def _is_encoder(module: nn.Module) -> bool:
    return isinstance(module, nn.TransformerEncoderLayer | nn.TransformerEncoder | nn.Transformer)


# -- recurrent nets --------------------------------------------------------------------------------
_GATES = {nn.RNN: 1, nn.LSTM: 4, nn.GRU: 3}


def _recurrent_rule(module: nn.Module) -> tuple[bool, bool]:
    if isinstance(module, nn.RNN) and not isinstance(module, nn.LSTM | nn.GRU):
        return (True, False) if module.nonlinearity == "tanh" else (False, True)
    return False, False


def _gated(t: Tracer, where: str, gates: int, hidden: Axis) -> Axis:
    """(gate: fixed, hidden) for a fused axis of gates * hidden; hidden alone for one gate."""
    if gates == 1:
        return hidden
    gate = _factor(t.fresh(f"gates of {where}", gates, "positional"))
    return ((gate, _factor(hidden)),)


def recurrent(t: Tracer, call: Call) -> object:
    """nn.RNN / LSTM / GRU(input, h0): (output, h_n) or (output, (h_n, c_n))."""
    module = call.target
    x = _channel(t, call, call.arg(0, "input"), "input")
    prefix = f"{call.node.target}."
    gates = _GATES[type(module)] if type(module) in _GATES else _GATES[_base(module)]
    directions = 2 if module.bidirectional else 1
    projection = getattr(module, "proj_size", 0)
    odd, homogeneous = _recurrent_rule(module)
    layer_in: Axis = x.layout[-1]
    finals: list[Axis] = []
    cells: list[Axis] = []
    for layer in range(module.num_layers):
        outputs: list[Axis] = []
        for direction in range(directions):
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            where = f"{call.node.name} layer {layer}{' reverse' if direction else ''}"
            hidden = t.fresh(f"hidden units of {where}", module.hidden_size)
            fused = _gated(t, where, gates, hidden)
            recurrent_in = (
                t.fresh(f"projected hidden units of {where}", projection) if projection else hidden
            )
            weight = _state(t, call, prefix, f"weight_ih{suffix}")
            t.bind(call, weight.layout[0], fused)
            t.bind(call, weight.layout[1], layer_in)
            t.role(weight, (1, -1))
            weight = _state(t, call, prefix, f"weight_hh{suffix}")
            t.bind(call, weight.layout[0], fused)
            t.bind(call, weight.layout[1], recurrent_in)
            t.role(weight, (1, -1))
            for name in ("bias_ih", "bias_hh"):
                bias = _state(t, call, prefix, f"{name}{suffix}")
                if bias is not None:
                    t.bind(call, bias.layout[0], fused)
                    t.role(bias, (1,))
            if projection:
                weight = _state(t, call, prefix, f"weight_hr{suffix}")
                t.bind(call, weight.layout[0], recurrent_in)
                t.bind(call, weight.layout[1], hidden)
                t.role(weight, (1, -1))
                t.touch((recurrent_in,), False, False, f"{where} (projected)")
            t.touch((hidden,), odd, homogeneous, where)
            outputs.append(recurrent_in)
            finals.append(recurrent_in)
            cells.append(hidden)
        layer_in = tuple(part for axis in outputs for part in t.slots.expand(axis))
    _initial_state(t, call)
    output = call.out[0]
    traced = Traced(output, x.layout[:-1] + (layer_in,))
    batch = _batch_layout(x, module)
    states = call.out[1]
    if isinstance(module, nn.LSTM):
        h_n, c_n = states
        return (
            traced,
            (_stacked(t, call, h_n, batch, finals), _stacked(t, call, c_n, batch, cells)),
        )
    return (traced, _stacked(t, call, states, batch, finals))


def _base(module: nn.Module) -> type:
    for cls in type(module).__mro__:
        if cls in _GATES:
            return cls
    raise KeyError(type(module).__name__)


def _batch_layout(x: Traced, module: nn.Module) -> Layout:
    if len(x.layout) == 2:  # an unbatched sequence [T, in]
        return ()
    return (x.layout[0 if module.batch_first else 1],)


def _stacked(t: Tracer, call: Call, value: torch.Tensor, batch: Layout, sets: list[Axis]) -> object:
    """Final states [layers * directions, (batch,) hidden]: one entry per layer and direction,
    each with its own set; a single entry is a plain tensor with a size-1 first axis."""
    entries = tuple(batch + (axis,) for axis in sets)
    if len(entries) == 1:
        return Traced(value, (t.fresh(f"layers of {call.node.name}", 1, "broadcast"),) + entries[0])
    return Stacked(value, entries)


def _initial_state(t: Tracer, call: Call) -> None:
    """An initial state given as a traced tensor would need one set per stacked entry: read
    only where it is a plain (untraced) tensor, such as zeros."""
    initial = call.arg(1, "hx")
    if isinstance(initial, Traced | Stacked) or (
        isinstance(initial, tuple) and any(isinstance(v, Traced | Stacked) for v in initial)
    ):
        raise t.fail(call, "an initial state computed from the input or the weights")
