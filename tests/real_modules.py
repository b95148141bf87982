"""Small instances of the layers real networks are made of, written as users write them.

Each builder takes a hypothesis `draw` (or fixed sizes) and returns an `nn.Module` holding
one kind of layer in context: batch norm after a convolution, a layer norm on tokens, an
embedding bag, depthwise and transposed convolutions, upsampling, a U-Net skip (channel
concatenation), LeNet's flatten of positions, a DeepSets sum over the set axis, PReLU,
pixel shuffle; and small whole networks (a ResNet with batch norm, a VGG-style net). The
activations are SiLU (not odd, no dead zone) or tanh (odd) so that every parameter matters
on random inputs.
"""

from __future__ import annotations

import torch
from torch import nn

from dws_theory.examples import ResNet, resnet18  # noqa: F401  (re-exported for tests)


def act(odd: bool) -> nn.Module:
    return nn.Tanh() if odd else nn.SiLU()


class ConvBN(nn.Module):
    def __init__(self, c_in: int, c: int, out: int, odd: bool, dims: int = 2) -> None:
        super().__init__()
        conv = {1: nn.Conv1d, 2: nn.Conv2d}[dims]
        norm = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}[dims]
        pool = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d}[dims]
        self.body = nn.Sequential(conv(c_in, c, 3, padding=1), norm(c), act(odd), pool(1))
        self.head = nn.Linear(c, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.body(x), 1))


class TokenNorm(nn.Module):
    """Per-token Linear, LayerNorm over features, mean over tokens, a head."""

    def __init__(self, d_in: int, c: int, out: int, odd: bool) -> None:
        super().__init__()
        self.proj = nn.Linear(d_in, c)
        self.norm = nn.LayerNorm(c)
        self.act = act(odd)
        self.head = nn.Linear(c, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.norm(self.proj(x))).mean(dim=1))


class Bag(nn.Module):
    def __init__(self, vocab: int, c: int, out: int, odd: bool, bag: bool) -> None:
        super().__init__()
        self.embed = nn.EmbeddingBag(vocab, c, mode="mean") if bag else nn.Embedding(vocab, c)
        self.bag = bag
        self.act = act(odd)
        self.head = nn.Linear(c, out)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens)
        h = h if self.bag else h.sum(dim=1)
        return self.head(self.act(h))


class Depthwise(nn.Module):
    """A MobileNet block: pointwise, depthwise (with a channel multiplier), pointwise."""

    def __init__(self, c_in: int, c: int, multiplier: int, out: int, odd: bool) -> None:
        super().__init__()
        self.expand = nn.Conv2d(c_in, c, 1)
        self.depthwise = nn.Conv2d(c, c * multiplier, 3, padding=1, groups=c)
        self.project = nn.Conv2d(c * multiplier, out, 1)
        self.act = act(odd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.depthwise(self.act(self.expand(x))))
        return self.project(h).mean(dim=(2, 3))


class UNet(nn.Module):
    """Down, up (transposed convolution), a skip joined by concatenation, upsampling."""

    def __init__(self, c_in: int, c: int, out: int, odd: bool) -> None:
        super().__init__()
        self.down = nn.Conv2d(c_in, c, 3, padding=1)
        self.inner = nn.Conv2d(c, c + 1, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(c + 1, c, 2, stride=2)
        self.fuse = nn.Conv2d(2 * c, c, 3, padding=1)
        self.resize = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.out = nn.Conv2d(c, out, 1)
        self.act = act(odd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.act(self.down(x))
        h = self.act(self.up(self.act(self.inner(skip))))
        h = self.act(self.fuse(torch.cat([h, skip], dim=1)))
        return self.out(self.resize(h))


class LeNet(nn.Module):
    """Convolutions, pooling, then a flatten of positions into the first Linear's features."""

    def __init__(self, c_in: int, c: int, out: int, odd: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c, 3)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(c * 2 * 2, 5)
        self.fc2 = nn.Linear(5, out)
        self.act = act(odd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, c_in, 6, 6]
        h = self.pool(self.act(self.conv(x)))  # [B, c, 2, 2]
        return self.fc2(self.act(self.fc1(h.view(h.size(0), -1))))


class DeepSets(nn.Module):
    """phi on every element, a sum over the set axis, rho."""

    def __init__(self, d_in: int, c: int, out: int, odd: bool) -> None:
        super().__init__()
        self.phi = nn.Sequential(nn.Linear(d_in, c), act(odd), nn.Linear(c, c))
        self.rho = nn.Sequential(act(odd), nn.Linear(c, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, N, d_in]
        return self.rho(self.phi(x).sum(dim=1))


class PReLUNet(nn.Module):
    def __init__(self, d_in: int, c: int, out: int, shared: bool) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_in, c)
        self.act = nn.PReLU(1 if shared else c)
        self.fc2 = nn.Linear(c, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Shuffle(nn.Module):
    def __init__(self, c_in: int, c: int, out: int, odd: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c * 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.out = nn.Conv2d(c, out, 1)
        self.act = act(odd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.shuffle(self.conv(x))))


def vgg(c_in: int = 3, widths: tuple[int, ...] = (4, 8), classes: int = 5) -> nn.Module:
    """VGG-style: conv-bn-relu pairs and max pools, then a flatten of 2x2 positions."""
    layers: list[nn.Module] = []
    for c in widths:
        layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]
        c_in = c
    model = nn.Sequential()
    model.add_module("features", nn.Sequential(*layers))
    model.add_module("classifier", nn.Sequential(nn.Flatten(), nn.Linear(c_in * 4, classes)))
    return model


def randomised(module: nn.Module, seed: int) -> nn.Module:
    """Random parameters and batch-norm statistics (not the initialisation, whose zero
    biases and unit variances would hide a wrong tying), float64, scaled by fan-in."""
    gen = torch.Generator().manual_seed(seed)
    module = module.double()
    with torch.no_grad():
        for p in module.parameters():
            fan = p[0].numel() if p.dim() >= 2 else 4
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) / fan**0.5)
        for name, b in module.named_buffers():
            if name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=gen, dtype=b.dtype) + 0.5)
            elif name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=gen, dtype=b.dtype) * 0.1)
    return module
