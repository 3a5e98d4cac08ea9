"""Conv encoders/decoders for fragments of shape (C, H, W): image patches or spectrogram slices.

The reference uses ResNet-like stacks whose strided first block halves the map per layer and whose
channels double per layer; we keep that shape but derive the strides from the input size (a side
stops shrinking at 4), so one class serves 3×48×32 digits and 1×F×32 spectrograms alike.

Size rule (``n_layers = 0`` / ``n_channels = 0``, the defaults): halve the larger side until it is at
most 6, i.e. ``n_layers = ceil(log2(max(H, W) / 6))``, and let the last layer have
``min(64, 8 · 2^(n_layers - 1))`` channels. It reproduces the hand-set CPU-small backbones (3 layers
of up to 32 channels for 48×32 digits, 5 of up to 64 for 128×32 spectrograms, 6 for 256×8), so a new
fragment shape needs no backbone settings. The decoder mirrors the encoder; with ``upsample: shuffle`` (V3's
default) its last layer is a sub-pixel convolution at the encoder's first map size instead of a block at full size.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class BackboneSpec:
    n_channels: int = 0  # channels after the last layer (0: the size rule); earlier layers halve it
    n_layers: int = 0  # strided layers (0: the size rule)
    blocks_per_layer: int = 1
    kernel: int = 3
    d_hidden: int = 256  # the shared linear layer before the content/style heads
    norm: str = "batch"  # batch | group | instance | none
    film: bool = False  # style modulates every decoder layer (scale and shift per channel)
    # The encoder's shared layer also reads every layer's per-channel mean and standard deviation over
    # positions: statistics that do not move with where things are (texture, colour, timbre), the
    # descriptor style transfer uses for style.
    stats: bool = False
    # "joint": one network of content and style (with FiLM when ``film``). "separable": the fragment is
    # A0(c) + B0(s) + sum_r A_r(c) * B_r(s) with ``rank`` products of full-size maps, each map drawn from
    # content alone or style alone, so style can recolour, reweight or lay a background under what the
    # content draws, but cannot make an atom draw another content in another style. "gain": as
    # separable, but each product's style factor is one gain per channel (B_r(s) constant over
    # positions), so style cannot select where an atom's map shows either.
    decoder: str = "joint"
    rank: int = 1
    # "gain" only: the content maps a style gain multiplies are non-negative (softplus), so every value of a
    # fragment moves one way as a gain grows and a gain cannot swap one content's pattern for another's.
    positive: bool = False
    # "gain" with ``positive`` and rank >= 2 only: every product after the first draws a part of the first map,
    # A_r(c) = A_1(c) * sigmoid(.), with a non-negative gain, so a style can weight parts of what an atom draws
    # (an outline against the interior) but never show a pattern outside it.
    nested: bool = False
    # How the decoder reaches the fragment's size: "nearest" (mirror of the encoder: upsample, then a block at
    # every size including the full one) or "shuffle" (the last layer stops at the encoder's first map size and
    # its output convolution draws each position's stride-block of pixels, a sub-pixel convolution). The full-size
    # block is most of the decoder's arithmetic (8 channels at every pixel); "shuffle" skips it.
    upsample: str = "nearest"


def _norm(kind: str, ch: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(ch)
    if kind == "group":
        return nn.GroupNorm(min(8, ch), ch)
    if kind == "instance":  # per-fragment statistics removed (what instance norm removes is style)
        return nn.InstanceNorm2d(ch, affine=True)
    return nn.Identity()


class StridedPointwise(nn.Conv2d):
    """A 1×1 conv of stride ``stride``, computed as subsampling then a stride-1 1×1 conv: the same function
    and parameters, but oneDNN's weight gradient of a strided 1×1 conv in channels-last layout corrupts the
    heap on AVX2-only CPUs (torch 2.13 on an AMD EPYC: ``free(): invalid next size``, a crashed training)."""

    def __init__(self, c_in: int, c_out: int, stride: tuple[int, int]):
        super().__init__(c_in, c_out, 1, bias=False)
        self.subsample = tuple(stride)

    def forward(self, x):
        sh, sw = self.subsample
        return super().forward(grad_in_layout(x)[..., ::sh, ::sw])  # a slice's backward is NCHW


class _GradInLayout(torch.autograd.Function):
    """Identity whose backward hands on the gradient in the input's memory layout. Where a channels-last map is
    flattened or made contiguous, autograd returns an NCHW gradient, and every backward kernel below (GELU, batch
    norm, convolution) then mixes layouts, which oneDNN and ATen run up to 10x slower (10-18 % of a step here)."""

    @staticmethod
    def forward(ctx, x):
        ctx.channels_last = _channels_last(x)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous(memory_format=torch.channels_last) if ctx.channels_last else grad


def grad_in_layout(x: torch.Tensor) -> torch.Tensor:
    return _GradInLayout.apply(x) if x.requires_grad and x.dim() == 4 else x


def _channels_last(x: torch.Tensor) -> bool:
    return not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


class ResBlock(nn.Module):
    """conv-norm-GELU-conv-norm + (1×1 conv-norm) shortcut, then GELU."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: tuple[int, int], norm: str):
        super().__init__()
        pad = kernel // 2
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, kernel, stride, pad, bias=False),
            _norm(norm, c_out),
            nn.GELU(),
            nn.Conv2d(c_out, c_out, kernel, 1, pad, bias=False),
            _norm(norm, c_out),
        )
        self.skip = (
            nn.Identity()
            if c_in == c_out and stride == (1, 1)
            else nn.Sequential(StridedPointwise(c_in, c_out, stride), _norm(norm, c_out))
        )

    def forward(self, x):
        return F.gelu(self.body(x) + self.skip(x))


