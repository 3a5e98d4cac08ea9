"""DSAE: Disentangled Sequential Autoencoder (Li & Mandt, ICML 2018; papers.md §3).

A sample's L fragments are a sequence x_{1:L}. Generative model

    p(x_{1:L}, z_{1:L}, f) = p(f) Π_t p(z_t | z_{<t}) p(x_t | z_t, f),   p(f) = N(0, I),

with a learned LSTM prior over the dynamic latents z_t and a Gaussian decoder (MSE) from (z_t, f).
The static latent f is one per sample (→ style), the dynamic z_t one per fragment (→ content).

Inference (each fragment → a feature vector by a ``FeatureNet``, the backbone Encoder's trunk):
  * static   q(f | x_{1:L}): mean-pooling of the features then an MLP (``static_pooling: mean``), or
             a bi-LSTM over them (``lstm``), then (μ_f, log σ²_f).
  * dynamic  ``posterior: factorised`` q(z_t | x_t): a linear head on fragment t's features;
             ``posterior: full`` q(z_t | x_{1:L}, f): a bi-LSTM over [features_t; f] then a forward
             LSTM, then (μ_t, log σ²_t).
The static and dynamic paths have separate feature nets (TS-DSAE freezes the dynamic one alone).

Loss (the negative ELBO, per element of x): with D = C·H·W,

    total = MSE(x̂, x) + (β_f KL(q(f) || N(0, I)) + β_z Σ_t KL(q(z_t) || p(z_t | z_{<t}))) / (L·D)

where the KLs are analytic (per sample, summed over dimensions, averaged over the batch) and the
prior for step t is evaluated at the sampled z_{<t}. β_f = β_z = 1 is the ELBO of a Gaussian decoder
with variance 1/2. encode() returns the posterior means: content = μ_z (B, L, Dz), style = μ_f
broadcast over L (B, L, Df); decode() accepts any pairing of them.

``d_content`` is the size of z_t and ``d_style`` that of f (the BackboneConfig names).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from varinv.config import Interval, Options
from varinv.methods.base import Encoded, Method
from varinv.methods.autoencoder import BackboneConfig
from varinv.nn.backbones import Decoder, Encoder
from varinv.nn.gaussian import kl_normal, reparameterise, split_params


@dataclass
class DSAEConfig(BackboneConfig):
    d_feature: int = 64  # per-fragment feature size (both feature nets)
    d_rnn: int = 64  # hidden size of every LSTM (prior, static bi-LSTM, full posterior)
    static_pooling: str = "mean"  # mean | lstm
    posterior: str = "factorised"  # factorised | full
    beta_f: float = 1.0
    beta_z: float = 1.0

    RULES = {
        "d_feature": Interval(int, 1, None),
        "d_rnn": Interval(int, 1, None),
        "static_pooling": Options(("mean", "lstm")),
        "posterior": Options(("factorised", "full")),
        "beta_f": Interval(float, 0, None),
        "beta_z": Interval(float, 0, None),
    }


class FeatureNet(nn.Module):
    """Per-fragment features (N, C, H, W) → (N, d): the backbone Encoder's conv trunk, shared linear
    layer and one head (its second head is not built into the forward and not kept)."""

    def __init__(self, shape, spec, d: int):
        super().__init__()
        enc = Encoder(shape, spec, d, 1)
        self.conv, self.fc, self.out = enc.conv, enc.fc, enc.to_content

    def forward(self, x):
        return self.out(self.fc(self.conv(x).flatten(1)))


def _frames(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a per-fragment net to (B, L, C, H, W) → (B, L, d)."""
    b, length = x.shape[:2]
    return net(x.reshape(b * length, *x.shape[2:])).view(b, length, -1)


class StaticEncoder(nn.Module):
    """q(f | x_{1:L}) → (μ_f, log σ²_f), each (B, Df)."""

    def __init__(self, shape, cfg: DSAEConfig):
        super().__init__()
        self.pooling = cfg.static_pooling
        self.features = FeatureNet(shape, cfg.spec(), cfg.d_feature)
        if self.pooling == "lstm":
            self.rnn = nn.LSTM(cfg.d_feature, cfg.d_rnn, batch_first=True, bidirectional=True)
            self.head = nn.Linear(2 * cfg.d_rnn, 2 * cfg.d_style)
        else:
            self.head = nn.Sequential(nn.Linear(cfg.d_feature, cfg.d_rnn), nn.GELU(), nn.Linear(cfg.d_rnn, 2 * cfg.d_style))

    def forward(self, x):
        h = _frames(self.features, x)  # (B, L, d_feature)
        if self.pooling == "lstm":
            _, (hn, _) = self.rnn(h)  # hn (2, B, d_rnn): last forward state, last backward state
            pooled = torch.cat([hn[0], hn[1]], -1)
        else:
            pooled = h.mean(1)
        return split_params(self.head(pooled))


