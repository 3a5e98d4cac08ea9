"""The conv autoencoder every fragment-level method builds on: fragments are flattened to
(B·L, C, H, W) for the convs and the latents reshaped back to (B, L, d)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from varinv.config import AnyOf, Checked, Interval, Odd, Options, check_value
from varinv.methods.base import Method
from varinv.nn.backbones import BackboneSpec, Encoder, build_decoder


CONTENT_INPUTS = ("raw", "own", "sample", "instance")


@dataclass
class BackboneConfig(Checked):
    """Fields shared by every method built on the conv autoencoder."""

    d_content: int = 16
    d_style: int = 16
    n_channels: int = 0  # 0: from the fragment shape (nn/backbones.py, size rule)
    n_layers: int = 0
    blocks_per_layer: int = 1
    kernel: int = 3
    d_hidden: int = 256
    norm: str = "batch"
    film: bool = False
    # What the content branch reads: "raw" fragments (one trunk feeds both heads), the raw fragments through a
    # trunk of its "own" (terms on z_c alone then cannot take from the trunk the features only the style
    # hinges ask for: textures' style under the neighbour term, round 17), or a trunk of its own
    # that reads "sample"-standardised fragments (each minus its sample's mean fragment, over the
    # sample's spread per channel: style is what a sample's fragments share, so this removes its first
    # two moments, a colour pair's offset and contrast or a timbre's mean spectrum) or normalises
    # its input and every layer per "instance" (each fragment's per-channel statistics removed: the
    # statistics that carry colour, texture and timbre, as in AdaIN-style transfer).
    content_input: str = "raw"
    style_stats: bool = False  # the encoder also reads per-layer channel means and deviations (backbones.py)
    decoder: str = "joint"  # or "separable", "gain" (nn/backbones.py, BackboneSpec.decoder)
    decoder_rank: int = 1
    positive_gain_maps: bool = False  # BackboneSpec.positive
    nested_gain_maps: bool = False  # BackboneSpec.nested
    decoder_upsample: str = "nearest"  # or "shuffle" (BackboneSpec.upsample)

    RULES = {
        "d_content": Interval(int, 1, None),
        "d_style": Interval(int, 1, None),
        "n_channels": AnyOf(Options((0,), note="from the fragment shape"), Interval(int, 8, None)),
        "n_layers": AnyOf(Options((0,), note="from the fragment shape"), Interval(int, 1, None)),
        "blocks_per_layer": Interval(int, 1, None),
        "kernel": Odd(),
        "d_hidden": Interval(int, 2, None),
        "norm": Options(("batch", "group", "instance", "none")),
        "film": bool,
        "content_input": Options(CONTENT_INPUTS),
        "style_stats": bool,
        "decoder": Options(("joint", "separable", "gain")),
        "decoder_rank": Interval(int, 0, None),
        "positive_gain_maps": bool,
        "nested_gain_maps": bool,
        "decoder_upsample": Options(("nearest", "shuffle")),
    }

    def validate(self) -> None:
        super().validate()
        check_value(self.decoder == "gain" or not self.positive_gain_maps, "model.positive_gain_maps",
                    self.positive_gain_maps, 'false unless model.decoder is "gain" (the only decoder with gain maps)')
        check_value(not self.nested_gain_maps or (self.positive_gain_maps and self.decoder_rank >= 2),
                    "model.nested_gain_maps", self.nested_gain_maps,
                    "false unless model.positive_gain_maps is true and model.decoder_rank is at least 2 (a part of "
                    "the first map needs a second product)")

    def spec(self) -> BackboneSpec:
        return BackboneSpec(
            n_channels=self.n_channels,
            n_layers=self.n_layers,
            blocks_per_layer=self.blocks_per_layer,
            kernel=self.kernel,
            d_hidden=self.d_hidden,
            norm=self.norm,
            film=self.film,
            stats=self.style_stats,
            decoder=self.decoder,
            rank=self.decoder_rank,
            positive=self.positive_gain_maps,
            nested=self.nested_gain_maps,
            upsample=self.decoder_upsample,
        )



def standardise_samples(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """(B, L, C, H, W) → each fragment minus its sample's mean fragment, divided by the residual's
    standard deviation over the sample's fragments and positions, per channel."""
    r = x.float() - x.float().mean(1, keepdim=True)
    sd = r.pow(2).mean((1, 3, 4), keepdim=True).sqrt()
    return (r / (sd + eps)).to(x.dtype)


def standardise_fragments(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """(..., C, H, W) → each fragment's channels at zero mean and unit deviation over positions."""
    r = x.float() - x.float().mean((-2, -1), keepdim=True)
    return (r / (r.pow(2).mean((-2, -1), keepdim=True).sqrt() + eps)).to(x.dtype)


class ConvAutoencoder(Method):
    """Shared encoder/decoder plumbing: fragments are flattened to (B·L, C, H, W) for the convs."""

    def __init__(self, cfg: BackboneConfig, fragment_shape: tuple[int, int, int]):
        super().__init__()
        self.cfg = cfg
        self.fragment_shape = tuple(fragment_shape)
        extra = self.extra_dims(cfg)
        self.encoder = Encoder(self.fragment_shape, cfg.spec(), cfg.d_content, cfg.d_style + extra[0])
        self.decoder = build_decoder(self.fragment_shape, cfg.spec(), cfg.d_content + extra[1], cfg.d_style)
        self.content_encoder = None
        if cfg.content_input != "raw":
            norm = "instance" if cfg.content_input == "instance" else cfg.norm
            spec = dataclasses.replace(cfg.spec(), norm=norm, stats=False)
            self.content_encoder = Encoder(self.fragment_shape, spec, cfg.d_content, 1)

    def extra_dims(self, cfg) -> tuple[int, int]:
        """(extra style-head outputs, extra decoder content inputs) a subclass needs beside z_c and z_s."""
        return 0, 0

    def _encode_flat(self, x: torch.Tensor):
        b, length = x.shape[:2]
        zc, zs = self.encoder(x.reshape(b * length, *x.shape[2:]))
        if self.content_encoder is not None:
            zc = self.content_of(x)
        return zc, zs, b, length

    def content_of(self, x: torch.Tensor) -> torch.Tensor:
        """(B·L, d_c) content embeddings of samples x (B, L, C, H, W), through the content branch."""
        if self.content_encoder is None:
            return self.encoder(x.flatten(0, 1))[0]
        if self.cfg.content_input == "sample":
            x = standardise_samples(x)
        elif self.cfg.content_input == "instance":
            x = standardise_fragments(x)
        return self.content_encoder(x.flatten(0, 1))[0]

    def decode(self, content, style, coarse: bool = False):
        """``coarse``: the separable decoder's additive part A0(c) + B0(s) only."""
        lead = content.shape[:-1]
        content, style = content.reshape(-1, content.shape[-1]), style.reshape(-1, style.shape[-1])
        out = self.decoder(content, style, coarse=True)[1] if coarse else self.decoder(content, style)
        return out.reshape(*lead, *out.shape[1:])
