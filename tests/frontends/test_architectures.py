"""Whole architectures written as their public definitions write them, end to end.

Each goes through `from_module` with the module check (random group elements applied to the
state leave the outputs unchanged), the converters (a round trip leaves the outputs
unchanged) and a `DWSNet` over the space. Each once crashed or was refused: a grouped
convolution added to a plain residual (a cut of an axis merged with an uncut one), ConvNeXt
(a size-1 factor in such a cut), MLP-Mixer (token mixing through transposes), a ViT (a class
token concatenated before the patches, plus a position embedding of the whole sequence),
a GPT block (a causal mask and positions made from the input's length, which torch.fx's
symbolic trace cannot follow), attention written by hand (sizes unpacked from the input, a
mask applied with masked_fill), an output layer tied to the embedding by assignment, a
cosine classifier (F.normalize), an encoder given a key padding mask, a CIFAR ResNet's
option-A shortcut (a strided slice, channels padded with zeros), pooling with indices, a
reflection pad, gated linear units, attention written with einsum and an EmbeddingBag
with offsets (integer inputs that mean something to the module).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dws_theory.convert import module_from_weights, weights_from_models
from dws_theory.frontends.module import from_module
from dws_theory.models import DWSNet
from dws_theory.spec import Kind


class ResNeXtBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 1)
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=4)
        self.bn = nn.BatchNorm2d(8)
        self.c3 = nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.c1(x))
        h = self.c3(F.relu(self.bn(self.grouped(h)))) + h
        return self.fc(F.relu(h).mean((2, 3)))


class ConvNeXt(nn.Module):
    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, dim, 4, stride=4)
        self.stem_norm = nn.LayerNorm(dim, eps=1e-6)
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(1e-6 * torch.ones(dim))
        self.head = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_norm(self.stem(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.gamma * self.pwconv2(F.gelu(self.pwconv1(self.norm(y))))
        x = x + y.permute(0, 3, 1, 2)
        return self.head(x.mean([-2, -1]))


class Mixer(nn.Module):
    def __init__(self, tokens: int = 4, dim: int = 6) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, dim, 2, 2)
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.tok = nn.Sequential(nn.Linear(tokens, 8), nn.GELU(), nn.Linear(8, tokens))
        self.ch = nn.Sequential(nn.Linear(dim, 12), nn.GELU(), nn.Linear(12, dim))
        self.head = nn.Linear(dim, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x).flatten(2).transpose(1, 2)
        x = x + self.tok(self.ln1(x).transpose(1, 2)).transpose(1, 2)
        x = x + self.ch(self.ln2(x))
        return self.head(x.mean(1))


class ViT(nn.Module):
    def __init__(self, d: int = 8, heads: int = 2) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, d, 4, 4)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.randn(1, 5, d) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d, heads, 16, dropout=0.0, batch_first=True, norm_first=True
        )
        self.enc = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        return self.head(self.norm(self.enc(x))[:, 0])


class GPT(nn.Module):
    def __init__(self, vocab: int = 11, d: int = 8, length: int = 6) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(length, d)
        self.ln1, self.ln2, self.ln_f = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, 2, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.head = nn.Linear(d, vocab, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        mask = torch.triu(torch.ones(t, t, dtype=torch.bool), 1)
        x = self.tok(idx) + self.pos(torch.arange(t))
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        x = x + self.mlp(self.ln2(x))
        return self.head(self.ln_f(x))


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class HandWrittenAttention(nn.Module):
    """Attention as nanoGPT-style code writes it: sizes unpacked from the input, heads by
    view and transpose, a causal mask applied with masked_fill."""

    def __init__(self, vocab: int = 10, d: int = 8, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.emb, self.norm = nn.Embedding(vocab, d), RMSNorm(d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.head = nn.Linear(d, vocab, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.emb(idx)
        h = self.norm(x)
        b, t, c = h.shape
        q, k, v = (
            proj(h).view(b, t, self.heads, c // self.heads).transpose(1, 2)
            for proj in (self.q, self.k, self.v)
        )
        att = (q @ k.transpose(-2, -1)) / (c // self.heads) ** 0.5
        mask = torch.tril(torch.ones(t, t)).view(1, 1, t, t)
        att = F.softmax(att.masked_fill(mask == 0, float("-inf")), dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(b, t, c)
        return self.head(x + self.o(y))


class BagClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.EmbeddingBag(30, 8, mode="mean")
        self.fc = nn.Linear(8, 4)

    def forward(self, text: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.fc(self.emb(text, offsets))


class TiedLM(nn.Module):
    """A language model whose output layer is its embedding, tied by assignment."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(12, 6)
        self.rnn = nn.GRU(6, 6, batch_first=True)
        self.head = nn.Linear(6, 12)
        self.head.weight = self.emb.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(self.emb(x))[0])