class DynamicEncoder(nn.Module):
    """q(z_t | x_t) (factorised) or q(z_t | x_{1:L}, f) (full) → (μ_z, log σ²_z), each (B, L, Dz)."""

    def __init__(self, shape, cfg: DSAEConfig):
        super().__init__()
        self.kind = cfg.posterior
        self.features = FeatureNet(shape, cfg.spec(), cfg.d_feature)
        if self.kind == "full":
            self.birnn = nn.LSTM(cfg.d_feature + cfg.d_style, cfg.d_rnn, batch_first=True, bidirectional=True)
            self.rnn = nn.LSTM(2 * cfg.d_rnn, cfg.d_rnn, batch_first=True)
            self.head = nn.Linear(cfg.d_rnn, 2 * cfg.d_content)
        else:
            self.head = nn.Linear(cfg.d_feature, 2 * cfg.d_content)

    def forward(self, x, f):
        h = _frames(self.features, x)  # (B, L, d_feature)
        if self.kind == "full":
            h, _ = self.birnn(torch.cat([h, f[:, None].expand(-1, h.shape[1], -1)], -1))
            h, _ = self.rnn(h)
        return split_params(self.head(h))


class LSTMPrior(nn.Module):
    """p(z_t | z_{<t}) for every t at once: an LSTM over [0, z_1, …, z_{L-1}] → (μ, log σ²) (B, L, Dz)."""

    def __init__(self, d_z: int, d_rnn: int):
        super().__init__()
        self.rnn = nn.LSTM(d_z, d_rnn, batch_first=True)
        self.head = nn.Linear(d_rnn, 2 * d_z)

    def forward(self, z):
        shifted = torch.cat([torch.zeros_like(z[:, :1]), z[:, :-1]], 1)
        h, _ = self.rnn(shifted)
        return split_params(self.head(h))


def kl_f_prior(post: dict) -> torch.Tensor:
    """KL(q(f | x) || N(0, I)) in nats per sample (summed over dimensions, mean over the batch)."""
    return kl_normal(post["mu_f"], post["lv_f"]).sum(-1).mean()


class DSAE(Method):
    name = "dsae"

    def __init__(self, cfg: DSAEConfig, fragment_shape, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        self.fragment_shape = tuple(fragment_shape)
        self.static = StaticEncoder(self.fragment_shape, cfg)
        self.dynamic = DynamicEncoder(self.fragment_shape, cfg)
        self.prior = LSTMPrior(cfg.d_content, cfg.d_rnn)
        self.decoder = Decoder(self.fragment_shape, cfg.spec(), cfg.d_content, cfg.d_style)

    # -- interface ---------------------------------------------------------------------------
    def encode(self, x):
        post = self.posteriors(x, sample=False)
        return Encoded(content=post["mu_z"], style=post["mu_f"][:, None].expand(-1, x.shape[1], -1))

    def decode(self, content, style):
        lead = content.shape[:-1]
        out = self.decoder(content.reshape(-1, content.shape[-1]), style.reshape(-1, style.shape[-1]))
        return out.reshape(*lead, *out.shape[1:])

    # -- pieces ------------------------------------------------------------------------------
    def posteriors(self, x: torch.Tensor, sample: bool = True) -> dict[str, torch.Tensor]:
        """q(f | x) and q(z | x, f) parameters for (B, L, C, H, W) input, with reparameterised
        samples f (B, Df) and z (B, L, Dz) (the means when ``sample`` is False)."""
        mu_f, lv_f = self.static(x)
        f = reparameterise(mu_f, lv_f) if sample else mu_f
        mu_z, lv_z = self.dynamic(x, f)
        z = reparameterise(mu_z, lv_z) if sample else mu_z
        return {"mu_f": mu_f, "lv_f": lv_f, "f": f, "mu_z": mu_z, "lv_z": lv_z, "z": z}

    def decode_seq(self, z: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """z (B, L, Dz), f (B, Df) → x̂ (B, L, C, H, W)."""
        return self.decode(z, f[:, None].expand(-1, z.shape[1], -1))

    def kl_z(self, post: dict) -> torch.Tensor:
        """Σ_t KL(q(z_t | ·) || p(z_t | z_{<t})) in nats per sample (prior at the sampled z_{<t})."""
        mu_p, lv_p = self.prior(post["z"])
        return kl_normal(post["mu_z"], post["lv_z"], mu_p, lv_p).sum((-1, -2)).mean()

    def elbo_terms(self, x: torch.Tensor, post: dict) -> dict[str, torch.Tensor]:
        x_hat = self.decode_seq(post["z"], post["f"])
        return {"recon": F.mse_loss(x_hat.float(), x.float()), "kl_f": kl_f_prior(post), "kl_z": self.kl_z(post)}

    def kl_scale(self, x: torch.Tensor) -> float:
        """1 / (L·C·H·W): nats per sample → per element of x, the recon term's unit."""
        return 1.0 / float(x[0].numel())

    def loss(self, batch, step):
        x = batch["x"]
        out = self.elbo_terms(x, self.posteriors(x))
        out["total"] = out["recon"] + self.kl_scale(x) * (self.cfg.beta_f * out["kl_f"] + self.cfg.beta_z * out["kl_z"])
        return out
