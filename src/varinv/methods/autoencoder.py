"""The conv autoencoder every fragment-level method builds on: fragments are flattened to
(B·L, C, H, W) for the convs and the latents reshaped back to (B, L, d)."""

from __future__ import annotations

from dataclasses import dataclass

from varinv.config import _check
from varinv.methods.base import Method
from varinv.nn.backbones import BackboneSpec, Decoder, Encoder


@dataclass
class BackboneConfig:
    """Fields shared by every method built on the conv autoencoder."""

    d_content: int = 16
    d_style: int = 16
    n_channels: int = 32
    n_layers: int = 3
    blocks_per_layer: int = 1
    kernel: int = 3
    d_hidden: int = 256
    norm: str = "batch"
    film: bool = False

    def validate(self) -> None:
        _check(self.d_content >= 1, "model.d_content", self.d_content, "an integer >= 1")
        _check(self.d_style >= 1, "model.d_style", self.d_style, "an integer >= 1")
        _check(self.n_channels >= 8, "model.n_channels", self.n_channels, "an integer >= 8")
        _check(self.n_layers >= 1, "model.n_layers", self.n_layers, "an integer >= 1")
        _check(self.kernel % 2 == 1, "model.kernel", self.kernel, "an odd integer")
        _check(self.norm in ("batch", "group", "none"), "model.norm", self.norm, "'batch', 'group' or 'none'")

    def spec(self) -> BackboneSpec:
        return BackboneSpec(
            n_channels=self.n_channels,
            n_layers=self.n_layers,
            blocks_per_layer=self.blocks_per_layer,
            kernel=self.kernel,
            d_hidden=self.d_hidden,
            norm=self.norm,
            film=self.film,
        )



class ConvAutoencoder(Method):
    """Shared encoder/decoder plumbing: fragments are flattened to (B·L, C, H, W) for the convs."""

    def __init__(self, cfg: BackboneConfig, fragment_shape: tuple[int, int, int]):
        super().__init__()
        self.cfg = cfg
        self.fragment_shape = tuple(fragment_shape)
        self.encoder = Encoder(self.fragment_shape, cfg.spec(), cfg.d_content, cfg.d_style)
        self.decoder = Decoder(self.fragment_shape, cfg.spec(), cfg.d_content, cfg.d_style)

    def _encode_flat(self, x: torch.Tensor):
        b, length = x.shape[:2]
        zc, zs = self.encoder(x.reshape(b * length, *x.shape[2:]))
        return zc, zs, b, length

    def decode(self, content, style):
        lead = content.shape[:-1]
        out = self.decoder(content.reshape(-1, content.shape[-1]), style.reshape(-1, style.shape[-1]))
        return out.reshape(*lead, *out.shape[1:])
