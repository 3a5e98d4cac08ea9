"""β-VAE over single fragments: the floor baseline (no sequence structure at all).

Each fragment is encoded on its own into one diagonal Gaussian latent of size d_content + d_style
(the backbone Encoder's two heads give its μ and log σ²), decoded by the backbone Decoder, and
trained with

    total = MSE(x̂, x) + β · KL(q(z | x_t) || N(0, I)) / (C·H·W)

(KL in nats per fragment, summed over dimensions; per element of x like the other VAEs, so β = 1 is
the ELBO of a Gaussian decoder with variance 1/2).

The first d_content latent dimensions are reported as "content" and the remaining d_style as
"style". That split is arbitrary: nothing in the objective tells the two halves apart (the prior is
isotropic, so any rotation of z is as good), which is exactly why this is the floor a content/style
method must beat.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from varinv.config import Interval
from varinv.methods.base import Encoded
from varinv.methods.autoencoder import BackboneConfig, ConvAutoencoder
from varinv.nn.backbones import Encoder
from varinv.nn.gaussian import kl_normal, reparameterise


@dataclass
class BetaVAEConfig(BackboneConfig):
    beta: float = 4.0

    RULES = {"beta": Interval(float, 0, None)}


class BetaVAE(ConvAutoencoder):
    name = "betavae"

    def __init__(self, cfg: BetaVAEConfig, fragment_shape, seed: int = 0):
        super().__init__(cfg, fragment_shape)
        d = cfg.d_content + cfg.d_style
        self.encoder = Encoder(self.fragment_shape, cfg.spec(), d, d)  # heads: μ and log σ² of z

    def posterior(self, x):
        """(B, L, C, H, W) → μ, log σ² (B·L, d)."""
        mu, logvar, _, _ = self._encode_flat(x)
        return mu, logvar.clamp(-10.0, 10.0)

    def encode(self, x):
        b, length = x.shape[:2]
        mu = self.posterior(x)[0].view(b, length, -1)
        dc = self.cfg.d_content
        return Encoded(content=mu[..., :dc], style=mu[..., dc:])

    def terms(self, x, mu, logvar):
        z = reparameterise(mu, logvar)
        dc = self.cfg.d_content
        x_hat = self.decoder(z[:, :dc], z[:, dc:]).view_as(x)
        return {"recon": F.mse_loss(x_hat.float(), x.float()), "kl": kl_normal(mu.float(), logvar.float()).sum(-1).mean()}

    def loss(self, batch, step):
        x = batch["x"]
        out = self.terms(x, *self.posterior(x))
        out["total"] = out["recon"] + self.cfg.beta * out["kl"] / float(x[0, 0].numel())
        return out