class Cosine(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.f = nn.Linear(4, 6)
        self.w = nn.Parameter(torch.randn(3, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(F.relu(self.f(x)), dim=-1) @ F.normalize(self.w, dim=-1).t()


class PaddedEncoder(nn.Module):
    """A tensor given as a key padding mask (compared by identity, never by value)."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(3, 8)
        layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 1, norm=nn.LayerNorm(8), enable_nested_tensor=False)
        self.out = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = torch.zeros(x.shape[0], x.shape[1], dtype=torch.bool)
        return self.out(self.enc(self.inp(x), src_key_padding_mask=pad).mean(1))


class OptionA(nn.Module):
    """A CIFAR ResNet stage whose shortcut halves the grid by a strided slice and pads the
    channels with zeros (the option-A shortcut), then max pooling with its indices and a
    reflection pad."""

    def __init__(self) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(3, 4, 3, 1, 1, bias=False)
        self.conv1 = nn.Conv2d(4, 8, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, 1, 1, bias=False)
        self.pool = nn.MaxPool2d(2, return_indices=True)
        self.pad = nn.ReflectionPad2d(1)
        self.linear = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv0(x))
        out = self.conv2(F.relu(self.bn1(self.conv1(x))))
        out = F.relu(out + F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 2, 2), "constant", 0))
        out, _ = self.pool(out)
        out = self.pad(out)
        out = F.avg_pool2d(out, out.size()[3])
        return self.linear(out.view(out.size(0), -1))


class GatedConv(nn.Module):
    """Gated linear units (nn.GLU over channels, F.glu over features)."""

    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv1d(3, 8, 3, padding=1)
        self.glu = nn.GLU(dim=1)
        self.a = nn.Linear(4, 6)
        self.out = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.glu(self.c(x)).mean(-1)
        return self.out(F.glu(self.a(h), dim=-1))


class EinsumAttention(nn.Module):
    """Attention written with einsum: q, k, v unbound from one projection, scores, values,
    and an output projection as a parameter contracted over (heads, dims)."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(6, 18)
        self.proj = nn.Parameter(torch.randn(2, 3, 6) * 0.3)
        self.w = nn.Parameter(torch.randn(6, 5) * 0.3)
        self.out = nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, 2, 3).unbind(2)
        att = torch.einsum("bihd,bjhd->bhij", q, k).softmax(-1)
        y = torch.einsum("bihd,hde->bie", torch.einsum("bhij,bjhd->bihd", att, v), self.proj)
        return self.out(torch.tanh(torch.einsum("...i,ij->...j", y, self.w)).mean(1))


CASES = {
    "resnext": (ResNeXtBlock, lambda: torch.randn(2, 3, 6, 6)),
    "convnext": (ConvNeXt, lambda: torch.randn(2, 3, 8, 8)),
    "mixer": (Mixer, lambda: torch.randn(2, 1, 4, 4)),
    "vit": (ViT, lambda: torch.randn(2, 3, 8, 8)),
    "gpt": (GPT, lambda: torch.randint(0, 11, (2, 6))),
    "attention": (HandWrittenAttention, lambda: torch.randint(0, 10, (2, 5))),
    "tied": (TiedLM, lambda: torch.randint(0, 12, (2, 5))),
    "cosine": (Cosine, lambda: torch.randn(2, 4)),
    "padded": (PaddedEncoder, lambda: torch.randn(2, 5, 3)),
    "option-a": (OptionA, lambda: torch.randn(2, 3, 8, 8)),
    "glu": (GatedConv, lambda: torch.randn(2, 3, 6)),
    "einsum": (EinsumAttention, lambda: torch.randn(2, 4, 6)),
    "bag": (BagClassifier, lambda: (torch.randint(0, 30, (10,)), torch.tensor([0, 4]))),
}


def _floats(x: object) -> tuple[torch.Tensor, ...]:
    items = x if isinstance(x, tuple) else (x,)
    return tuple(t.double() if t.is_floating_point() else t for t in items)


@pytest.mark.parametrize("name", list(CASES))
def test_architecture_end_to_end(name: str) -> None:
    torch.manual_seed(0)
    make, example = CASES[name]
    module = make().double().eval()
    inputs = _floats(example())
    given = inputs if len(inputs) > 1 else inputs[0]
    space = from_module(module, "hidden", example_input=given)  # the module check included
    assert any(s.kind is Kind.PERMUTED for s in space.sets)
    other = make().double().eval()
    weights, biases = weights_from_models([module, other], example_input=given)
    assert sum(t[0].numel() for t in [*weights, *biases]) == space.dimension
    back = module_from_weights(module, weights, biases, 1, example_input=given).eval()
    with torch.no_grad():
        assert torch.allclose(back(*inputs), other(*inputs))
    net = DWSNet(space, hidden_channels=2, num_layers=1, out_features=3).double()
    assert net(weights, biases).shape == (2, 3)


def test_a_gpt_traced_beside_its_input_is_fixed_to_that_length() -> None:
    """The causal mask is made from the example's length: the token axis is fixed, and a
    group element that moved tokens would change the output (so none is claimed)."""
    space = from_module(GPT().double(), example_input=torch.randint(0, 11, (2, 6)))
    vocab_or_tokens = [s for s in space.sets if s.size in (11, 6)]
    assert vocab_or_tokens and all(s.kind is Kind.FIXED for s in vocab_or_tokens)


def test_multi_input_modules_need_their_example_in_the_converters() -> None:
    from dws_theory.convert import ConversionError

    with pytest.raises(ConversionError, match="forward takes 2 inputs"):
        weights_from_models([BagClassifier()])


def test_a_parametrized_weight_is_refused_with_the_way_out() -> None:
    from dws_theory.spec import SpecError

    model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    model[0] = nn.utils.parametrizations.weight_norm(model[0])
    with pytest.raises(SpecError, match="remove_parametrizations"):
        from_module(model)


def test_normalize_is_odd_in_signed_mode() -> None:
    """The module check in `signed` mode flips neurons of the normalised axis and passes;
    behind a ReLU the same neurons are only permuted."""
    odd = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 6))

    class Normalized(nn.Module):
        def __init__(self, body: nn.Module) -> None:
            super().__init__()
            self.body, self.out = body, nn.Linear(6, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(F.normalize(self.body(x), dim=-1))

    kinds = [s.kind for s in from_module(Normalized(odd).double(), "signed").sets]
    assert kinds.count(Kind.SIGNED) == 2
    kinds = [s.kind for s in from_module(Cosine().double(), "signed").sets]
    assert Kind.SIGNED not in kinds and Kind.PERMUTED in kinds


def test_channels_padded_with_zeros_are_sets_of_their_own() -> None:
    """The option-A shortcut adds x (4 channels) into the middle of 8: the block's channels
    are [2 | 4 | 2], the middle merged with x's set, the outer two permuted on their own."""
    space = from_module(OptionA().double())
    moving = sorted(s.size for s in space.sets if s.kind is Kind.PERMUTED)
    assert moving == [2, 2, 4, 8]


@pytest.mark.parametrize("mode", ["hidden", "signed", "all"])
def test_einsum_in_every_mode(mode: str) -> None:
    """The module check passes in each mode: the pieces unbind chooses and the products of
    activations are not odd; an activation times a parameter is (the tanh's input set is
    signed, the attention's sets are not)."""
    x = torch.randn(2, 4, 6, dtype=torch.float64)
    space = from_module(EinsumAttention().double(), mode, example_input=x)
    kinds = {s.size: s.kind for s in space.sets if s.kind is not Kind.FIXED}
    if mode == "signed":
        assert kinds[5] is Kind.SIGNED and kinds[2] is Kind.PERMUTED and kinds[3] is Kind.PERMUTED