def auto_size(shape: tuple[int, int, int]) -> tuple[int, int]:
    """(n_layers, n_channels) of the size rule (module docstring) for fragments of shape (C, H, W)."""
    n_layers = max(1, math.ceil(math.log2(max(shape[1], shape[2]) / 6)))
    return n_layers, min(64, 8 * 2 ** (n_layers - 1))


def resolved(shape: tuple[int, int, int], spec: BackboneSpec) -> BackboneSpec:
    """``spec`` with the size rule filled in where it says 0."""
    n_layers, n_channels = auto_size(shape)
    return dataclasses.replace(spec, n_layers=spec.n_layers or n_layers, n_channels=spec.n_channels or n_channels)


def _plan(shape: tuple[int, int, int], spec: BackboneSpec):
    """Per-layer (channels, stride) and the map size after each layer."""
    spec = resolved(shape, spec)
    _, h, w = shape
    chans = [max(8, spec.n_channels // 2 ** (spec.n_layers - 1 - i)) for i in range(spec.n_layers)]
    strides, sizes = [], [(h, w)]
    for _ in range(spec.n_layers):
        sh, sw = (2 if h > 4 else 1), (2 if w > 4 else 1)
        h, w = math.ceil(h / sh), math.ceil(w / sw)
        strides.append((sh, sw))
        sizes.append((h, w))
    return chans, strides, sizes


class Encoder(nn.Module):
    """(N, C, H, W) → (content (N, d_c), style (N, d_s))."""

    def __init__(self, shape: tuple[int, int, int], spec: BackboneSpec, d_content: int, d_style: int):
        super().__init__()
        chans, strides, sizes = _plan(shape, spec)
        layers, c_in = [], shape[0]
        for c, s in zip(chans, strides):
            layers.append(ResBlock(c_in, c, spec.kernel, s, spec.norm))
            layers += [ResBlock(c, c, spec.kernel, (1, 1), spec.norm) for _ in range(spec.blocks_per_layer - 1)]
            c_in = c
        self.conv = nn.Sequential(*layers)
        self.stats = spec.stats
        flat = chans[-1] * sizes[-1][0] * sizes[-1][1] + (2 * sum(chans) if spec.stats else 0)
        self.fc = nn.Sequential(nn.Linear(flat, spec.d_hidden), nn.GELU())
        self.to_content = nn.Linear(spec.d_hidden, d_content)
        self.to_style = nn.Linear(spec.d_hidden, d_style)
        self.per_layer = spec.blocks_per_layer

    def forward(self, x):
        if not self.stats:
            h = self.fc(grad_in_layout(self.conv(x)).flatten(1))
        else:
            feats = []
            for i, block in enumerate(self.conv):
                x = block(x)
                if (i + 1) % self.per_layer == 0:
                    feats += [x.mean((2, 3)), x.std((2, 3), correction=0)]
            h = self.fc(torch.cat([x.flatten(1), *feats], 1))
        return self.to_content(h), self.to_style(h)


class Decoder(nn.Module):
    """(content (N, d_c), style (N, d_s)) → (N, C, H, W); mirrors the encoder with upsampling."""

    def __init__(self, shape: tuple[int, int, int], spec: BackboneSpec, d_content: int, d_style: int):
        super().__init__()
        chans, strides, sizes = _plan(shape, spec)
        self.sizes = sizes[::-1][1:]  # target size after each up layer
        self.c0, self.hw0 = chans[-1], sizes[-1]
        half = spec.d_hidden // 2
        self.from_content = nn.Sequential(nn.Linear(d_content, half), nn.GELU())
        self.from_style = nn.Sequential(nn.Linear(d_style, spec.d_hidden - half), nn.GELU())
        self.fc = nn.Sequential(nn.Linear(spec.d_hidden, self.c0 * sizes[-1][0] * sizes[-1][1]), nn.GELU())
        ups, c_in = [], chans[-1]
        up_chans = chans[::-1][1:] + [chans[0]]
        self.shuffle = strides[0] if spec.upsample == "shuffle" else None
        self.hw = shape[1:]
        if self.shuffle is not None:  # the last layer's block is the output convolution's sub-pixels instead
            up_chans, self.sizes = up_chans[:-1], self.sizes[:-1]
        for c in up_chans:
            ups.append(
                nn.Sequential(
                    *[ResBlock(c_in, c, spec.kernel, (1, 1), spec.norm)]
                    + [ResBlock(c, c, spec.kernel, (1, 1), spec.norm) for _ in range(spec.blocks_per_layer - 1)]
                )
            )
            c_in = c
        self.ups = nn.ModuleList(ups)
        sub = 1 if self.shuffle is None else self.shuffle[0] * self.shuffle[1]
        self.out = nn.Conv2d(c_in, shape[0] * sub, spec.kernel, 1, spec.kernel // 2)
        # FiLM: rendering attributes such as colour are global per fragment, so letting the style set
        # each layer's per-channel gain and offset makes them cheap to render and keeps the content
        # path free of them.
        self.film = (
            nn.ModuleList(nn.Linear(d_style, 2 * c) for c in up_chans) if spec.film else None
        )
        if self.film is not None:
            for lin in self.film:
                nn.init.zeros_(lin.weight)
                nn.init.zeros_(lin.bias)

    def forward(self, content, style, run: int = 0):
        """``run`` is the separable decoders' (unused here: every row is drawn)."""
        h = torch.cat([self.from_content(content), self.from_style(style)], dim=-1)
        h = self.fc(h).view(-1, self.c0, *self.hw0)
        if _channels_last(self.out.weight):  # the first block's input in the trunk's layout (speed.py)
            h = h.contiguous(memory_format=torch.channels_last)
        for i, (up, size) in enumerate(zip(self.ups, self.sizes)):
            h = up(F.interpolate(h, size=size, mode="nearest"))
            if self.film is not None:
                gamma, beta = self.film[i](style)[:, :, None, None].chunk(2, dim=1)
                h = h * (1 + gamma) + beta
        h = grad_in_layout(self.out(h))
        if self.shuffle is not None:
            (sh, sw), (n, c, hh, ww) = self.shuffle, h.shape
            c //= sh * sw
            h = h.reshape(n, c, sh, sw, hh, ww).permute(0, 1, 4, 2, 5, 3).reshape(n, c, hh * sh, ww * sw)
            h = h[:, :, :self.hw[0], :self.hw[1]]
        return h.contiguous()  # channels-last: NCHW for the callers' channel slices (fast paths)


def distinct_rows(z: torch.Tensor, run: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(first, which) for rows z (N, d): the first row of each run of equal consecutive rows (a sample's
    pooled style) (U,), and for every row the position of its run in ``first`` (N,), so z[first][which] == z.
    ``run`` > 0: the caller knows the rows come in runs of that many (a sample's fragments), and two equal
    samples (one drawn twice) stay two runs. Indexing with ``first`` keeps the gradient flowing to those rows."""
    n = z.shape[0]
    if run > 0:
        return torch.arange(0, n, run, device=z.device), torch.arange(n, device=z.device) // run
    new = torch.ones(n, dtype=torch.bool, device=z.device)
    new[1:] = (z[1:] != z[:-1]).any(1)
    return new.nonzero().squeeze(1), new.cumsum(0) - 1


class SeparableDecoder(nn.Module):
    """(content, style) → A0(c) + B0(s) + Σ_r A_r(c)·B_r(s); see ``BackboneSpec.decoder``. With
    ``gain`` each B_r(s) (r ≥ 1) is a per-channel gain from a linear map of s."""

    def __init__(self, shape: tuple[int, int, int], spec: BackboneSpec, d_content: int, d_style: int):
        super().__init__()
        c, h, w = shape
        self.n_maps = 1 + spec.rank
        self.gain = spec.decoder == "gain"
        self.positive = spec.positive
        self.nested = spec.nested
        plain = dataclasses.replace(spec, film=False)
        self.content_maps = Decoder((c * self.n_maps, h, w), plain, d_content, 1)
        style_maps = 1 if self.gain else self.n_maps
        self.style_maps = Decoder((c * style_maps, h, w), plain, 1, d_style)
        self.gains = nn.Linear(d_style, c * spec.rank) if self.gain and spec.rank else None

    def forward(self, content, style, run: int = 0, coarse: bool = False):
        """``run``: rows come in runs of that many sharing one style (``distinct_rows``; 0: find them).
        ``coarse``: also return the additive part A0(c) + B0(s) alone, as (full, coarse)."""
        a = self.content_maps(content, content.new_zeros(content.shape[0], 1)).chunk(self.n_maps, dim=1)
        # the style maps are drawn once per run of one style: a sample's fragments share one under style_pool,
        # and the maps are about a third of a step. Each sample then stands for the same number of rows, so
        # batch-norm statistics over the runs equal those over all rows (and, under data parallelism, those
        # of one process over the whole batch).
        first, which = distinct_rows(style, run)
        if first.shape[0] == style.shape[0]:  # every style its own: no gather of full-size maps
            maps = self.style_maps(style.new_zeros(style.shape[0], 1), style)
        else:
            maps = self.style_maps(style.new_zeros(first.shape[0], 1), style[first])[which]
        b = maps.chunk(1 if self.gain else self.n_maps, dim=1)
        if self.gains is not None:
            g = (1 + self.gains(style)).view(style.shape[0], len(a) - 1, -1, 1, 1).unbind(1)
            if self.nested:  # validated: nested implies positive
                first = F.softplus(a[1])
                a = (a[0], first, *(first * torch.sigmoid(x) for x in a[2:]))
                g = (g[0], *(F.softplus(x) for x in g[1:]))
            elif self.positive:
                a = (a[0], *(F.softplus(x) for x in a[1:]))
            b = (b[0], *g)
        full = a[0] + b[0] + sum(x * y for x, y in zip(a[1:], b[1:]))
        return (full, a[0] + b[0]) if coarse else full


def build_decoder(shape: tuple[int, int, int], spec: BackboneSpec, d_content: int, d_style: int) -> nn.Module:
    return (Decoder if spec.decoder == "joint" else SeparableDecoder)(shape, spec, d_content, d_style)
