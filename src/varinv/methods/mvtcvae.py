"""Multi-view β-TCVAE (the NYU MARL model, Wilkins et al. 2024; papers.md §4.2).

Views are the L fragments of one sample. Each view gets a private latent z_p (→ content) and the
sample gets one shared latent z_s (→ style), made from all views: every fragment's encoder gives
(μ_t, log σ²_t) for z_s, and they are combined by ``shared_combine``:

  * ``mean`` (default): the average of the per-view parameters, μ_s = mean_t μ_t and
    log σ²_s = mean_t log σ²_t (as a mean-pooling encoder would);
  * ``poe``: the product of the L Gaussian experts (no prior expert): precision Σ_t σ_t^-2 and
    mean Σ_t μ_t σ_t^-2 / Σ_t σ_t^-2.

Each view is decoded from (z_p,t, z_s); the reconstruction is the MSE. The KL of each latent group
to N(0, I) is decomposed as in β-TCVAE (Chen et al. 2018) and weighted by group:

    E_q(z,x)[log q(z|x) − log p(z)] =  E[log q(z|x) − log q(z)]               α · MI
                                     + E[log q(z) − Σ_k log q(z_k)]             β · TC
                                     + E[Σ_k log q(z_k) − Σ_k log p(z_k)]       γ · dimension-wise KL

(the three parts telescope, so they sum exactly to the Monte-Carlo KL estimate on the batch). The
aggregate posterior densities use minibatch-weighted sampling over the M latent draws of the batch,
drawn from a data set of N items:

    log q(z_i)   ≈ logsumexp_j  Σ_k log q(z_i,k | x_j) − log(N·M)
    log q(z_i,k) ≈ logsumexp_j  log q(z_i,k | x_j)     − log(N·M)

For z_s the items are samples (M = B, N = ``dataset_size``); for z_p they are fragments
(M = B·L, N = ``dataset_size``·L). N only shifts MI, TC and dimension-wise KL by constants (no
effect on gradients), so it matters for the logged values only.

Per sample the ELBO counts the shared KL once and the private KL once per view, so with D = C·H·W:

    total = MSE + [α·MI_s + β·TC_s + γ·dKL_s + L·(α·MI_p + β·TC_p + γ·dKL_p)] / (L·D)

(the per-element unit of DSAE; MARL's formula repeats the shared KL once per view, we count it
once). Defaults follow MARL's ablation, where α and β hurt private/shared separation and γ helped:
small α = β = 0.1, γ = 0.5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from varinv.config import Interval, Options
from varinv.methods.base import Encoded
from varinv.methods.autoencoder import BackboneConfig, ConvAutoencoder
from varinv.nn.backbones import Encoder
from varinv.nn.gaussian import log_normal, reparameterise, split_params


@dataclass
class MVTCVAEConfig(BackboneConfig):
    alpha: float = 0.1  # weight of the index-code mutual information
    beta: float = 0.1  # weight of the total correlation
    gamma: float = 0.5  # weight of the dimension-wise KL
    shared_combine: str = "mean"  # mean | poe
    dataset_size: int = 8000  # training samples N for minibatch-weighted sampling (logged values only)

    RULES = {
        "alpha": Interval(float, 0, None),
        "beta": Interval(float, 0, None),
        "gamma": Interval(float, 0, None),
        "shared_combine": Options(("mean", "poe")),
        "dataset_size": Interval(int, 1, None),
    }


def tc_decomposition(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, n_data: int) -> dict[str, torch.Tensor]:
    """β-TCVAE terms from M latent draws z (M, d) of posteriors (mu, logvar) (M, d), using
    minibatch-weighted sampling with a data set of ``n_data`` items. Returns mi, tc, dimkl and kl
    (= E[log q(z|x) − log p(z)], which equals mi + tc + dimkl), all averages over the M draws."""
    m = z.shape[0]
    log_qz_x = log_normal(z, mu, logvar).sum(1)  # (M,)
    pair = log_normal(z[:, None], mu[None], logvar[None])  # (M, M, d): log q(z_i,k | x_j)
    log_nm = math.log(n_data * m)
    log_qz = torch.logsumexp(pair.sum(2), 1) - log_nm  # (M,)
    log_qz_prod = (torch.logsumexp(pair, 1) - log_nm).sum(1)  # (M,)
    log_pz = log_normal(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)
    return {
        "mi": (log_qz_x - log_qz).mean(),
        "tc": (log_qz - log_qz_prod).mean(),
        "dimkl": (log_qz_prod - log_pz).mean(),
        "kl": (log_qz_x - log_pz).mean(),
    }


def combine_views(mu: torch.Tensor, logvar: torch.Tensor, how: str):
    """Per-view shared posteriors (B, L, d) → one per sample (B, d)."""
    if how == "poe":
        prec = (-logvar).exp()
        total = prec.sum(1)
        return (mu * prec).sum(1) / total, -total.log()
    return mu.mean(1), logvar.mean(1)


class MVTCVAE(ConvAutoencoder):
    name = "mvtcvae"

    def __init__(self, cfg: MVTCVAEConfig, fragment_shape, seed: int = 0):
        super().__init__(cfg, fragment_shape)
        # the encoder's two heads give (μ, log σ²) of the private and of the per-view shared latent
        self.encoder = Encoder(self.fragment_shape, cfg.spec(), 2 * cfg.d_content, 2 * cfg.d_style)

    def posteriors(self, x: torch.Tensor, sample: bool = True) -> dict[str, torch.Tensor]:
        hp, hs, b, length = self._encode_flat(x)
        mu_p, lv_p = split_params(hp.view(b, length, -1))  # (B, L, Dp)
        mu_v, lv_v = split_params(hs.view(b, length, -1))  # (B, L, Ds) per view
        mu_s, lv_s = combine_views(mu_v, lv_v, self.cfg.shared_combine)  # (B, Ds)
        return {
            "mu_p": mu_p, "lv_p": lv_p, "zp": reparameterise(mu_p, lv_p) if sample else mu_p,
            "mu_s": mu_s, "lv_s": lv_s, "zs": reparameterise(mu_s, lv_s) if sample else mu_s,
        }

    def encode(self, x):
        post = self.posteriors(x, sample=False)
        return Encoded(content=post["mu_p"], style=post["mu_s"][:, None].expand(-1, x.shape[1], -1))

    def terms(self, x: torch.Tensor, post: dict) -> dict[str, torch.Tensor]:
        b, length = x.shape[:2]
        x_hat = self.decode(post["zp"], post["zs"][:, None].expand(-1, length, -1))
        n = self.cfg.dataset_size
        shared = tc_decomposition(post["zs"].float(), post["mu_s"].float(), post["lv_s"].float(), n)
        private = tc_decomposition(post["zp"].flatten(0, 1).float(), post["mu_p"].flatten(0, 1).float(),
                                   post["lv_p"].flatten(0, 1).float(), n * length)
        out = {"recon": F.mse_loss(x_hat.float(), x.float())}
        out.update({f"{k}_s": v for k, v in shared.items()})
        out.update({f"{k}_p": v for k, v in private.items()})
        return out

    def loss(self, batch, step):
        cfg, x = self.cfg, batch["x"]
        out = self.terms(x, self.posteriors(x))
        length = x.shape[1]

        def weighted(tag: str) -> torch.Tensor:
            return cfg.alpha * out[f"mi_{tag}"] + cfg.beta * out[f"tc_{tag}"] + cfg.gamma * out[f"dimkl_{tag}"]

        out["total"] = out["recon"] + (weighted("s") + length * weighted("p")) / float(x[0].numel())
        return out
